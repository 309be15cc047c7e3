"""Grid <-> image transforms shared by both methods: cropped FFTs, screens, corrections.

Conventions (ducc0.wgridder's): pixel ``(i, j)`` of an ``(npix_x, npix_y)`` image is at
``l = (i - npix_x/2) pixsize_x``, ``m = (j - npix_y/2) pixsize_y``; the grid-to-image
transform is the *unnormalised backward* FFT (``exp(+2 pi i k xi)``) evaluated only at the
pixels, ``xi_i = (i - npix_x/2) / nu``; the image-to-grid transform is its exact adjoint.

Everything that depends on the pixel only through ``(|l|, |m|)`` (w screens, grid
corrections, ``n``) is computed on one quadrant of shape ``(npix_x/2 + 1, npix_y/2 + 1)``
and applied to the four quadrants by :func:`accumulate_screen` / :func:`apply_quadrant`.
The FFTs run in place on the grid buffer (no per-plane allocations), and the first axis is
only transformed for the columns that hold pixels.
"""

from __future__ import annotations

import numpy as np
import scipy.fft

from daskcal.kernels import _threads as threads
from daskcal.kernels._jit import njit


def _fft_inplace(a: np.ndarray, axis: int, inverse: bool) -> None:
    # threads: the caller's ``scipy.fft.set_workers`` (thread-local; 1 by default, so Dask
    # task threads never oversubscribe; the in-memory imager sets it for its FFTs)
    fn = scipy.fft.ifft if inverse else scipy.fft.fft
    r = fn(a, axis=axis, norm="forward" if inverse else "backward", overwrite_x=True,
           workers=scipy.fft.get_workers())
    if not np.may_share_memory(r, a):  # pragma: no cover - scipy always works in place here
        a[...] = r


def grid_to_image_inplace(grid: np.ndarray, npix_x: int, npix_y: int) -> None:
    """Backward FFT of a periodic grid, in place, only where pixels need it.

    Afterwards ``grid[(i - npix_x/2) % nu, (j - npix_y/2) % nv]`` holds pixel ``(i, j)``:
    ``sum_{k,q} grid[k, q] exp(2 pi i (k xi_i + q eta_j))`` (other cells are garbage).
    The second axis is transformed for every row, the first only for the ``npix_y``
    columns that hold pixels.

    Parameters
    ----------
    grid : ndarray, complex64 or complex128, shape (nu, nv), C-contiguous
    """
    nv = grid.shape[1]
    hy = npix_y // 2
    _fft_inplace(grid, 1, True)
    _fft_inplace(grid[:, nv - hy:], 0, True)
    _fft_inplace(grid[:, :hy], 0, True)


def image_to_grid_inplace(grid: np.ndarray, npix_x: int, npix_y: int) -> None:
    """Adjoint of :func:`grid_to_image_inplace`: forward FFT of a grid holding pixels.

    ``grid`` must be zero except at the pixel cells ``((i - npix_x/2) % nu,
    (j - npix_y/2) % nv)``.
    """
    nv = grid.shape[1]
    hy = npix_y // 2
    _fft_inplace(grid[:, nv - hy:], 0, False)
    _fft_inplace(grid[:, :hy], 0, False)
    _fft_inplace(grid, 1, False)


def quadrant_lm(npix_x: int, npix_y: int, pixsize_x: float,
                pixsize_y: float) -> tuple[np.ndarray, np.ndarray]:
    """``|l|`` (shape (npix_x/2 + 1, 1)) and ``|m|`` (shape (1, npix_y/2 + 1)) of a quadrant."""
    return ((np.arange(npix_x // 2 + 1) * pixsize_x)[:, None],
            (np.arange(npix_y // 2 + 1) * pixsize_y)[None, :])


def quadrant_nm1(npix_x, npix_y, pixsize_x, pixsize_y) -> np.ndarray:
    """``n - 1`` on a quadrant, shape (npix_x/2 + 1, npix_y/2 + 1), computed stably."""
    l, m = quadrant_lm(npix_x, npix_y, pixsize_x, pixsize_y)
    r2 = l * l + m * m
    return -r2 / (np.sqrt(1.0 - r2) + 1.0)


@njit(inline="always")
def _acc_row(src, sq, out, hy, nv, npix_y, zero):
    for j in range(hy):
        z = src[nv - hy + j]
        s = sq[hy - j]
        out[j] += z.real * s.real - z.imag * s.imag
    for j in range(hy, npix_y):
        z = src[j - hy]
        s = sq[j - hy]
        out[j] += z.real * s.real - z.imag * s.imag
    if zero:
        src[:] = 0.0


@njit
def _accumulate_rows(grid, npix_x, npix_y, screen_q, step_q, advance, image, zero, q_lo, q_hi):
    nu, nv = grid.shape
    hx, hy = npix_x // 2, npix_y // 2
    for qi in range(q_lo, q_hi):
        sq = screen_q[qi]
        if hx + qi < npix_x:
            _acc_row(grid[qi % nu], sq, image[hx + qi], hy, nv, npix_y, zero)
        if 0 < qi:
            _acc_row(grid[(nu - qi) % nu], sq, image[hx - qi], hy, nv, npix_y, zero)
        if advance:
            st = step_q[qi]
            for qj in range(sq.shape[0]):
                sq[qj] *= st[qj]
    if zero and q_lo == 0:
        for r in range(hx, nu - hx):  # rows without pixels
            grid[r, :] = 0.0


def accumulate_screen(grid, npix_x, npix_y, screen_q, step_q, advance, image, zero=False):
    """``image += Re(pixels * screen)``: pixels from :func:`grid_to_image_inplace`.

    ``screen_q`` (complex) is given on a quadrant (see module docs); with ``advance`` it is
    multiplied by ``step_q`` afterwards, in the same pass (the next plane's screen). With
    ``zero`` the whole grid is reset to 0 on the way (ready for the next plane). Quadrant
    rows are shared among :func:`daskcal.kernels._threads.count` threads (each touches
    its own rows).
    """
    args = (grid, npix_x, npix_y, screen_q, step_q, advance, image, zero)
    threads.run(_accumulate_rows, [args + r for r in threads.ranges(npix_x // 2 + 1,
                                                                       _threads_for(image))])


@njit(inline="always")
def _place_row(src, sq, dst, hy, nv, npix_y):
    for j in range(hy):
        dst[nv - hy + j] = src[j] * sq[hy - j]
    for j in range(hy, npix_y):
        dst[j - hy] = src[j] * sq[j - hy]


@njit
def _place_rows(image, screen_q, step_q, advance, grid, q_lo, q_hi):
    nu, nv = grid.shape
    npix_x, npix_y = image.shape
    hx, hy = npix_x // 2, npix_y // 2
    if q_lo == 0:
        for r in range(hx, nu - hx):  # rows without pixels
            grid[r, :] = 0.0
    for qi in range(q_lo, q_hi):
        sq = screen_q[qi]
        if hx + qi < npix_x:
            dst = grid[qi % nu]
            dst[hy:nv - hy] = 0.0
            _place_row(image[hx + qi], sq, dst, hy, nv, npix_y)
        if 0 < qi:
            dst = grid[(nu - qi) % nu]
            dst[hy:nv - hy] = 0.0
            _place_row(image[hx - qi], sq, dst, hy, nv, npix_y)
        if advance:
            st = step_q[qi]
            for qj in range(sq.shape[0]):
                sq[qj] *= st[qj]


def place_screened(image, screen_q, step_q, advance, grid):
    """Put ``image * screen`` at the pixel cells of ``grid`` and zero all other cells.

    With ``advance`` the quadrant screen is multiplied by ``step_q`` in the same pass.
    Quadrant rows are shared among :func:`daskcal.kernels._threads.count` threads.
    """
    args = (image, screen_q, step_q, advance, grid)
    threads.run(_place_rows, [args + r for r in threads.ranges(image.shape[0] // 2 + 1,
                                                                  _threads_for(image))])


@njit
def _apply_rows(image, factor_q, i_lo, i_hi):
    nx, ny = image.shape
    hx, hy = nx // 2, ny // 2
    for i in range(i_lo, i_hi):
        qi = abs(i - hx)
        for j in range(ny):
            image[i, j] *= factor_q[qi, abs(j - hy)]


def apply_quadrant(image, factor_q):
    """``image *= factor`` with the factor given on a quadrant (in place; rows shared among
    :func:`daskcal.kernels._threads.count` threads)."""
    threads.run(_apply_rows, [(image, factor_q) + r
                              for r in threads.ranges(image.shape[0], _threads_for(image))])


#: Pixels per thread below which the screen loops run on one thread.
MIN_PIXELS_PER_THREAD = 1 << 16


def _threads_for(image) -> int:
    return max(1, min(threads.count(), image.size // MIN_PIXELS_PER_THREAD))


def even_fit(func, half_width: float, tol: float = 1e-13) -> np.ndarray:
    """Chebyshev coefficients of an even function on ``[-h, h]`` in ``s = 2 (x/h)^2 - 1``.

    The degree grows until the relative error on a fine grid is below ``tol`` (the best
    fit is kept; an error above 1e-9 raises). Evaluate with :func:`correction_quadrant`.
    """
    if half_width <= 0:
        return np.array([float(func(np.zeros(1))[0])])
    test = np.linspace(0.0, 1.0, 1001)
    ref = func(test * half_width)
    best = None
    for n in range(4, 33, 2):
        nodes = np.cos(np.pi * (np.arange(n) + 0.5) / n)  # in s
        x = np.sqrt(0.5 * (nodes + 1.0)) * half_width
        c = np.polynomial.chebyshev.chebfit(nodes, func(x), n - 1)
        err = np.abs(np.polynomial.chebyshev.chebval(2 * test**2 - 1, c) / ref - 1.0).max()
        if best is None or err < best[0]:
            best = (err, c)
        if err < tol:
            break
    if best[0] > 1e-9:
        raise ValueError("the grid correction is not smooth enough to fit")
    return best[1]


@njit
def correction_quadrant(fu, fv, nm1_q, nshift, dw, half_width, coeffs, use_w, divide_by_n,
                        out):
    """The total grid correction on a quadrant (one pass).

    ``out[i, j] = 1 / (fu[i] fv[j] P(s) n)``: ``P`` the w kernel's transform from its
    :func:`even_fit` coefficients at ``s = 2 ((nm1 - nshift) dw / h)^2 - 1`` (Clenshaw;
    omitted without w gridding), ``n`` only with ``divide_by_n``.
    """
    nc = coeffs.shape[0]
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            c = 1.0 / (fu[i] * fv[j])
            if use_w:
                t = (nm1_q[i, j] - nshift) * dw / half_width
                x = 2.0 * t * t - 1.0
                b1 = 0.0
                b2 = 0.0
                for k in range(nc - 1, 0, -1):
                    b1, b2 = 2.0 * x * b1 - b2 + coeffs[k], b1
                c /= x * b1 - b2 + coeffs[0]
            if divide_by_n:
                c /= nm1_q[i, j] + 1.0
            out[i, j] = c


def unit_phasor(phase: np.ndarray) -> np.ndarray:
    """``exp(i phase)`` via the (SIMD) real sine and cosine."""
    out = np.empty(phase.shape, dtype=np.complex128)
    out.real = np.cos(phase)
    out.imag = np.sin(phase)
    return out


__all__ = ["accumulate_screen", "apply_quadrant", "correction_quadrant", "even_fit", "unit_phasor",
           "grid_to_image_inplace", "image_to_grid_inplace", "place_screened", "quadrant_lm",
           "quadrant_nm1"]
