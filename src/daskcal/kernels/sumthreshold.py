"""SumThreshold and the scale-invariant rank (SIR) operator on time x frequency planes.

The two morphological operators of AOFlagger's RFI detection, written from their
published definitions:

* **SumThreshold** (Offringa et al. 2010, MNRAS 405, 155): for a window of ``M``
  consecutive samples along one axis, the window is flagged when the sum of its
  *usable* samples exceeds ``count * chi_M`` in absolute value, with
  ``chi_M = chi_1 / rho ** log2(M)``. Windows ``M = 1, 2, 4, ..., 64`` are applied
  in order along one axis, each seeing the flags of the previous window.
* **SIR** (Offringa, van de Gronde & Roerdink 2012, A&A 539, A95): a sample is
  flagged when it lies in an interval in which at most a fraction ``eta`` of the
  samples are unflagged. Computed in O(N) per line with prefix sums.

Conventions
-----------
Planes are ``(n_time, n_chan)``; a stack of planes is ``(..., n_time, n_chan)``.
*Usable* samples are those not flagged when a window pass starts. Excluding a
flagged sample and comparing with ``count * chi_M`` is the same as the paper's
"replace flagged values by the threshold" (``sum + n_flagged * chi_M > M * chi_M``)
for positive excursions; excluding it also keeps negative excursions symmetric.
A window with no usable sample is never flagged. In :func:`sumthreshold` the time
and frequency directions are run independently from the same input flags and ORed,
so the result does not depend on which direction goes first; the RFI strategy
(:mod:`daskcal.kernels.rfi_strategy`) uses the interleaved order of AOFlagger
instead (``_st_plane_interleaved``: each window length along time, then along
frequency, on one shared mask).

Window sums use O(1) sliding updates in the dtype of the values (float32 planes
run twice as fast as float64 ones) and are recomputed exactly, in float64, every
512 positions so that rounding cannot drift along long lines; every kernel is
O(n_time * n_chan) per window length. Scans along the time axis are vectorised
across channels; the frequency direction works on a transposed copy so that it
is vectorised across time as well. The SIR uses exact integer prefix sums.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

import numpy as np
from numpy.typing import NDArray

from daskcal.kernels._jit import njit

__all__ = [
    "DEFAULT_WINDOWS",
    "sir_operator",
    "sir_plane",
    "sumthreshold",
    "sumthreshold_pass",
    "sumthreshold_thresholds",
]

#: Window lengths M of the default SumThreshold (samples).
DEFAULT_WINDOWS: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)

#: Largest denominator used to represent ``eta`` exactly in the SIR operator.
_SIR_MAX_DENOMINATOR = 10_000

#: SumThreshold sliding sums are recomputed exactly every this many window positions.
_RESYNC = 512


# --------------------------------------------------------------------------- kernels


@njit
def _window_sums(values, flags, start, window, total, count):
    """Exact (float64) sums and counts of the usable samples of rows ``[start, start+window)``.

    Accumulated row by row (vectorised over columns, in the same order per column
    as a column-wise loop).
    """
    m = values.shape[1]
    acc = np.zeros(m, np.float64)
    cnt = np.zeros(m, np.float64)
    for t in range(start, start + window):
        v_row = values[t]
        f_row = flags[t]
        for j in range(m):
            usable = not f_row[j]
            acc[j] += v_row[j] if usable else 0.0
            cnt[j] += 1.0 if usable else 0.0
    for j in range(m):
        total[j] = acc[j]
        count[j] = cnt[j]


@njit
def _st_pass_core(values, flags_in, flags_out, window, threshold, mirror, use_mirror):
    """One SumThreshold pass along axis 0 (see :func:`_st_pass_rows`).

    ``flags_out`` must not overlap ``flags_in`` (an overlap also stops LLVM from
    vectorising the loop over columns). If ``use_mirror``, every sample newly
    flagged at ``[t, j]`` is also set at ``mirror[j, t]``, so that a transposed
    copy of the mask stays in step.
    """
    n, m = values.shape
    if window > n:
        flags_out[:, :] = flags_in
        return
    dtype = values.dtype
    zero = values.dtype.type(0.0)
    one = values.dtype.type(1.0)
    thr = values.dtype.type(threshold)
    total = np.zeros(m, dtype)
    count = np.zeros(m, dtype)
    until = np.zeros(m, np.int32)
    last_start = n - window
    for t in range(last_start + 1):
        if t % _RESYNC == 0:
            # exact sums of rows [t, t + window - 1), the next row is added below
            _window_sums(values, flags_in, t, window - 1, total, count)
        t_end = t + window - 1
        v_end = values[t_end]
        f_end = flags_in[t_end]
        v_first = values[t]
        f_first = flags_in[t]
        f_out = flags_out[t]
        t_stop = np.int32(t + window)
        t_now = np.int32(t)
        n_new = 0
        for j in range(m):
            usable = not f_end[j]
            tot = total[j] + (v_end[j] if usable else zero)
            cnt = count[j] + (one if usable else zero)
            hit = (cnt > zero) & (abs(tot) > cnt * thr)
            stop = t_stop if hit else until[j]
            until[j] = stop
            new = t_now < stop
            n_new += new
            f_out[j] = f_first[j] | new
            first_usable = not f_first[j]
            total[j] = tot - (v_first[j] if first_usable else zero)
            count[j] = cnt - (one if first_usable else zero)
        if use_mirror and n_new > 0:
            for j in range(m):
                if f_out[j]:
                    mirror[j, t] = True
    for t in range(last_start + 1, n):
        t_now = np.int32(t)
        for j in range(m):
            new = t_now < until[j]
            flags_out[t, j] = flags_in[t, j] | new
            if use_mirror and new:
                mirror[j, t] = True


@njit
def _st_pass_rows(values, flags_in, flags_out, window, threshold):
    """One SumThreshold pass along axis 0 of a C-ordered 2-D plane, vectorised on axis 1.

    ``flags_out[t, j]`` is ``flags_in[t, j]`` or "some window ``[s, s + window)``
    containing ``t`` has ``|sum of usable| > count * threshold``". Sums run in the
    dtype of ``values`` (float32 is twice as fast) and are recomputed exactly every
    ``_RESYNC`` window positions so that rounding cannot drift along long lines.
    """
    _st_pass_core(values, flags_in, flags_out, window, threshold, flags_out, False)


@njit
def _st_rows(values, flags_in, windows, thresholds, flags_out, scratch):
    """All window lengths along axis 0, each pass excluding the previous pass's flags.

    ``scratch`` is a work array like ``flags_out``; the passes ping-pong between
    the two so that the last one writes ``flags_out``.
    """
    n_win = windows.shape[0]
    src = flags_in
    for k in range(n_win):
        dst = flags_out if (n_win - 1 - k) % 2 == 0 else scratch
        _st_pass_rows(values, src, dst, windows[k], thresholds[k])
        src = dst


@njit
def _transpose_into(src, dst):
    """Cache-blocked ``dst[:, :] = src.T`` for 2-D arrays."""
    n, m = src.shape
    block = 32
    for i0 in range(0, n, block):
        i1 = min(i0 + block, n)
        for j0 in range(0, m, block):
            j1 = min(j0 + block, m)
            for i in range(i0, i1):
                for j in range(j0, j1):
                    dst[j, i] = src[i, j]


@njit
def _or_transposed_into(src_t, dst):
    """Cache-blocked ``dst |= src_t.T`` for 2-D bool arrays."""
    n, m = dst.shape
    block = 32
    for j0 in range(0, m, block):
        j1 = min(j0 + block, m)
        for i0 in range(0, n, block):
            i1 = min(i0 + block, n)
            for j in range(j0, j1):
                for i in range(i0, i1):
                    dst[i, j] = dst[i, j] | src_t[j, i]


@njit
def _st_plane(values, values_t, flags_in, flags_in_t, windows, thresholds, do_time, do_freq,
              flags_out, work, work_t, result_t):
    """Full SumThreshold of one (n_time, n_chan) plane, time and frequency ORed.

    ``values_t`` / ``flags_in_t`` are the (n_chan, n_time) transposes (used only
    if ``do_freq``); ``work`` is like ``flags_out``, ``work_t`` and ``result_t``
    like ``flags_in_t``.
    """
    if do_time:
        _st_rows(values, flags_in, windows, thresholds, flags_out, work)
    else:
        flags_out[:, :] = flags_in
    if do_freq:
        _st_rows(values_t, flags_in_t, windows, thresholds, result_t, work_t)
        _or_transposed_into(result_t, flags_out)


@njit
def _st_single(values, flags, mirror, threshold):
    """SumThreshold with a window of one sample, in place: ``flags |= |values| > threshold``.

    New flags are also set in the transposed ``mirror``. A one-sample window is the
    same along both axes, and its sum is exact, so this replaces the time and the
    frequency passes of ``M = 1``.
    """
    n, m = values.shape
    thr = values.dtype.type(threshold)
    for t in range(n):
        v_row = values[t]
        f_row = flags[t]
        n_new = 0
        for j in range(m):
            new = (not f_row[j]) & (abs(v_row[j]) > thr)
            n_new += new
            f_row[j] = f_row[j] | new
        if n_new > 0:
            for j in range(m):
                if f_row[j]:
                    mirror[j, t] = True


@njit
def _st_plane_interleaved(values, values_t, flags, flags_t, windows, thresholds, work, work_t):
    """SumThreshold of one plane with the directions interleaved on one shared mask.

    For each window length, the time pass and then the frequency pass run, each
    excluding everything flagged so far in *either* direction (AOFlagger's
    order). A feature found along one axis is then no longer summed by the longer
    windows of the other, which keeps those windows from spreading it onto its
    clean neighbours. ``values_t`` is the (n_chan, n_time) transpose of
    ``values``. On entry ``flags`` (n_time, n_chan) holds the input flags and
    ``flags_t`` their transpose; on return both hold the result. ``work`` and
    ``work_t`` are bool work arrays of the same shapes. Each pass writes its new
    flags into the other layout too, so no full transpose is needed; ``M = 1``
    is one elementwise pass (:func:`_st_single`).
    """
    a, a_t, b, b_t = flags, flags_t, work, work_t
    swapped = False
    for k in range(windows.shape[0]):
        if windows[k] == 1:
            _st_single(values, a, a_t, thresholds[k])
            continue
        _st_pass_core(values, a, b, windows[k], thresholds[k], a_t, True)
        _st_pass_core(values_t, a_t, b_t, windows[k], thresholds[k], b, True)
        a, a_t, b, b_t = b, b_t, a, a_t
        swapped = not swapped
    if swapped:
        flags[:, :] = a
        flags_t[:, :] = a_t


@njit
def _sir_line(flags, ignore, num, den, out, prefix, suffix_max):
    """SIR of one line with ``eta = num / den`` in exact integer arithmetic.

    Weights: flagged ``num``, unflagged ``num - den``, ignored 0. Sample ``y`` is
    flagged iff ``max_{b > y} P_b - min_{a <= y} P_a >= 0`` with prefix sums ``P``.
    """
    n = flags.shape[0]
    prefix[0] = 0
    for i in range(n):
        if ignore[i]:
            w = 0
        elif flags[i]:
            w = num
        else:
            w = num - den
        prefix[i + 1] = prefix[i] + w
    running = prefix[n]
    for y in range(n - 1, -1, -1):
        if prefix[y + 1] > running:
            running = prefix[y + 1]
        suffix_max[y] = running
    running = prefix[0]
    for y in range(n):
        if prefix[y] < running:
            running = prefix[y]
        out[y] = suffix_max[y] - running >= 0


@njit
def _sir_lines(flags, ignore, num, den, out):
    """SIR along the last axis of C-ordered (n_line, n) arrays."""
    n_line, n = flags.shape
    prefix = np.empty(n + 1, np.int64)
    suffix_max = np.empty(n, np.int64)
    for i in range(n_line):
        _sir_line(flags[i], ignore[i], num, den, out[i], prefix, suffix_max)


# --------------------------------------------------------------------------- validation


def _as_real_values(values: NDArray, name: str = "values") -> NDArray:
    values = np.asarray(values)
    if values.dtype not in (np.float32, np.float64):
        raise ValueError(f"{name} must be float32 or float64, got {values.dtype}")
    return values


def _as_flags(flags: NDArray | None, shape: tuple[int, ...], name: str = "flags") -> NDArray:
    if flags is None:
        return np.zeros(shape, np.bool_)
    flags = np.asarray(flags)
    if flags.dtype != np.bool_:
        raise ValueError(f"{name} must be bool, got {flags.dtype}")
    if flags.shape != shape:
        raise ValueError(f"{name} shape {flags.shape} does not match values shape {shape}")
    return flags


def _check_windows(windows: Sequence[int]) -> NDArray:
    arr = np.asarray(windows)
    if arr.ndim != 1 or arr.size == 0 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"windows must be a non-empty sequence of integers, got {windows!r}")
    if np.any(arr < 1):
        raise ValueError(f"window lengths must be >= 1, got {windows!r}")
    return arr.astype(np.int64)


def sumthreshold_thresholds(
    threshold: float, windows: Sequence[int] = DEFAULT_WINDOWS, rho: float = 1.5
) -> NDArray:
    """Per-window thresholds ``chi_M = chi_1 / rho ** log2(M)``.

    Parameters
    ----------
    threshold : float
        ``chi_1``, the threshold of a single sample (units of the values).
    windows : sequence of int
        Window lengths ``M`` (samples).
    rho : float
        Threshold decrease per doubling of the window (>= 1; 1.5 as in the paper).

    Returns
    -------
    ndarray of float64, shape (len(windows),)
    """
    if not (math.isfinite(threshold) and threshold > 0):
        raise ValueError(f"threshold must be finite and > 0, got {threshold!r}")
    if not (math.isfinite(rho) and rho >= 1.0):
        raise ValueError(f"rho must be finite and >= 1, got {rho!r}")
    win = _check_windows(windows)
    return threshold / rho ** np.log2(win.astype(np.float64))


# --------------------------------------------------------------------------- public API


def sumthreshold_pass(
    values: NDArray,
    flags: NDArray | None,
    window: int,
    threshold: float,
    axis: int = 0,
) -> NDArray:
    """One SumThreshold pass with one window length along one axis of a plane.

    Parameters
    ----------
    values : ndarray of float32 or float64, shape (n_time, n_chan)
        Residual values (e.g. amplitude minus a smooth background), any unit.
    flags : ndarray of bool, shape (n_time, n_chan), or None
        Samples to exclude from the sums; they stay flagged.
    window : int
        Window length ``M`` (samples, >= 1).
    threshold : float
        Per-sample threshold ``chi_M`` (units of ``values``, > 0).
    axis : {0, 1}
        0 slides the window along time, 1 along frequency.

    Returns
    -------
    ndarray of bool, shape (n_time, n_chan)
        ``flags`` OR every sample in a window ``[s, s + M)`` whose usable samples
        (count ``n >= 1``) satisfy ``|sum| > n * threshold``.
    """
    values = _as_real_values(values)
    if values.ndim != 2:
        raise ValueError(f"values must be 2-D (n_time, n_chan), got shape {values.shape}")
    flags = _as_flags(flags, values.shape)
    (window,) = _check_windows([window])
    if not (math.isfinite(threshold) and threshold > 0):
        raise ValueError(f"threshold must be finite and > 0, got {threshold!r}")
    if axis not in (0, 1, -1, -2):
        raise ValueError(f"axis must be 0 or 1, got {axis!r}")
    if axis in (1, -1):
        values, flags = values.T, flags.T
    values = np.ascontiguousarray(values)
    flags = np.ascontiguousarray(flags)
    out = np.empty_like(flags)
    _st_pass_rows(values, flags, out, int(window), float(threshold))
    return out.T if axis in (1, -1) else out


def sumthreshold(
    values: NDArray,
    flags: NDArray | None = None,
    *,
    threshold: float | NDArray,
    rho: float = 1.5,
    windows: Sequence[int] = DEFAULT_WINDOWS,
    axes: Sequence[int] = (0, 1),
) -> NDArray:
    """Combinatorial SumThreshold over all window lengths, along time and frequency.

    Along each axis, the passes ``M = windows[0], windows[1], ...`` run in order,
    each excluding the flags of the previous one (so flags grow from strong,
    short features into weaker, longer ones). The time and frequency results are
    computed from the same input ``flags`` and ORed.

    Parameters
    ----------
    values : ndarray of float32 or float64, shape (..., n_time, n_chan)
        Residual planes (smooth background removed), any unit.
    flags : ndarray of bool, same shape as ``values``, or None
        Samples excluded from the sums (missing data, earlier flags); they stay
        flagged.
    threshold : float or ndarray of float, shape (...)
        ``chi_1``, the single-sample threshold in units of ``values`` (one per
        plane if an array).
    rho : float
        ``chi_M = chi_1 / rho ** log2(M)``; default 1.5.
    windows : sequence of int
        Window lengths ``M`` in samples; default ``(1, 2, 4, 8, 16, 32, 64)``.
    axes : sequence of {0, 1}
        Directions within the plane: 0 = time, 1 = frequency; default both.

    Returns
    -------
    ndarray of bool, shape (..., n_time, n_chan)
    """
    values = _as_real_values(values)
    if values.ndim < 2:
        raise ValueError(f"values must be (..., n_time, n_chan), got shape {values.shape}")
    flags = _as_flags(flags, values.shape)
    axes = tuple(int(a) for a in axes)
    if not axes or any(a not in (0, 1) for a in axes):
        raise ValueError(f"axes must be a non-empty subset of (0, 1), got {axes!r}")
    win = _check_windows(windows)
    stack_shape = values.shape[:-2]
    chi1 = np.broadcast_to(np.asarray(threshold, np.float64), stack_shape)
    plane_shape = values.shape[-2:]
    v = np.ascontiguousarray(values).reshape((-1, *plane_shape))
    f = np.ascontiguousarray(flags).reshape((-1, *plane_shape))
    c = chi1.reshape(-1)
    out = np.empty(f.shape, np.bool_)
    n_time, n_chan = plane_shape
    work = np.empty(plane_shape, np.bool_)
    values_t = np.empty((n_chan, n_time), v.dtype)
    flags_t, work_t, result_t = (np.empty((n_chan, n_time), np.bool_) for _ in range(3))
    do_freq = 1 in axes
    for i in range(v.shape[0]):
        thresholds = sumthreshold_thresholds(float(c[i]), win, rho)
        if do_freq:
            _transpose_into(v[i], values_t)
            _transpose_into(f[i], flags_t)
        _st_plane(v[i], values_t, f[i], flags_t, win, thresholds, 0 in axes, do_freq,
                  out[i], work, work_t, result_t)
    return out.reshape(values.shape)


def _eta_fraction(eta: float) -> tuple[int, int]:
    if not (math.isfinite(eta) and 0.0 <= eta <= 1.0):
        raise ValueError(f"eta must be in [0, 1], got {eta!r}")
    frac = Fraction(eta).limit_denominator(_SIR_MAX_DENOMINATOR)
    return frac.numerator, frac.denominator


def sir_operator(
    flags: NDArray,
    eta: float = 0.2,
    *,
    axis: int = -1,
    ignore: NDArray | None = None,
) -> NDArray:
    """Scale-invariant rank operator along one axis.

    Sample ``y`` is flagged when some interval ``[a, b)`` containing it has at
    most ``eta * (n_flagged + n_unflagged)`` unflagged samples, counting only
    samples that are not ignored. Equivalently, with weights ``eta`` (flagged),
    ``eta - 1`` (unflagged) and 0 (ignored), some interval containing ``y`` has a
    non-negative weight sum. ``eta`` is used as the nearest fraction with
    denominator <= 10 000, so ties are decided exactly. Ignored samples are
    always returned flagged.

    Parameters
    ----------
    flags : ndarray of bool, shape (..., n, ...)
        Flags to dilate.
    eta : float
        Largest fraction of unflagged samples in an interval that still gets
        flagged whole, in [0, 1]; 0 returns ``flags | ignore``. Default 0.2.
    axis : int
        Axis along which intervals run (e.g. 0 = time of a (n_time, n_chan) plane).
    ignore : ndarray of bool, same shape, or None
        Samples that take no part (e.g. missing data flagged on input).

    Returns
    -------
    ndarray of bool, same shape as ``flags``
    """
    flags = np.asarray(flags)
    if flags.dtype != np.bool_:
        raise ValueError(f"flags must be bool, got {flags.dtype}")
    if flags.ndim == 0:
        raise ValueError("flags must have at least one dimension")
    ignore = _as_flags(ignore, flags.shape, "ignore")
    if not -flags.ndim <= axis < flags.ndim:
        raise ValueError(f"axis {axis} out of range for {flags.ndim}-D flags")
    num, den = _eta_fraction(eta)
    f = np.moveaxis(flags, axis, -1)
    moved_shape = f.shape
    f = np.ascontiguousarray(f).reshape(-1, moved_shape[-1])
    g = np.ascontiguousarray(np.moveaxis(ignore, axis, -1)).reshape(f.shape)
    out = np.empty_like(f)
    if f.shape[1] > 0:
        _sir_lines(f, g, num, den, out)
    return np.moveaxis(out.reshape(moved_shape), -1, axis)


def sir_plane(
    flags: NDArray,
    eta_time: float = 0.2,
    eta_freq: float = 0.2,
    *,
    ignore: NDArray | None = None,
) -> NDArray:
    """SIR along time and along frequency of (..., n_time, n_chan) planes, ORed.

    Both directions start from the same ``flags``; see :func:`sir_operator`.

    Returns
    -------
    ndarray of bool, shape of ``flags``
    """
    flags = np.asarray(flags)
    if flags.ndim < 2:
        raise ValueError(f"flags must be (..., n_time, n_chan), got shape {flags.shape}")
    return sir_operator(flags, eta_time, axis=-2, ignore=ignore) | sir_operator(
        flags, eta_freq, axis=-1, ignore=ignore
    )
