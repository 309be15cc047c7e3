"""Clark CLEAN minor cycle (Clark 1980).

Each Clark cycle (1) selects the *active* pixels, those inside the mask whose
``|residual|`` exceeds ``max(threshold, sidelobe x peak)`` where ``sidelobe`` is the
largest ``|PSF|`` outside a central patch; (2) runs a Hogbom loop on the active pixels
only, subtracting the PSF *patch* (``2 patch_half_width + 1`` pixels square) -- cheap,
because the list is short; (3) subtracts the cycle's components from the whole residual
exactly, by one FFT convolution with the full PSF. Cycles repeat until the threshold or
the iteration limit is reached. See :mod:`._common` for the image and PSF layout.
"""

from __future__ import annotations

import numpy as np

from daskcal.kernels._jit import njit
from daskcal.kernels.deconvolution._common import PsfConvolver, check_inputs, max_sidelobe


@njit
def _clark_minor(ii, jj, vals, psf, nx, ny, hw, gain, limit, niter, comp):
    """Hogbom loop on the active list ``(ii, jj, vals)``; components into ``comp``."""
    n = ii.size
    for it in range(niter):
        best, k = -1.0, -1
        for q in range(n):
            a = abs(vals[q])
            if a > best:
                best, k = a, q
        if k < 0 or best <= limit:
            return it
        amp = gain * vals[k]
        i0, j0 = ii[k], jj[k]
        comp[i0, j0] += amp
        for q in range(n):
            di, dj = ii[q] - i0, jj[q] - j0
            if -hw <= di <= hw and -hw <= dj <= hw:
                vals[q] -= amp * psf[nx + di, ny + dj]
    return niter


def clark_clean(residual, psf, *, gain: float = 0.1, threshold: float = 0.0,
                niter: int = 1000, mask=None, patch_half_width: int | None = None,
                max_active: int = 100_000, convolver: PsfConvolver | None = None,
                ) -> tuple[np.ndarray, np.ndarray, int]:
    """Clark minor cycles with exact Fourier-domain subtraction.

    Parameters
    ----------
    residual : ndarray, float, shape (nx, ny)
        Residual image, Jy/beam (PSF peak 1).
    psf : ndarray, float, shape (2 nx, 2 ny)
        PSF, peak 1 at ``(nx, ny)``.
    gain : float
        Loop gain, ``(0, 1]``.
    threshold : float
        Stop when the largest ``|residual|`` in the mask is at or below it, Jy/beam.
    niter : int
        Largest total number of components.
    mask : ndarray of bool, shape (nx, ny), optional
    patch_half_width : int, optional
        Half width of the PSF patch, pixels (default ``min(nx, ny) // 4``, at least 4).
    max_active : int
        Largest number of active pixels per Clark cycle (the brightest are kept).
    convolver : PsfConvolver, optional
        A convolver of this PSF to reuse across calls.

    Returns
    -------
    model, residual, n_iter
        As :func:`~daskcal.kernels.deconvolution.hogbom.hogbom_clean`.
    """
    if not 0.0 < gain <= 1.0:
        raise ValueError(f"gain must lie in (0, 1], got {gain}")
    if niter < 0 or threshold < 0:
        raise ValueError("niter and threshold must be non-negative")
    res, p, m = check_inputs(residual, psf, mask)
    res = res.copy()
    nx, ny = res.shape
    hw = max(4, min(nx, ny) // 4) if patch_half_width is None else int(patch_half_width)
    hw = min(hw, nx - 1, ny - 1)
    sidelobe = max_sidelobe(p, hw)
    conv = convolver if convolver is not None else PsfConvolver(p)
    model = np.zeros_like(res)
    done = 0
    while done < niter:
        absr = np.where(m, np.abs(res), 0.0)
        peak = absr.max()
        if peak <= threshold:
            break
        limit = max(threshold, sidelobe * peak)
        ii, jj = np.nonzero(absr > limit)
        if ii.size == 0:  # pragma: no cover - the peak itself is above the limit
            break
        if ii.size > max_active:
            keep = np.argsort(absr[ii, jj])[-max_active:]
            ii, jj = ii[keep], jj[keep]
            limit = max(limit, float(absr[ii, jj].min()))
        vals = res[ii, jj].copy()
        comp = np.zeros_like(res)
        n = _clark_minor(ii.astype(np.int64), jj.astype(np.int64), vals, p, nx, ny, hw,
                         float(gain), float(limit), int(niter - done), comp)
        if n == 0:
            break
        done += n
        model += comp
        res -= conv(comp)
    return model, res, int(done)


__all__ = ["clark_clean"]
