"""QA summaries as Dask collections of per-block partial results, combined in numpy.

A step's QA summaries are reductions of its data to a few hundred kB. Written as
xarray/dask reductions they cost hundreds of tasks per step (a ``where``, an ``astype``,
a ``sum`` chunk, an aggregate, a coarsening per variable and chunk): on 2 workers and
0.25 GB of ``lofar-target`` they were two thirds of the tasks of every data step, and the
scheduler's and workers' per-task cost (a few ms each) dominated the steps. Here a
summary is **one task per data block** returning the block's partial sums (a small dict
of numpy arrays), and the combination of the partial sums happens in numpy wherever the
summary is computed (:meth:`LazySummary.__dask_postcompute__`: in the driver, with the
runner's :func:`daskcal.pipeline.execute.compute_step`, which gathers each partial as it
comes and releases it).

:class:`LazySummary` implements Dask's collection protocol, so ``dask.compute`` (any
scheduler) computes it to the summary's :class:`xarray.Dataset`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import dask
import dask.array as da
import numpy as np
import xarray as xr
from dask.delayed import Delayed


class LazySummary:
    """A summary not yet computed: per-block partial results and how to combine them.

    Parameters
    ----------
    parts : sequence of dask.delayed.Delayed
        One per data block (at least one); each computes to a partial result.
    combine : callable
        ``combine(results) -> xarray.Dataset``, given the computed parts in order
        (runs where the summary is computed; numpy on small arrays).
    """

    def __init__(self, parts: Sequence[Delayed], combine: Callable[[list[Any]], xr.Dataset]):
        if not parts:
            raise ValueError("a LazySummary needs at least one part")
        self.parts = list(parts)
        self.combine = combine
        from dask.highlevelgraph import HighLevelGraph

        self._graph = HighLevelGraph.merge(*(p.__dask_graph__() for p in self.parts))

    def __dask_graph__(self):
        return self._graph

    def __dask_keys__(self) -> list:
        return [p.key for p in self.parts]

    def __dask_layers__(self) -> tuple:
        return tuple(layer for p in self.parts for layer in p.__dask_layers__())

    def __dask_tokenize__(self) -> tuple:
        return (type(self).__name__, *self.__dask_keys__())

    def __dask_postcompute__(self) -> tuple[Callable, tuple]:
        return _finish, (self.combine,)

    def __dask_postpersist__(self):  # pragma: no cover - summaries are computed, not persisted
        raise NotImplementedError("a LazySummary is computed, not persisted")

    __dask_optimize__ = staticmethod(Delayed.__dask_optimize__)
    __dask_scheduler__ = staticmethod(Delayed.__dask_scheduler__)

    def compute(self, **kwargs: Any) -> xr.Dataset:
        """The summary (``dask.compute`` of this collection)."""
        (out,) = dask.compute(self, **kwargs)
        return out


def _finish(results: list[Any], combine: Callable[[list[Any]], xr.Dataset]) -> xr.Dataset:
    return combine(list(results))


def blocks(x: Any, chunks: tuple[tuple[int, ...], ...] | None = None) -> np.ndarray:
    """The blocks of an array as an object array of Delayed (keys shared with its graph).

    Parameters
    ----------
    x : dask array or array-like
        numpy data become one block.
    chunks : tuple of tuples, optional
        Rechunk to these first (a no-op when equal).

    Returns
    -------
    numpy.ndarray of Delayed, shape ``x.numblocks``
    """
    arr = x if isinstance(x, da.Array) else da.from_array(np.asarray(x), chunks=-1)
    if chunks is not None and arr.chunks != chunks:
        arr = arr.rechunk(chunks)
    return arr.to_delayed(optimize_graph=False)


def offsets(chunks: Sequence[int]) -> list[int]:
    """Start index of every chunk along one axis."""
    return [0, *np.cumsum(chunks)[:-1].tolist()]


def assemble(shape: tuple[int, ...], pieces: list[tuple[tuple[int, ...], np.ndarray]],
             dtype: Any) -> np.ndarray:
    """A full array from ``(start indices, block)`` pieces, summed where they overlap.

    Pieces that tile the array place their blocks (booleans: ``or``).
    """
    out = np.zeros(shape, dtype=dtype)
    for start, piece in pieces:
        idx = tuple(slice(s, s + n) for s, n in zip(start, np.shape(piece), strict=True))
        out[idx] += piece
    return out


__all__ = ["LazySummary", "assemble", "blocks", "offsets"]
