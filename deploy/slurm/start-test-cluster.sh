#!/usr/bin/env bash
# Install (once) and start a single-node SLURM cluster from Debian's packages, for tests and demos.
#
#   sudo deploy/slurm/start-test-cluster.sh        # safe to run twice; ~0.1 s when already up
#   deploy/slurm/stop-test-cluster.sh              # stops the daemons again
#
# What it does (Debian 12 / SLURM 22.05, works without systemd, e.g. in containers and CI):
#   1. apt-get installs slurmctld slurmd slurm-client munge if any is missing, with a
#      policy-rc.d that keeps dpkg from starting services (restored afterwards);
#   2. creates the munge key if missing and starts munged as user munge;
#   3. writes /etc/slurm/slurm.conf for this host: its short hostname, its CPU count, its memory
#      less a reserve for the OS, one partition "debug" (the default), no cgroups, no accounting;
#   4. starts slurmctld -i and slurmd, and waits (with a timeout) until sinfo shows the node idle.
#
# Environment:
#   SLURM_TEST_TIMEOUT     seconds to wait for the node to become idle (default 60)
#   SLURM_TEST_RESERVE_MB  memory kept back for the OS, in MiB (default: max(1024, 10% of total))
#   SLURM_TEST_LOGDIR      where the daemons log (default /var/log/slurm)
#
# Not for production: SlurmUser=root, no cgroup confinement, no accounting database.
set -euo pipefail

TIMEOUT="${SLURM_TEST_TIMEOUT:-60}"
LOGDIR="${SLURM_TEST_LOGDIR:-/var/log/slurm}"
CONF_DIR=/etc/slurm
CONF="$CONF_DIR/slurm.conf"
CTLD_PID=/run/slurmctld.pid
SLURMD_PID=/run/slurmd.pid
MUNGE_PID=/run/munge/munged.pid
PACKAGES=(slurmctld slurmd slurm-client munge)

log() { printf 'start-test-cluster: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

pid_alive() {  # pid_alive PIDFILE: the process named in PIDFILE exists
    local pid
    [[ -s "$1" ]] || return 1
    pid="$(cat "$1" 2>/dev/null)" || return 1
    [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null
}

node_state() {  # the node's state as sinfo shows it ("idle", "mix", "down*", ...), or nothing
    sinfo --noheader --nodes="$NODE" --format=%t 2>/dev/null | head -n1 | tr -d ' '
}

[[ "$(id -u)" -eq 0 ]] || die "must run as root (it installs packages and starts daemons)"

NODE="$(hostname -s)"

# ---- fast path: everything already up -----------------------------------------------------
if command -v sinfo >/dev/null 2>&1 && pid_alive "$MUNGE_PID" && pid_alive "$CTLD_PID" \
        && pid_alive "$SLURMD_PID"; then
    case "$(node_state)" in
        idle|mix|alloc|comp) log "already running (node $NODE $(node_state))"; exit 0 ;;
    esac
fi

# ---- 1. packages ----------------------------------------------------------------------------
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    created_policy=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\n# added by daskcal start-test-cluster.sh while installing\nexit 101\n' \
            > /usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        created_policy=1
    fi
    # shellcheck disable=SC2317  # called through the trap
    cleanup_policy() { if ((created_policy)); then rm -f /usr/sbin/policy-rc.d; fi; }
    trap cleanup_policy EXIT
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
    cleanup_policy
    trap - EXIT
fi

# ---- 2. munge ---------------------------------------------------------------------------------
install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
install -d -o munge -g munge -m 0755 /run/munge
if [[ ! -s /etc/munge/munge.key ]]; then
    log "creating the munge key"
    if command -v mungekey >/dev/null 2>&1; then
        mungekey --create --keyfile=/etc/munge/munge.key
    else
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
fi
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
if ! pid_alive "$MUNGE_PID"; then
    log "starting munged"
    rm -f /run/munge/munge.socket.2 /run/munge/munge.socket.2.lock "$MUNGE_PID"
    runuser -u munge -- /usr/sbin/munged
fi
for _ in $(seq 50); do
    munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && break
    sleep 0.1
done
munge -n </dev/null | unmunge >/dev/null 2>&1 || die "munged does not answer (see /var/log/munge)"

# ---- 3. slurm.conf ------------------------------------------------------------------------------
CPUS="$(nproc --all)"
TOTAL_MB="$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)"
RESERVE_MB="${SLURM_TEST_RESERVE_MB:-$(( TOTAL_MB / 10 > 1024 ? TOTAL_MB / 10 : 1024 ))}"
REAL_MB=$(( TOTAL_MB - RESERVE_MB ))
((REAL_MB >= 512)) || die "only ${TOTAL_MB} MiB of memory: too little for a test cluster"

install -d -m 0755 "$CONF_DIR" "$LOGDIR" /var/spool/slurmctld /var/spool/slurmd
new_conf="$(cat <<EOF
# Written by daskcal deploy/slurm/start-test-cluster.sh: a single-node test cluster.
ClusterName=daskcal-test
SlurmctldHost=${NODE}(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
MpiDefault=none
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
ReturnToService=2
SlurmctldPidFile=${CTLD_PID}
SlurmdPidFile=${SLURMD_PID}
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=${LOGDIR}/slurmctld.log
SlurmdLogFile=${LOGDIR}/slurmd.log
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=10
KillWait=5
Waittime=0
NodeName=${NODE} NodeAddr=127.0.0.1 CPUs=${CPUS} RealMemory=${REAL_MB} State=UNKNOWN
PartitionName=debug Nodes=${NODE} Default=YES MaxTime=INFINITE State=UP
EOF
)"
restart=0
if [[ ! -f "$CONF" ]] || [[ "$(cat "$CONF")" != "$new_conf" ]]; then
    log "writing $CONF (node $NODE, $CPUS CPUs, $REAL_MB MiB)"
    printf '%s\n' "$new_conf" > "$CONF"
    restart=1
fi

# ---- 4. daemons ---------------------------------------------------------------------------------
stop_pidfile() {  # stop_pidfile PIDFILE: TERM the process it names and wait for it
    local pid
    pid_alive "$1" || return 0
    pid="$(cat "$1")"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
}
if ((restart)); then
    stop_pidfile "$SLURMD_PID"
    stop_pidfile "$CTLD_PID"
fi
if ! pid_alive "$CTLD_PID"; then
    log "starting slurmctld"
    /usr/sbin/slurmctld -i
fi
if ! pid_alive "$SLURMD_PID"; then
    log "starting slurmd"
    /usr/sbin/slurmd
fi

deadline=$(( SECONDS + TIMEOUT ))
resumed=0
while :; do
    state="$(node_state)"
    case "$state" in
        idle|mix|alloc|comp) break ;;
        down*|drain*|drng*)
            if ((!resumed)); then
                scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true
                resumed=1
            fi ;;
    esac
    if ((SECONDS >= deadline)); then
        die "node $NODE is '${state:-unknown}' after ${TIMEOUT}s (see $LOGDIR/slurmctld.log, $LOGDIR/slurmd.log)"
    fi
    sleep 0.5
done
log "running: node $NODE $state, partition debug, $CPUS CPUs, $REAL_MB MiB"
