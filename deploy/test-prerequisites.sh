#!/usr/bin/env bash
# Everything the full test-suite needs from outside Python, on a Debian machine as root:
# a real single-node SLURM (deploy/slurm/start-test-cluster.sh) and headless Chromium for the
# browser test of the weblog. Idempotent and quick when already done. `make test` runs it.
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
echo "test prerequisites: SLURM up, $(chromium --version 2>/dev/null || echo 'no chromium')"
