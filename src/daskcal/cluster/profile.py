"""Site profiles: the YAML file that says where graphs run, and its pydantic model.

A profile names one *kind* of site and carries that kind's section::

    name: my-hpc                 # optional; defaults to the file's stem
    description: the institute's cluster, partition "compute"
    kind: slurm                  # local (default) | slurm | kubernetes | address
    slurm:
      queue: compute
      cores: 8
      processes: 2               # 2 workers x 4 threads per job
      memory: 32GiB
      walltime: "04:00:00"
      adaptive: {minimum_jobs: 0, maximum_jobs: 20}

Only the section of the chosen kind may be present. Every field carries a
description, so that :func:`site_schema` is a JSON schema the portal renders as
a form. :func:`load_profile` reads and validates a file and reports *every*
problem on one line naming the file::

    sites/x.yaml: slurm.cores: must be >= 1; slurm.walltime: must be a SLURM time ...

Threads and cores
-----------------
Each worker runs ``threads_per_worker`` Dask threads; the tasks themselves must
then stay single-threaded, or numba's and BLAS's own thread pools multiply the
count (8 Dask threads x 8 numba threads on 8 cores). So every worker gets
``NUMBA_NUM_THREADS=1``, ``OMP_NUM_THREADS=1``, ``OPENBLAS_NUM_THREADS=1``,
``MKL_NUM_THREADS=1``, ``VECLIB_MAXIMUM_THREADS=1`` and ``NUMEXPR_NUM_THREADS=1``
in its environment (see :data:`daskcal.cluster.base.THREAD_LIMIT_ENV`), and the
Dask threads fill the cores exactly: for SLURM ``cores`` must be a multiple of
``processes`` (each job runs ``processes`` workers of ``cores / processes``
threads), for Kubernetes ``threads_per_worker`` may not exceed the pod's CPUs.
``worker_env`` overrides any of these variables (then lower the Dask threads to
match).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from daskcal import DaskcalError
from daskcal.cluster._errors import format_validation_error

SiteKind = Literal["local", "slurm", "kubernetes", "address"]
KINDS: tuple[str, ...] = ("local", "slurm", "kubernetes", "address")

_WALLTIME = re.compile(r"^(\d+-\d{1,2}(:\d{2}){0,2}|\d+(:\d{2}){0,2})$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_K8S_QUANTITY = re.compile(r"^(\d+(\.\d+)?)(m|k|K|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
_K8S_FACTORS = {
    None: 1, "m": 1e-3, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
}


def parse_k8s_quantity(value: str) -> float:
    """A Kubernetes resource quantity (``"500m"``, ``"2"``, ``"4Gi"``) as a number.

    Parameters
    ----------
    value : str
        The quantity as written in a pod spec.

    Returns
    -------
    float
        CPUs for a CPU quantity, bytes for a memory quantity.

    Raises
    ------
    ValueError
        If ``value`` is not a quantity.
    """
    match = _K8S_QUANTITY.match(str(value).strip())
    if match is None:
        raise ValueError(f"{value!r} is not a Kubernetes quantity like '2', '500m' or '4Gi'")
    return float(match.group(1)) * _K8S_FACTORS[match.group(3)]


def _check_size(value: str) -> str:
    from dask.utils import parse_bytes

    try:
        n = parse_bytes(value)
    except (ValueError, TypeError):
        raise ValueError(f"{value!r} is not a size like '4GiB' or '500MB'") from None
    if n <= 0:
        raise ValueError("must be a positive size")
    return value


def _check_name(value: str) -> str:
    if not _NAME.match(value):
        raise ValueError(f"{value!r} is not a name of letters, digits, '.', '_' and '-'")
    return value


def _check_walltime(value: str) -> str:
    if not _WALLTIME.match(value.strip()):
        raise ValueError("must be a SLURM time like '01:30:00' or '1-00:00:00'")
    return value.strip()


def _check_directives(values: list[str]) -> list[str]:
    out = []
    for value in values:
        value = value.strip().removeprefix("#SBATCH").strip()
        if not value.startswith("-"):
            raise ValueError(f"{value!r} is not an sbatch option like '--qos=normal'")
        out.append(value)
    return out


def _problems(problems: list[tuple[str, str]]) -> None:
    """Raise problems found across fields, each tagged ``@field``.

    :func:`format_validation_error` then reports each under its own field.
    """
    if problems:
        raise ValueError("; ".join(f"@{field}: {text}" for field, text in problems))


def _check_env(env: dict[str, str]) -> dict[str, str]:
    bad = [k for k in env if not _ENV_NAME.match(k)]
    if bad:
        raise ValueError(f"not environment variable names: {', '.join(map(repr, bad))}")
    return env


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("worker_env", check_fields=False)
    @classmethod
    def _worker_env(cls, env: dict[str, str]) -> dict[str, str]:
        return _check_env(env)


class LocalConfig(_Section):
    """A distributed ``LocalCluster`` on this machine (the default site)."""

    n_workers: int | None = Field(
        None, ge=1, description="worker processes; empty: as many as fit the cores "
        "(cores // threads_per_worker)")
    threads_per_worker: int = Field(
        1, ge=1, description="Dask threads per worker; n_workers x threads_per_worker should not "
        "exceed the cores (a warning says so when it does)")
    memory_limit: str = Field(
        "auto", description="memory limit per worker, like '4GiB'; 'auto': the machine's memory "
        "shared equally between the workers")
    local_directory: str | None = Field(
        None, description="scratch directory for spilled data; empty: the system's temporary "
        "directory")
    dashboard_address: str | None = Field(
        ":8787", description="where the dashboard listens, like ':8787'; empty: no dashboard")
    host: str | None = Field(
        None, description="address the scheduler and workers listen on, like '127.0.0.2' "
        "(several sites on one machine); empty: localhost")
    worker_env: dict[str, str] = Field(
        default_factory=dict, description="extra environment variables of the workers; they "
        "override the thread limits (NUMBA_NUM_THREADS=1, ...)")

    @field_validator("memory_limit")
    @classmethod
    def _memory(cls, value: str) -> str:
        return value if value == "auto" else _check_size(value)


class AdaptiveJobs(_Section):
    """Adaptive scaling in SLURM jobs."""

    minimum_jobs: int = Field(0, ge=0, description="jobs kept even when idle")
    maximum_jobs: int = Field(..., ge=1, description="jobs at most")

    @model_validator(mode="after")
    def _order(self) -> AdaptiveJobs:
        if self.maximum_jobs < self.minimum_jobs:
            _problems([("maximum_jobs", f"must be >= minimum_jobs ({self.minimum_jobs})")])
        return self


class ContainerConfig(_Section):
    """Run the worker inside an Apptainer (Singularity) image on the compute node."""

    image: str = Field(..., min_length=1, description="the image: a .sif path, or "
                       "docker://... / oras://... as apptainer accepts it")
    runtime: Literal["apptainer", "singularity"] = Field(
        "apptainer", description="the container command on the compute nodes")
    binds: list[str] = Field(
        default_factory=list, description="--bind mounts, like '/data' or '/scratch:/scratch:rw'")
    options: list[str] = Field(
        default_factory=list, description="further options of 'apptainer exec', like '--nv'")
    python: str = Field("python", min_length=1,
                        description="the Python interpreter inside the image")


class _SlurmJobSection(_Section):
    """Checks shared by every section that describes an sbatch job (driver and workers).

    Subclasses declare the fields ``memory``, ``job_name``, ``walltime`` and
    ``job_extra_directives`` with their own defaults and help texts.
    """

    @field_validator("memory", check_fields=False)
    @classmethod
    def _memory(cls, value: str) -> str:
        return _check_size(value)

    @field_validator("job_name", check_fields=False)
    @classmethod
    def _job_name(cls, value: str) -> str:
        return _check_name(value)

    @field_validator("walltime", check_fields=False)
    @classmethod
    def _walltime(cls, value: str) -> str:
        return _check_walltime(value)

    @field_validator("job_extra_directives", check_fields=False)
    @classmethod
    def _directives(cls, values: list[str]) -> list[str]:
        return _check_directives(values)


class DriverConfig(_SlurmJobSection):
    """The batch job of ``daskcal submit``: it runs the run's driver (scheduler and runner).

    The driver only schedules, so it is small; the work runs in the worker jobs it submits.
    It runs with the workers' ``python`` (or ``container``), ``setup`` and environment
    unless ``python`` is given here.
    """

    queue: str | None = Field(None, description="partition of the driver job; empty: the "
                              "workers' queue")
    cores: int = Field(1, ge=1, description="CPU cores of the driver job (sbatch "
                       "--cpus-per-task)")
    memory: str = Field("2GiB", description="memory of the driver job, like '4GiB' (sbatch "
                        "--mem)")
    walltime: str = Field("1-00:00:00", description="time limit of the whole run (sbatch -t), "
                          "like '12:00:00' or '2-00:00:00'")
    job_name: str = Field("daskcal-driver", description="job name of the driver (sbatch -J)")
    job_extra_directives: list[str] = Field(
        default_factory=list, description="further sbatch options of the driver job, one per "
        "#SBATCH line")
    python: str | None = Field(
        None, description="the Python interpreter of the driver (it needs sbatch on PATH); "
        "empty: the workers' python or container")



class SlurmConfig(_SlurmJobSection):
    """Workers as SLURM batch jobs (dask-jobqueue ``SLURMCluster``)."""

    queue: str | None = Field(None, description="partition (sbatch -p); empty: the default "
                              "partition")
    account: str | None = Field(None, description="account charged (sbatch -A)")
    cores: int = Field(1, ge=1, description="CPU cores per job (sbatch --cpus-per-task); "
                       "a multiple of processes")
    processes: int = Field(1, ge=1, description="Dask worker processes per job; each gets "
                           "cores / processes threads")
    memory: str = Field("2GiB", description="memory per job, like '16GiB' (sbatch --mem); "
                        "each worker's memory limit is memory / processes")
    walltime: str = Field("01:00:00", description="time limit per job (sbatch -t), like "
                          "'01:30:00' or '2-00:00:00'")
    job_name: str = Field("daskcal-worker", description="job name (sbatch -J), as squeue shows it")
    job_extra_directives: list[str] = Field(
        default_factory=list, description="further sbatch options, one per #SBATCH line, "
        "like '--qos=normal' or '--constraint=skylake'")
    job_directives_skip: list[str] = Field(
        default_factory=list, description="drop generated #SBATCH lines containing any of these, "
        "like '--mem' on clusters that forbid it")
    python: str | None = Field(
        None, description="the Python interpreter of the workers (a virtualenv's bin/python on "
        "a shared file system); empty: the interpreter running daskcal")
    setup: list[str] = Field(
        default_factory=list, description="shell commands run in the job before the worker, "
        "like 'module load python/3.11' or 'source /opt/env/bin/activate'")
    container: ContainerConfig | None = Field(
        None, description="run the worker in an Apptainer image instead of a Python environment")
    jobs: int | None = Field(
        None, ge=0, description="a fixed number of jobs (default 1 unless adaptive is given)")
    adaptive: AdaptiveJobs | None = Field(
        None, description="scale between minimum_jobs and maximum_jobs with the load")
    local_directory: str | None = Field(
        None, description="worker scratch on the compute node, like '$TMPDIR' or "
        "'/scratch/$USER'")
    log_directory: str | None = Field(
        None, description="directory (shared) receiving the jobs' stdout and stderr; created "
        "if missing")
    interface: str | None = Field(
        None, description="network interface of scheduler and workers, like 'ib0'; empty: the "
        "default route's")
    worker_extra_args: list[str] = Field(
        default_factory=list, description="further 'dask worker' options, like '--lifetime 55m' "
        "to retire workers before the walltime")
    dashboard_address: str | None = Field(
        ":8787", description="where the scheduler's dashboard listens, like ':8787'; empty: no "
        "dashboard")
    worker_env: dict[str, str] = Field(
        default_factory=dict, description="extra environment variables of the workers; they "
        "override the thread limits (NUMBA_NUM_THREADS=1, ...)")
    driver: DriverConfig = Field(
        default_factory=DriverConfig, description="the driver job of 'daskcal submit', which "
        "runs the scheduler and submits these worker jobs")


    @model_validator(mode="after")
    def _consistent(self) -> SlurmConfig:
        problems = []
        if self.cores % self.processes:
            problems.append(("cores", f"must be a multiple of processes ({self.processes})"))
        if self.jobs is not None and self.adaptive is not None:
            problems.append(("adaptive", "give jobs or adaptive, not both"))
        if self.python is not None and self.container is not None:
            problems.append(("container", "give python or container, not both "
                             "(container.python names the interpreter inside the image)"))
        _problems(problems)
        return self


class K8sQuantities(_Section):
    """CPU and memory of a pod."""

    cpu: str | None = Field(None, description="CPUs, like '2' or '500m'")
    memory: str | None = Field(None, description="memory, like '8Gi' or '512Mi'")

    @field_validator("cpu", "memory")
    @classmethod
    def _quantity(cls, value: str | None) -> str | None:
        if value is not None:
            parse_k8s_quantity(value)
        return value


class K8sResources(_Section):
    """Resource requests and limits of a pod."""

    requests: K8sQuantities = Field(default_factory=K8sQuantities,
                                    description="what the scheduler reserves for the pod")
    limits: K8sQuantities = Field(default_factory=K8sQuantities,
                                  description="what the pod may use at most")


class AdaptiveWorkers(_Section):
    """Adaptive scaling in worker pods."""

    minimum: int = Field(0, ge=0, description="workers kept even when idle")
    maximum: int = Field(..., ge=1, description="workers at most")

    @model_validator(mode="after")
    def _order(self) -> AdaptiveWorkers:
        if self.maximum < self.minimum:
            _problems([("maximum", f"must be >= minimum ({self.minimum})")])
        return self


class KubernetesConfig(_Section):
    """Workers as pods of a ``DaskCluster`` (the dask-kubernetes operator's ``KubeCluster``)."""

    image: str = Field(..., min_length=1, description="container image of scheduler and "
                       "workers, with daskcal installed, like 'ghcr.io/org/daskcal:0.1'")
    namespace: str | None = Field(None, description="namespace; empty: the current context's")
    n_workers: int | None = Field(
        None, ge=0, description="a fixed number of workers (default 1 unless adaptive is given)")
    adaptive: AdaptiveWorkers | None = Field(
        None, description="scale between minimum and maximum workers with the load")
    threads_per_worker: int = Field(1, ge=1, description="Dask threads per worker; at most the "
                                    "worker's CPUs")
    resources: K8sResources = Field(default_factory=K8sResources,
                                    description="requests and limits of each worker pod")
    scheduler_resources: K8sResources | None = Field(
        None, description="requests and limits of the scheduler pod; empty: none")
    node_selector: dict[str, str] = Field(
        default_factory=dict, description="node labels the pods must match, like "
        "{'node.kubernetes.io/instance-type': 'm5.2xlarge'}")
    volumes: list[dict[str, Any]] = Field(
        default_factory=list, description="volumes of the worker pods (Kubernetes Volume "
        "objects), like {'name': 'data', 'persistentVolumeClaim': {'claimName': 'obs'}}: the "
        "run directory must be shared by the driver and the workers")
    volume_mounts: list[dict[str, Any]] = Field(
        default_factory=list, description="mounts of those volumes in the worker container "
        "(Kubernetes VolumeMount objects), like {'name': 'data', 'mountPath': '/data'}")
    scheduler_service_type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = Field(
        "ClusterIP", description="how the scheduler's service is exposed")
    idle_timeout: int = Field(0, ge=0, description="seconds after which an idle cluster is "
                              "deleted; 0: never")
    worker_env: dict[str, str] = Field(
        default_factory=dict, description="extra environment variables of the pods; they "
        "override the thread limits (NUMBA_NUM_THREADS=1, ...)")

    @model_validator(mode="after")
    def _consistent(self) -> KubernetesConfig:
        problems = []
        if self.n_workers is not None and self.adaptive is not None:
            problems.append(("adaptive", "give n_workers or adaptive, not both"))
        cpu = self.resources.limits.cpu or self.resources.requests.cpu
        if cpu is not None:
            n_cpu = max(1, int(parse_k8s_quantity(cpu)))
            if self.threads_per_worker > n_cpu:
                problems.append(("threads_per_worker", f"must be <= the worker's CPUs in "
                                 f"resources ({n_cpu})"))
        _problems(problems)
        return self


class AddressConfig(_Section):
    """An existing Dask scheduler, started by someone else."""

    scheduler: str = Field(..., description="the scheduler's address, like "
                           "'tcp://10.0.0.5:8786'")
    timeout: str = Field("30s", description="how long to try to connect, like '30s'")

    @field_validator("scheduler")
    @classmethod
    def _scheduler(cls, value: str) -> str:
        if not re.match(r"^(tcp|tls|ws|wss|inproc|ucx)://\S+$", value.strip()):
            raise ValueError(f"{value!r} is not an address like 'tcp://10.0.0.5:8786'")
        return value.strip()

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: str) -> str:
        from dask.utils import parse_timedelta

        try:
            if parse_timedelta(value) <= 0:
                raise ValueError
        except (ValueError, TypeError, KeyError):
            raise ValueError(f"{value!r} is not a duration like '30s'") from None
        return value


SECTIONS: dict[str, type[_Section]] = {
    "local": LocalConfig, "slurm": SlurmConfig,
    "kubernetes": KubernetesConfig, "address": AddressConfig,
}


class SiteProfile(BaseModel):
    """Where graphs run: one site's kind and its settings."""

    model_config = ConfigDict(extra="forbid", title="daskcal site profile")

    name: str = Field("local", description="short name of the site (defaults to the file's stem)")
    description: str = Field("", description="what this site is, for people")
    kind: SiteKind = Field("local", description="local: this machine; slurm: batch jobs; "
                           "kubernetes: pods; address: an existing scheduler")
    local: LocalConfig | None = Field(None, description="settings of kind local")
    slurm: SlurmConfig | None = Field(None, description="settings of kind slurm")
    kubernetes: KubernetesConfig | None = Field(None, description="settings of kind kubernetes")
    address: AddressConfig | None = Field(None, description="settings of kind address")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _check_name(value)

    @model_validator(mode="before")
    @classmethod
    def _sections(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        kind = data.get("kind", "local")
        if kind not in KINDS:
            return data  # the Literal reports it
        others = [k for k in KINDS if k != kind and data.get(k) is not None]
        if others:
            raise ValueError(f"section {others[0]!r} given, but kind is {kind!r}")
        if data.get(kind) is None:
            if kind in ("kubernetes", "address"):
                raise ValueError(f"kind {kind!r} needs a {kind!r} section")
            data = {**data, kind: {}}
        return data

    @property
    def settings(self) -> _Section:
        """The section of this profile's kind."""
        return getattr(self, self.kind)


def site_schema() -> dict[str, Any]:
    """The JSON schema of a site profile (what the portal renders as a form).

    Returns
    -------
    dict
        The JSON schema of :class:`SiteProfile`; every property has a ``description``.
    """
    return SiteProfile.model_json_schema()


def profile_from_dict(data: Any, source: str = "<profile>") -> SiteProfile:
    """Validate a profile given as a mapping (a parsed YAML document).

    Parameters
    ----------
    data : mapping or None
        The profile; ``None`` (an empty file) means the default local site.
    source : str
        Named at the start of error messages (normally the file).

    Returns
    -------
    SiteProfile

    Raises
    ------
    daskcal.DaskcalError
        On any invalid field: every problem on one line starting with ``source``.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise DaskcalError(f"{source}: a site profile must be a mapping, not "
                           f"{type(data).__name__}")
    try:
        return SiteProfile.model_validate(data)
    except ValidationError as exc:
        raise DaskcalError(format_validation_error(exc, source)) from None


def load_profile(path: str | os.PathLike[str]) -> SiteProfile:
    """Read and validate a site profile file (YAML).

    Parameters
    ----------
    path : str or path-like
        The YAML file. Without a ``name`` field the profile is named after the file's
        stem.

    Returns
    -------
    SiteProfile

    Raises
    ------
    daskcal.DaskcalError
        If the file is missing, unreadable, not YAML, or invalid; one line naming it.
    """
    from daskcal._files import read_yaml

    path = Path(path)
    source = str(path)
    data = read_yaml(path, "site profile")
    if data is None:  # an empty file: the default local site, named after the file
        data = {}
    if isinstance(data, dict) and "name" not in data:
        stem = re.sub(r"[^A-Za-z0-9._-]+", "-", path.stem).strip("-.") or "site"
        data = {"name": stem, **data}
    return profile_from_dict(data, source)
