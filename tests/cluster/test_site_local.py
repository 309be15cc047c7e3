"""The local site runs real computations with single-threaded tasks; the address site connects."""

from __future__ import annotations

import os

import dask.array as da
import numpy as np
import pytest

from daskcal import DaskcalWarning
from daskcal.cluster import THREAD_LIMIT_ENV, LocalSite, load_site, site_from_dict


def _worker_threads() -> dict:
    """Run in a worker: its environment, and what numba made of it."""
    import numba

    env = {key: os.environ.get(key) for key in (*THREAD_LIMIT_ENV, "DASKCAL_TEST_MARK")}
    return {"env": env, "numba_threads": numba.config.NUMBA_NUM_THREADS,
            "pid": os.getpid()}


def test_local_site_computes_with_single_threaded_tasks(write_profile):
    path = write_profile({"kind": "local", "local": {
        "n_workers": 2, "threads_per_worker": 1, "memory_limit": "1GiB",
        "dashboard_address": None, "worker_env": {"DASKCAL_TEST_MARK": "yes"}}}, name="laptop")
    site = load_site(path)
    assert isinstance(site, LocalSite) and site.n_workers == 2
    data = np.arange(40_000, dtype=np.float64).reshape(200, 200)
    with site.client(wait_for_workers=2, timeout=60) as client:
        workers = client.scheduler_info()["workers"]
        assert len(workers) == 2
        assert {w["nthreads"] for w in workers.values()} == {1}
        assert {w["memory_limit"] for w in workers.values()} == {2**30}
        total = da.from_array(data, chunks=50).T.dot(da.ones(200, chunks=50)).sum()
        assert client.compute(total).result() == pytest.approx(data.sum())
        # tasks on both workers: every one has the limits (the test process has
        # NUMBA_NUM_THREADS=2 from tests/conftest.py: the workers' own environment wins)
        found = [client.submit(_worker_threads, workers=[addr], pure=False).result()
                 for addr in workers]
    assert len({f["pid"] for f in found}) == 2 and os.getpid() not in {f["pid"] for f in found}
    for f in found:
        assert f["numba_threads"] == 1
        assert f["env"] == {**THREAD_LIMIT_ENV, "DASKCAL_TEST_MARK": "yes"}


def test_local_site_cluster_arguments_and_oversubscription(monkeypatch):
    """What LocalCluster gets (without starting one), and the warning on too many threads."""
    import distributed

    seen = {}
    monkeypatch.setattr(distributed, "LocalCluster", lambda **kw: seen.update(kw) or "cluster")
    monkeypatch.setattr("daskcal.cluster.local._cpu_count", lambda: 4)
    site = site_from_dict({"kind": "local", "local": {"threads_per_worker": 2,
                                                     "worker_env": {"OMP_NUM_THREADS": "2"}}})
    assert site.n_workers == 2  # fills the 4 cores
    assert site._start_cluster() == "cluster"
    assert seen["n_workers"] == 2 and seen["threads_per_worker"] == 2 and seen["processes"]
    assert seen["memory_limit"] == "auto" and seen["dashboard_address"] == ":8787"
    assert seen["env"]["NUMBA_NUM_THREADS"] == "1" and seen["env"]["OMP_NUM_THREADS"] == "2"

    busy = site_from_dict({"kind": "local", "local": {"n_workers": 3, "threads_per_worker": 2}},
                          "busy.yaml")
    with pytest.warns(DaskcalWarning, match=r"busy.yaml: 3 workers x 2 threads = 6 threads "
                      r"on 4 cores oversubscribes"):
        busy._start_cluster()


def test_address_site_connects_and_leaves_cluster_running():
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster:
        site = site_from_dict({"name": "shared", "kind": "address",
                               "address": {"scheduler": cluster.scheduler_address}})
        assert site.worker_env() == {}
        with site.client(wait_for_workers=1, timeout=30) as client:
            assert client.submit(sum, [1, 2, 3]).result() == 6
        assert cluster.status.name == "running" and len(cluster.scheduler.workers) == 1
        with pytest.raises(TypeError, match="existing scheduler"), site.cluster():
            pass
