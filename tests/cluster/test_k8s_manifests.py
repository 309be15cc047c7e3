"""Kubernetes manifests, checked offline against the schemas that the API server would apply.

- ``DaskCluster`` / ``DaskAutoscaler`` resources rendered from site profiles against the
  ``openAPIV3Schema`` of the operator's CRDs, as shipped in the dask-kubernetes wheel (the
  Helm chart's ``crds/``), with ``jsonschema``; and for fields the API server would silently
  prune (CRD schemas do not forbid unknown fields, they drop them);
- the pod templates inside them, and every object of ``deploy/k8s/driver-job.yaml``, against
  Kubernetes' own schemas with ``kubernetes-validate`` (bundled: no network), strictly;
- the Helm values against the operator chart's ``values.yaml``;
- the image files name commands and paths that exist.

Tests that need a live cluster are marked ``kubernetes`` and skip without one.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from daskcal.cluster import KubernetesSite, load_site, site_from_dict

jsonschema = pytest.importorskip("jsonschema")
kubernetes_validate = pytest.importorskip("kubernetes_validate")

#: The Kubernetes version whose schemas the pod templates are checked against.
K8S_VERSION = "1.33"


def _chart() -> Path:
    import dask_kubernetes

    return (Path(dask_kubernetes.__file__).parent / "operator" / "deployment" / "helm"
            / "dask-kubernetes-operator")


def _crd_schema(kind: str) -> dict[str, Any]:
    for path in sorted((_chart() / "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        if crd["spec"]["names"]["kind"] == kind:
            (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
            return version["schema"]["openAPIV3Schema"]
    raise LookupError(f"no CRD of kind {kind} in {_chart() / 'crds'}")


def _pruned(doc: Any, schema: dict[str, Any], where: str = "") -> list[str]:
    """Fields of ``doc`` that a structural schema does not declare (the API server drops them)."""
    if schema.get("x-kubernetes-preserve-unknown-fields") or not isinstance(doc, dict | list):
        return []
    if isinstance(doc, list):
        item = schema.get("items", {})
        return [p for i, v in enumerate(doc) for p in _pruned(v, item, f"{where}[{i}]")]
    props = schema.get("properties")
    if props is None:
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            return [p for k, v in doc.items() for p in _pruned(v, extra, f"{where}.{k}")]
        return []
    out = []
    for key, value in doc.items():
        if key in ("apiVersion", "kind", "metadata") and not where:
            continue
        if key not in props:
            out.append(f"{where}.{key}")
        else:
            out += _pruned(value, props[key], f"{where}.{key}")
    return out


def check_custom_resource(doc: dict[str, Any]) -> None:
    """Raise if ``doc`` breaks its CRD's schema, or holds fields it would lose."""
    schema = _crd_schema(doc["kind"])
    jsonschema.validate(doc, schema, cls=jsonschema.Draft7Validator)
    assert _pruned(doc, schema) == [], f"{doc['kind']}: fields the API server would drop"


def check_kubernetes_object(doc: dict[str, Any]) -> None:
    """Raise if ``doc`` breaks Kubernetes' own schema of its kind (unknown fields too)."""
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def check_pod_templates(cluster: dict[str, Any]) -> None:
    """The DaskCluster's worker and scheduler pod specs as Pods, its service as a Service."""
    for role in ("worker", "scheduler"):
        check_kubernetes_object({"apiVersion": "v1", "kind": "Pod",
                                 "metadata": {"name": f"x-{role}"},
                                 "spec": cluster["spec"][role]["spec"]})
    check_kubernetes_object({"apiVersion": "v1", "kind": "Service",
                             "metadata": {"name": "x-scheduler"},
                             "spec": cluster["spec"]["scheduler"]["service"]})


def _kube(**settings) -> KubernetesSite:
    return site_from_dict({"name": "obs-k8s", "kind": "kubernetes",
                           "kubernetes": {"image": "ghcr.io/org/daskcal:0.1", **settings}})


PROFILES = {
    "minimal": {},
    "fixed": {"namespace": "radio", "n_workers": 4, "threads_per_worker": 2,
              "resources": {"requests": {"cpu": "2", "memory": "6Gi"},
                            "limits": {"cpu": "2", "memory": "8Gi"}},
              "scheduler_resources": {"requests": {"cpu": "500m"}},
              "node_selector": {"pool": "compute"}, "worker_env": {"EXTRA": "yes"},
              "scheduler_service_type": "LoadBalancer", "idle_timeout": 600},
    "adaptive-with-volume": {
        "adaptive": {"minimum": 0, "maximum": 8},
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "obs"}}],
        "volume_mounts": [{"name": "data", "mountPath": "/data"}]},
}


@pytest.mark.parametrize("settings", list(PROFILES.values()), ids=list(PROFILES))
def test_rendered_manifests_validate(settings):
    docs = _kube(**settings).manifests()
    assert [d["kind"] for d in docs] == ["DaskCluster"] + (
        ["DaskAutoscaler"] if "adaptive" in settings else [])
    for doc in docs:
        check_custom_resource(doc)
    check_pod_templates(docs[0])


def test_the_checks_catch_mistakes():
    """The validators are not vacuous: typical mistakes are caught by one or the other."""
    spec = _kube(n_workers=2).cluster_spec()
    bad = copy.deepcopy(spec)
    bad["spec"]["worker"]["replicas"] = "two"
    with pytest.raises(jsonschema.ValidationError, match="'two' is not of type 'integer'"):
        check_custom_resource(bad)
    pruned = copy.deepcopy(spec)
    pruned["spec"]["worker"]["replica"] = 2
    with pytest.raises(AssertionError, match="drop"):
        check_custom_resource(pruned)
    typo = copy.deepcopy(spec)
    typo["spec"]["worker"]["spec"]["containers"][0]["volumeMount"] = []
    with pytest.raises(kubernetes_validate.ValidationError, match="volumeMount"):
        check_pod_templates(typo)
    quantity = copy.deepcopy(spec)
    quantity["spec"]["worker"]["spec"]["containers"][0]["env"][0]["value"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        check_pod_templates(quantity)


def test_shipped_example_is_the_render_of_the_example_profile(repo_root):
    site = load_site(repo_root / "configs" / "sites" / "kubernetes-example.yaml")
    shipped = list(yaml.safe_load_all((repo_root / "deploy" / "k8s" /
                                       "daskcluster-example.yaml").read_text()))
    assert shipped == site.manifests(), ("deploy/k8s/daskcluster-example.yaml is stale: "
                                         "regenerate it (see configs/sites/kubernetes-example.yaml)")
    for doc in shipped:
        check_custom_resource(doc)
    check_pod_templates(shipped[0])
    worker = shipped[0]["spec"]["worker"]["spec"]
    assert worker["containers"][0]["volumeMounts"] == [{"name": "data", "mountPath": "/data"}]


def test_driver_job_objects_validate(repo_root):
    from daskcal.pipeline.recipe import validate_recipe

    docs = list(yaml.safe_load_all((repo_root / "deploy" / "k8s" / "driver-job.yaml")
                                   .read_text()))
    assert [d["kind"] for d in docs] == ["ServiceAccount", "Role", "RoleBinding",
                                         "PersistentVolumeClaim", "ConfigMap", "Job"]
    for doc in docs:
        check_kubernetes_object(doc)
    config = next(d for d in docs if d["kind"] == "ConfigMap")["data"]
    site = site_from_dict(yaml.safe_load(config["site.yaml"]), "driver-job.yaml site.yaml")
    assert isinstance(site, KubernetesSite)
    for doc in site.manifests():
        check_custom_resource(doc)
    validate_recipe(yaml.safe_load(config["recipe.yaml"]), "driver-job.yaml recipe.yaml")
    (container,) = next(d for d in docs if d["kind"] == "Job")["spec"]["template"]["spec"][
        "containers"]
    assert container["command"][:4] == ["python", "-m", "daskcal.cli", "-v"]
    from daskcal.cli import build_parser

    args = build_parser().parse_args(container["command"][3:])
    assert args.command == "run" and str(args.site) == "/etc/daskcal/site.yaml"


def _unknown_keys(ours: dict, theirs: dict, where: str = "") -> list[str]:
    out = []
    for key, value in ours.items():
        if key not in theirs:
            out.append(f"{where}{key}")
        elif isinstance(value, dict) and isinstance(theirs[key], dict) and theirs[key]:
            out += _unknown_keys(value, theirs[key], f"{where}{key}.")
    return out


def test_helm_values_are_the_operator_charts(repo_root):
    ours = yaml.safe_load((repo_root / "deploy" / "k8s" / "operator-values.yaml").read_text())
    theirs = yaml.safe_load((_chart() / "values.yaml").read_text())
    assert _unknown_keys(ours, theirs) == []
    assert _unknown_keys({"rbac": {"clustr": True}}, theirs) == ["rbac.clustr"]


def test_image_files_name_what_exists(repo_root):
    """The build files copy paths that exist; the pods' commands exist in distributed."""
    from importlib.metadata import entry_points

    text = (repo_root / "deploy" / "k8s" / "Containerfile").read_text()
    assert "FROM python:3.11-slim" in text
    for line in text.splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (repo_root / source).exists(), line
    definition = (repo_root / "deploy" / "k8s" / "daskcal.def").read_text()
    section = definition.split("\n%files\n", 1)[1].split("\n%", 1)[0]
    for line in filter(None, (x.strip() for x in section.splitlines())):
        assert (repo_root / line.split()[0]).exists(), line
    # `dask worker` / `dask scheduler` (the pods' commands) are distributed's dask_cli plug-ins
    cli = {ep.name for ep in entry_points(group="dask_cli")}
    assert {"worker", "scheduler"} <= cli
    spec = _kube().cluster_spec()
    assert spec["spec"]["worker"]["spec"]["containers"][0]["args"][:2] == ["dask", "worker"]
    assert spec["spec"]["scheduler"]["spec"]["containers"][0]["args"][:2] == ["dask",
                                                                              "scheduler"]


@pytest.mark.kubernetes
def test_live_cluster_runs_a_graph():
    """On a cluster with the operator: a DaskCluster from a profile computes and goes away.

    Needs ``DASKCAL_TEST_K8S_IMAGE`` (an image built from deploy/k8s/Containerfile with this
    process's dask version) and a reachable API server (kubeconfig or in-cluster).
    """
    import dask.array as da

    image = os.environ.get("DASKCAL_TEST_K8S_IMAGE")
    if not image:
        pytest.skip("DASKCAL_TEST_K8S_IMAGE is not set (an image from deploy/k8s/Containerfile)")
    site = site_from_dict({"name": "k8s-test", "kind": "kubernetes", "kubernetes": {
        "image": image, "namespace": os.environ.get("DASKCAL_TEST_K8S_NAMESPACE"),
        "n_workers": 2, "resources": {"requests": {"cpu": "500m", "memory": "1Gi"},
                                      "limits": {"cpu": "1", "memory": "1Gi"}}}})
    with site.client(wait_for_workers=2, timeout=300) as client:
        x = da.arange(10_000, chunks=1_000)
        assert client.compute(x.sum()).result(timeout=120) == sum(range(10_000))
