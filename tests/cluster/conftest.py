"""Fixtures of the cluster tests: site profiles written into tmp_path, and the SLURM guard.

The recipe tests share one tiny simulated observation and one run of
``configs/recipes/preprocess.yaml`` on the local site (both once per session), and
compare other sites' products with it file by file (:func:`store_differences`).

Tests marked ``slurm`` need a running SLURM cluster (``deploy/slurm/start-test-cluster.sh``).
Without ``sinfo`` on PATH, or with no usable node, they are skipped with the reason; with
``DASKCAL_REQUIRE_SLURM=1`` (CI, after starting the test cluster) they fail instead, so a
broken cluster cannot pass as a skip. Tests marked ``kubernetes`` likewise need a
reachable Kubernetes cluster with the dask-kubernetes operator (a kubeconfig, or running in a
pod); ``DASKCAL_REQUIRE_KUBERNETES=1`` makes their skip a failure.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
PREPROCESS = REPO / "configs" / "recipes" / "preprocess.yaml"

#: A tiny LOFAR-like observation: 4 stations, 20 integrations of 10 s, 4 channels, 10 time
#: chunks (so 10 regions per step, spread over the workers).
TINY = {
    "name": "tiny", "lofar": {"n_core": 3, "n_remote": 1, "split_core": False},
    "n_chan": 4, "duration_s": 200, "integration_s": 10,
    "chunks": {"time": 2, "frequency": 4},
    "sky": {"preset": "none", "components": [
        {"name": "cal", "ra_deg": 123.4, "dec_deg": 48.2, "flux_jy": 100.0}]},
    "noise": {"enabled": True}, "seed": 3,
}
#: Root attribute of a step store that differs between runs (when it was completed).
RUN_TIME_ATTRS = ("daskcal_complete",)




def _kubernetes_problem() -> str | None:
    """Why no Kubernetes cluster is reachable from here (None when one may be)."""
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return None  # in a pod, with a service account
    config = os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
    if not any(os.path.isfile(p) for p in config.split(os.pathsep)):
        return (f"no Kubernetes cluster: no kubeconfig ({config}) and not in a pod; the "
                "manifests are still validated offline (test_k8s_manifests.py)")
    return None


@pytest.fixture(autouse=True)
def _require_kubernetes(request):
    if request.node.get_closest_marker("kubernetes") is None:
        return
    problem = _kubernetes_problem()
    if problem is None:
        return
    if os.environ.get("DASKCAL_REQUIRE_KUBERNETES") == "1":
        pytest.fail(f"DASKCAL_REQUIRE_KUBERNETES=1 but {problem}")
    pytest.skip(problem)


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


@pytest.fixture(scope="session")
def tiny_obs(tmp_path_factory) -> Path:
    """The tiny observation (:data:`TINY`) as a zarr store, written once; tests only read it."""
    from daskcal.testing import write_simulation

    obs, _ = write_simulation(TINY, tmp_path_factory.mktemp("tiny") / "tiny.zarr")
    return Path(obs)


@pytest.fixture(scope="session")
def local_preprocess(tiny_obs, tmp_path_factory) -> Path:
    """The ``average`` product of preprocess.yaml on :func:`tiny_obs`, run on the local site
    (2 worker processes), once per session: the reference of the other sites' runs."""
    from daskcal.pipeline.runner import run_recipe

    root = tmp_path_factory.mktemp("local-run")
    site = root / "local.yaml"
    site.write_text(yaml.safe_dump({"kind": "local", "local": {
        "n_workers": 2, "memory_limit": "1GiB", "dashboard_address": None}}))
    result = run_recipe(PREPROCESS, {"target": tiny_obs}, root / "run", site=str(site),
                        progress=False, echo=lambda line: None)
    assert result.provenance["site"] == str(site)
    return result.products["average"]


def _files(store: Path) -> dict[str, bytes]:
    store = store.resolve()
    return {str(p.relative_to(store)): p.read_bytes() for p in sorted(store.rglob("*"))
            if p.is_file()}


def store_differences(expected: Path, got: Path) -> list[str]:
    """Where two zarr stores differ, file by file and byte for byte.

    The root ``zarr.json`` is compared as JSON without :data:`RUN_TIME_ATTRS`; every other
    file (chunks, metadata of every node) must be identical.
    """
    a, b = _files(expected), _files(got)
    out = [f"only in {expected}: {k}" for k in sorted(a.keys() - b.keys())]
    out += [f"only in {got}: {k}" for k in sorted(b.keys() - a.keys())]
    for key in sorted(a.keys() & b.keys()):
        left, right = a[key], b[key]
        if key == "zarr.json":
            left, right = (json.loads(x) for x in (left, right))
            for meta in (left, right):
                for attr in RUN_TIME_ATTRS:
                    meta.get("attributes", {}).pop(attr, None)
        if left != right:
            digest = (hashlib.sha256(x).hexdigest()[:12] if isinstance(x, bytes) else "json"
                      for x in (left, right))
            out.append(f"{key}: differs ({' != '.join(digest)})")
    return out


@pytest.fixture
def slurm_test_profile(repo_root, tmp_path):
    """``slurm_test_profile(**settings)`` -> configs/sites/slurm-test.yaml with ``settings``
    and private logs, scratch and job names, written into tmp_path; returns its path."""
    import uuid

    def write(name: str = "slurm-test", **settings) -> Path:
        profile = yaml.safe_load((repo_root / "configs" / "sites" / "slurm-test.yaml")
                                 .read_text())
        tag = uuid.uuid4().hex[:8]
        profile["slurm"].update({
            "job_name": f"daskcal-test-{tag}", "log_directory": str(tmp_path / "logs"),
            "local_directory": str(tmp_path / "scratch"), "dashboard_address": None})
        profile["slurm"]["driver"] = {**profile["slurm"].get("driver", {}),
                                      "job_name": f"daskcal-driver-{tag}"}
        profile["slurm"].update(settings)
        path = tmp_path / "sites" / f"{name}.yaml"
        path.parent.mkdir(exist_ok=True)
        path.write_text(yaml.safe_dump(profile))
        return path

    return write


def squeue_names(job_name: str) -> list[tuple[str, str]]:
    """(job id, state) of the queued jobs named ``job_name``."""
    out = subprocess.run(["squeue", "--noheader", f"--name={job_name}", "--format=%i %T"],
                         capture_output=True, text=True, timeout=10, check=True).stdout
    return [tuple(line.split()) for line in out.splitlines() if line.strip()]


@pytest.fixture(scope="session")
def compare_stores():
    """:func:`store_differences` (conftest modules are not imported by tests)."""
    return store_differences


@pytest.fixture(scope="session")
def squeue():
    """:func:`squeue_names`."""
    return squeue_names
