"""Imaging weights: natural, uniform and Briggs (robust) weighting, Gaussian uv tapers.

All weights are computed per sample (row, channel) from the visibility weights ``w_k``
(``1 / sigma^2``) and the uv-cell *density* ``D_k``: the sum of ``w`` of all samples, all
channels included, that fall in the same cell of the imaging uv grid as sample ``k``.
The grid is the one of a ``npix_x x npix_y`` image of pixel sizes ``pixsize_x,
pixsize_y`` (radians): cells of ``1 / (npix_x pixsize_x)`` by ``1 / (npix_y pixsize_y)``
wavelengths, the sample at ``(u, v) f / c``. A sample and its Hermitian mirror
``(-u, -v)`` are the same point of the uv plane, so cells are counted on the half plane
``u > 0 or (u == 0 and v >= 0)``.

- natural: ``W_k = w_k``;
- uniform: ``W_k = w_k / D_k``;
- Briggs (Briggs 1995, the formula of CASA and WSClean)::

      f^2 = (5 10^-R)^2 / (sum_k D_k w_k / sum_k w_k),    W_k = w_k / (1 + D_k f^2)

  ``R = -2`` is uniform weighting (to a few 1e-6 of the weights' spread), ``R = +2`` is
  close to natural.
- taper: ``W_k *= exp(-(u^2 + v^2) / (2 s^2))`` (u, v in wavelengths) with ``s`` from a
  uv-plane FWHM (wavelengths) or from the FWHM of the image-plane Gaussian it convolves
  the image with (radians): ``s = 1 / (2 pi sigma_l)``, ``sigma_l = FWHM / sqrt(8 ln 2)``.
"""

from __future__ import annotations

import math

import numpy as np

from daskcal.kernels._jit import njit

C_M_S = 299_792_458.0
FWHM_TO_SIGMA = 1.0 / math.sqrt(8.0 * math.log(2.0))
WEIGHTINGS = ("natural", "uniform", "briggs")


@njit
def _cell(u, v, du, dv, nu, nv):
    if u < 0.0 or (u == 0.0 and v < 0.0):
        u, v = -u, -v
    iu = int(math.floor(u / du + 0.5)) + nu // 2
    iv = int(math.floor(v / dv + 0.5)) + nv // 2
    if iu < 0 or iu >= nu or iv < 0 or iv >= nv:
        return -1, -1
    return iu, iv


@njit
def _density_kernel(uvw, freq, weight, use, du, dv, nu, nv):
    dens = np.zeros((nu, nv), dtype=np.float64)
    for r in range(uvw.shape[0]):
        for c in range(freq.size):
            if not use[r, c]:
                continue
            s = freq[c] / C_M_S
            iu, iv = _cell(uvw[r, 0] * s, uvw[r, 1] * s, du, dv, nu, nv)
            if iu >= 0:
                dens[iu, iv] += weight[r, c]
    return dens


@njit
def _apply_kernel(uvw, freq, weight, use, dens, du, dv, nu, nv, mode, f2, inv2s2):
    out = np.zeros(weight.shape, dtype=np.float64)
    for r in range(uvw.shape[0]):
        for c in range(freq.size):
            if not use[r, c]:
                continue
            s = freq[c] / C_M_S
            u, v = uvw[r, 0] * s, uvw[r, 1] * s
            w = weight[r, c]
            if mode > 0:
                iu, iv = _cell(u, v, du, dv, nu, nv)
                if iu < 0:
                    continue  # outside the grid: the gridder cannot use it either
                d = dens[iu, iv]
                if mode == 1:
                    w = w / d
                else:
                    w = w / (1.0 + d * f2)
            if inv2s2 > 0.0:
                w *= math.exp(-(u * u + v * v) * inv2s2)
            out[r, c] = w
    return out


def _validate(uvw_m, freq_hz, weight, flag):
    uvw = np.asarray(uvw_m, dtype=np.float64)
    freq = np.asarray(freq_hz, dtype=np.float64)
    if uvw.ndim != 2 or uvw.shape[1] != 3:
        raise ValueError(f"uvw_m must be (n_row, 3), got {uvw.shape}")
    if freq.ndim != 1 or not np.all(np.isfinite(freq) & (freq > 0)):
        raise ValueError("freq_hz must be positive finite (n_chan,)")
    shape = (uvw.shape[0], freq.size)
    w = np.ones(shape) if weight is None else np.asarray(weight, dtype=np.float64)
    f = np.zeros(shape, dtype=bool) if flag is None else np.asarray(flag, dtype=bool)
    if w.shape != shape or f.shape != shape:
        raise ValueError(f"weight and flag must have shape {shape}")
    use = ~f & (w > 0) & np.isfinite(w) & np.isfinite(uvw).all(axis=1)[:, None]
    return _kernel_array(uvw), _kernel_array(freq), _kernel_array(w), _kernel_array(use)


def _kernel_array(a: np.ndarray) -> np.ndarray:
    """``a`` C-contiguous and writable (copied if not): numba compiles a read-only array
    (e.g. an xarray index's values) as another type, i.e. another signature."""
    if a.flags.c_contiguous and a.flags.writeable:
        return a
    return np.array(a, order="C")


def _grid(npix_x, npix_y, pixsize_x_rad, pixsize_y_rad):
    if npix_x < 2 or npix_y < 2 or pixsize_x_rad <= 0 or pixsize_y_rad <= 0:
        raise ValueError("npix must be >= 2 and pixel sizes positive")
    return (1.0 / (npix_x * pixsize_x_rad), 1.0 / (npix_y * pixsize_y_rad),
            int(npix_x), int(npix_y))


def uv_density(uvw_m, freq_hz, weight=None, flag=None, *, npix_x: int, npix_y: int,
               pixsize_x_rad: float, pixsize_y_rad: float) -> np.ndarray:
    """Sum of visibility weights per cell of the imaging uv grid (half plane folded).

    Parameters
    ----------
    uvw_m : ndarray, shape (n_row, 3)
        Metres; rows with non-finite uvw are skipped.
    freq_hz : ndarray, shape (n_chan,)
    weight : ndarray, shape (n_row, n_chan), optional
        Visibility weights (default 1).
    flag : ndarray of bool, shape (n_row, n_chan), optional
    npix_x, npix_y : int
        Image size; the uv grid has the same shape, centre cell ``(npix_x//2, npix_y//2)``.
    pixsize_x_rad, pixsize_y_rad : float
        Image pixel sizes, radians.

    Returns
    -------
    ndarray, float64, shape (npix_x, npix_y)
    """
    uvw, freq, w, use = _validate(uvw_m, freq_hz, weight, flag)
    du, dv, nu, nv = _grid(npix_x, npix_y, pixsize_x_rad, pixsize_y_rad)
    return _density_kernel(uvw, freq, w, use, du, dv, nu, nv)


def taper_sigma_lambda(fwhm_rad: float | None = None,
                       fwhm_lambda: float | None = None) -> float:
    """Width ``s`` (wavelengths) of the uv taper ``exp(-rho^2 / (2 s^2))``.

    Parameters
    ----------
    fwhm_rad : float, optional
        FWHM of the image-plane Gaussian the taper convolves the image with, radians.
    fwhm_lambda : float, optional
        FWHM of the taper itself in the uv plane, wavelengths.
    """
    if (fwhm_rad is None) == (fwhm_lambda is None):
        raise ValueError("give exactly one of fwhm_rad and fwhm_lambda")
    if fwhm_rad is not None:
        if fwhm_rad <= 0:
            raise ValueError("fwhm_rad must be positive")
        return 1.0 / (2.0 * math.pi * fwhm_rad * FWHM_TO_SIGMA)
    if fwhm_lambda <= 0:
        raise ValueError("fwhm_lambda must be positive")
    return fwhm_lambda * FWHM_TO_SIGMA


def imaging_weights(uvw_m, freq_hz, weight=None, flag=None, *, npix_x: int, npix_y: int,
                    pixsize_x_rad: float, pixsize_y_rad: float, weighting: str = "briggs",
                    robust: float = 0.0, taper_fwhm_rad: float | None = None,
                    taper_fwhm_lambda: float | None = None,
                    density: np.ndarray | None = None) -> np.ndarray:
    """Imaging weights of every sample (see the module notes for the formulas).

    Parameters
    ----------
    uvw_m : ndarray, shape (n_row, 3)
        Baseline coordinates, metres.
    freq_hz : ndarray, shape (n_chan,)
        Channel frequencies, Hz.
    weight : ndarray, shape (n_row, n_chan), optional
        Visibility weights ``1 / sigma^2`` (default 1).
    flag : ndarray of bool, shape (n_row, n_chan), optional
        Flagged samples get weight 0.
    npix_x, npix_y : int
        Image size, pixels (defines the uv cells).
    pixsize_x_rad, pixsize_y_rad : float
        Pixel sizes, radians.
    weighting : {"natural", "uniform", "briggs"}
    robust : float
        Briggs robustness, -2 (uniform) .. 2 (close to natural).
    taper_fwhm_rad, taper_fwhm_lambda : float, optional
        Gaussian taper: image-plane FWHM (radians) or uv-plane FWHM (wavelengths).
    density : ndarray, shape (npix_x, npix_y), optional
        The :func:`uv_density` of *all* the data, when this call weights a chunk of it
        (the default is the density of the samples given).

    Returns
    -------
    ndarray, float64, shape (n_row, n_chan)
        0 for flagged, zero-weight, non-finite and off-grid samples.
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    if not -2.0 <= robust <= 2.0:
        raise ValueError(f"robust must lie in [-2, 2], got {robust}")
    uvw, freq, w, use = _validate(uvw_m, freq_hz, weight, flag)
    du, dv, nu, nv = _grid(npix_x, npix_y, pixsize_x_rad, pixsize_y_rad)
    mode = WEIGHTINGS.index(weighting)
    if mode == 0:
        dens = np.zeros((1, 1))
    elif density is None:
        dens = _density_kernel(uvw, freq, w, use, du, dv, nu, nv)
    else:
        dens = _kernel_array(np.asarray(density, dtype=np.float64))
        if dens.shape != (nu, nv):
            raise ValueError(f"density must have shape {(nu, nv)}, got {dens.shape}")
    f2 = 0.0
    if mode == 2:
        # sum_k D_k w_k = sum over cells of D^2 (a cell's density is its weights' sum),
        # sum_k w_k = sum over cells of D (samples on the grid)
        sum_w = dens.sum()
        mean_d = (dens * dens).sum() / sum_w if sum_w > 0 else 1.0
        f2 = (5.0 * 10.0 ** (-robust)) ** 2 / mean_d
    inv2s2 = 0.0
    if taper_fwhm_rad is not None or taper_fwhm_lambda is not None:
        s = taper_sigma_lambda(taper_fwhm_rad, taper_fwhm_lambda)
        inv2s2 = 1.0 / (2.0 * s * s)
    return _apply_kernel(uvw, freq, w, use, dens, du, dv, nu, nv, mode, f2, inv2s2)


__all__ = ["WEIGHTINGS", "imaging_weights", "taper_sigma_lambda", "uv_density"]
