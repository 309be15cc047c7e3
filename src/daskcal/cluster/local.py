"""Sites on this machine (``local``) and at an existing scheduler (``address``)."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from daskcal import DaskcalWarning
from daskcal.cluster.base import Site
from daskcal.cluster.profile import AddressConfig, LocalConfig

if TYPE_CHECKING:
    from distributed import Client

logger = logging.getLogger(__name__)


def _cpu_count() -> int:
    from dask.system import CPU_COUNT  # respects cgroup quotas and CPU affinity

    return int(CPU_COUNT)


class LocalSite(Site):
    """A distributed ``LocalCluster`` of worker processes on this machine.

    Each worker is a separate process (so numba's and the GIL's limits are per
    worker) with ``threads_per_worker`` Dask threads and the thread limits of
    :meth:`Site.worker_env` in its environment, set before any task runs. Without
    ``n_workers`` the workers fill the cores: ``cores // threads_per_worker``.

    Note that the BLAS variables (``OMP_NUM_THREADS``, ...) take effect only if
    they are set before numpy loads in the worker; distributed sets them to 1
    before spawning unless this process's own environment sets them otherwise.
    """

    kind = "local"
    config_class = LocalConfig

    @property
    def n_workers(self) -> int:
        """Worker processes the cluster starts."""
        if self.config.n_workers is not None:
            return self.config.n_workers
        return max(1, _cpu_count() // self.config.threads_per_worker)

    def _start_cluster(self) -> Any:
        from distributed import LocalCluster

        cfg: LocalConfig = self.config
        n_cores, n_threads = _cpu_count(), self.n_workers * cfg.threads_per_worker
        if n_threads > n_cores:
            warnings.warn(
                f"{self.source or self.name}: {self.n_workers} workers x "
                f"{cfg.threads_per_worker} threads = {n_threads} threads on {n_cores} cores "
                "oversubscribes this machine", DaskcalWarning, stacklevel=4)
        logger.info("starting a LocalCluster: %d workers x %d threads", self.n_workers,
                    cfg.threads_per_worker)
        return LocalCluster(
            n_workers=self.n_workers,
            threads_per_worker=cfg.threads_per_worker,
            processes=True,
            memory_limit=cfg.memory_limit,
            local_directory=cfg.local_directory,
            dashboard_address=cfg.dashboard_address,
            env=self.worker_env(),
            **({"host": cfg.host} if cfg.host else {}),
        )


class AddressSite(Site):
    """An existing Dask scheduler, whose workers someone else started and configured.

    daskcal neither starts nor stops anything here: :meth:`client` connects, and
    closing it leaves the cluster running. The workers' environment is the
    business of whoever started them (start them with ``NUMBA_NUM_THREADS=1``,
    see :data:`daskcal.cluster.base.THREAD_LIMIT_ENV`).
    """

    kind = "address"
    config_class = AddressConfig

    def worker_env(self) -> dict[str, str]:
        """Nothing: the workers are not started by daskcal."""
        return {}

    @contextlib.contextmanager
    def cluster(self) -> Iterator[Any]:
        """Not available: an address site has no cluster object of its own."""
        raise TypeError(f"site {self.name!r} is an existing scheduler: use client()")
        yield  # pragma: no cover

    @contextlib.contextmanager
    def client(self, *, wait_for_workers: int = 0,
               timeout: float | None = None) -> Iterator[Client]:
        """A client connected to the scheduler; the cluster stays up after exit.

        Parameters
        ----------
        wait_for_workers : int, optional
            Block until this many workers are connected (0: do not wait).
        timeout : float, optional
            Seconds to wait for them.

        Yields
        ------
        distributed.Client
        """
        from distributed import Client

        cfg: AddressConfig = self.config
        with Client(cfg.scheduler, timeout=cfg.timeout) as client:
            if wait_for_workers:
                client.wait_for_workers(wait_for_workers, timeout=timeout)
            yield client
