"""Robust location and scale kernels shared by the flaggers (private)."""

from __future__ import annotations

import math

import numpy as np

from daskcal.kernels._jit import njit

#: Normal-consistency factor of the median absolute deviation: sigma = 1.4826 * MAD.
MAD_TO_SIGMA = 1.482602218505602


@njit
def _select_inplace(buf, k):
    """Move the ``k``-th smallest element of ``buf`` to ``buf[k]`` (quickselect, in place).

    Elements before ``k`` end up <= ``buf[k]`` and those after >= it. Median-of-three
    pivots, Hoare partitioning; no copy (``np.median`` copies its input).
    """
    lo = 0
    hi = buf.shape[0] - 1
    while hi > lo:
        mid = (lo + hi) >> 1
        if buf[mid] < buf[lo]:
            buf[mid], buf[lo] = buf[lo], buf[mid]
        if buf[hi] < buf[lo]:
            buf[hi], buf[lo] = buf[lo], buf[hi]
        if buf[hi] < buf[mid]:
            buf[hi], buf[mid] = buf[mid], buf[hi]
        pivot = buf[mid]
        i = lo
        j = hi
        while i <= j:
            while buf[i] < pivot:
                i += 1
            while buf[j] > pivot:
                j -= 1
            if i <= j:
                buf[i], buf[j] = buf[j], buf[i]
                i += 1
                j -= 1
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:
            return buf[k]
    return buf[k]


@njit
def _largest_below(buf, k):
    """Largest of ``buf[:k]`` (``k`` >= 1)."""
    out = buf[0]
    for i in range(1, k):
        if buf[i] > out:
            out = buf[i]
    return out


@njit
def _order_pair(buf, k, work):
    """The ``(k-1)``-th and ``k``-th smallest elements of ``buf`` (``1 <= k < len(buf)``).

    Floyd-Rivest style: a sorted sample brackets rank ``k`` by two pivots, one
    branch-free pass keeps the few elements between them in ``work`` (at least as
    long as ``buf``) and counts those below, and the ranks are found among the kept
    ones by quickselect; if the bracket misses (rare), quickselect on ``buf``
    itself. ``buf`` is reordered only in that case.
    """
    n = buf.shape[0]
    n_sample = int(n ** 0.6)
    if n < 1024 or n_sample < 32:
        upper = _select_inplace(buf, k)
        return _largest_below(buf, k), upper
    step = n // n_sample
    sample = np.empty(n_sample, buf.dtype)
    for i in range(n_sample):
        sample[i] = buf[i * step]
    sample.sort()
    centre = k * n_sample // n
    margin = int(2.0 * math.sqrt(n_sample)) + 2
    lo = sample[max(centre - margin, 0)]
    hi = sample[min(centre + margin, n_sample - 1)]
    n_below = 0
    n_kept = 0
    below_max = -np.inf
    for i in range(n):
        x = buf[i]
        is_below = x < lo
        n_below += is_below
        below_max = max(below_max, x) if is_below else below_max
        work[n_kept] = x
        n_kept += (not is_below) and x <= hi
    if n_below <= k - 1 and k < n_below + n_kept:
        kept = work[:n_kept]
        upper = _select_inplace(kept, k - n_below)
        return _largest_below(kept, k - n_below), upper
    if n_below == k and n_kept > 0:
        kept = work[:n_kept]
        return below_max, _select_inplace(kept, 0)
    upper = _select_inplace(buf, k)
    return _largest_below(buf, k), upper


@njit
def _median_inplace(buf, work):
    """Median of a NaN-free 1-D buffer, as ``np.median`` (mean of the two middle values).

    ``work`` is a scratch buffer at least as long as ``buf``.
    """
    n = buf.shape[0]
    half = n // 2
    if n % 2 == 1:
        if n == 1:
            return buf[0]
        return _order_pair(buf, half, work)[1]
    lower, upper = _order_pair(buf, half, work)
    return (lower + upper) / 2.0


@njit
def _median_mad(buf):
    """Median and median absolute deviation of a float64 work buffer (reordered in place).

    Equal to ``np.median(buf)`` and ``np.median(abs(buf - median))`` for NaN-free input.
    """
    work = np.empty(buf.shape[0], buf.dtype)
    med = _median_inplace(buf, work)
    for i in range(buf.shape[0]):
        buf[i] = abs(buf[i] - med)
    return med, _median_inplace(buf, work)


@njit
def _robust_sigma(values, mask, max_samples):
    """``1.4826 * MAD`` of the unmasked samples of a C-ordered 2-D array.

    At most ``max_samples`` samples are used, taken with a constant stride in the
    flattened array (the stride is made coprime with the row length so that it
    does not fall on the same columns); if fewer than 64 unmasked samples are
    picked, all unmasked samples are used. Returns NaN if none is unmasked.
    """
    n_row, n_col = values.shape
    n = n_row * n_col
    flat = values.reshape(n)
    fmask = mask.reshape(n)
    stride = max(1, n // max_samples)
    while stride > 1 and math.gcd(stride, n_col) != 1:
        stride += 1
    buf = np.empty(n // stride + 1, np.float64)
    cnt = 0
    for i in range(0, n, stride):
        buf[cnt] = flat[i]
        cnt += 0 if fmask[i] else 1
    if cnt < 64 and stride > 1:
        buf = np.empty(n, np.float64)
        cnt = 0
        for i in range(n):
            buf[cnt] = flat[i]
            cnt += 0 if fmask[i] else 1
    if cnt == 0:
        return np.nan
    _, mad = _median_mad(buf[:cnt])
    return MAD_TO_SIGMA * mad
