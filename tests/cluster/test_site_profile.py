"""Site profiles: loading, lookup by name, the JSON schema, and one-line errors naming the file."""

from __future__ import annotations

import os

import pytest

from daskcal import DaskcalError
from daskcal.cluster import (
    AddressSite,
    KubernetesSite,
    LocalSite,
    SlurmSite,
    load_site,
    site_from_dict,
    site_schema,
)
from daskcal.cluster.profile import parse_k8s_quantity


def _one_line(excinfo, *needles) -> str:
    message = str(excinfo.value)
    assert "\n" not in message, message
    for needle in needles:
        assert needle in message, message
    return message


def test_shipped_profiles_load(repo_root):
    kinds = {}
    for path in sorted((repo_root / "configs" / "sites").glob("*.yaml")):
        site = load_site(path)
        assert site.name == path.stem
        kinds[path.stem] = type(site)
    assert kinds["local"] is LocalSite
    assert kinds["slurm-example"] is SlurmSite
    assert kinds["slurm-container-example"] is SlurmSite
    assert kinds["kubernetes-example"] is KubernetesSite
    assert kinds["address-example"] is AddressSite


def test_empty_file_and_default_are_local(write_profile, monkeypatch):
    monkeypatch.delenv("DASKCAL_SITE", raising=False)
    site = load_site(write_profile("", name="laptop"))
    assert isinstance(site, LocalSite) and site.name == "laptop"
    assert site.config.threads_per_worker == 1
    assert isinstance(load_site(), LocalSite)


def test_lookup_by_name(write_profile, monkeypatch, tmp_path):
    path = write_profile({"kind": "slurm", "slurm": {"queue": "q"}}, name="hpc")
    monkeypatch.setenv("DASKCAL_SITE_PATH", str(path.parent))
    monkeypatch.chdir(tmp_path)  # no ./configs/sites here
    site = load_site("hpc")
    assert isinstance(site, SlurmSite) and site.name == "hpc" and site.source == str(path)
    monkeypatch.setenv("DASKCAL_SITE", "hpc")
    assert load_site().name == "hpc"
    assert isinstance(load_site("local"), LocalSite)  # built in when no local.yaml exists
    with pytest.raises(DaskcalError) as excinfo:
        load_site("nowhere")
    _one_line(excinfo, "site 'nowhere'", "nowhere.yaml", str(path.parent))


def test_explicit_name_wins_over_stem(write_profile):
    site = load_site(write_profile({"name": "cosma", "kind": "local"}, name="file"))
    assert site.name == "cosma"


def test_schema_describes_every_field():
    schema = site_schema()
    models = [schema, *schema.get("$defs", {}).values()]
    assert len(models) > 8
    for model in models:
        for field, prop in model.get("properties", {}).items():
            assert prop.get("description"), f"{model.get('title')}.{field} has no description"


@pytest.mark.parametrize(("data", "needles"), [
    ({"kind": "slurm", "slurm": {"cores": 0, "processes": 0, "memory": "lots",
                                 "walltime": "2h", "queu": "x"}},
     ["slurm.cores: must be >= 1", "slurm.processes: must be >= 1", "slurm.memory: 'lots'",
      "slurm.walltime: must be a SLURM time", "slurm.queu: unknown field"]),
    ({"kind": "slurm", "slurm": {"cores": 3, "processes": 2, "jobs": 1,
                                 "adaptive": {"maximum_jobs": 4}}},
     ["slurm.cores: must be a multiple of processes (2)",
      "slurm.adaptive: give jobs or adaptive, not both"]),
    ({"kind": "slurm", "slurm": {"python": "/x/python", "container": {"image": "a.sif"},
                                 "job_extra_directives": ["qos=normal"]}},
     ["slurm.job_extra_directives: 'qos=normal' is not an sbatch option"]),
    ({"kind": "slurm", "slurm": {"python": "/x/python", "container": {"image": "a.sif"}}},
     ["slurm.container: give python or container, not both"]),
    ({"kind": "slurm", "slurm": {"adaptive": {"minimum_jobs": 3, "maximum_jobs": 2}}},
     ["slurm.adaptive.maximum_jobs: must be >= minimum_jobs (3)"]),
    ({"kind": "slurm", "slurm": {"worker_env": {"BAD NAME": "1"}, "job_name": "a b"}},
     ["slurm.job_name: 'a b' is not a name", "slurm.worker_env: not environment variable "
      "names: 'BAD NAME'"]),
    ({"kind": "kubernetes", "kubernetes": {"threads_per_worker": 4,
                                           "resources": {"limits": {"cpu": "2"}}}},
     ["kubernetes.image: required"]),
    ({"kind": "kubernetes", "kubernetes": {"image": "i", "threads_per_worker": 4,
                                           "resources": {"limits": {"cpu": "2"}}}},
     ["kubernetes.threads_per_worker: must be <= the worker's CPUs in resources (2)"]),
    ({"kind": "kubernetes", "kubernetes": {"image": "i", "resources": {
        "requests": {"memory": "4GB"}, "limits": {"cpu": "two"}}}},
     ["kubernetes.resources.requests.memory: '4GB' is not a Kubernetes quantity",
      "kubernetes.resources.limits.cpu: 'two'"]),
    ({"kind": "address", "address": {"scheduler": "localhost:8786", "timeout": "soon"}},
     ["address.scheduler: 'localhost:8786' is not an address",
      "address.timeout: 'soon' is not a duration"]),
    ({"kind": "local", "local": {"n_workers": 0, "threads_per_worker": "x",
                                 "memory_limit": "-1"}},
     ["local.n_workers: must be >= 1", "local.threads_per_worker: must be an integer",
      "local.memory_limit: must be a positive size"]),
    ({"kind": "k8s"}, ["kind: must be one of 'local', 'slurm', 'kubernetes' or 'address'"]),
    ({"kind": "local", "slurm": {}}, ["section 'slurm' given, but kind is 'local'"]),
    ({"kind": "address"}, ["kind 'address' needs a 'address' section"]),
    ({"name": "my site", "colour": "red"}, ["name: 'my site' is not a name", "colour: unknown "
                                             "field"]),
])
def test_bad_profile_one_line_naming_the_file(write_profile, data, needles):
    path = write_profile(data, name="x")
    with pytest.raises(DaskcalError) as excinfo:
        load_site(path)
    message = _one_line(excinfo, *needles)
    assert message.startswith(f"{path}: ")
    assert message.count(";") == len(needles) - 1, message  # every problem, each once


@pytest.mark.parametrize(("text", "needle"), [
    ("kind: slurm\nslurm: {cores: 2\n", "not valid YAML: line 3"),
    ("- local\n", "a site profile must be a mapping, not list"),
])
def test_not_a_profile(write_profile, text, needle):
    path = write_profile(text, name="x")
    with pytest.raises(DaskcalError) as excinfo:
        load_site(path)
    assert _one_line(excinfo, needle).startswith(f"{path}: ")


def test_missing_file(tmp_path):
    with pytest.raises(DaskcalError) as excinfo:
        load_site(tmp_path / "sites" / "none.yaml")
    _one_line(excinfo, "none.yaml: no such site profile")


def test_dict_profiles_name_their_source():
    with pytest.raises(DaskcalError) as excinfo:
        site_from_dict({"kind": "slurm", "slurm": {"cores": -1}}, "portal form")
    assert str(excinfo.value) == "portal form: slurm.cores: must be >= 1"


@pytest.mark.parametrize(("text", "value"), [
    ("2", 2.0), ("500m", 0.5), ("4Gi", 4 * 2**30), ("1.5G", 1.5e9), ("512Mi", 2**29),
])
def test_k8s_quantities(text, value):
    assert parse_k8s_quantity(text) == pytest.approx(value)


def test_no_side_effects_at_import(repo_root, tmp_path):
    """Importing daskcal.cluster and loading every profile imports neither dask-jobqueue
    (whose import writes ~/.config/dask/jobqueue.yaml) nor dask-kubernetes nor distributed."""
    import subprocess
    import sys

    code = (
        "import sys, pathlib\n"
        "import daskcal.cluster as c\n"
        "from daskcal.cluster import base, kubernetes, local, profile, sites, slurm\n"
        f"for p in sorted(pathlib.Path({str(repo_root / 'configs' / 'sites')!r}).glob('*.yaml')):\n"
        "    c.load_site(p).describe()\n"
        "print(sorted(m for m in ('dask_jobqueue', 'dask_kubernetes', 'distributed', 'kr8s')"
        " if m in sys.modules))\n"
    )
    env = {**os.environ, "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, check=True)
    assert out.stdout.strip() == "[]", out.stderr
    assert not (tmp_path / ".config").exists()


def test_describe_and_repr(write_profile):
    site = load_site(write_profile({"description": "my laptop"}, name="lap"))
    assert site.describe() == "lap (local): my laptop"
    assert repr(site).startswith("<LocalSite 'lap' from ") and repr(site).endswith("lap.yaml>")
