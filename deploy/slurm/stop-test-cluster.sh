#!/usr/bin/env bash
# Stop the single-node SLURM test cluster started by start-test-cluster.sh.
#
# Cancels the jobs still queued on it (it is a test cluster), then stops slurmd, slurmctld and
# munged through their pid files. Safe to run when nothing is running. Leaves packages,
# /etc/slurm/slurm.conf and the munge key in place, so the next start is quick.
set -euo pipefail

log() { printf 'stop-test-cluster: %s\n' "$*" >&2; }

[[ "$(id -u)" -eq 0 ]] || { log "error: must run as root"; exit 1; }

stop_pidfile() {  # stop_pidfile NAME PIDFILE: TERM the process it names, wait, then KILL
    local pid
    [[ -s "$2" ]] || return 0
    pid="$(cat "$2" 2>/dev/null)" || return 0
    if ! [[ "$pid" =~ ^[0-9]+$ ]] || ! kill -0 "$pid" 2>/dev/null; then
        rm -f "$2"
        return 0
    fi
    log "stopping $1 (pid $pid)"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || { rm -f "$2"; return 0; }; sleep 0.1; done
    log "$1 did not stop in 10 s: killing it"
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$2"
}

if command -v squeue >/dev/null 2>&1 && [[ -s /run/slurmctld.pid ]]; then
    jobs="$(squeue --noheader --format=%i 2>/dev/null || true)"
    if [[ -n "$jobs" ]]; then
        log "cancelling jobs: $(echo "$jobs" | tr '\n' ' ')"
        # shellcheck disable=SC2086  # one job id per word
        scancel $jobs 2>/dev/null || true
        for _ in $(seq 50); do
            [[ -z "$(squeue --noheader --format=%i 2>/dev/null || true)" ]] && break
            sleep 0.2
        done
    fi
fi

stop_pidfile slurmd /run/slurmd.pid
stop_pidfile slurmctld /run/slurmctld.pid
stop_pidfile munged /run/munge/munged.pid
log "stopped"
