"""SLURM sites: Dask workers in batch jobs, through dask-jobqueue's ``SLURMCluster``.

Each job runs ``processes`` worker processes of ``cores / processes`` Dask
threads on ``cores`` CPUs (``sbatch --cpus-per-task``) and ``memory`` (``--mem``),
so the Dask threads fill the job's cores exactly; the job script exports the
thread limits (``NUMBA_NUM_THREADS=1``, ...) before the worker starts, and the
profile's ``setup`` commands after them. dask-jobqueue is imported only when a
script is rendered or a cluster started (its import writes a config file).
"""

from __future__ import annotations

import os
import shlex
import sys
from typing import Any

from daskcal.cluster.base import Site
from daskcal.cluster.profile import SlurmConfig

#: Scheduler address written into scripts rendered without a running scheduler.
SCHEDULER_PLACEHOLDER = "tcp://<insert-scheduler-address-here>:8786"


class SlurmSite(Site):
    """Dask workers in SLURM batch jobs (dask-jobqueue ``SLURMCluster``).

    The cluster's scheduler runs in the calling process (on the login node or
    inside the job running daskcal); the workers connect back to it, so the
    compute nodes must reach this machine on the network (choose ``interface``
    on clusters with several networks).
    """

    kind = "slurm"
    config_class = SlurmConfig

    @property
    def n_jobs(self) -> int:
        """Jobs submitted at start (``adaptive.minimum_jobs`` when adaptive)."""
        cfg: SlurmConfig = self.config
        if cfg.adaptive is not None:
            return cfg.adaptive.minimum_jobs
        return 1 if cfg.jobs is None else cfg.jobs

    @property
    def n_workers(self) -> int:
        """Dask workers at start: ``n_jobs * processes``."""
        return self.n_jobs * self.config.processes

    def log_directory(self) -> str | None:
        """The jobs' log directory, with ``~`` and ``$VARS`` expanded (None: SLURM's default)."""
        cfg: SlurmConfig = self.config
        if cfg.log_directory is None:
            return None
        return os.path.expandvars(os.path.expanduser(cfg.log_directory))

    def python_command(self) -> str:
        """The command that runs Python for the worker (a container's ``exec`` if any)."""
        cfg: SlurmConfig = self.config
        if cfg.container is None:
            return shlex.quote(cfg.python or sys.executable)
        box = cfg.container
        words = [box.runtime, "exec"]
        for bind in box.binds:
            words += ["--bind", bind]
        words += [*box.options, box.image, box.python]
        return " ".join(shlex.quote(w) for w in words)

    def job_script_prologue(self) -> list[str]:
        """Lines of the job script before the worker: the environment, then ``setup``."""
        env = [f"export {key}={shlex.quote(value)}" for key, value in self.worker_env().items()]
        return [*env, *self.config.setup]

    def job_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of dask-jobqueue's ``SLURMCluster`` / ``SLURMJob``.

        Returns
        -------
        dict
            ``queue``, ``account``, ``cores``, ``processes``, ``memory``, ``walltime``,
            ``job_name``, ``job_extra_directives``, ``job_script_prologue``, ``python``, ...
        """
        cfg: SlurmConfig = self.config
        directives = []
        log_dir = self.log_directory()
        if log_dir is not None:
            directives += [f"--output={log_dir}/{cfg.job_name}-%j.out",
                           f"--error={log_dir}/{cfg.job_name}-%j.err"]
        directives += cfg.job_extra_directives
        return {
            "queue": cfg.queue,
            "account": cfg.account,
            "cores": cfg.cores,
            "processes": cfg.processes,
            "memory": cfg.memory,
            "walltime": cfg.walltime,
            "job_name": cfg.job_name,
            "job_cpu": cfg.cores,
            "job_extra_directives": directives,
            "job_directives_skip": list(cfg.job_directives_skip),
            "job_script_prologue": self.job_script_prologue(),
            "python": self.python_command(),
            "local_directory": cfg.local_directory,
            "log_directory": None,  # written as directives above: rendering creates no directory
            "interface": cfg.interface,
            "worker_extra_args": list(cfg.worker_extra_args),
            "shebang": "#!/usr/bin/env bash",
        }

    def render_job_script(self, scheduler_address: str | None = None) -> str:
        """The batch script of one worker job, as dask-jobqueue's ``job_script()`` writes it.

        No scheduler is started and no directory created.

        Parameters
        ----------
        scheduler_address : str, optional
            The scheduler the worker connects to; default
            :data:`SCHEDULER_PLACEHOLDER`.

        Returns
        -------
        str
            The script: shebang, ``#SBATCH`` lines, exports and setup, the worker command.
        """
        from dask_jobqueue.slurm import SLURMJob

        job = SLURMJob(scheduler_address or SCHEDULER_PLACEHOLDER, name="dummy-name",
                       **self.job_kwargs())
        return job.job_script()

    def _start_cluster(self) -> Any:
        from dask_jobqueue import SLURMCluster

        cfg: SlurmConfig = self.config
        log_dir = self.log_directory()
        if log_dir is not None:
            os.makedirs(log_dir, exist_ok=True)  # SLURM does not create it
        cluster = SLURMCluster(**self.job_kwargs(),
                               scheduler_options={"dashboard_address": cfg.dashboard_address})
        try:
            if cfg.adaptive is not None:
                cluster.adapt(minimum_jobs=cfg.adaptive.minimum_jobs,
                              maximum_jobs=cfg.adaptive.maximum_jobs)
            else:
                cluster.scale(jobs=self.n_jobs)
        except BaseException:
            cluster.close()
            raise
        return cluster
