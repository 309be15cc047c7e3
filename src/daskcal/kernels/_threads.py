"""Threads of the in-memory gridder: how many, a shared pool, and work split into items.

The number of threads is the caller's ``scipy.fft`` worker count
(``scipy.fft.set_workers``, thread-local, 1 by default): the FFTs and the loops around them
use the same threads, and code running in Dask task threads (where it is 1) never
oversubscribes. The numba loops release the GIL, so Python threads run them in parallel.

Work is split over the tiles of the index (see :mod:`.index`): a *work item* is a row
``(tile, first sample, end sample)`` of an int64 array; a tile with many samples (the
dense centre of the uv plane) is cut into several items, so that the groups of items given
to the threads carry equal numbers of samples.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.fft

_LOCK = threading.Lock()
_POOL: list[ThreadPoolExecutor] = []

#: Items per thread a plane's work is cut into (finer: better balance, more buffer flushes).
ITEMS_PER_THREAD = 4


def count() -> int:
    """Threads the gridder may use here: the caller's ``scipy.fft.get_workers()``, capped by
    the CPU count."""
    return max(1, min(int(scipy.fft.get_workers()), os.cpu_count() or 1))


def _pool() -> ThreadPoolExecutor:
    with _LOCK:
        if not _POOL:
            _POOL.append(ThreadPoolExecutor(max_workers=os.cpu_count() or 1,
                                            thread_name_prefix="daskcal-gridder"))
        return _POOL[0]


def run(fn: Callable, arg_lists: Sequence[tuple]) -> list:
    """``[fn(*args) for args in arg_lists]``, concurrently: the first on the calling
    thread, the others on the shared pool. Exceptions propagate."""
    if len(arg_lists) == 1:
        return [fn(*arg_lists[0])]
    futures = [_pool().submit(fn, *a) for a in arg_lists[1:]]
    first = fn(*arg_lists[0])
    return [first] + [f.result() for f in futures]


def ranges(n: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous near-equal ranges ``(lo, hi)`` covering ``[0, n)`` (none empty
    unless ``n < parts``)."""
    parts = max(1, min(parts, n)) if n else 1
    edges = [n * k // parts for k in range(parts + 1)]
    return [(edges[k], edges[k + 1]) for k in range(parts)]


def plane_items(offsets: np.ndarray, n_tiles: int, n_planes: int, plane: int,
                support_w: int, groups: int) -> list[np.ndarray]:
    """Work items of the samples touching w plane ``plane``, split into ``groups``.

    Parameters
    ----------
    offsets : ndarray, int64, shape (n_tiles * n_planes + 1,)
        Key offsets of the index (key = tile * n_planes + first plane).
    n_tiles, n_planes, plane : int
    support_w : int
        W-kernel support (0: every sample touches only its own plane).
    groups : int
        Number of groups (threads).

    Returns
    -------
    list of ndarray, int64, shape (n_items_k, 3)
        Per group, rows ``(tile, i0, i1)``: samples ``i0 .. i1 - 1`` of the index, all of
        tile ``tile`` and touching the plane (the samples of a tile touching a plane are
        one contiguous range, as its keys ``tile * n_planes + p_lo`` for
        ``p_lo = plane - support_w + 1 .. plane`` are consecutive). Groups hold equal
        sample counts to within one item; a group may be empty.
    """
    p_first = max(plane - max(support_w, 1) + 1, 0)
    base = np.arange(n_tiles, dtype=np.int64) * n_planes
    lo = offsets[base + p_first]
    hi = offsets[base + plane + 1]
    tiles = np.flatnonzero(hi > lo)
    lo, hi = lo[tiles], hi[tiles]
    if groups <= 1:
        return [np.stack([tiles, lo, hi], axis=1)]
    cnt = hi - lo
    piece = max(1, int(cnt.sum()) // (ITEMS_PER_THREAD * groups))
    parts = -(-cnt // piece)
    t = np.repeat(tiles, parts)
    first = np.repeat(lo, parts)
    n_t = np.repeat(cnt, parts)
    n_p = np.repeat(parts, parts)
    k = np.arange(t.size) - np.repeat(np.cumsum(parts) - parts, parts)
    items = np.stack([t, first + n_t * k // n_p, first + n_t * (k + 1) // n_p], axis=1)
    ends = np.cumsum(items[:, 2] - items[:, 1])
    cuts = np.searchsorted(ends, ends[-1] * np.arange(1, groups) / groups, side="right")
    return np.split(items, cuts)


__all__ = ["ITEMS_PER_THREAD", "count", "plane_items", "ranges", "run"]
