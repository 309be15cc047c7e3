"""Flagging kernels: robust (MAD) outlier flagging, and the public RFI flagging API.

This module is the entry point for the ``flag`` stage:

* :func:`mad_flag` - iterated median-absolute-deviation outlier flagging of any
  array, with statistics per plane, per line or over everything;
* :func:`rfi_flag` - AOFlagger-style RFI detection of a (time, baseline, channel,
  polarisation) visibility block (:mod:`daskcal.kernels.rfi_strategy`);
* the building blocks, for custom strategies: :func:`sumthreshold`,
  :func:`sumthreshold_pass`, :func:`sir_operator`, :func:`sir_plane`
  (:mod:`daskcal.kernels.sumthreshold`), :func:`masked_smooth`
  (:mod:`daskcal.kernels.rfi_background`) and :func:`rfi_flag_planes`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.lib.array_utils import normalize_axis_tuple
from numpy.typing import NDArray

from daskcal.kernels._jit import njit
from daskcal.kernels._robust import MAD_TO_SIGMA, _median_mad
from daskcal.kernels.rfi_background import masked_smooth
from daskcal.kernels.rfi_strategy import polarization_groups, rfi_flag, rfi_flag_planes
from daskcal.kernels.sumthreshold import (
    DEFAULT_WINDOWS,
    sir_operator,
    sir_plane,
    sumthreshold,
    sumthreshold_pass,
)

__all__ = [
    "DEFAULT_WINDOWS",
    "MAD_TO_SIGMA",
    "mad_flag",
    "masked_smooth",
    "polarization_groups",
    "rfi_flag",
    "rfi_flag_planes",
    "sir_operator",
    "sir_plane",
    "sumthreshold",
    "sumthreshold_pass",
]


@njit
def _mad_flag_groups(values, flags, threshold, max_iterations, out):
    """Iterated MAD flagging of each row of C-ordered (n_group, n_sample) arrays."""
    n_group, n_sample = values.shape
    buf = np.empty(n_sample, np.float64)
    for g in range(n_group):
        row = values[g]
        flagged = out[g]
        for s in range(n_sample):
            flagged[s] = flags[g, s]
        for _ in range(max_iterations):
            cnt = 0
            for s in range(n_sample):
                if not flagged[s]:
                    buf[cnt] = row[s]
                    cnt += 1
            if cnt == 0:
                break
            med, mad = _median_mad(buf[:cnt])
            if not mad > 0.0:
                break
            limit = threshold * MAD_TO_SIGMA * mad
            new = 0
            for s in range(n_sample):
                if not flagged[s] and abs(row[s] - med) > limit:
                    flagged[s] = True
                    new += 1
            if new == 0:
                break


def mad_flag(
    values: NDArray,
    flags: NDArray | None = None,
    *,
    threshold: float = 5.0,
    axis: int | Sequence[int] | None = None,
    max_iterations: int = 10,
) -> NDArray:
    """Flag robust outliers: ``|x - median| > threshold * 1.4826 * MAD``, iterated.

    In each iteration the median and the median absolute deviation (MAD) are
    computed from the samples not flagged so far, and every unflagged sample
    further than ``threshold`` robust standard deviations from the median is
    flagged. Iteration stops when nothing new is flagged, after
    ``max_iterations``, or when the MAD is zero (a constant majority, where a
    scale cannot be estimated; nothing more is flagged then).

    Parameters
    ----------
    values : ndarray, any shape
        Real values, or complex values (their amplitudes are used). Non-finite
        values are treated as flagged.
    flags : ndarray of bool, shape of ``values``, or None
        Input flags: excluded from the statistics, returned flagged.
    threshold : float
        Clipping level ``k`` in robust standard deviations (> 0); default 5.
    axis : int, sequence of int or None
        Axes over which one median/MAD is computed; the remaining axes index
        independent groups. None (default) uses the whole array; e.g. for
        (n_time, n_chan) planes ``axis=(-2, -1)`` is per plane, ``axis=0`` per
        channel (over time), ``axis=1`` per time step (over channels).
    max_iterations : int
        Largest number of clip-and-recompute rounds (>= 1); default 10.

    Returns
    -------
    ndarray of bool, shape of ``values``
        ``flags`` OR the outliers.
    """
    values = np.asarray(values)
    if values.ndim == 0:
        raise ValueError("values must have at least one dimension")
    if not (np.issubdtype(values.dtype, np.floating) or np.issubdtype(values.dtype,
                                                                      np.complexfloating)):
        raise ValueError(f"values must be real or complex floating point, got {values.dtype}")
    if flags is None:
        flags = np.zeros(values.shape, np.bool_)
    flags = np.asarray(flags)
    if flags.dtype != np.bool_ or flags.shape != values.shape:
        raise ValueError("flags must be a bool array of the same shape as values")
    if not (math.isfinite(threshold) and threshold > 0):
        raise ValueError(f"threshold must be finite and > 0, got {threshold!r}")
    if int(max_iterations) != max_iterations or max_iterations < 1:
        raise ValueError(f"max_iterations must be an integer >= 1, got {max_iterations!r}")
    if axis is None:
        axes = tuple(range(values.ndim))
    else:
        try:
            axes = tuple(normalize_axis_tuple(axis, values.ndim))
        except (np.exceptions.AxisError, TypeError) as err:
            raise ValueError(f"invalid axis {axis!r} for {values.ndim}-D values") from err
    real = np.abs(values) if np.iscomplexobj(values) else values
    real = real.astype(np.float64)
    bad = flags | ~np.isfinite(real)
    keep = [a for a in range(values.ndim) if a not in axes]
    order = keep + list(axes)
    moved = np.transpose(real, order)
    group_shape = moved.shape[: len(keep)]
    n_sample = int(np.prod(moved.shape[len(keep):]))
    v = np.ascontiguousarray(moved).reshape(-1, n_sample)
    f = np.ascontiguousarray(np.transpose(bad, order)).reshape(v.shape)
    out = np.empty(v.shape, np.bool_)
    if n_sample > 0:
        _mad_flag_groups(v, f, float(threshold), int(max_iterations), out)
    out = out.reshape(*group_shape, *moved.shape[len(keep):])
    return np.transpose(out, np.argsort(order))
