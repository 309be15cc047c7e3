"""Rows -> the regular (time, baseline) grid of a partition.

Shared by the readers of row-based formats (:mod:`daskcal.data.uvfits`,
:mod:`daskcal.data.uvdata_import`): each row of the source is one
(time, baseline) sample; rows are grouped into integrations, baselines are
normalised to ``antenna1 <= antenna2`` and every row gets a grid cell.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from daskcal import DaskcalError, DaskcalWarning


def lookup_ids(values: np.ndarray, table: np.ndarray, name: str, what: str,
               error: type[DaskcalError] = DaskcalError) -> np.ndarray:
    """Indices of ``values`` in ``table`` (unique ids); raise ``error`` naming unknown ids."""
    values = np.asarray(values)
    table = np.asarray(table)
    if table.size == 0:
        raise error(f"{name}: {what} {sorted(set(values.tolist()))[:5]} but the table is empty")
    order = np.argsort(table, kind="stable")
    pos = np.clip(np.searchsorted(table, values, sorter=order), 0, table.size - 1)
    idx = order[pos]
    bad = table[idx] != values
    if np.any(bad):
        missing = sorted(set(np.unique(values[bad]).tolist()))[:5]
        raise error(f"{name}: {what} {missing} are not in the file's table")
    return idx


@dataclass(frozen=True)
class BaselineAxis:
    """The baseline axis and where each row falls on it.

    ``antenna1``/``antenna2`` (int32, shape (n_bl,)) are all pairs
    ``antenna1 <= antenna2`` of the antennas occurring in the rows, row major
    (autocorrelations included if any row is one); ``row_baseline`` (shape
    (n_row,)) is each row's baseline index and ``row_conjugate`` marks rows
    stored as ``antenna1 > antenna2``.
    """

    antenna1: np.ndarray
    antenna2: np.ndarray
    row_baseline: np.ndarray
    row_conjugate: np.ndarray

    @property
    def size(self) -> int:
        return int(self.antenna1.size)


def baseline_axis(i1: np.ndarray, i2: np.ndarray, n_ant: int) -> BaselineAxis:
    """Build the baseline axis from per-row antenna indices (into a table of ``n_ant``)."""
    conj = i1 > i2
    lo, hi = np.minimum(i1, i2), np.maximum(i1, i2)
    used = np.union1d(lo, hi)
    r, c = np.triu_indices(used.size, k=0 if np.any(lo == hi) else 1)
    ant1, ant2 = used[r].astype(np.int32), used[c].astype(np.int32)
    keys = ant1.astype(np.int64) * n_ant + ant2
    row_bl = np.searchsorted(keys, lo.astype(np.int64) * n_ant + hi)
    return BaselineAxis(ant1, ant2, row_bl, conj)


def sampling_interval(t: np.ndarray, key: np.ndarray, min_gap_s: float) -> float:
    """Median step between consecutive rows with the same ``key`` (baseline, source, ...), s.

    Steps not longer than ``min_gap_s`` are ignored; NaN if there are none
    (a single integration). Unlike stored integration times this is the real
    sampling of the grid, also where a writer derived a wrong ``INTTIM``.
    """
    order = np.lexsort((t, key))
    dt = np.diff(t[order])
    same = np.diff(key[order]) == 0
    steps = dt[same & (dt > min_gap_s)]
    return float(np.median(steps)) if steps.size else float("nan")


def time_axis(t: np.ndarray, key: np.ndarray, inttim: np.ndarray | None,
              min_gap_s: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Cluster row times into integrations; also return the nominal integration time.

    Parameters
    ----------
    t : ndarray of float64, shape (n_row,)
        Row times, s.
    key : ndarray of int, shape (n_row,)
        Rows with equal keys form one time series (baseline, source, ...).
    inttim : ndarray of float64, shape (n_row,), optional
        Stored integration times, s.
    min_gap_s : float
        Time differences below this are jitter (e.g. float32 dates), s.

    Returns
    -------
    cluster : ndarray of int64, shape (n_row,)
    times : ndarray of float64, shape (n_cluster,)
    integration_time_s : float
        Median positive ``inttim``, else the sampling interval, else NaN.
    """
    step = sampling_interval(t, key, min_gap_s)
    nominal = (float(np.median(inttim[inttim > 0]))
               if inttim is not None and np.any(inttim > 0) else step)
    spacing = step if np.isfinite(step) else nominal
    window = max(0.5 * spacing, min_gap_s) if np.isfinite(spacing) else min_gap_s
    cluster, times = time_clusters(t, window)
    return cluster, times, nominal


def time_clusters(t: np.ndarray, window_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Group row times into integrations.

    A cluster holds the times less than ``window_s`` after its earliest
    time; its time is the median of its rows' times (a row whose centroid
    moved because part of its integration was flagged does not move it).

    Returns
    -------
    cluster : ndarray of int64, shape (n_row,)
        Cluster index of each row, increasing with time.
    times : ndarray of float64, shape (n_cluster,)
        Time of each cluster, same units as ``t``.
    """
    uniq, inverse = np.unique(t, return_inverse=True)
    label = np.empty(uniq.size, dtype=np.int64)
    n, start = -1, -np.inf
    for i, value in enumerate(uniq.tolist()):
        if value - start >= window_s:
            n, start = n + 1, value
        label[i] = n
    cluster = label[inverse.reshape(-1)]
    order = np.lexsort((t, cluster))
    counts = np.bincount(cluster, minlength=n + 1)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    ts = t[order]
    times = 0.5 * (ts[first + (counts - 1) // 2] + ts[first + counts // 2])
    return cluster, times


@dataclass(frozen=True)
class RowGrid:
    """One partition's rows on its grid: ``rowmap[t, b]`` is a row number or -1."""

    clusters: np.ndarray
    rowmap: np.ndarray

    @property
    def present(self) -> np.ndarray:
        return self.rowmap >= 0

    def scatter(self, per_row: np.ndarray, fill) -> np.ndarray:
        """Per-row values (shape (n_row, ...)) on the grid, ``fill`` where there is no row."""
        per_row = np.asarray(per_row)
        out = np.full(self.rowmap.shape + per_row.shape[1:], fill, dtype=per_row.dtype)
        present = self.present
        out[present] = per_row[self.rowmap[present]]
        return out


def grid_rows(rows: np.ndarray, cluster: np.ndarray, row_baseline: np.ndarray, n_bl: int,
              name: str) -> RowGrid:
    """Place ``rows`` (indices into the per-row arrays) on a (time, baseline) grid.

    The time axis holds the clusters these rows occur in. A second row for
    the same cell is dropped with a :class:`daskcal.DaskcalWarning`.
    """
    clusters = np.unique(cluster[rows])
    ti = np.searchsorted(clusters, cluster[rows])
    cell = ti * n_bl + row_baseline[rows]
    n_dup = rows.size - np.unique(cell).size
    if n_dup:
        warnings.warn(f"{name}: {n_dup} rows repeat a (time, baseline) sample; "
                      "the first of each is kept", DaskcalWarning, stacklevel=3)
    rowmap = np.full(clusters.size * n_bl, -1, dtype=np.int64)
    rowmap[cell[::-1]] = rows[::-1]  # the first occurrence wins
    return RowGrid(clusters, rowmap.reshape(clusters.size, n_bl))


def scan_numbers(cluster: np.ndarray, source: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scans as runs of consecutive integrations on one source.

    Returns the sorted unique (cluster, source) pairs, shape (n, 2), and the
    1-based scan number of each.
    """
    pairs = np.unique(np.stack([cluster, source], axis=1), axis=0)
    scan = np.cumsum(np.concatenate([[1], np.diff(pairs[:, 1]) != 0]))
    return pairs, scan


def scans_of(pairs: np.ndarray, scan: np.ndarray, clusters: np.ndarray, source: int) -> list[str]:
    """Scan names (str) of ``clusters`` observed on ``source``."""
    n_src = int(pairs[:, 1].max()) + 1
    keys = np.searchsorted(pairs[:, 0] * n_src + pairs[:, 1], clusters * n_src + source)
    return [str(scan[k]) for k in keys]
