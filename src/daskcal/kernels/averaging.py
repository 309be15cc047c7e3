"""Time and channel averaging of visibilities with flags and weights.

Rules (DP3's averager):

- an output sample is the weighted mean of its *unflagged* inputs, and its weight
  is the sum of their weights;
- an output sample is flagged only when *all* its inputs are flagged; it then
  holds the weighted mean of all its (flagged) inputs and their summed weight, so
  that unflagging it later gives a sensible value;
- the last bin along an axis may be partial (fewer inputs than the factor).

Rows (time, baseline) are averaged the same way for UVW and TIME_CENTROID, each
input row weighted by the sum of its unflagged sample weights (plain mean when a
whole output row is flagged); EFFECTIVE_INTEGRATION_TIME adds over the input rows
that hold any unflagged sample.
"""

from __future__ import annotations

import numpy as np

from daskcal.kernels._jit import njit


def average_visibilities(
    vis: np.ndarray, flag: np.ndarray, weight: np.ndarray, time_factor: int, chan_factor: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Average a block of visibilities in time and frequency.

    Parameters
    ----------
    vis : ndarray, complex, shape (n_time, n_bl, n_chan, n_pol)
        Visibilities, Jy.
    flag : ndarray of bool, same shape
    weight : ndarray of float, same shape
        Non-negative weights.
    time_factor, chan_factor : int
        Number of input integrations / channels per output sample (>= 1).

    Returns
    -------
    vis_avg : ndarray, complex64, shape (ceil(n_time / time_factor), n_bl, ceil(n_chan / chan_factor), n_pol)
    flag_avg : ndarray of bool, same shape
    weight_avg : ndarray of float32, same shape
    """
    _check_block(vis, flag, weight, time_factor, chan_factor)
    return _average_vis(np.ascontiguousarray(vis), np.ascontiguousarray(flag),
                        np.ascontiguousarray(weight), int(time_factor), int(chan_factor))


def average_rows(values: np.ndarray, row_weight: np.ndarray, time_factor: int) -> np.ndarray:
    """Average per-row quantities (UVW, TIME_CENTROID) over time bins.

    Parameters
    ----------
    values : ndarray, float, shape (n_time, n_bl, k)
        Per-row values (e.g. UVW with ``k = 3``, metres).
    row_weight : ndarray, float, shape (n_time, n_bl)
        Weight of each input row: the sum of its unflagged sample weights. A bin
        whose rows all have zero weight gets the plain mean of its finite values
        (NaN if none: rows missing from the source carry NaN).
    time_factor : int

    Returns
    -------
    ndarray, float64, shape (ceil(n_time / time_factor), n_bl, k)
    """
    if values.ndim != 3 or values.shape[:2] != row_weight.shape:
        raise ValueError(f"values shape {values.shape} does not match row weights "
                         f"{row_weight.shape}")
    if int(time_factor) < 1:
        raise ValueError(f"time_factor must be >= 1, got {time_factor}")
    return _average_rows(np.ascontiguousarray(values, dtype=np.float64),
                         np.ascontiguousarray(row_weight, dtype=np.float64), int(time_factor))


def sum_effective_time(exposure: np.ndarray, row_used: np.ndarray, time_factor: int) -> np.ndarray:
    """Sum EFFECTIVE_INTEGRATION_TIME over time bins, counting only rows in use.

    Parameters
    ----------
    exposure : ndarray, float, shape (n_time, n_bl)
        Effective integration time of the input rows, s.
    row_used : ndarray of bool, shape (n_time, n_bl)
        True where the row holds any unflagged sample.
    time_factor : int

    Returns
    -------
    ndarray, float64, shape (ceil(n_time / time_factor), n_bl)
    """
    if exposure.shape != row_used.shape:
        raise ValueError(f"exposure shape {exposure.shape} does not match {row_used.shape}")
    if int(time_factor) < 1:
        raise ValueError(f"time_factor must be >= 1, got {time_factor}")
    return _sum_exposure(np.ascontiguousarray(exposure, dtype=np.float64),
                         np.ascontiguousarray(row_used, dtype=np.bool_), int(time_factor))


def _check_block(vis, flag, weight, time_factor, chan_factor) -> None:
    if vis.ndim != 4:
        raise ValueError(f"vis must have 4 dims (time, baseline, chan, pol), got {vis.ndim}")
    if flag.shape != vis.shape or weight.shape != vis.shape:
        raise ValueError(
            f"shapes differ: vis {vis.shape}, flag {flag.shape}, weight {weight.shape}")
    if flag.dtype != np.bool_:
        raise ValueError(f"flag must be bool, got {flag.dtype}")
    if int(time_factor) < 1 or int(chan_factor) < 1:
        raise ValueError(f"averaging factors must be >= 1, got {time_factor}, {chan_factor}")


@njit
def _average_vis(vis, flag, weight, ft, fc):
    nt, nbl, nc, npol = vis.shape
    nto = (nt + ft - 1) // ft
    nco = (nc + fc - 1) // fc
    out_v = np.zeros((nto, nbl, nco, npol), np.complex64)
    out_f = np.zeros((nto, nbl, nco, npol), np.bool_)
    out_w = np.zeros((nto, nbl, nco, npol), np.float32)
    acc_re = np.zeros((nco, npol))
    acc_im = np.zeros((nco, npol))
    acc_w = np.zeros((nco, npol))
    all_re = np.zeros((nco, npol))
    all_im = np.zeros((nco, npol))
    all_w = np.zeros((nco, npol))
    count = np.zeros((nco, npol), np.int64)
    n_all = np.zeros((nco, npol), np.int64)
    for to in range(nto):
        t0 = to * ft
        t1 = min(t0 + ft, nt)
        for b in range(nbl):
            acc_re[:] = 0.0
            acc_im[:] = 0.0
            acc_w[:] = 0.0
            all_re[:] = 0.0
            all_im[:] = 0.0
            all_w[:] = 0.0
            count[:] = 0
            n_all[:] = 0
            for t in range(t0, t1):
                for c in range(nc):
                    co = c // fc
                    for p in range(npol):
                        w = np.float64(weight[t, b, c, p])
                        v = vis[t, b, c, p]
                        all_re[co, p] += w * v.real
                        all_im[co, p] += w * v.imag
                        all_w[co, p] += w
                        n_all[co, p] += 1
                        if not flag[t, b, c, p]:
                            acc_re[co, p] += w * v.real
                            acc_im[co, p] += w * v.imag
                            acc_w[co, p] += w
                            count[co, p] += 1
            for co in range(nco):
                for p in range(npol):
                    if count[co, p] > 0:
                        if acc_w[co, p] > 0.0:
                            out_v[to, b, co, p] = complex(acc_re[co, p] / acc_w[co, p],
                                                          acc_im[co, p] / acc_w[co, p])
                        out_w[to, b, co, p] = acc_w[co, p]
                    else:
                        out_f[to, b, co, p] = True
                        if all_w[co, p] > 0.0:
                            out_v[to, b, co, p] = complex(all_re[co, p] / all_w[co, p],
                                                          all_im[co, p] / all_w[co, p])
                        out_w[to, b, co, p] = all_w[co, p]
    return out_v, out_f, out_w


@njit
def _average_rows(values, rw, ft):
    nt, nbl, k = values.shape
    nto = (nt + ft - 1) // ft
    out = np.zeros((nto, nbl, k))
    for to in range(nto):
        t0 = to * ft
        t1 = min(t0 + ft, nt)
        for b in range(nbl):
            wsum = 0.0
            for t in range(t0, t1):
                if rw[t, b] > 0.0:
                    wsum += rw[t, b]
            for j in range(k):
                s = 0.0
                if wsum > 0.0:
                    # rows with zero weight are skipped, not multiplied by zero: rows
                    # missing from the source hold NaN
                    for t in range(t0, t1):
                        if rw[t, b] > 0.0:
                            s += rw[t, b] * values[t, b, j]
                    out[to, b, j] = s / wsum
                else:
                    n = 0
                    for t in range(t0, t1):
                        if np.isfinite(values[t, b, j]):
                            s += values[t, b, j]
                            n += 1
                    out[to, b, j] = s / n if n > 0 else np.nan
    return out


@njit
def _sum_exposure(exposure, used, ft):
    nt, nbl = exposure.shape
    nto = (nt + ft - 1) // ft
    out = np.zeros((nto, nbl))
    for t in range(nt):
        to = t // ft
        for b in range(nbl):
            if used[t, b]:
                out[to, b] += exposure[t, b]
    return out
