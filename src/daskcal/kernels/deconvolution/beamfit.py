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
    i0, i1, j0, j1 = 0, shape[0], 0, shape[1]
    # exp(-4 ln 2 q) is exactly 0 for q > 800 / (4 ln 2) (exp underflows below -745), and
    # q >= (l^2 + m^2) / w^2 (w the larger FWHM): only the pixels within w sqrt(800 / 4 ln 2)
    # (~17 w) of the centre are evaluated, to the same values; the others are 0 (restore's
    # grid is twice the image, the beam a few pixels)
    w = max(abs(beam[0]), abs(beam[1]))
    dx, dy = abs(pixsize_x_rad), abs(pixsize_y_rad)
    if all(math.isfinite(x) and x > 0 for x in (w, dx, dy)) and \
            math.isfinite(cx) and math.isfinite(cy):
        reach = w * math.sqrt(800.0 / FOUR_LN2)
        hx, hy = reach / dx + 2.0, reach / dy + 2.0
        if hx < shape[0] and hy < shape[1]:
            i0, i1 = (min(max(int(math.floor(x)), 0), shape[0]) for x in (cx - hx, cx + hx))
            j0, j1 = (min(max(int(math.floor(y)), 0), shape[1]) for y in (cy - hy, cy + hy))
    out = np.zeros(shape)
    l = (np.arange(i0, i1)[:, None] - cx) * pixsize_x_rad
    m = (np.arange(j0, j1)[None, :] - cy) * pixsize_y_rad
    out[i0:i1, j0:j1] = _gauss(l, m, *beam)
    return out


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
    ii, jj, peak = _lobe_pixels(psf, level)
    mask = np.zeros(psf.shape, dtype=bool)
    mask[ii, jj] = True
    return mask, peak


def _lobe_pixels(psf: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """Indices ``(ii, jj)`` (row-major) of :func:`main_lobe`'s mask, and the peak.

    Labelled in a window about the peak, grown until the lobe touches none of its edges
    inside the PSF: then the lobe is also the connected region of the whole PSF (a pixel
    of the lobe has all its neighbours in the window), found without labelling the whole
    PSF (twice the image size) for a lobe of a few hundred pixels.
    """
    n0, n1 = psf.shape
    pk = np.unravel_index(int(np.argmax(psf)), psf.shape)
    pi, pj = int(pk[0]), int(pk[1])
    above = level * psf[pi, pj]
    h = 32
    while True:
        i0, i1, j0, j1 = max(pi - h, 0), min(pi + h + 1, n0), max(pj - h, 0), min(pj + h + 1, n1)
        labels, _ = ndimage.label(psf[i0:i1, j0:j1] >= above)
        lobe = labels == labels[pi - i0, pj - j0]
        if not ((i0 > 0 and lobe[0].any()) or (i1 < n0 and lobe[-1].any())
                or (j0 > 0 and lobe[:, 0].any()) or (j1 < n1 and lobe[:, -1].any())):
            ii, jj = np.nonzero(lobe)
            return ii + i0, jj + j0, (pi, pj)
        h *= 4


def _moments_beam(psf, ii, jj, pi, pj, pixsize_x_rad, pixsize_y_rad, level) -> Beam:
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


def beam_from_moments(psf, pixsize_x_rad: float, pixsize_y_rad: float,
                      level: float = 0.35) -> Beam:
    """Beam from the second moments of the main lobe, corrected for the truncation.

    The intensity-weighted covariance of a Gaussian cut at the contour ``level`` is the
    full covariance times ``1 + t ln t / (1 - t)`` (``t = level``), which is divided out.
    """
    psf = np.asarray(psf, dtype=np.float64)
    ii, jj, (pi, pj) = _lobe_pixels(psf, level)
    return _moments_beam(psf, ii, jj, pi, pj, pixsize_x_rad, pixsize_y_rad, level)


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
    ii, jj, (pi, pj) = _lobe_pixels(psf, level)
    if ii.size < 5:
        raise ValueError("the PSF main lobe has fewer than 5 pixels: the cell is too large")
    y = psf[ii, jj] / psf[pi, pj]
    l = (ii - pi) * pixsize_x_rad
    m = (jj - pj) * pixsize_y_rad
    b0 = _moments_beam(psf, ii, jj, pi, pj, pixsize_x_rad, pixsize_y_rad, level)
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
