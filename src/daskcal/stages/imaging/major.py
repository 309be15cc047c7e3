"""The major cycle: an iterative driver around two callables, ``dirty`` and ``predict``.

``dirty(vis)`` grids visibilities into an (unnormalised) image; ``predict(model)``
degrids a model image (Jy/pixel) into visibilities. The driver only needs
``dirty(vis - predict(model))`` to be an image, so the same loop runs on numpy arrays
(:class:`NumpyBackend`, small data) and on lazy Dask arrays
(:class:`daskcal.stages.imaging.backends.DaskBackend`): each major cycle **computes** its
residual image (that is what makes it a major cycle), and the minor cycle runs in
memory on the image. This is the one place where the image stage computes; everything
before (weights, PSF, the dirty-image graph) is lazy.

Cycle ``k`` (``k = 0`` starts from the dirty image):

1. stop if ``peak |R| <= threshold`` (``max(threshold_jy, auto_threshold x sigma)``, with
   ``sigma`` the robust rms of ``R`` or, with ``auto_threshold_noise="theoretical"``, the
   noise from the weights) or the iteration budget is spent;
2. minor cycle down to ``max(threshold, (1 - mgain) peak, cycle_factor x sidelobe x peak)``;
3. ``model += components``; ``R = dirty(vis - predict(model)) / psf_peak``;
4. stop after this major cycle if the minor cycle reached the threshold itself (WSClean's
   rule: the last major cycle only makes the exact residual).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from daskcal.kernels.deconvolution import MultiscaleCleaner, clark_clean, hogbom_clean
from daskcal.kernels.deconvolution._common import PsfConvolver, max_sidelobe
from daskcal.kernels.gridding import dirty_image, make_plan, w_range
from daskcal.kernels.gridding.prepared import PreparedVis
from daskcal.stages.gridding import GRIDDER_UVW_SIGN, psf_plan
from daskcal.stages.imaging.masks import robust_rms

log = logging.getLogger(__name__)

#: Smallest number of active pixels worth another Clark cycle inside a major cycle.
CLARK_MIN_ACTIVE = 500
#: A minor cycle whose residual peak is within this fraction above the threshold has
#: reached it (the last major cycle then only makes the exact residual).
THRESHOLD_TAIL = 0.1


def materialise(x) -> np.ndarray:
    """A numpy array of ``x``, computing it if it is lazy (the major-cycle computation)."""
    if hasattr(x, "compute"):
        x = x.compute()
    return np.asarray(x, dtype=np.float64)


@dataclass
class NumpyBackend:
    """In-memory gridding with :mod:`daskcal.kernels.gridding` (the data model's convention).

    Parameters
    ----------
    uvw_m : ndarray, shape (n_row, 3)
        Metres, ``X(antenna1) - X(antenna2)`` (:mod:`daskcal.data.model`).
    freq_hz : ndarray, shape (n_chan,)
    vis : ndarray, complex, shape (n_row, n_chan)
        The visibilities to image (one product, e.g. Stokes I).
    weight : ndarray, shape (n_row, n_chan)
        Imaging weights (0 = unused).
    npix : int
    cell_rad : float
    epsilon : float
    method : {"wstack", "wproject"}

    Notes
    -----
    The gridder's convention is ``V = sum I exp(-2 pi i (u l + v m - w (n - 1)) f/c)``
    while our data follow the Measurement Set's ``exp(+2 pi i (u l + v m + w (n - 1)) f/c)``:
    ``u`` and ``v`` are negated on the way in. The
    gridder is used with ``divide_by_n=False`` so that model pixels are Jy per pixel
    (``V = sum_pix S_pix exp(...)``, the RIME with pixel fluxes).

    The samples' index is built once (:class:`~daskcal.kernels.gridding.prepared.PreparedVis`)
    and reused by every major cycle; :meth:`residual` degrids and grids without forming
    the prediction as an array. Gridding, degridding and FFTs use the caller's
    ``scipy.fft`` worker threads (:mod:`daskcal.kernels._threads`).
    """

    uvw_m: np.ndarray
    freq_hz: np.ndarray
    vis: np.ndarray
    weight: np.ndarray
    npix: int
    cell_rad: float
    epsilon: float = 1e-5
    method: str = "wstack"
    plan: Any = field(init=False, repr=False)
    plan_psf: Any = field(init=False, repr=False)

    def __post_init__(self):
        self.uvw_m = np.asarray(self.uvw_m, dtype=np.float64) * GRIDDER_UVW_SIGN
        self.weight = np.asarray(self.weight, dtype=np.float64)
        self.vis = np.asarray(self.vis, dtype=np.complex128)
        lo, hi = w_range(self.uvw_m, self.freq_hz, None, self.weight)
        kw = dict(w_min=lo, w_max=hi, n_vis=self.vis.size, method=self.method,
                  divide_by_n=False)
        self.plan = make_plan(self.npix, self.npix, self.cell_rad, self.cell_rad,
                              self.epsilon, **kw)
        self.plan_psf = psf_plan(self.npix, self.cell_rad, self.epsilon, n_vis=self.vis.size,
                                 method=self.method)
        self.prepared = PreparedVis(self.plan, self.uvw_m, self.freq_hz, self.weight)

    @property
    def data(self):
        """The visibilities to deconvolve."""
        return self.vis

    def dirty(self, vis) -> np.ndarray:
        """Weighted dirty image (unnormalised), shape (npix, npix)."""
        return self.prepared.dirty(np.asarray(vis, dtype=np.complex128))

    def predict(self, model) -> np.ndarray:
        """Visibilities of a model (Jy/pixel), shape (n_row, n_chan) (0 where unused)."""
        return self.prepared.predict(np.asarray(model, dtype=np.float64))

    def residual(self, model) -> np.ndarray:
        """``dirty(vis - predict(model))``, unnormalised, shape (npix, npix)."""
        return self.prepared.residual_image(self.vis, np.asarray(model, dtype=np.float64))

    def psf(self) -> np.ndarray:
        """Unnormalised PSF, shape (2 npix, 2 npix), peak at (npix, npix)."""
        ones = np.ones(self.vis.shape, dtype=np.complex128)
        return dirty_image(self.uvw_m, self.freq_hz, ones, self.weight, plan=self.plan_psf)


@dataclass
class DeconvolutionResult:
    """Products of :func:`deconvolve` (images ``(npix, npix)``, axis 0 ``l``)."""

    model: np.ndarray
    residual: np.ndarray
    n_iter: int
    n_major: int
    threshold: float
    history: list[dict] = field(default_factory=list)
    stop: str = ""


def _minor(cfg, psf, conv, cleaner, residual, limit, niter, mask, final):
    if cfg.deconvolver == "hogbom":
        return hogbom_clean(residual, psf, gain=cfg.gain, threshold=limit, niter=niter,
                            mask=mask)
    if cfg.deconvolver == "clark":
        # down to an intermediate limit, leave a long tail of pixels that sidelobes lifted
        # (each Clark cycle up to an FFT pair of (2 npix)^2) to the next major cycle; down
        # to the threshold itself (``final``) clean them, so that CLEAN can end there
        tail = 0 if final else max(CLARK_MIN_ACTIVE, residual.size // 1000)
        return clark_clean(residual, psf, gain=cfg.gain, threshold=limit, niter=niter,
                           mask=mask, convolver=conv, min_active=tail)
    return cleaner.clean(residual, gain=cfg.gain, threshold=limit, niter=niter, mask=mask)


def deconvolve(dirty: Callable[[Any], Any], predict: Callable[[np.ndarray], Any], vis,
               psf: np.ndarray, cfg, *, mask: np.ndarray | None = None,
               dirty_image0: np.ndarray | None = None,
               noise_jy: float | None = None,
               residual_of: Callable[[np.ndarray], Any] | None = None
               ) -> DeconvolutionResult:
    """Major/minor-cycle CLEAN.

    Parameters
    ----------
    dirty : callable
        ``dirty(vis) -> image`` (numpy or lazy), unnormalised, shape (npix, npix).
    predict : callable
        ``predict(model) -> vis`` (numpy or lazy), same shape and type as ``vis``.
    vis : array
        The data visibilities (numpy or Dask).
    psf : ndarray, shape (2 npix, 2 npix)
        Unnormalised PSF (from ``dirty`` of unit visibilities), peak at ``(npix, npix)``.
    cfg : ImageConfig
        ``deconvolver, niter, gain, threshold_jy, auto_threshold, auto_mask, mgain,
        cycle_factor, max_major, scales_px, scale_bias``.
    mask : ndarray of bool, shape (npix, npix), optional
        User mask (components only where ``True``).
    dirty_image0 : ndarray, optional
        The unnormalised dirty image if already computed.
    noise_jy : float, optional
        Theoretical image noise, Jy/beam: with ``cfg.auto_threshold_noise ==
        "theoretical"`` the auto threshold is ``auto_threshold x noise_jy`` (required then).
    residual_of : callable, optional
        ``residual_of(model) -> image``, equal to ``dirty(vis - predict(model))`` but
        cheaper (e.g. :meth:`NumpyBackend.residual`); used by the major cycles if given.

    Returns
    -------
    DeconvolutionResult
        ``model`` in Jy/pixel, ``residual`` in Jy/beam.
    """
    psf = np.asarray(psf, dtype=np.float64)
    npix = psf.shape[0] // 2
    norm = psf[npix, npix]
    if not norm > 0:
        raise ValueError("the PSF peak is not positive: no data with weight > 0")
    psf_n = psf / norm
    conv = PsfConvolver(psf_n)
    cleaner = (MultiscaleCleaner(psf_n, cfg.scales_px, cfg.scale_bias)
               if cfg.deconvolver == "multiscale" else None)
    sidelobe = max_sidelobe(psf_n, max(4, npix // 32)) if cfg.cycle_factor > 0 else 0.0
    d0 = dirty(vis) if dirty_image0 is None else dirty_image0
    residual = materialise(d0) / norm
    model = np.zeros_like(residual)
    auto = np.zeros_like(residual, dtype=bool)
    done, n_major, history, reached, stop = 0, 0, [], 0.0, ""
    threshold = cfg.threshold_jy
    theoretical = getattr(cfg, "auto_threshold_noise", "residual") == "theoretical"
    if theoretical and not (noise_jy is not None and noise_jy > 0):
        raise ValueError("auto_threshold_noise='theoretical' needs a positive noise_jy")
    while True:
        rms = robust_rms(residual)
        sigma = noise_jy if theoretical else rms
        threshold = max(cfg.threshold_jy, (cfg.auto_threshold or 0.0) * sigma)
        m = np.ones_like(auto) if mask is None else mask.copy()
        if cfg.auto_mask is not None:
            auto |= np.abs(residual) > cfg.auto_mask * sigma
            m &= auto
        peak = float(np.abs(np.where(m, residual, 0.0)).max())
        history.append({"major": n_major, "peak_jy": peak, "rms_jy": rms, "n_iter": done})
        log.info("major cycle %d: peak %.4g Jy/beam, rms %.3g, threshold %.3g, %d components",
                 n_major, peak, rms, threshold, done)
        # the last minor cycle reached the threshold (below): CLEAN ends, unless the
        # threshold dropped since (an auto threshold from the residual's rms)
        ended = reached > 0 and threshold >= reached * (1.0 - THRESHOLD_TAIL)
        stop = ("threshold" if peak <= threshold else
                "threshold reached by the minor cycle" if ended else
                "niter" if done >= cfg.niter else
                "max_major" if n_major >= cfg.max_major else "")
        if stop:
            break
        limit = max(threshold, (1.0 - cfg.mgain) * peak, cfg.cycle_factor * sidelobe * peak)
        comp, res_minor, n = _minor(cfg, psf_n, conv, cleaner, residual, limit,
                                    cfg.niter - done, m, limit <= threshold)
        if n == 0:
            stop = "no component above the limit"
            break
        # the minor cycle cleaned down to the threshold itself: the next major cycle
        # only makes the exact residual (as WSClean), which may show peaks a few per cent
        # above the threshold (the minor cycle's shift-invariant PSF). Cleaning those
        # again stalls at the noise's largest peaks (seen: 13 extra major cycles of 4-30
        # components at 4.5 sigma over 1500^2 pixels)
        done_to_threshold = limit <= threshold and float(
            np.abs(np.where(m, res_minor, 0.0)).max()) <= threshold * (1.0 + THRESHOLD_TAIL)
        reached = threshold if done_to_threshold else 0.0
        done += n
        model += comp
        residual = materialise(dirty(vis - predict(model)) if residual_of is None
                               else residual_of(model)) / norm
        n_major += 1
    log.info("CLEAN stopped (%s) after %d major cycles, %d components", stop, n_major, done)
    return DeconvolutionResult(model, residual, done, n_major, threshold, history, stop)


__all__ = ["DeconvolutionResult", "NumpyBackend", "deconvolve", "materialise"]
