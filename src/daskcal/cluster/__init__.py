"""daskcal.cluster: where graphs run.

A *site profile* (YAML, see :mod:`daskcal.cluster.profile`) names one kind of
site and its settings; :func:`load_site` turns it into a :class:`Site`, whose
:meth:`~Site.client` starts the Dask cluster and yields a ``distributed.Client``:

- ``local`` (the default): a ``LocalCluster`` of worker processes on this machine;
- ``slurm``: workers in batch jobs (dask-jobqueue), :meth:`SlurmSite.render_job_script`;
- ``kubernetes``: worker pods (dask-kubernetes operator), :meth:`KubernetesSite.cluster_spec`;
- ``address``: an existing scheduler.

A whole run goes to a SLURM site as one batch job with :func:`submit_run`
(``daskcal submit``), whose progress :func:`run_status` reports (``daskcal status``).

>>> from daskcal.cluster import load_site
>>> with load_site("configs/sites/local.yaml").client() as client:  # doctest: +SKIP
...     total = client.compute(graph).result()

Nothing heavy is imported until used; dask-jobqueue and dask-kubernetes load
only when a SLURM or Kubernetes site renders a script or starts a cluster.
"""

from daskcal._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "Site": "base",
    "THREAD_LIMIT_ENV": "base",
    "LocalSite": "local",
    "AddressSite": "local",
    "SlurmSite": "slurm",
    "KubernetesSite": "kubernetes",
    "SiteProfile": "profile",
    "LocalConfig": "profile",
    "SlurmConfig": "profile",
    "KubernetesConfig": "profile",
    "AddressConfig": "profile",
    "load_profile": "profile",
    "site_schema": "profile",
    "load_site": "sites",
    "site_from_dict": "sites",
    "site_from_profile": "sites",
    "site_search_path": "sites",
    "SITE_CLASSES": "sites",
    "RunRequest": "submit",
    "RunStatus": "submit",
    "render_driver_script": "submit",
    "submit_run": "submit",
    "run_status": "submit",
})
