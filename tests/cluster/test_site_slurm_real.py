"""A real SLURM cluster (``deploy/slurm/start-test-cluster.sh``): workers run in batch jobs.

Marked ``slurm``: skipped with the reason when no cluster is up (see conftest.py); CI starts
the single-node test cluster and sets ``DASKCAL_REQUIRE_SLURM=1`` so that they run.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid

import dask.array as da
import numpy as np
import pytest

from daskcal.cluster import THREAD_LIMIT_ENV, SlurmSite, load_site

pytestmark = pytest.mark.slurm


def _squeue(job_name: str) -> list[tuple[str, str]]:
    out = subprocess.run(["squeue", "--noheader", f"--name={job_name}", "--format=%i %T"],
                         capture_output=True, text=True, timeout=10, check=True).stdout
    return [tuple(line.split()) for line in out.splitlines() if line.strip()]


def test_two_worker_jobs_run_tasks_and_leave(write_profile, tmp_path):
    job_name = f"daskcal-test-{uuid.uuid4().hex[:8]}"
    site = load_site(write_profile({"kind": "slurm", "slurm": {
        "queue": "debug", "cores": 1, "processes": 1, "memory": "1GiB", "walltime": "00:10:00",
        "jobs": 2, "job_name": job_name, "log_directory": str(tmp_path / "logs"),
        "local_directory": str(tmp_path / "scratch"), "dashboard_address": None}}, name="slurm-test"))
    assert isinstance(site, SlurmSite)

    def where() -> dict:
        """Run in a worker: the host, the SLURM job and the thread limits it runs under.

        Defined here so that it is pickled by value: the workers cannot import test modules.
        """
        return {"host": socket.gethostname(), "job": os.environ.get("SLURM_JOB_ID"),
                "cpus": os.environ.get("SLURM_CPUS_PER_TASK"),
                "env": {key: os.environ.get(key) for key in THREAD_LIMIT_ENV}}

    t0 = time.monotonic()
    with site.client(wait_for_workers=2, timeout=120) as client:
        t_up = time.monotonic() - t0
        queued = dict(_squeue(job_name))
        assert len(queued) == 2 and set(queued.values()) == {"RUNNING"}, queued
        workers = list(client.scheduler_info()["workers"])
        assert len(workers) == 2
        found = [client.submit(where, workers=[addr], pure=False).result(timeout=60)
                 for addr in workers]
        x = da.arange(100_000, chunks=10_000, dtype=np.float64)
        assert client.compute((x**2).sum()).result(timeout=60) == pytest.approx(
            np.sum(np.arange(100_000, dtype=np.float64) ** 2))
    t_closed = time.monotonic() - t0

    # each worker ran in its own SLURM job, of 1 CPU, with single-threaded tasks
    assert {f["job"] for f in found} == set(queued), found
    assert {f["host"] for f in found} <= {socket.gethostname()}
    assert {f["cpus"] for f in found} == {"1"}
    assert all(f["env"] == THREAD_LIMIT_ENV for f in found)
    assert sorted(p.suffix for p in (tmp_path / "logs").iterdir()) == [".err", ".err",
                                                                       ".out", ".out"]

    # closing cancels the jobs: gone from squeue within seconds
    deadline = time.monotonic() + 30
    while (left := _squeue(job_name)) and time.monotonic() < deadline:
        time.sleep(0.25)
    assert not left, f"jobs still queued after close: {left}"
    print(f"\nSLURM: 2 workers up in {t_up:.1f} s, closed at {t_closed:.1f} s, "
          f"jobs gone at {time.monotonic() - t0:.1f} s")
