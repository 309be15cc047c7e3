"""Gridding plans: kernel support, grid oversampling and w sampling chosen from an accuracy.

A :class:`GriddingPlan` fixes everything both directions (visibilities -> dirty image and
back) need: the uv grid size, the kernels, the w planes (w-stacking) or w-kernel tables and
Taylor order (w-projection), the precision, and an *accuracy estimate*.

Accuracy model. Every error source is bounded relative to the exact response of a single
point source (one pixel, or one visibility in the adjoint):

- ``wstack``: ``e_u + e_v + e_w``, the worst-case alias errors of the ES kernels in u, v
  and w (:func:`.es_kernel.alias_error` of the polynomial kernels);
- ``wproject``: ``t_u + t_v + e_taylor``, the truncation errors of the w-kernels
  (:mod:`.wkernels`) and the remainder of the Taylor series of the non-separable w term;
- plus rounding: the grid correction divides the image edges by the kernel's Fourier
  transform there, so rounding errors of the grid and the FFT (relative to the grid's
  magnitude) are amplified, at the image corners, by the *dynamic range* ``D = prod
  phi_hat(0) / phi_hat(edge)`` of the kernels. Measured on this code, each
  single-precision stage (kernel taps, grid accumulation, FFT; ``u = 6e-8``) adds up to
  ``0.02-0.2 u D`` at the worst pixel (about ``0.1 u D^0.7`` in the rms over the image);
  the estimate uses ``0.2 u D`` per stage. This is why wide kernels at low oversampling
  need double precision even for ``epsilon = 1e-5``; the planner weighs that against a
  larger oversampling.

The plan picks, among candidate oversampling factors, the cheapest configuration (a cost
model in nanoseconds of this code on one core) whose estimate is at most ``epsilon``. The
estimate is a bound: measured errors (tests, ``bench/gridding.py``) are typically 3-30
times smaller in the rms and stay below ``epsilon`` for the worst single visibility.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.fft

from daskcal.kernels.gridding.es_kernel import SUPPORTS, ESKernel, make_es_kernel
from daskcal.kernels.gridding.wkernels import WProjectKernel, design_axis, separable_nm1

#: Speed of light, m/s.
SPEED_OF_LIGHT = 299_792_458.0
#: Methods of the gridder.
METHODS = ("wstack", "wproject")
#: Oversampling factors (grid size / image size) considered by the planner.
SIGMAS_WSTACK = (1.2, 1.3, 1.4, 1.5, 1.6, 1.75, 2.0, 2.3)
SIGMAS_WPROJECT = (1.1, 1.15, 1.2, 1.25, 1.3, 1.4, 1.5, 1.75, 2.0)
#: W-stacking's w kernel may oversample more than the uv kernel, by these factors.
W_KERNEL_SIGMA_FACTORS = (1.0, 1.5, 2.0)
#: Unit roundoff of float32 and float64.
_U32, _U64 = 6e-8, 1.1e-16
#: Rounding error per unit roundoff and dynamic range, per single-precision stage.
_C_ROUND = 0.2

# cost model, nanoseconds on one core (calibrated with bench/gridding.py on this code)
_NS_PER_VIS = 75.0  # index: sort, phase, first touch of its memory, per visibility
_NS_PER_TOUCH = 10.0  # per visibility and w-plane: taps, bookkeeping, loads
_NS_PER_ROW = 3.0  # per kernel row of 8 lanes (float32; float64 rows count twice)
_NS_FFT = 0.32  # per N log2 N of a complex64 FFT (complex128 x1.7)
_NS_PER_PIXEL = 3.0  # per image pixel and plane: w screen, accumulation
_NS_PER_CELL = 1.0  # per grid cell and plane: zeroing, guard band
_NS_WP_NODE = 6.0  # per quadrature node of a w-projection kernel (one axis)
_NS_WP_CMAC = 0.6  # per complex tap of a w-projection kernel row (8 lanes)


@dataclass(frozen=True, eq=False)
class GriddingPlan:
    """Everything the gridder and degridder need, fixed from an accuracy request.

    Attributes
    ----------
    npix_x, npix_y : int
        Image size; axis 0 is ``l`` (x), axis 1 is ``m`` (y).
    pixsize_x, pixsize_y : float
        Pixel sizes, radians (direction cosines).
    epsilon : float
        Requested accuracy.
    method : {"wstack", "wproject"}
    do_wgridding : bool
        Whether the w term is applied (otherwise ``w`` is taken as 0, as ducc0).
    divide_by_n : bool
        Whether pixels are divided by ``n`` (ducc0's default ``True``).
    single : bool
        Kernel taps in float32.
    double_accum : bool
        Grid accumulated in float64 (complex128).
    fft_double : bool
        FFTs in complex128.
    nu, nv : int
        UV grid size (cells), even.
    kernel : ESKernel or None
        The uv anti-aliasing kernel (``wstack``, or without w gridding).
    kernel_w : ESKernel or None
        The w-direction kernel of w-stacking.
    w0, dw : float
        W of plane 0 and plane spacing, wavelengths (``wstack``).
    n_planes : int
        Number of w planes (1 without w gridding; 1 for ``wproject``).
    nshift : float
        Constant removed from ``n - 1`` before the w screens (``wstack``).
    wp_u, wp_v : WProjectKernel or None
        W-projection kernels of the two axes.
    n_taylor : int
        Taylor terms of the non-separable w remainder (``wproject``).
    w_scale : float
        ``max |w|`` normalising the Taylor terms, wavelengths.
    r0 : float
        Centre of the non-separable remainder ``R`` (``wproject``).
    taylor_arg : float
        ``2 pi max|w| max|R - r0|``: the Taylor series argument bound (``wproject``).
    w_min, w_max : float
        Range of w the plan covers, wavelengths.
    accuracy_estimate : float
        Bound on the error relative to a single point source (see module docs).
    dynamic_range : float
        ``D``: the largest grid correction relative to the smallest.
    cost_ns : float
        Cost-model estimate, nanoseconds (one core).
    """

    npix_x: int
    npix_y: int
    pixsize_x: float
    pixsize_y: float
    epsilon: float
    method: str
    do_wgridding: bool
    divide_by_n: bool
    single: bool
    double_accum: bool
    fft_double: bool
    nu: int
    nv: int
    kernel: ESKernel | None = None
    kernel_w: ESKernel | None = None
    w0: float = 0.0
    dw: float = 1.0
    n_planes: int = 1
    nshift: float = 0.0
    wp_u: WProjectKernel | None = None
    wp_v: WProjectKernel | None = None
    n_taylor: int = 1
    w_scale: float = 1.0
    r0: float = 0.0
    taylor_arg: float = 0.0
    w_min: float = 0.0
    w_max: float = 0.0
    accuracy_estimate: float = 0.0
    dynamic_range: float = 1.0
    cost_ns: float = 0.0

    @property
    def grid_shape(self) -> tuple[int, int, int]:
        """Shape of the partial grid of :func:`grid_partial`: (n_planes or n_taylor, nu, nv)."""
        lead = self.n_taylor if self.method == "wproject" and self.do_wgridding else self.n_planes
        return (lead, self.nu, self.nv)

    @property
    def grid_dtype(self) -> np.dtype:
        """Complex dtype of the accumulated grid."""
        return np.dtype(np.complex128 if self.double_accum else np.complex64)

    @property
    def vis_dtype(self) -> np.dtype:
        """Complex dtype of predicted visibilities."""
        return np.dtype(np.complex64 if self.epsilon >= 1e-5 else np.complex128)


def image_nm1(npix_x: int, npix_y: int, pixsize_x: float, pixsize_y: float) -> np.ndarray:
    """``n - 1`` of every pixel, shape (npix_x, npix_y), computed stably."""
    l = (np.arange(npix_x) - npix_x // 2) * pixsize_x
    m = (np.arange(npix_y) - npix_y // 2) * pixsize_y
    r2 = l[:, None] ** 2 + m[None, :] ** 2
    return -r2 / (np.sqrt(1.0 - r2) + 1.0)


def _nm1_extremes(npix_x, npix_y, pixsize_x, pixsize_y) -> tuple[float, float]:
    lm = (npix_x // 2) * pixsize_x
    mm = (npix_y // 2) * pixsize_y
    r2 = lm * lm + mm * mm
    if not r2 < 1.0:
        raise ValueError(f"the image corners lie beyond the horizon (l^2 + m^2 = {r2:.3f})")
    return -r2 / (math.sqrt(1.0 - r2) + 1.0), 0.0


def _residual_range(npix_x, npix_y, pixsize_x, pixsize_y) -> tuple[float, float]:
    """Range of ``R = (n - 1) - p(l) - p(m)`` over the image (w-projection remainder)."""
    lx = (np.unique(np.r_[np.linspace(0, npix_x - 1, 257).round(), npix_x // 2])
          - npix_x // 2) * pixsize_x
    my = (np.unique(np.r_[np.linspace(0, npix_y - 1, 257).round(), npix_y // 2])
          - npix_y // 2) * pixsize_y
    r2 = lx[:, None] ** 2 + my[None, :] ** 2
    res = -r2 / (np.sqrt(1.0 - r2) + 1.0) - separable_nm1(lx)[:, None] - separable_nm1(my)[None]
    return float(res.min()), float(res.max())


def good_size(n: int) -> int:
    """Smallest even FFT-friendly size >= n (at least 16)."""
    n = max(16, int(n))
    while True:
        n = scipy.fft.next_fast_len(n)
        if n % 2 == 0:
            return n
        n += 1


def _fft_ns(nu: int, nv: int, double: bool) -> float:
    per = _NS_FFT * (1.7 if double else 1.0)
    return per * nu * nv * math.log2(nu * nv)


def _ratio(kernel: ESKernel, sigma: float) -> float:
    """``phi_hat(0) / phi_hat(1 / (2 sigma))``: the kernel's correction dynamic range."""
    v = kernel.fourier(np.array([0.0, 0.5 / sigma]))
    return float(v[0] / v[1])


def _precisions(epsilon: float, double_accum: bool | None):
    """Candidate (taps float32, grid float64, FFT complex128) triples."""
    if epsilon < 1e-5:
        return ((False, True, True),)
    cands = ((True, False, False), (True, True, False), (True, True, True),
             (False, True, True))
    if double_accum is None:
        return cands
    return tuple(c for c in cands if c[1] == double_accum)


def _round_err(single: bool, grid64: bool, fft128: bool, dyn: float) -> float:
    u = (_U32 if single else _U64) + (_U64 if grid64 else _U32) + (_U64 if fft128 else _U32)
    return _C_ROUND * u * dyn


def _smallest_support(sigma: float, budget: float) -> ESKernel | None:
    for support in SUPPORTS:
        k = make_es_kernel(support, sigma)
        if k.error <= budget:
            return k
    return None


def check_geometry(npix_x, npix_y, pixsize_x, pixsize_y, epsilon, method) -> None:
    """Validate the image geometry, accuracy and method; raise ``ValueError``."""
    for name, val in (("npix_x", npix_x), ("npix_y", npix_y)):
        if int(val) != val or val < 16 or val % 2:
            raise ValueError(f"{name} must be an even integer >= 16, got {val}")
    for name, val in (("pixsize_x", pixsize_x), ("pixsize_y", pixsize_y)):
        if not (np.isfinite(val) and val > 0):
            raise ValueError(f"{name} must be a positive number of radians, got {val}")
    if not 1e-12 <= epsilon < 0.1:
        raise ValueError(f"epsilon must be in [1e-12, 0.1), got {epsilon}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    _nm1_extremes(int(npix_x), int(npix_y), pixsize_x, pixsize_y)


def make_plan(
    npix_x: int,
    npix_y: int,
    pixsize_x: float,
    pixsize_y: float,
    epsilon: float,
    *,
    w_min: float = 0.0,
    w_max: float = 0.0,
    n_vis: int = 1_000_000,
    method: str = "wstack",
    do_wgridding: bool = True,
    divide_by_n: bool = True,
    double_accum: bool | None = None,
    sigma: float | None = None,
) -> GriddingPlan:
    """Choose grid size, kernels and w sampling for an accuracy.

    Parameters
    ----------
    npix_x, npix_y : int
        Image size (even, >= 16).
    pixsize_x, pixsize_y : float
        Pixel sizes, radians.
    epsilon : float
        Requested accuracy, in ``[1e-12, 0.1)``: bound on the error relative to the
        response to a single point source / visibility.
    w_min, w_max : float
        Range of ``w`` (wavelengths, i.e. ``w_m f / c``) of the visibilities to grid.
        W-projection uses ``max(|w_min|, |w_max|)``. Visibilities outside the range are
        rejected by the gridder.
    n_vis : int
        Expected number of visibilities per call (for the cost model only).
    method : {"wstack", "wproject"}
    do_wgridding : bool
        Apply the w term (``False``: w is ignored, as ducc0's ``do_wgridding=False``).
    divide_by_n : bool
        Divide pixels by ``n`` (ducc0's convention).
    double_accum : bool, optional
        Accumulate the grid in complex128. Default: ``True`` for ``epsilon < 1e-4``
        (complex64 accumulation of ~1e8 visibilities limits the accuracy near 1e-4),
        otherwise chosen by the planner with the FFT precision (see module docs).
    sigma : float, optional
        Force the oversampling factor instead of choosing the cheapest.

    Returns
    -------
    GriddingPlan
    """
    check_geometry(npix_x, npix_y, pixsize_x, pixsize_y, epsilon, method)
    npix_x, npix_y = int(npix_x), int(npix_y)
    if not (np.isfinite(w_min) and np.isfinite(w_max) and w_min <= w_max):
        raise ValueError(f"need finite w_min <= w_max, got {w_min}, {w_max}")
    budget = float(epsilon)
    nm1_min, nm1_max = _nm1_extremes(npix_x, npix_y, pixsize_x, pixsize_y)
    base = dict(npix_x=npix_x, npix_y=npix_y, pixsize_x=float(pixsize_x),
                pixsize_y=float(pixsize_y), epsilon=float(epsilon), method=method,
                do_wgridding=bool(do_wgridding), divide_by_n=bool(divide_by_n),
                w_min=float(w_min), w_max=float(w_max))
    if double_accum is None and epsilon < 1e-4:
        double_accum = True  # complex64 accumulation of ~1e8 samples caps near 1e-4
    precisions = _precisions(epsilon, double_accum)
    sigmas = (sigma,) if sigma is not None else (
        SIGMAS_WPROJECT if method == "wproject" and do_wgridding else SIGMAS_WSTACK)
    best = None
    for sig in sigmas:
        # kernels are designed for the nominal sigma <= the actual one (conservative)
        nu, nv = good_size(math.ceil(sig * npix_x)), good_size(math.ceil(sig * npix_y))
        for single, grid64, fft128 in precisions:
            prec = dict(base, single=single, double_accum=grid64, fft_double=fft128)
            if method == "wproject" and do_wgridding:
                cand = _plan_wproject(prec, nu, nv, float(sig), budget, n_vis)
            else:
                cand = _plan_wstack(prec, nu, nv, float(sig), budget, n_vis, nm1_min,
                                    nm1_max)
            if cand is not None and (best is None or cand.cost_ns < best.cost_ns):
                best = cand
    if best is None:
        raise ValueError(f"no kernel reaches epsilon={epsilon} with method={method!r}")
    return best


def _plan_wstack(base, nu, nv, sig, budget, n_vis, nm1_min, nm1_max):
    single, grid64, fft128 = base["single"], base["double_accum"], base["fft_double"]
    lanes = 4 if grid64 else 8
    npix = base["npix_x"] * base["npix_y"]
    plane_ns = _fft_ns(nu, nv, fft128) + _NS_PER_CELL * nu * nv + _NS_PER_PIXEL * npix
    if not base["do_wgridding"]:
        best = None
        for k in (make_es_kernel(sup, sig) for sup in SUPPORTS):
            dyn = _ratio(k, sig) ** 2
            err = 2.0 * k.error + _round_err(single, grid64, fft128, dyn)
            if err > budget:
                continue
            rows = k.support * math.ceil(k.support / lanes)
            cost = n_vis * (_NS_PER_VIS + _NS_PER_TOUCH + rows * _NS_PER_ROW) + plane_ns
            return GriddingPlan(**base, nu=nu, nv=nv, kernel=k, accuracy_estimate=err,
                                dynamic_range=dyn, cost_ns=cost)
        return best
    best = None
    half = 0.5 * (nm1_max - nm1_min)
    nshift = 0.5 * (nm1_max + nm1_min)
    k_min = _smallest_support(sig, budget / 2.0)
    if k_min is None:
        return None
    for support in range(k_min.support, min(k_min.support + 3, SUPPORTS[-1] + 1)):
        k = make_es_kernel(support, sig)
        # the w kernel may use a smaller support with a higher oversampling (more planes)
        for sig_w in (round(f * sig, 3) for f in W_KERNEL_SIGMA_FACTORS):
            kw = _smallest_support(sig_w, budget - 2.0 * k.error)
            if kw is None or kw.support > support:
                continue
            dyn = _ratio(k, sig) ** 2 * _ratio(kw, sig_w)
            err = 2.0 * k.error + kw.error + _round_err(single, grid64, fft128, dyn)
            if err > budget:
                continue
            dw = 0.5 / (sig_w * half) if half > 0 else 1e30
            n_planes = int(math.ceil((base["w_max"] - base["w_min"]) / dw)) + kw.support
            rows = k.support * math.ceil(k.support / lanes)
            cost = (n_vis * (_NS_PER_VIS + kw.support * (_NS_PER_TOUCH + rows * _NS_PER_ROW))
                    + n_planes * plane_ns)
            if best is None or cost < best.cost_ns:
                w0 = base["w_min"] - 0.5 * kw.support * dw
                best = GriddingPlan(**base, nu=nu, nv=nv, kernel=k, kernel_w=kw, w0=w0, dw=dw,
                                    n_planes=n_planes, nshift=nshift, accuracy_estimate=err,
                                    dynamic_range=dyn, cost_ns=cost)
    return best


@lru_cache(maxsize=64)
def _wp_axis(sig: float, scale: float, w_abs: float, target: float) -> WProjectKernel | None:
    try:
        return design_axis(sig, scale, w_abs, target)
    except ValueError:
        return None


def _plan_wproject(base, nu, nv, sig, budget, n_vis):
    single, grid64, fft128 = base["single"], base["double_accum"], base["fft_double"]
    w_abs = max(abs(base["w_min"]), abs(base["w_max"]))
    r_min, r_max = _residual_range(base["npix_x"], base["npix_y"], base["pixsize_x"],
                                   base["pixsize_y"])
    r0 = 0.5 * (r_min + r_max)
    arg = 2.0 * math.pi * w_abs * 0.5 * (r_max - r_min)
    n_taylor, t_err = 1, arg * math.exp(arg)
    while t_err > budget / 4.0 and n_taylor < 12:
        n_taylor += 1
        t_err = arg ** n_taylor / math.factorial(n_taylor) * math.exp(arg)
    if t_err > budget / 4.0:
        return None
    target = (budget - t_err) / 2.5
    ku = _wp_axis(sig, nu * base["pixsize_x"], w_abs, target)
    kv = ku if (nu * base["pixsize_x"] == nv * base["pixsize_y"]) else _wp_axis(
        sig, nv * base["pixsize_y"], w_abs, target)
    if ku is None or kv is None:
        return None
    dyn = 1.0 / (ku.edge * kv.edge)
    est = (ku.truncation_error + kv.truncation_error + t_err
           + _round_err(single, grid64, fft128, dyn))
    if est > budget:
        return None
    # average over |w| uniform in [0, w_abs] of the per-visibility cost
    sup = 0.5 * (ku.support_table + kv.support_table).astype(np.float64)
    lens = 0.5 * (ku.fft_len_table + kv.fft_len_table).astype(np.float64)
    wt = np.diff(np.r_[0.0, ku.w_table]) / max(ku.w_table[-1], 1e-300)
    lanes = 4 if grid64 else 8
    per_vis = (2.0 * _NS_WP_NODE * lens * (np.log2(lens) + 2.0)
               + n_taylor * sup * np.ceil(sup / lanes) * _NS_WP_CMAC * 4.0)
    npix = base["npix_x"] * base["npix_y"]
    cost = (n_vis * (_NS_PER_VIS + float((per_vis * wt).sum()))
            + n_taylor * (_fft_ns(nu, nv, fft128) + _NS_PER_CELL * nu * nv
                          + _NS_PER_PIXEL * npix))
    return GriddingPlan(**base, nu=nu, nv=nv, wp_u=ku, wp_v=kv, n_taylor=n_taylor,
                        w_scale=max(w_abs, 1e-300), r0=r0, taylor_arg=arg,
                        accuracy_estimate=est, dynamic_range=dyn, cost_ns=cost)


__all__ = ["METHODS", "SPEED_OF_LIGHT", "GriddingPlan", "check_geometry", "good_size", "image_nm1",
           "make_plan"]
