"""Shared helpers of the minor-cycle kernels: input checks, peak search, PSF convolution.

Image layout (that of :mod:`daskcal.kernels.gridding`): ``image[i, j]`` with axis 0 the
direction cosine ``l`` (east) and axis 1 ``m`` (north), ``l = (i - npix_x // 2) dx``.
A PSF for an ``(nx, ny)`` image has shape ``(2 nx, 2 ny)`` with its peak at ``(nx, ny)``,
so that a component anywhere in the image has the full PSF over the whole image.
"""

from __future__ import annotations

import numpy as np
import scipy.fft as sfft

from daskcal.kernels._jit import njit


def check_inputs(residual, psf, mask):
    """Validate and normalise ``residual`` (nx, ny), ``psf`` (2nx, 2ny) and ``mask``."""
    res = np.ascontiguousarray(residual, dtype=np.float64)
    if res.ndim != 2:
        raise ValueError(f"residual must be 2-d, got {res.shape}")
    nx, ny = res.shape
    p = np.ascontiguousarray(psf, dtype=np.float64)
    if p.shape != (2 * nx, 2 * ny):
        raise ValueError(f"psf must have shape {(2 * nx, 2 * ny)} (twice the image), "
                         f"got {p.shape}")
    if mask is None:
        m = np.ones((nx, ny), dtype=np.bool_)
    else:
        m = np.ascontiguousarray(mask, dtype=np.bool_)
        if m.shape != (nx, ny):
            raise ValueError(f"mask must have shape {(nx, ny)}, got {m.shape}")
    return res, p, m


@njit
def abs_peak(img, mask):
    """``(i, j, value)`` of the largest ``|img|`` inside ``mask`` (``(-1, -1, 0)`` if none)."""
    best, bi, bj = -1.0, -1, -1
    for i in range(img.shape[0]):
        for j in range(img.shape[1]):
            if mask[i, j]:
                a = abs(img[i, j])
                if a > best:
                    best, bi, bj = a, i, j
    if bi < 0:
        return -1, -1, 0.0
    return bi, bj, img[bi, bj]


@njit
def subtract_shifted(img, kernel, i0, j0, amp):
    """``img[i, j] -= amp * kernel[i - i0 + nx, j - j0 + ny]`` over the whole image."""
    nx, ny = img.shape
    for i in range(nx):
        ki = i - i0 + nx
        for j in range(ny):
            img[i, j] -= amp * kernel[ki, j - j0 + ny]


class PsfConvolver:
    """Linear convolution of ``(nx, ny)`` images with a ``(2nx, 2ny)`` centred kernel.

    ``out[i, j] = sum_{p, q} x[p, q] kernel[i - p + nx, j - q + ny]`` exactly (no wrap),
    by one real FFT pair of size ``(2nx, 2ny)``; the kernel's transform is kept.
    """

    def __init__(self, kernel: np.ndarray):
        self.shape = kernel.shape
        self.nx, self.ny = kernel.shape[0] // 2, kernel.shape[1] // 2
        self.kernel_ft = sfft.rfft2(kernel)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        pad = np.zeros(self.shape)
        pad[:self.nx, :self.ny] = x
        full = sfft.irfft2(sfft.rfft2(pad) * self.kernel_ft, s=self.shape)
        return full[self.nx:, self.ny:].copy()


def max_sidelobe(psf: np.ndarray, half_width: int) -> float:
    """Largest ``|psf|`` outside the ``(2 half_width + 1)^2`` patch about the centre."""
    nx, ny = psf.shape[0] // 2, psf.shape[1] // 2
    a = np.abs(psf).copy()
    a[nx - half_width:nx + half_width + 1, ny - half_width:ny + half_width + 1] = 0.0
    return float(a.max())
