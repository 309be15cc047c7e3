"""Kubernetes sites: Dask workers as pods of a ``DaskCluster`` (dask-kubernetes operator).

:meth:`KubernetesSite.cluster_spec` builds the ``DaskCluster`` custom resource
with dask-kubernetes' own ``make_cluster_spec`` (no API server needed), then
adds what the profile says beyond it: per-pod resources (workers and scheduler
separately), the node selector, the workers' volumes, the namespace, and the
``dask scheduler`` / ``dask worker`` commands that current distributed installs.
:meth:`KubernetesSite.manifests` adds a ``DaskAutoscaler`` for adaptive profiles:
what ``kubectl apply`` takes (``deploy/k8s/``). Each worker runs
``threads_per_worker`` Dask threads with the thread limits in its environment,
and its Dask memory limit equals the pod's memory limit (so Dask spills and
pauses before the kernel's OOM killer strikes).
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from daskcal.cluster.base import Site
from daskcal.cluster.profile import K8sResources, KubernetesConfig, parse_k8s_quantity

#: The worker's and the scheduler's commands in the image (the ``dask`` command of dask).
WORKER_COMMAND: tuple[str, ...] = ("dask", "worker")
SCHEDULER_COMMAND: tuple[str, ...] = ("dask", "scheduler")


def k8s_name(name: str) -> str:
    """``name`` as a Kubernetes object name (lower case, ``-`` for other characters).

    Parameters
    ----------
    name : str
        A site name.

    Returns
    -------
    str
        A DNS-1123 label of at most 40 characters (room for suffixes the operator adds).
    """
    out = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:40].strip("-")
    return out or "daskcal"


def _resources(res: K8sResources | None) -> dict[str, dict[str, str]] | None:
    if res is None:
        return None
    out = {key: value for key, value in res.model_dump(exclude_none=True).items() if value}
    return out or None


class KubernetesSite(Site):
    """Dask workers as pods of a ``DaskCluster`` run by the dask-kubernetes operator.

    The operator must be installed in the cluster (its Helm chart), and this
    process must reach the Kubernetes API (a kubeconfig or in-cluster service
    account). The image must hold daskcal and the same versions of dask and
    distributed as the client.
    """

    kind = "kubernetes"
    config_class = KubernetesConfig

    @property
    def n_workers(self) -> int:
        """Workers at start (``adaptive.minimum`` when adaptive)."""
        cfg: KubernetesConfig = self.config
        if cfg.adaptive is not None:
            return cfg.adaptive.minimum
        return 1 if cfg.n_workers is None else cfg.n_workers

    def worker_command(self) -> list[str]:
        """The worker's command: ``dask worker`` with threads and memory limit.

        Not ``dask-worker``: distributed no longer installs that script (since 2025), and
        ``make_cluster_spec`` still names it and ``dask-scheduler``.
        """
        cfg: KubernetesConfig = self.config
        command = [*WORKER_COMMAND, "--nthreads", str(cfg.threads_per_worker)]
        memory = cfg.resources.limits.memory or cfg.resources.requests.memory
        if memory is not None:
            command += ["--memory-limit", str(int(parse_k8s_quantity(memory)))]
        return command

    def cluster_spec(self, name: str | None = None) -> dict[str, Any]:
        """The ``DaskCluster`` custom resource of this site, as a dict.

        Parameters
        ----------
        name : str, optional
            The cluster's name; default: the site's name made a Kubernetes name.

        Returns
        -------
        dict
            ``apiVersion``, ``kind: DaskCluster``, ``metadata``, ``spec`` with the
            ``worker`` and ``scheduler`` pod specs; what ``kubectl apply`` takes.
        """
        from dask_kubernetes.operator import make_cluster_spec

        cfg: KubernetesConfig = self.config
        spec = make_cluster_spec(
            name=name or k8s_name(self.name),
            image=cfg.image,
            n_workers=self.n_workers,
            resources=None,
            env=self.worker_env(),
            worker_command=" ".join(self.worker_command()),
            scheduler_service_type=cfg.scheduler_service_type,
            idle_timeout=cfg.idle_timeout,
        )
        if cfg.namespace is not None:
            spec["metadata"]["namespace"] = cfg.namespace
        spec["metadata"]["labels"] = {"app.kubernetes.io/part-of": "daskcal",
                                      "daskcal/site": k8s_name(self.name)}
        scheduler = spec["spec"]["scheduler"]["spec"]["containers"][0]
        if scheduler["args"][:1] == ["dask-scheduler"]:
            scheduler["args"] = [*SCHEDULER_COMMAND, *scheduler["args"][1:]]
        for role, res in (("worker", cfg.resources), ("scheduler", cfg.scheduler_resources)):
            pod = spec["spec"][role]["spec"]
            container = pod["containers"][0]
            resources = _resources(res)
            if resources is None:
                container.pop("resources", None)
            else:
                container["resources"] = resources
            if cfg.node_selector:
                pod["nodeSelector"] = dict(cfg.node_selector)
        worker = spec["spec"]["worker"]["spec"]
        if cfg.volumes:
            worker["volumes"] = [dict(v) for v in cfg.volumes]
        if cfg.volume_mounts:
            worker["containers"][0]["volumeMounts"] = [dict(m) for m in cfg.volume_mounts]
        return spec

    def manifests(self, name: str | None = None) -> list[dict[str, Any]]:
        """The custom resources that ``kubectl apply`` takes to run this site's cluster.

        Parameters
        ----------
        name : str, optional
            The cluster's name; default: the site's name made a Kubernetes name.

        Returns
        -------
        list of dict
            The ``DaskCluster`` (:meth:`cluster_spec`), then, when the profile is adaptive,
            a ``DaskAutoscaler`` of the same name scaling it between ``minimum`` and
            ``maximum`` workers (what ``KubeCluster.adapt`` creates).
        """
        cluster = self.cluster_spec(name)
        out = [cluster]
        cfg: KubernetesConfig = self.config
        if cfg.adaptive is not None:
            meta = {key: cluster["metadata"][key] for key in ("name", "namespace", "labels")
                    if key in cluster["metadata"]}
            out.append({
                "apiVersion": cluster["apiVersion"], "kind": "DaskAutoscaler",
                "metadata": meta,
                "spec": {"cluster": meta["name"], "minimum": cfg.adaptive.minimum,
                         "maximum": cfg.adaptive.maximum},
            })
        return out

    def render_manifests(self, name: str | None = None) -> str:
        """:meth:`manifests` as one YAML stream (documents separated by ``---``).

        Parameters
        ----------
        name : str, optional
            The cluster's name.

        Returns
        -------
        str
            YAML, with a comment naming the site it was rendered from.
        """
        import yaml

        header = (f"# DaskCluster of daskcal site {self.name!r}"
                  + (f" ({self.source})" if self.source else "")
                  + ", rendered by KubernetesSite.render_manifests()\n")
        return header + yaml.safe_dump_all(self.manifests(name), sort_keys=False)

    def _start_cluster(self) -> Any:
        from dask_kubernetes.operator import KubeCluster

        cfg: KubernetesConfig = self.config
        name = f"{k8s_name(self.name)}-{uuid.uuid4().hex[:8]}"
        cluster = KubeCluster(custom_cluster_spec=self.cluster_spec(name),
                              namespace=cfg.namespace, shutdown_on_close=True)
        try:
            if cfg.adaptive is not None:
                cluster.adapt(minimum=cfg.adaptive.minimum, maximum=cfg.adaptive.maximum)
        except BaseException:
            cluster.close()
            raise
        return cluster
