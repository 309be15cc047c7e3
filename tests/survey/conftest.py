"""Fixtures of the survey tests: tiny observations, their reference products, and sites.

Sites on this machine:

- ``a`` and ``b``: two ``distributed.LocalCluster`` s whose schedulers listen on 127.0.0.2
  and 127.0.0.3 (one worker process each), started once per session and used through
  ``address`` profiles (the ``local`` site profile cannot set the scheduler's host);
- the real SLURM test cluster (``deploy/slurm/start-test-cluster.sh``) for tests marked
  ``slurm``: skipped with the reason when it is not up, failed instead when
  ``DASKCAL_REQUIRE_SLURM=1``.

The reference of every product is a plain :func:`run_recipe` of the same observation on
Dask's threaded scheduler in this process (no distributed at all), computed once per
session and observation.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
RECIPE = Path(__file__).with_name("recipe.yaml")
#: Root attributes of a step store that differ between runs of the same step.
RUN_TIME_ATTRS = ("daskcal_complete",)


def _simulation(seed: int, n_time: int = 20, chunk_time: int = 10) -> dict[str, Any]:
    """A tiny LOFAR-like observation: 4 stations, 4 channels, ``n_time`` 10 s integrations."""
    return {
        "name": f"obs{seed}", "lofar": {"n_core": 3, "n_remote": 1, "split_core": False},
        "n_chan": 4, "duration_s": 10 * n_time, "integration_s": 10,
        "chunks": {"time": chunk_time, "frequency": 4},
        "sky": {"preset": "none", "components": [
            {"name": "cal", "ra_deg": 123.4, "dec_deg": 48.2, "flux_jy": 100.0}]},
        "noise": {"enabled": True}, "seed": seed,
    }


#: The observations: three tiny ones (2 regions per step) and a longer one (20 regions).
SIMULATIONS = {"s1": _simulation(1), "s2": _simulation(2), "s3": _simulation(3),
               "long": _simulation(4, n_time=40, chunk_time=2)}


@pytest.fixture(autouse=True)
def _single_threaded(monkeypatch):
    for key in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.setenv(key, "1")


@pytest.fixture(scope="session")
def observation(tmp_path_factory) -> Callable[[str], Path]:
    """``observation(key)`` -> the simulated store of :data:`SIMULATIONS` [key] (written once,
    read only)."""
    from daskcal.testing import write_simulation

    root = tmp_path_factory.mktemp("observations")
    made: dict[str, Path] = {}

    def get(key: str) -> Path:
        if key not in made:
            path, _ = write_simulation(SIMULATIONS[key], root / f"{key}.zarr")
            made[key] = Path(path)
        return made[key]

    return get


@pytest.fixture(scope="session")
def reference(observation, tmp_path_factory) -> Callable[[str], Path]:
    """``reference(key)`` -> the ``average`` product of the test recipe on that observation,
    from a plain threaded ``run_recipe`` (once per observation)."""
    from daskcal.pipeline.runner import run_recipe

    root = tmp_path_factory.mktemp("references")
    made: dict[str, Path] = {}

    def get(key: str) -> Path:
        if key not in made:
            result = run_recipe(RECIPE, {"target": observation(key)}, root / key,
                                site="threads", progress=False, echo=lambda line: None)
            made[key] = result.products["average"]
        return made[key]

    return get


@pytest.fixture(scope="session")
def local_sites() -> dict[str, Any]:
    """Two LocalClusters on 127.0.0.2 and 127.0.0.3 (one worker each): ``{"a": cluster,
    "b": cluster}``."""
    from distributed import LocalCluster

    from daskcal.cluster import THREAD_LIMIT_ENV

    clusters = {}
    try:
        for name, host in (("a", "127.0.0.2"), ("b", "127.0.0.3")):
            clusters[name] = LocalCluster(host=host, n_workers=1, threads_per_worker=1,
                                          processes=True, memory_limit="1GiB",
                                          dashboard_address=None, env=dict(THREAD_LIMIT_ENV))
        yield clusters
    finally:
        for cluster in clusters.values():
            cluster.close()


def address_site(scheduler: str, data_root: Path, *, capacity: int = 1,
                 timeout: str = "5s", bandwidth: str = "100MB") -> dict[str, Any]:
    """A survey site entry for an existing scheduler."""
    return {"profile": {"kind": "address", "address": {"scheduler": scheduler,
                                                       "timeout": timeout}},
            "capacity": capacity, "data_root": str(data_root), "bandwidth": bandwidth}


@pytest.fixture
def write_survey(tmp_path) -> Callable[..., Path]:
    """``write_survey(sites, observations, **settings)`` -> a SURVEY.yaml in tmp_path (output in
    tmp_path/out, fast retries unless given)."""

    def write(sites: dict[str, Any], observations: list[dict[str, Any]], **settings) -> Path:
        data = {"recipe": str(RECIPE), "output": str(tmp_path / "out"),
                "retries": {"max_attempts": 3, "backoff_s": 0.2},
                "site_failure_threshold": 2, "sites": sites, "observations": observations,
                **settings}
        path = tmp_path / "survey.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    return write


def product_differences(expected: Path, got: Path) -> list[str]:
    """Where two product stores differ, node by node and value by value (empty: equal).

    Every variable and coordinate of every node must have the same dims, dtype and values
    (NaN equal to NaN); attributes must be equal except :data:`RUN_TIME_ATTRS` at the root.
    """
    import xarray as xr

    a = xr.open_datatree(Path(expected).resolve(), engine="zarr", chunks=None)
    b = xr.open_datatree(Path(got).resolve(), engine="zarr", chunks=None)
    out = []
    paths_a = {n.path for n in a.subtree}
    paths_b = {n.path for n in b.subtree}
    out += [f"node {p} only in {expected}" for p in sorted(paths_a - paths_b)]
    out += [f"node {p} only in {got}" for p in sorted(paths_b - paths_a)]
    for path in sorted(paths_a & paths_b):
        xa, xb = a[path].to_dataset(inherit=False), b[path].to_dataset(inherit=False)
        attrs_a, attrs_b = dict(xa.attrs), dict(xb.attrs)
        if path == "/":
            for key in RUN_TIME_ATTRS:
                attrs_a.pop(key, None)
                attrs_b.pop(key, None)
        if attrs_a != attrs_b:
            out.append(f"{path}: attributes differ")
        names_a, names_b = set(xa.variables), set(xb.variables)
        if names_a != names_b:
            out.append(f"{path}: variables differ: {sorted(names_a ^ names_b)}")
        for name in sorted(names_a & names_b):
            va, vb = xa[name], xb[name]
            if va.dims != vb.dims or va.dtype != vb.dtype:
                out.append(f"{path}/{name}: dims or dtype differ")
            elif not np.array_equal(va.values, vb.values,
                                    equal_nan=va.dtype.kind in "fc"):
                out.append(f"{path}/{name}: values differ")
            elif va.attrs != vb.attrs:
                out.append(f"{path}/{name}: attributes differ")
    return out


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, dt: float = 0.1) -> Any:
    """Poll ``predicate`` until it returns something true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(dt)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")




@pytest.fixture
def slurm_site(tmp_path) -> Callable[..., dict[str, Any]]:
    """``slurm_site(data_root, capacity=1)`` -> a survey site entry: configs/sites/slurm-test.yaml
    (one 1-core job) with private job name, logs and scratch."""

    def make(data_root: Path, capacity: int = 1) -> dict[str, Any]:
        profile = yaml.safe_load((REPO / "configs" / "sites" / "slurm-test.yaml").read_text())
        profile["slurm"].update({
            "jobs": 1, "job_name": f"daskcal-survey-{uuid.uuid4().hex[:8]}",
            "log_directory": str(tmp_path / "slurm-logs"),
            "local_directory": str(tmp_path / "slurm-scratch"), "dashboard_address": None,
            "walltime": "00:10:00"})
        return {"profile": profile, "capacity": capacity, "data_root": str(data_root),
                "bandwidth": "20MB"}

    return make


@pytest.fixture(scope="session")
def compare() -> Callable[[Path, Path], list[str]]:
    """:func:`product_differences` (conftest modules are not imported by tests)."""
    return product_differences


@pytest.fixture(scope="session")
def wait() -> Callable[..., Any]:
    """:func:`wait_for`."""
    return wait_for


@pytest.fixture(scope="session")
def site_entry() -> Callable[..., dict[str, Any]]:
    """:func:`address_site`."""
    return address_site


def _postgres_problem(url: str) -> str | None:
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install 'psycopg[binary]')"
    try:
        psycopg.connect(url, connect_timeout=5).close()
    except psycopg.Error as exc:
        return f"no PostgreSQL at {url} ({' '.join(str(exc).split())[:200]})"
    return None


@pytest.fixture
def postgres_url(request) -> str:
    """A fresh, empty PostgreSQL database for one test (dropped after); its URL.

    The server is ``$DASKCAL_TEST_POSTGRES`` (default ``postgresql:///postgres``, the local
    socket). Without one the test is skipped, or fails with ``DASKCAL_REQUIRE_POSTGRES=1``.
    """
    server = os.environ.get("DASKCAL_TEST_POSTGRES", "postgresql:///postgres")
    problem = _postgres_problem(server)
    if problem is not None:
        if os.environ.get("DASKCAL_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"DASKCAL_REQUIRE_POSTGRES=1 but {problem}")
        pytest.skip(problem)
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    name = f"daskcal_survey_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server, autocommit=True) as con:
        con.execute(f"CREATE DATABASE {name}")
    params = {**conninfo_to_dict(server), "dbname": name}
    url = "postgresql://?" + "&".join(f"{k}={v}" for k, v in params.items())
    try:
        yield url
    finally:
        with psycopg.connect(server, autocommit=True) as con:
            con.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
