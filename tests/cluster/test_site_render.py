"""SLURM job scripts and Kubernetes DaskCluster specs, rendered without any cluster."""

from __future__ import annotations

import shlex
import sys

import pytest

from daskcal.cluster import THREAD_LIMIT_ENV, load_site, site_from_dict
from daskcal.cluster.kubernetes import k8s_name


def _slurm(**settings):
    return site_from_dict({"name": "hpc", "kind": "slurm", "slurm": settings})


def _lines(script: str) -> list[str]:
    return script.splitlines()


def test_slurm_script_header_env_and_command(tmp_path):
    logs = tmp_path / "logs"
    site = _slurm(queue="compute", account="radio", cores=4, processes=2, memory="8GiB",
                  walltime="02:30:00", job_name="dc-test",
                  job_extra_directives=["--qos=normal", "#SBATCH --constraint=skylake"],
                  setup=["module load python/3.11"], log_directory=str(logs),
                  local_directory="$TMPDIR", worker_env={"DASKCAL_LOG": "debug info"},
                  worker_extra_args=["--lifetime 55m"])
    script = site.render_job_script("tcp://10.1.2.3:8786")
    lines = _lines(script)
    assert lines[0] == "#!/usr/bin/env bash"
    sbatch = [line for line in lines if line.startswith("#SBATCH")]
    for expected in ["#SBATCH -J dc-test", "#SBATCH -p compute", "#SBATCH -A radio",
                     "#SBATCH -n 1", "#SBATCH --cpus-per-task=4", "#SBATCH --mem=8G",
                     "#SBATCH -t 02:30:00", "#SBATCH --qos=normal",
                     "#SBATCH --constraint=skylake",
                     f"#SBATCH --output={logs}/dc-test-%j.out",
                     f"#SBATCH --error={logs}/dc-test-%j.err"]:
        assert expected in sbatch, script
    assert not logs.exists()  # rendering creates nothing

    exports = [line for line in lines if line.startswith("export ")]
    for key, value in THREAD_LIMIT_ENV.items():
        assert f"export {key}={value}" in exports
    assert "export NUMBA_NUM_THREADS=1" in exports
    assert "export DASKCAL_LOG='debug info'" in exports

    command = lines[-1]
    setup = lines.index("module load python/3.11")
    assert max(lines.index(e) for e in exports) < setup < len(lines) - 1
    words = shlex.split(command)
    assert words[:4] == [sys.executable, "-m", "distributed.cli.dask_worker",
                         "tcp://10.1.2.3:8786"]
    # 2 workers x 2 threads == 4 cores; memory split between them
    assert words[words.index("--nthreads") + 1] == "2"
    assert words[words.index("--nworkers") + 1] == "2"
    assert words[words.index("--memory-limit") + 1] == "4.00GiB"
    assert words[words.index("--local-directory") + 1] == "$TMPDIR"
    assert words[words.index("--lifetime") + 1] == "55m"


def test_slurm_script_python_and_skip():
    site = _slurm(python="/shared/env/bin/python", job_directives_skip=["--mem"])
    script = site.render_job_script()
    assert not [line for line in _lines(script) if line.startswith("#SBATCH --mem")]
    assert "#SBATCH --cpus-per-task=1" in script and "#SBATCH -t 01:00:00" in script
    assert "#SBATCH -p" not in script and "#SBATCH -A" not in script
    assert _lines(script)[-1].startswith(
        "/shared/env/bin/python -m distributed.cli.dask_worker "
        "tcp://<insert-scheduler-address-here>:8786 ")


def test_slurm_script_container():
    site = _slurm(cores=2, container={"image": "/images/daskcal 0.1.sif",
                                      "binds": ["/data", "/scratch:/scratch:rw"],
                                      "options": ["--nv"], "python": "python3"})
    command = _lines(site.render_job_script())[-1]
    assert command.startswith("apptainer exec --bind /data --bind /scratch:/scratch:rw --nv "
                              "'/images/daskcal 0.1.sif' python3 -m distributed.cli.dask_worker")
    assert "--nthreads 2" in command
    singularity = _slurm(container={"image": "docker://org/daskcal:0.1",
                                    "runtime": "singularity"})
    assert _lines(singularity.render_job_script())[-1].startswith(
        "singularity exec docker://org/daskcal:0.1 python -m")


def test_slurm_job_counts():
    assert _slurm().n_jobs == 1
    assert _slurm(jobs=3, cores=4, processes=2).n_workers == 6
    assert _slurm(adaptive={"minimum_jobs": 2, "maximum_jobs": 9}).n_jobs == 2


def test_slurm_example_renders(repo_root):
    site = load_site(repo_root / "configs" / "sites" / "slurm-example.yaml")
    script = site.render_job_script()
    assert "#SBATCH --cpus-per-task=8" in script and "#SBATCH --mem=32G" in script
    assert "module load python/3.11" in script
    assert "/shared/software/daskcal/.venv/bin/python -m distributed.cli.dask_worker" in script


def _kube(**settings):
    return site_from_dict({"name": "Obs_K8s", "kind": "kubernetes",
                           "kubernetes": {"image": "ghcr.io/org/daskcal:0.1", **settings}})


def test_kubernetes_spec():
    site = _kube(namespace="radio", n_workers=4, threads_per_worker=2,
                 resources={"requests": {"cpu": "2", "memory": "6Gi"},
                            "limits": {"cpu": "2", "memory": "8Gi"}},
                 scheduler_resources={"requests": {"cpu": "500m"}},
                 node_selector={"pool": "compute"}, worker_env={"EXTRA": "yes"},
                 idle_timeout=600)
    spec = site.cluster_spec()
    assert spec["apiVersion"] == "kubernetes.dask.org/v1" and spec["kind"] == "DaskCluster"
    assert spec["metadata"]["name"] == "obs-k8s" and spec["metadata"]["namespace"] == "radio"
    assert spec["spec"]["idleTimeout"] == 600
    worker, scheduler = spec["spec"]["worker"], spec["spec"]["scheduler"]
    assert worker["replicas"] == 4
    for pod in (worker["spec"], scheduler["spec"]):
        (container,) = pod["containers"]
        assert container["image"] == "ghcr.io/org/daskcal:0.1"
        assert pod["nodeSelector"] == {"pool": "compute"}
        env = {item["name"]: item["value"] for item in container["env"]}
        assert env["EXTRA"] == "yes"
        for key, value in THREAD_LIMIT_ENV.items():
            assert env[key] == value
    (wc,) = worker["spec"]["containers"]
    assert wc["resources"] == {"requests": {"cpu": "2", "memory": "6Gi"},
                               "limits": {"cpu": "2", "memory": "8Gi"}}
    assert wc["args"][:6] == ["dask", "worker", "--nthreads", "2", "--memory-limit",
                              str(8 * 2**30)]
    assert scheduler["spec"]["containers"][0]["resources"] == {"requests": {"cpu": "500m"}}


def test_kubernetes_spec_defaults_and_adaptive():
    spec = _kube(adaptive={"minimum": 2, "maximum": 8}).cluster_spec(name="run-1")
    assert spec["metadata"]["name"] == "run-1" and "namespace" not in spec["metadata"]
    worker = spec["spec"]["worker"]
    assert worker["replicas"] == 2
    assert "nodeSelector" not in worker["spec"]
    assert "resources" not in worker["spec"]["containers"][0]
    assert worker["spec"]["containers"][0]["args"][:4] == ["dask", "worker", "--nthreads", "1"]
    assert spec["spec"]["scheduler"]["spec"]["containers"][0]["args"][:2] == ["dask", "scheduler"]


@pytest.mark.parametrize(("name", "expected"), [
    ("Obs_K8s", "obs-k8s"), ("a.b", "a-b"), ("___", "daskcal"), ("x" * 60, "x" * 40),
])
def test_k8s_name(name, expected):
    assert k8s_name(name) == expected


def test_kubernetes_client_wiring(monkeypatch):
    """client() creates KubeCluster from cluster_spec() and turns adaptivity on."""
    import dask_kubernetes.operator
    from distributed import LocalCluster

    calls = {}

    class FakeKubeCluster(LocalCluster):
        def __init__(self, **kwargs):
            calls["init"] = kwargs
            super().__init__(n_workers=0, processes=False, dashboard_address=None)

        def adapt(self, **kwargs):
            calls["adapt"] = kwargs

    monkeypatch.setattr(dask_kubernetes.operator, "KubeCluster", FakeKubeCluster)
    site = _kube(namespace="radio", adaptive={"minimum": 1, "maximum": 5})
    with site.client() as client:
        assert client.scheduler_info()["address"]
    spec = calls["init"]["custom_cluster_spec"]
    assert spec["metadata"]["name"].startswith("obs-k8s-")
    assert calls["init"]["namespace"] == "radio" and calls["init"]["shutdown_on_close"]
    assert calls["adapt"] == {"minimum": 1, "maximum": 5}


def test_kubernetes_example_renders(repo_root):
    spec = load_site(repo_root / "configs" / "sites" / "kubernetes-example.yaml").cluster_spec()
    worker = spec["spec"]["worker"]["spec"]
    assert worker["nodeSelector"] == {"node-role.example.org/compute": "true"}
    assert worker["containers"][0]["resources"]["limits"] == {"cpu": "2", "memory": "8Gi"}
