"""Fixtures of the cluster tests: site profiles written into tmp_path, and the SLURM guard.

Tests marked ``slurm`` need a running SLURM cluster (``deploy/slurm/start-test-cluster.sh``).
Without ``sinfo`` on PATH, or with no usable node, they are skipped with the reason; with
``DASKCAL_REQUIRE_SLURM=1`` (CI, after starting the test cluster) they fail instead, so a
broken cluster cannot pass as a skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

START = "deploy/slurm/start-test-cluster.sh"


def _slurm_problem() -> str | None:
    """Why no SLURM cluster can run jobs here (None when one can)."""
    if shutil.which("sinfo") is None:
        return f"sinfo is not on PATH (no SLURM here; start one with {START})"
    try:
        out = subprocess.run(["sinfo", "--noheader", "--format=%t"], capture_output=True,
                             text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return f"sinfo did not answer within 20 s (is slurmctld up? {START})"
    if out.returncode != 0:
        err = " ".join(out.stderr.split()) or f"exit status {out.returncode}"
        return f"the SLURM cluster is not up (sinfo: {err}; start it with {START})"
    states = {s.strip().rstrip("*") for s in out.stdout.split()}
    if not states & {"idle", "mix", "alloc", "comp"}:
        return f"no SLURM node can take jobs (states: {', '.join(sorted(states)) or 'none'})"
    return None


@pytest.fixture(scope="session")
def slurm_problem() -> str | None:
    """Checked once per session: why SLURM tests cannot run, or None."""
    return _slurm_problem()


@pytest.fixture(autouse=True)
def _require_slurm(request, slurm_problem):
    if request.node.get_closest_marker("slurm") is None or slurm_problem is None:
        return
    if os.environ.get("DASKCAL_REQUIRE_SLURM") == "1":
        pytest.fail(f"DASKCAL_REQUIRE_SLURM=1 but {slurm_problem}")
    pytest.skip(slurm_problem)


@pytest.fixture
def write_profile(tmp_path):
    """``write_profile(data, name="site")`` -> path of a YAML profile in ``tmp_path/sites``."""

    def write(data, name: str = "site") -> Path:
        path = tmp_path / "sites" / f"{name}.yaml"
        path.parent.mkdir(exist_ok=True)
        path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
        return path

    return write


@pytest.fixture
def repo_root() -> Path:
    """The source tree's root (where configs/ and deploy/ are)."""
    return Path(__file__).resolve().parents[2]
