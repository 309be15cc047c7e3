"""The :class:`Site` base class: a validated profile that turns into a Dask client.

Subclasses (one per kind of site, as dask-jobqueue's ``Job`` classes) set the
class attributes ``kind`` and ``config_class`` and implement
:meth:`Site._start_cluster`; :meth:`Site.client` is the same for all.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar

from daskcal.cluster.profile import SiteProfile

if TYPE_CHECKING:
    from distributed import Client

logger = logging.getLogger(__name__)

#: Environment of every worker: tasks stay single-threaded, Dask's threads fill the cores.
#: numba reads ``NUMBA_NUM_THREADS`` when it is imported, the BLAS libraries when numpy is;
#: the variables are therefore set before the worker process starts (SLURM job script,
#: pod spec) or, on the local site, before any task runs.
THREAD_LIMIT_ENV: dict[str, str] = {
    "NUMBA_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "VECLIB_MAXIMUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
}


class Site:
    """A place where Dask graphs run, made from a validated :class:`SiteProfile`.

    Parameters
    ----------
    profile : SiteProfile
        The validated profile; its ``kind`` must be this class's ``kind``.
    source : str, optional
        Where the profile came from (a file), for messages.

    Attributes
    ----------
    kind : str
        The profile kind this class handles (class attribute).
    config_class : type
        The pydantic model of that kind's section (class attribute).
    profile : SiteProfile
        The whole profile.
    config : pydantic.BaseModel
        The section of the profile's kind (a ``config_class`` instance).
    """

    kind: ClassVar[str] = ""
    config_class: ClassVar[type] = object

    def __init__(self, profile: SiteProfile, source: str | None = None) -> None:
        if profile.kind != self.kind:
            raise ValueError(f"{type(self).__name__} needs a profile of kind {self.kind!r}, "
                             f"not {profile.kind!r}")
        self.profile = profile
        self.config = profile.settings
        self.source = source

    @property
    def name(self) -> str:
        """The site's name (from the profile)."""
        return self.profile.name

    def __repr__(self) -> str:
        origin = f" from {self.source}" if self.source else ""
        return f"<{type(self).__name__} {self.name!r}{origin}>"

    def worker_env(self) -> dict[str, str]:
        """Environment variables every worker gets.

        Returns
        -------
        dict of str to str
            :data:`THREAD_LIMIT_ENV`, updated with the profile's ``worker_env``.
        """
        return {**THREAD_LIMIT_ENV, **getattr(self.config, "worker_env", {})}

    def _start_cluster(self) -> Any:
        """Start (and scale) this site's Dask cluster; subclasses implement it."""
        raise NotImplementedError

    @contextlib.contextmanager
    def cluster(self) -> Iterator[Any]:
        """Start this site's Dask cluster; close it (and its workers) on exit.

        Yields
        ------
        distributed.deploy.Cluster
            A ``LocalCluster``, ``SLURMCluster`` or ``KubeCluster``, already scaled as the
            profile says.
        """
        cluster = self._start_cluster()
        try:
            yield cluster
        finally:
            logger.info("closing %s", cluster)
            cluster.close()

    @contextlib.contextmanager
    def client(self, *, wait_for_workers: int = 0,
               timeout: float | None = None) -> Iterator[Client]:
        """A Dask client on this site; the cluster is started on entry and closed on exit.

        Parameters
        ----------
        wait_for_workers : int, optional
            Block until this many workers have joined (0: do not wait).
        timeout : float, optional
            Seconds to wait for them (raises ``TimeoutError`` when exceeded).

        Yields
        ------
        distributed.Client
        """
        from distributed import Client

        with self.cluster() as cluster, Client(cluster) as client:
            if wait_for_workers:
                client.wait_for_workers(wait_for_workers, timeout=timeout)
            yield client

    def describe(self) -> str:
        """One line saying what this site is, for logs and ``daskcal`` output."""
        text = f"{self.name} ({self.kind})"
        if self.profile.description:
            text += f": {self.profile.description}"
        return text
