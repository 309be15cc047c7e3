"""A real recipe on the SLURM test cluster: the products equal the local site's, bit for bit.

Marked ``slurm``: skipped with the reason without a cluster (conftest.py); CI starts
``deploy/slurm/start-test-cluster.sh`` and sets ``DASKCAL_REQUIRE_SLURM=1``.
"""

from __future__ import annotations

import time

import pytest

from daskcal.cluster import SlurmSite, load_site
from daskcal.pipeline.runner import run_recipe

pytestmark = pytest.mark.slurm


def test_preprocess_on_two_worker_jobs_equals_the_local_run(
        slurm_test_profile, tiny_obs, local_preprocess, compare_stores, squeue, tmp_path,
        repo_root):
    path = slurm_test_profile()
    site = load_site(path)
    assert isinstance(site, SlurmSite) and site.n_jobs == 2 and site.n_workers == 2
    lines: list[str] = []
    t0 = time.monotonic()
    result = run_recipe(repo_root / "configs" / "recipes" / "preprocess.yaml", {"target": tiny_obs}, tmp_path / "run", site=str(path),
                        progress=False, echo=lines.append)
    elapsed = time.monotonic() - t0

    prov = result.provenance
    assert prov["status"] == "complete" and prov["site"] == str(path)
    assert [s["status"] for s in prov["steps"]] == ["ran", "ran"]
    assert any(line.startswith("site: slurm-test (slurm)") for line in lines), lines
    # the work ran in the two worker jobs: each wrote its logs, both reported to the runner
    logs = sorted(p.name for p in (tmp_path / "logs").iterdir())
    assert len([n for n in logs if n.endswith(".out")]) == 2, logs
    workers = prov["steps"][-1]["peak_worker_memory_bytes"]
    assert len(workers) == 2 and all(k.startswith("tcp://") for k in workers), workers

    assert compare_stores(local_preprocess, result.products["average"]) == []

    deadline = time.monotonic() + 30  # closing the cluster cancels the jobs
    while (left := squeue(site.config.job_name)) and time.monotonic() < deadline:
        time.sleep(0.25)
    assert not left, f"worker jobs still queued after the run: {left}"
    print(f"\npreprocess on 2 SLURM worker jobs: {elapsed:.1f} s")
