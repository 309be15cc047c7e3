"""Restoring beam: a 2-D Gaussian fitted to the PSF main lobe; restored images.

Angles and orientation: the image axes are ``l`` (axis 0, east) and ``m`` (axis 1,
north); a beam is ``(bmaj, bmin, bpa)`` with FWHMs in radians and the position angle of
the major axis in radians, north through east (from ``+m`` towards ``+l``), in
``(-pi/2, pi/2]``::

    G(l, m) = exp(-4 ln 2 [(l sin bpa + m cos bpa)^2 / bmaj^2
                           + (l cos bpa - m sin bpa)^2 / bmin^2])
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import scipy.fft as sfft
from scipy import ndimage, optimize

FOUR_LN2 = 4.0 * math.log(2.0)


class Beam(NamedTuple):
    """A Gaussian beam: FWHMs ``bmaj_rad >= bmin_rad`` and ``bpa_rad`` (north through east)."""

    bmaj_rad: float
    bmin_rad: float
    bpa_rad: float


def gaussian_image(beam: Beam, shape: tuple[int, int], pixsize_x_rad: float,
                   pixsize_y_rad: float, centre: tuple[float, float] | None = None) -> np.ndarray:
    """The beam, peak 1, sampled on pixels (default centre ``(shape[0]//2, shape[1]//2)``).

    Returns
    -------
    ndarray, float64, ``shape``
    """
    cx, cy = (shape[0] // 2, shape[1] // 2) if centre is None else centre
    l = (np.arange(shape[0])[:, None] - cx) * pixsize_x_rad
    m = (np.arange(shape[1])[None, :] - cy) * pixsize_y_rad
    return _gauss(l, m, *beam)


def _gauss(l, m, bmaj, bmin, bpa):
    s, c = math.sin(bpa), math.cos(bpa)
    a = l * s + m * c
    b = l * c - m * s
    return np.exp(-FOUR_LN2 * ((a / bmaj) ** 2 + (b / bmin) ** 2))


def _canonical(bmaj, bmin, bpa) -> Beam:
    bmaj, bmin = abs(bmaj), abs(bmin)
    if bmin > bmaj:
        bmaj, bmin, bpa = bmin, bmaj, bpa + math.pi / 2
    bpa = (bpa + math.pi / 2) % math.pi - math.pi / 2
    if bpa <= -math.pi / 2:
        bpa += math.pi
    return Beam(float(bmaj), float(bmin), float(bpa))


def main_lobe(psf: np.ndarray, level: float = 0.35) -> tuple[np.ndarray, tuple[int, int]]:
    """Mask of the connected region above ``level`` x peak that contains the peak.

    Returns
    -------
    mask : ndarray of bool, ``psf.shape``
    peak : (int, int)
        Index of the peak.
    """
    psf = np.asarray(psf, dtype=np.float64)
    pk = np.unravel_index(int(np.argmax(psf)), psf.shape)
    labels, _ = ndimage.label(psf >= level * psf[pk])
    return labels == labels[pk], (int(pk[0]), int(pk[1]))


def beam_from_moments(psf, pixsize_x_rad: float, pixsize_y_rad: float,
                      level: float = 0.35) -> Beam:
    """Beam from the second moments of the main lobe, corrected for the truncation.

    The intensity-weighted covariance of a Gaussian cut at the contour ``level`` is the
    full covariance times ``1 + t ln t / (1 - t)`` (``t = level``), which is divided out.
    """
    psf = np.asarray(psf, dtype=np.float64)
    mask, (pi, pj) = main_lobe(psf, level)
    ii, jj = np.nonzero(mask)
    wt = psf[ii, jj] / psf[pi, pj]
    l = (ii - pi) * pixsize_x_rad
    m = (jj - pj) * pixsize_y_rad
    cov = np.cov(np.stack([l, m]), aweights=wt, bias=True)
    cov /= 1.0 + level * math.log(level) / (1.0 - level)
    evals, evecs = np.linalg.eigh(cov)
    sig_min, sig_maj = np.sqrt(np.maximum(evals, 0.0))
    vl, vm = evecs[:, 1]
    k = math.sqrt(8.0 * math.log(2.0))
    return _canonical(k * sig_maj, k * sig_min, math.atan2(vl, vm))


def fit_beam(psf, pixsize_x_rad: float, pixsize_y_rad: float, level: float = 0.35) -> Beam:
    """Restoring beam: least-squares 2-D Gaussian (peak 1 at the PSF peak) fit to the main lobe.

    Parameters
    ----------
    psf : ndarray, float, shape (nx, ny)
        The PSF (any normalisation; it is divided by its peak).
    pixsize_x_rad, pixsize_y_rad : float
        Pixel sizes, radians.
    level : float
        The main lobe is the connected region above ``level`` x peak around the peak.

    Returns
    -------
    Beam
        FWHMs and position angle in radians (see the module notes).
    """
    psf = np.asarray(psf, dtype=np.float64)
    if psf.ndim != 2 or not 0.0 < level < 1.0:
        raise ValueError("psf must be 2-d and 0 < level < 1")
    mask, (pi, pj) = main_lobe(psf, level)
    if mask.sum() < 5:
        raise ValueError("the PSF main lobe has fewer than 5 pixels: the cell is too large")
    ii, jj = np.nonzero(mask)
    y = psf[ii, jj] / psf[pi, pj]
    l = (ii - pi) * pixsize_x_rad
    m = (jj - pj) * pixsize_y_rad
    b0 = beam_from_moments(psf, pixsize_x_rad, pixsize_y_rad, level)
    scale = b0.bmaj_rad

    def resid(p):
        return _gauss(l, m, p[0] * scale, p[1] * scale, p[2]) - y

    sol = optimize.least_squares(resid, [1.0, b0.bmin_rad / scale, b0.bpa_rad],
                                 method="lm", xtol=1e-12, ftol=1e-12)
    return _canonical(sol.x[0] * scale, sol.x[1] * scale, sol.x[2])


def restore(model, residual, beam: Beam, pixsize_x_rad: float,
            pixsize_y_rad: float) -> np.ndarray:
    """Restored image: the model (Jy/pixel) convolved with the beam (peak 1) plus residual.

    Parameters
    ----------
    model, residual : ndarray, float, shape (nx, ny)
        Jy/pixel and Jy/beam.
    beam : Beam
    pixsize_x_rad, pixsize_y_rad : float

    Returns
    -------
    ndarray, float64, shape (nx, ny)
        Jy/beam (a point source of flux S peaks at S).
    """
    model = np.asarray(model, dtype=np.float64)
    nx, ny = model.shape
    big = (2 * nx, 2 * ny)
    g = gaussian_image(beam, big, pixsize_x_rad, pixsize_y_rad)
    pad = np.zeros(big)
    pad[:nx, :ny] = model
    full = sfft.irfft2(sfft.rfft2(pad) * sfft.rfft2(g), s=big)
    return full[nx:, ny:] + np.asarray(residual, dtype=np.float64)


__all__ = ["Beam", "beam_from_moments", "fit_beam", "gaussian_image", "main_lobe", "restore"]
