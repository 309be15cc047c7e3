#!/usr/bin/env bash
# Everything the full test-suite needs from outside Python, on a Debian machine as root:
# a real single-node SLURM (deploy/slurm/start-test-cluster.sh), headless Chromium for the
# browser test of the weblog, and a real PostgreSQL for the survey database (tests/survey).
# Idempotent and quick when already done. `make test` runs it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

bash "$here/slurm/start-test-cluster.sh"

if ! command -v chromium >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q chromium >/dev/null 2>&1 || {
        apt-get update -q >/dev/null
        apt-get install -y -q chromium >/dev/null
    }
fi
if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    # policy-rc.d as for SLURM: no systemd here, the cluster is started below
    apt-get install -y -q postgresql >/dev/null 2>&1 || {
        apt-get update -q >/dev/null
        apt-get install -y -q postgresql >/dev/null
    }
fi
pg_version="$(ls /usr/lib/postgresql | sort -n | tail -1)"
pg_lsclusters -h | grep -q "^$pg_version *main" || pg_createcluster "$pg_version" main >/dev/null
pg_lsclusters -h | grep -q "^$pg_version *main .* online" || pg_ctlcluster "$pg_version" main start
runuser -u postgres -- psql -qc "DO \$\$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE \
rolname='root') THEN CREATE ROLE root SUPERUSER LOGIN; END IF; END \$\$;" >/dev/null

echo "test prerequisites: SLURM up, $(chromium --version 2>/dev/null || echo 'no chromium'), \
PostgreSQL $pg_version up"
