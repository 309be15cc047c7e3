"""Hogbom CLEAN minor cycle (Hogbom 1974): one PSF subtraction per component.

See :mod:`._common` for the image and PSF layout.
"""

from __future__ import annotations

import numpy as np

from daskcal.kernels._jit import njit
from daskcal.kernels.deconvolution._common import abs_peak, check_inputs, subtract_shifted


@njit
def _hogbom(residual, psf, mask, model, gain, threshold, niter):
    for it in range(niter):
        i, j, peak = abs_peak(residual, mask)
        if i < 0 or abs(peak) <= threshold:
            return it
        amp = gain * peak
        model[i, j] += amp
        subtract_shifted(residual, psf, i, j, amp)
    return niter


def hogbom_clean(residual, psf, *, gain: float = 0.1, threshold: float = 0.0,
                 niter: int = 1000, mask=None) -> tuple[np.ndarray, np.ndarray, int]:
    """Hogbom minor cycle: find the peak, subtract ``gain x peak x PSF``, repeat.

    Parameters
    ----------
    residual : ndarray, float, shape (nx, ny)
        Residual image, Jy/beam (normalised so that the PSF peak is 1).
    psf : ndarray, float, shape (2 nx, 2 ny)
        PSF, peak 1 at ``(nx, ny)``.
    gain : float
        Loop gain, ``(0, 1]``.
    threshold : float
        Stop when the largest ``|residual|`` inside the mask is at or below it, Jy/beam.
    niter : int
        Largest number of components.
    mask : ndarray of bool, shape (nx, ny), optional
        Components only where ``True`` (default: everywhere).

    Returns
    -------
    model : ndarray, float64, shape (nx, ny)
        Clean components, Jy/pixel.
    residual : ndarray, float64, shape (nx, ny)
        The residual after subtraction (a new array).
    n_iter : int
        Number of components found.
    """
    if not 0.0 < gain <= 1.0:
        raise ValueError(f"gain must lie in (0, 1], got {gain}")
    if niter < 0 or threshold < 0:
        raise ValueError("niter and threshold must be non-negative")
    res, p, m = check_inputs(residual, psf, mask)
    res = res.copy()
    model = np.zeros_like(res)
    n = _hogbom(res, p, m, model, float(gain), float(threshold), int(niter))
    return model, res, int(n)


__all__ = ["hogbom_clean"]
