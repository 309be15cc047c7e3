"""Robust location and scale kernels shared by the flaggers (private)."""

from __future__ import annotations

import math

import numpy as np

from daskcal.kernels._jit import njit

#: Normal-consistency factor of the median absolute deviation: sigma = 1.4826 * MAD.
MAD_TO_SIGMA = 1.482602218505602


@njit
def _median_mad(buf):
    """Median and median absolute deviation of a float64 work buffer (reordered in place)."""
    med = np.median(buf)
    for i in range(buf.shape[0]):
        buf[i] = abs(buf[i] - med)
    return med, np.median(buf)


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
        if not fmask[i]:
            buf[cnt] = flat[i]
            cnt += 1
    if cnt < 64 and stride > 1:
        buf = np.empty(n, np.float64)
        cnt = 0
        for i in range(n):
            if not fmask[i]:
                buf[cnt] = flat[i]
                cnt += 1
    if cnt == 0:
        return np.nan
    _, mad = _median_mad(buf[:cnt])
    return MAD_TO_SIGMA * mad
