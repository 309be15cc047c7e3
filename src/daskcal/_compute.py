"""``dask.compute`` that does not import ``distributed`` just to find no client."""

from __future__ import annotations

import sys
from typing import Any


def local_scheduler(*args: Any) -> Any:
    """The scheduler ``dask.compute(*args)`` would use, when it is knowably a local one.

    Every ``dask.compute`` (even with ``scheduler="threads"``) imports ``distributed``,
    when it is installed, to look for a client: ~0.2 s, which a small in-memory image
    notices. Until ``distributed`` has been imported no client can exist, and the
    scheduler is the configured named local one (``dask.config`` ``scheduler``) or
    else the default of the first collection, as dask itself would choose.

    Returns
    -------
    callable or None
        The scheduler's ``get``; None when ``distributed`` is loaded, or the configured
        scheduler is not a named local one (let dask decide).
    """
    if "distributed" in sys.modules:
        return None
    import dask
    from dask.base import named_schedulers, unpack_collections

    name = dask.config.get("scheduler", None)
    if name is None:
        collections, _ = unpack_collections(*args)
        gets = {c.__dask_scheduler__ for c in collections}
        return gets.pop() if len(gets) == 1 else None
    if isinstance(name, str) and name.lower() in named_schedulers:
        return named_schedulers[name.lower()]
    return None


def compute(*args: Any, **kwargs: Any) -> tuple:
    """:func:`dask.compute` with the scheduler of :func:`local_scheduler` when it is known."""
    import dask

    if kwargs.get("scheduler") is None:
        scheduler = local_scheduler(*args)
        if scheduler is not None:
            kwargs["scheduler"] = scheduler
    return dask.compute(*args, **kwargs)


__all__ = ["compute", "local_scheduler"]
