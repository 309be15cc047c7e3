"""AOFlagger-style RFI detection of visibility blocks: fit, SumThreshold, repeat, SIR.

For each *polarisation group* of each baseline (by default every polarisation on
its own, as AOFlagger's generic strategy; or parallel and cross hands summed),
on the time x frequency plane:

1. **Detection statistic** ``x`` (``representation``):

   * ``"amplitude"`` (default): ``x = mean_p |V_p|`` (AOFlagger's default
     representation).
   * ``"complex"``: a smooth *complex* background ``B_p`` is fitted to each
     visibility plane ``V_p`` and ``x = sqrt(mean_p |V_p - B_p|^2)``. RFI is found
     whatever its phase relative to the sky signal (useful when polarisations
     of very different brightness share a group); where the sky fringes faster
     than the fit can follow, ``x`` tends to the amplitude. The *first* step
     always uses the amplitude: strong RFI of random phase (a persistent line at
     a band edge) would otherwise pull the unmasked complex fit far off on its
     neighbours, which would then be masked and extrapolated into.

2. **Residual** ``r = x - smooth(x)``, the background being a masked, first-order
   normalised convolution (:mod:`daskcal.kernels.rfi_background`; the complex
   background of step 1 is the same fit).
3. **Noise** ``sigma = 1.4826 MAD(r)`` of (a strided sample of) the samples not
   yet flagged.
4. **SumThreshold** on ``r`` with ``chi_1 = base_threshold * step * sigma``,
   starting from the *input* flags so that every sample is judged afresh against
   the better background. As in AOFlagger, the two directions are interleaved on
   one mask: for each window length the time pass and then the frequency pass,
   each excluding everything flagged so far in either direction. A burst found
   along frequency is then not summed again by the longer time windows, which
   would otherwise spread it onto the clean integrations next to it.
5. Steps 1-4 repeat for each ``step`` of ``sensitivity_steps`` (default 4, 2, 1):
   the flags of a step mask the background fits and the noise estimate of the
   next, so strong RFI no longer biases them when the threshold is lowest.
6. **SIR** dilation (``eta`` 0.2) along time and frequency, once per baseline,
   of the union of the groups' last-step detections (AOFlagger's order).

The dilated detections are set on every polarisation; the input
flags are kept as they are. Non-finite visibilities are treated as flagged on
input (and so come out flagged).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from daskcal.kernels._background_blocks import (
    _block_sums_real,
    _complex_block_sums,
    _complex_statistic,
    _residual_into,
)
from daskcal.kernels._jit import njit
from daskcal.kernels._robust import _robust_sigma
from daskcal.kernels.rfi_background import (
    BackgroundGrid,
    background_grid,
    fit_values,
    mask_geometry,
)
from daskcal.kernels.sumthreshold import (
    DEFAULT_WINDOWS,
    _eta_fraction,
    _or_transposed_into,
    _sir_lines,
    _st_plane_interleaved,
    _transpose_into,
    sumthreshold_thresholds,
)

__all__ = ["REPRESENTATIONS", "polarization_groups", "rfi_flag", "rfi_flag_planes"]

#: Accepted values of ``representation``.
REPRESENTATIONS: tuple[str, ...] = ("complex", "amplitude")
#: Samples used for each robust noise estimate.
_NOISE_SAMPLES = 1 << 13


# --------------------------------------------------------------------------- kernels


@njit
def _gather_amplitudes(visibility, flags, b, amp, bad):
    """Amplitudes and input mask of baseline ``b``, in one pass over the data.

    ``visibility``, ``flags`` are (n_time, n_bl, n_chan, n_pol); ``amp`` (n_pol,
    n_time, n_chan) float32 is ``|V|`` (0 where not finite) and ``bad`` (same shape,
    bool) is ``FLAG | ~isfinite(V)``.
    """
    n_t = visibility.shape[0]
    n_f = visibility.shape[2]
    n_p = visibility.shape[3]
    for t in range(n_t):
        v_row = visibility[t, b]
        f_row = flags[t, b]
        for f in range(n_f):
            for p in range(n_p):
                z = v_row[f, p]
                re = np.float64(z.real)
                im = np.float64(z.imag)
                a = np.float32(math.sqrt(re * re + im * im))
                amp[p, t, f] = a if math.isfinite(a) else np.float32(0.0)
                bad[p, t, f] = f_row[f, p] or not (math.isfinite(re) and math.isfinite(im))


@njit
def _group_amplitude(amp, bad, pols, x, mask):
    """``x = mean_q amp[pols[q]]`` (float32) and ``mask = OR_q bad[pols[q]]``."""
    k = pols.shape[0]
    n_t = amp.shape[1]
    n_f = amp.shape[2]
    inv_k = np.float32(1.0 / k)
    for t in range(n_t):
        x_row = x[t]
        m_row = mask[t]
        x_row[:] = 0.0
        m_row[:] = False
        for q in range(k):
            a_row = amp[pols[q], t]
            b_row = bad[pols[q], t]
            for f in range(n_f):
                x_row[f] += a_row[f]
                m_row[f] = m_row[f] | b_row[f]
        for f in range(n_f):
            x_row[f] *= inv_k


@njit
def _gather_planes(visibility, b, planes):
    """Copy baseline ``b`` of (n_time, n_bl, n_chan, n_pol) into (n_pol, n_time, n_chan)."""
    n_t = visibility.shape[0]
    n_f = visibility.shape[2]
    n_p = visibility.shape[3]
    for t in range(n_t):
        for f in range(n_f):
            for p in range(n_p):
                planes[p, t, f] = visibility[t, b, f, p]


@njit
def _any_into(bad, out):
    """``out = OR_p bad[p]`` for (n_pol, n_time, n_chan) ``bad``."""
    out[:, :] = bad[0]
    for p in range(1, bad.shape[0]):
        for t in range(bad.shape[1]):
            o_row = out[t]
            b_row = bad[p, t]
            for f in range(bad.shape[2]):
                o_row[f] = o_row[f] | b_row[f]


@njit
def _scatter_flags(out, b, detected, bad):
    """``out[:, b, :, p] |= detected | bad[p]`` for every polarisation ``p``."""
    n_t = out.shape[0]
    n_f = out.shape[2]
    n_p = out.shape[3]
    for t in range(n_t):
        o_row = out[t, b]
        d_row = detected[t]
        for f in range(n_f):
            d = d_row[f]
            for p in range(n_p):
                o_row[f, p] = o_row[f, p] | d | bad[p, t, f]


# --------------------------------------------------------------------------- driver


class _Workspace:
    """Buffers for one plane shape, reused across baselines, groups and steps."""

    def __init__(self, n_time: int, n_chan: int, grid: BackgroundGrid) -> None:
        shape, shape_t = (n_time, n_chan), (n_chan, n_time)
        self.x = np.empty(shape, np.float32)
        self.x_t = np.empty(shape_t, np.float32)
        self.stat = np.empty(shape, np.float32)
        self.group_amp = np.empty(shape, np.float32)
        self.group_mask = np.empty(shape, np.bool_)
        self.ignore_t = np.empty(shape_t, np.bool_)
        self.det = np.empty(shape, np.bool_)
        self.det_t = np.empty(shape_t, np.bool_)
        self.work = np.empty(shape, np.bool_)
        self.work_t = np.empty(shape_t, np.bool_)
        self.result_t = np.empty(shape_t, np.bool_)
        self.census = np.empty((*grid.coarse_shape, 3), np.float64)
        self.sums1 = np.empty((*grid.coarse_shape, 1), np.float64)
        # fit geometry of the last input mask: the polarisations of a baseline share it
        self.geom_mask = np.empty(shape, np.bool_)
        self.geom_input = None

    def input_geometry(self, mask: NDArray, grid: BackgroundGrid) -> NDArray:
        """:func:`mask_geometry` of ``self.census`` (made from the input ``mask``), cached."""
        if self.geom_input is None or not np.array_equal(mask, self.geom_mask):
            self.geom_input = mask_geometry(self.census, grid)
            self.geom_mask[:, :] = mask
        return self.geom_input


def _detect_group(amp: NDArray, ignore: NDArray, planes: NDArray | None, pols: NDArray,
                  grid: BackgroundGrid, ws: _Workspace, cfg: dict) -> NDArray:
    """Detections (n_time, n_chan) of one polarisation group before the SIR (steps 1-5).

    ``amp`` is the group's amplitude statistic and ``ignore`` its input mask;
    ``planes`` (n_pol, n_time, n_chan) complex64 are needed for the complex
    representation only. Returns ``ws.det`` (overwritten by the next call): input
    flags OR detections.
    """
    use_complex = cfg["representation"] == "complex"
    tables = (grid.idx_time, grid.frac_time, grid.idx_freq, grid.frac_freq)
    d_t, d_f = grid.block
    windows = cfg["windows"]
    _transpose_into(ignore, ws.ignore_t)
    mask = ignore
    det = ws.det
    for i_step, step in enumerate(cfg["sensitivity_steps"]):
        # the first step detects on the amplitude: strong RFI of random phase would
        # otherwise pull an unmasked complex fit far from its neighbours
        if use_complex and i_step > 0:
            sums = np.empty((*grid.coarse_shape, 2 * len(pols)), np.float64)
            _complex_block_sums(planes, pols, mask, d_t, d_f, sums, ws.census)
            geom = mask_geometry(ws.census, grid)
            coarse = fit_values(sums, ws.census, geom, grid)
            _complex_statistic(planes, pols, coarse, *tables, mask, d_t, d_f, ws.stat,
                               ws.sums1, ws.census)
            values = ws.stat
        else:
            _block_sums_real(amp, mask, d_t, d_f, ws.sums1, ws.census)
            geom = (ws.input_geometry(mask, grid) if i_step == 0
                    else mask_geometry(ws.census, grid))
            values = amp
        _residual_into(values, fit_values(ws.sums1, ws.census, geom, grid), *tables, ws.x,
                       ws.x_t)
        sigma = _robust_sigma(ws.x, mask, _NOISE_SAMPLES)
        if not (math.isfinite(sigma) and sigma > 0):
            det[:, :] = ignore
            break
        # = sumthreshold_thresholds(chi_1, windows, rho), without its per-call validation
        thresholds = (cfg["base_threshold"] * step * sigma) / cfg["rho_powers"]
        det[:, :] = ignore
        ws.det_t[:, :] = ws.ignore_t
        _st_plane_interleaved(ws.x, ws.x_t, det, ws.det_t, windows, thresholds, ws.work,
                              ws.work_t)
        mask = det
    return det


def _detect_baseline(amp: NDArray, bad: NDArray, planes: NDArray | None,
                     group_pols: list[NDArray], grid: BackgroundGrid, ws: _Workspace,
                     cfg: dict, detected: NDArray, any_bad: NDArray) -> NDArray:
    """SIR-dilated detections (n_time, n_chan) of one baseline from its amplitudes ``amp``
    and input masks ``bad`` (n_pol, n_time, n_chan); ``detected``, ``any_bad`` are work
    planes."""
    detected[:, :] = False
    for pols in group_pols:
        if len(pols) == 1:
            x, ignore = amp[pols[0]], bad[pols[0]]
        else:
            x, ignore = ws.group_amp, ws.group_mask
            _group_amplitude(amp, bad, pols, x, ignore)
        detected |= _detect_group(x, ignore, planes, pols, grid, ws, cfg)
    # one SIR of the union of the groups' detections (as AOFlagger's strategy)
    _any_into(bad, any_bad)
    return _sir_dilate(detected, any_bad, ws, cfg)


def _sir_dilate(det: NDArray, ignore: NDArray, ws: _Workspace, cfg: dict) -> NDArray:
    """SIR along frequency (rows) and time (columns) of ``det``, ORed, minus ``ignore``."""
    out = np.empty_like(det)
    num, den = cfg["eta_freq"]
    _sir_lines(det, ignore, num, den, out)
    _transpose_into(det, ws.work_t)
    _transpose_into(ignore, ws.ignore_t)
    num, den = cfg["eta_time"]
    _sir_lines(ws.work_t, ws.ignore_t, num, den, ws.result_t)
    _or_transposed_into(ws.result_t, out)
    return out & ~ignore


def polarization_groups(pol_groups: str | Sequence[Sequence[int]], n_pol: int
                        ) -> list[tuple[int, ...]]:
    """Resolve ``pol_groups`` to tuples of polarisation indices.

    Parameters
    ----------
    pol_groups : {"each", "stokes", "all"} or sequence of sequences of int
        ``"each"``: every polarisation alone (AOFlagger's generic strategy);
        ``"stokes"``: parallel hands together and cross hands together, i.e.
        ``[(0, 3), (1, 2)]`` for 4 polarisations in MS order (XX XY YX YY or
        RR RL LR LL), ``[(0, 1)]`` for 2; ``"all"``: one group of everything.
    n_pol : int
        Number of polarisations.
    """
    if isinstance(pol_groups, str):
        if pol_groups == "each":
            return [(p,) for p in range(n_pol)]
        if pol_groups == "all":
            return [tuple(range(n_pol))]
        if pol_groups == "stokes":
            return [(0, 3), (1, 2)] if n_pol == 4 else [tuple(range(n_pol))]
        raise ValueError(f"pol_groups must be 'each', 'stokes', 'all' or index groups, "
                         f"got {pol_groups!r}")
    groups = [tuple(int(p) for p in g) for g in pol_groups]
    if not groups or any(not g for g in groups):
        raise ValueError(f"pol_groups must be non-empty groups of indices, got {pol_groups!r}")
    if any(not 0 <= p < n_pol for g in groups for p in g):
        raise ValueError(f"pol_groups {groups} out of range for {n_pol} polarisations")
    return groups


def _config(*, base_threshold: float, rho: float, windows: Sequence[int],
            sensitivity_steps: Sequence[float], smoothing_sigma: tuple[float, float],
            fit_order: int, representation: str, sir_eta: float | tuple[float, float]) -> dict:
    """Validate the strategy parameters once."""
    if not (math.isfinite(base_threshold) and base_threshold > 0):
        raise ValueError(f"base_threshold must be finite and > 0, got {base_threshold!r}")
    win = np.asarray(windows)
    sumthreshold_thresholds(1.0, windows, rho)  # validates windows and rho
    steps = [float(s) for s in sensitivity_steps]
    if not steps or not all(math.isfinite(s) and s > 0 for s in steps):
        raise ValueError(f"sensitivity_steps must be positive numbers, got {sensitivity_steps!r}")
    if representation not in REPRESENTATIONS:
        raise ValueError(f"representation must be one of {REPRESENTATIONS}, got "
                         f"{representation!r}")
    eta_t, eta_f = (sir_eta, sir_eta) if np.isscalar(sir_eta) else tuple(sir_eta)
    background_grid((1, 1), smoothing_sigma, None, fit_order)  # validates sigma/order
    return {
        "base_threshold": float(base_threshold), "rho": float(rho),
        "windows": win.astype(np.int64), "sensitivity_steps": steps,
        "rho_powers": float(rho) ** np.log2(win.astype(np.float64)),
        "sigma": (float(smoothing_sigma[0]), float(smoothing_sigma[1])),
        "fit_order": int(fit_order), "representation": representation,
        "eta_time": _eta_fraction(float(eta_t)), "eta_freq": _eta_fraction(float(eta_f)),
    }


_STRATEGY_DOC = """
    base_threshold : float
        ``chi_1`` of the last step in units of the robust noise of the residual;
        default 7.0.
    rho : float
        SumThreshold ``chi_M = chi_1 / rho ** log2(M)``; default 1.5.
    windows : sequence of int
        SumThreshold window lengths in samples; default ``(1, 2, 4, ..., 64)``.
    sensitivity_steps : sequence of float
        Threshold multipliers of the successive fit/threshold steps, the last
        normally 1; default ``(4.0, 2.0, 1.0)``.
    smoothing_sigma : (float, float)
        Gaussian-equivalent widths (time samples, channels) of the background
        fit; default ``(6.0, 2.5)``: narrow in frequency, where a bright source
        off the phase centre fringes fastest on long baselines, wider in time so
        that short broadband bursts are not absorbed by the fit.
    fit_order : {0, 1}
        Background fit: local constant (0) or local plane (1, default).
    representation : {"complex", "amplitude"}
        Detection statistic (module docstring); default ``"amplitude"``.
    sir_eta : float or (float, float)
        SIR aggressiveness (time, frequency); default 0.2.
"""

def _document_strategy(func):
    """Insert the shared strategy parameter docs at ``{strategy}`` of the docstring."""
    func.__doc__ = func.__doc__.replace("{strategy}", _STRATEGY_DOC.strip("\n").lstrip())
    return func


_DEFAULTS = {
    "base_threshold": 7.0, "rho": 1.5, "windows": DEFAULT_WINDOWS,
    "sensitivity_steps": (4.0, 2.0, 1.0), "smoothing_sigma": (6.0, 2.5), "fit_order": 1,
    "representation": "amplitude", "sir_eta": 0.2,
}


@_document_strategy
def rfi_flag_planes(
    planes: NDArray,
    flags: NDArray | None = None,
    *,
    base_threshold: float = 7.0,
    rho: float = 1.5,
    windows: Sequence[int] = DEFAULT_WINDOWS,
    sensitivity_steps: Sequence[float] = (4.0, 2.0, 1.0),
    smoothing_sigma: tuple[float, float] = (6.0, 2.5),
    fit_order: int = 1,
    representation: str = "amplitude",
    sir_eta: float | tuple[float, float] = 0.2,
) -> NDArray:
    """Detect RFI on one group of time x frequency planes (one baseline).

    Parameters
    ----------
    planes : ndarray, shape (n_time, n_chan) or (k, n_time, n_chan)
        Visibilities (complex64/complex128) or real values (float32/float64,
        taken as complex with zero imaginary part) of the ``k`` polarisations that
        are combined into one detection statistic.
    flags : ndarray of bool, shape of ``planes`` or (n_time, n_chan), or None
        Input flags, excluded from every sum and fit (ORed over the ``k`` planes).
    {strategy}

    Returns
    -------
    ndarray of bool, shape (n_time, n_chan)
        Input flags (ORed over planes) OR detections.
    """
    planes = np.asarray(planes)
    if planes.ndim == 2:
        planes = planes[None]
    if planes.ndim != 3 or min(planes.shape) < 1:
        raise ValueError(f"planes must be (n_time, n_chan) or (k, n_time, n_chan), "
                         f"got shape {planes.shape}")
    if planes.dtype not in (np.complex64, np.complex128, np.float32, np.float64):
        raise ValueError(f"planes must be complex or float, got {planes.dtype}")
    planes = np.ascontiguousarray(planes, np.complex64)
    if flags is None:
        flags = np.zeros(planes.shape, np.bool_)
    flags = np.asarray(flags)
    if flags.dtype != np.bool_:
        raise ValueError(f"flags must be bool, got {flags.dtype}")
    if flags.shape == planes.shape[1:]:
        flags = np.broadcast_to(flags, planes.shape)
    if flags.shape != planes.shape:
        raise ValueError(f"flags shape {flags.shape} does not match planes {planes.shape}")
    cfg = _config(base_threshold=base_threshold, rho=rho, windows=windows,
                  sensitivity_steps=sensitivity_steps, smoothing_sigma=smoothing_sigma,
                  fit_order=fit_order, representation=representation, sir_eta=sir_eta)
    k, n_time, n_chan = planes.shape
    grid = background_grid((n_time, n_chan), cfg["sigma"], None, cfg["fit_order"])
    ws = _Workspace(n_time, n_chan, grid)
    # the planes seen as one baseline of a (n_time, 1, n_chan, k) block
    block = np.moveaxis(planes, 0, -1)[:, None]
    amp = np.empty((k, n_time, n_chan), np.float32)
    bad = np.empty((k, n_time, n_chan), np.bool_)
    _gather_amplitudes(block, np.moveaxis(flags, 0, -1)[:, None], 0, amp, bad)
    ignore = np.empty((n_time, n_chan), np.bool_)
    _any_into(bad, ignore)
    det = _detect_baseline(amp, bad, planes, [np.arange(k, dtype=np.int64)], grid, ws, cfg,
                           np.empty_like(ignore), np.empty_like(ignore))
    return ignore | det


@_document_strategy
def rfi_flag(
    visibility: NDArray,
    flags: NDArray | None = None,
    *,
    pol_groups: str | Sequence[Sequence[int]] = "each",
    **strategy,
) -> NDArray:
    """Detect RFI in a visibility block laid out as the data model.

    Every baseline is one independent time x frequency problem: a Dask wrapper
    must give each call *whole* time and frequency axes (chunks along
    ``baseline_id`` only; polarisation whole). Memory beyond the inputs and the
    output: per (time, channel) about ``5 n_pol + 30`` bytes of work arrays
    (``13 n_pol + 30`` for the complex representation), i.e. 1.6 times one
    baseline's complex64 ``VISIBILITY`` for 4 polarisations.

    Parameters
    ----------
    visibility : ndarray of complex64 or complex128, shape (n_time, n_baseline, n_chan, n_pol)
        ``VISIBILITY`` (any unit; thresholds are relative to the noise).
    flags : ndarray of bool, same shape, or None
        ``FLAG``; flagged samples take no part and stay flagged.
    pol_groups : {"each", "stokes", "all"} or sequence of sequences of int
        Polarisations combined into one detection statistic
        (:func:`polarization_groups`); default ``"each"`` (AOFlagger's generic
        strategy: every polarisation alone, detections ORed).
    **strategy
        Keyword parameters of :func:`rfi_flag_planes`:
    {strategy}

    Returns
    -------
    ndarray of bool, shape (n_time, n_baseline, n_chan, n_pol)
        ``flags`` OR the detections, the latter set on all polarisations.
    """
    unknown = set(strategy) - set(_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown strategy parameters: {sorted(unknown)}")
    visibility = np.asarray(visibility)
    if visibility.ndim != 4:
        raise ValueError(f"visibility must be (n_time, n_baseline, n_chan, n_pol), "
                         f"got shape {visibility.shape}")
    if visibility.dtype not in (np.complex64, np.complex128):
        raise ValueError(f"visibility must be complex64 or complex128, got {visibility.dtype}")
    if flags is None:
        flags = np.zeros(visibility.shape, np.bool_)
    flags = np.asarray(flags)
    if flags.dtype != np.bool_ or flags.shape != visibility.shape:
        raise ValueError("flags must be a bool array of the same shape as visibility")
    n_time, n_bl, n_chan, n_pol = visibility.shape
    groups = polarization_groups(pol_groups, n_pol)
    cfg = _config(**{**_DEFAULTS, **strategy})
    out = flags.copy()
    if min(visibility.shape) == 0:
        return out
    grid = background_grid((n_time, n_chan), cfg["sigma"], None, cfg["fit_order"])
    ws = _Workspace(n_time, n_chan, grid)
    amp = np.empty((n_pol, n_time, n_chan), np.float32)
    bad = np.empty((n_pol, n_time, n_chan), np.bool_)
    planes = (np.empty((n_pol, n_time, n_chan), np.complex64)
              if cfg["representation"] == "complex" else None)
    detected = np.empty((n_time, n_chan), np.bool_)
    any_bad = np.empty((n_time, n_chan), np.bool_)
    group_pols = [np.asarray(group, np.int64) for group in groups]
    for b in range(n_bl):
        _gather_amplitudes(visibility, flags, b, amp, bad)
        if planes is not None:
            _gather_planes(visibility, b, planes)
        det = _detect_baseline(amp, bad, planes, group_pols, grid, ws, cfg, detected, any_bad)
        _scatter_flags(out, b, det, bad)
    return out
