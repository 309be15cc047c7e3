"""Improved w-stacking (Arras et al. 2021): the ES kernel in u, v *and* w, one FFT per plane.

Gridding: every sample is spread with the ES kernel onto ``W x W`` cells of the
``W_w`` w planes around its ``w`` (plane ``p`` at ``w_p = w0 + p dw``), carrying the factor
``exp(-2 pi i w nshift)``; each plane is transformed (:func:`.transforms.grid_to_image`),
multiplied by its screen ``exp(-2 pi i w_p (n - 1 - nshift))`` and the real parts summed;
finally the image is divided by ``phi_hat_u(xi_x) phi_hat_v(xi_y) phi_hat_w(dw (n - 1 -
nshift))`` and by ``n``. The w kernel acting across the planes turns the sum over planes
into ``phi_hat_w exp(-2 pi i w (n - 1 - nshift))`` up to its alias error, which is what makes
this exact to the kernel accuracy (``dw <= 1 / (2 sigma_w max|n - 1 - nshift|)``).

Without w gridding there is a single plane and no w screen (``n - 1`` is ignored).
Degridding is the exact adjoint, step by step in reverse.
"""

from __future__ import annotations

import weakref

import numpy as np

from daskcal.kernels import _threads as threads
from daskcal.kernels.gridding.degrid import degrid_es_items, fill_guard
from daskcal.kernels.gridding.grid import COEF_ROWS, add_rows, grid_es_items
from daskcal.kernels.gridding.index import TILE, VisIndex
from daskcal.kernels.gridding.plan import GriddingPlan
from daskcal.kernels.gridding.transforms import (
    accumulate_screen,
    apply_quadrant,
    correction_quadrant,
    even_fit,
    grid_to_image_inplace,
    image_to_grid_inplace,
    place_screened,
    quadrant_nm1,
    unit_phasor,
)


def lanes_of(support: int) -> int:
    """SIMD row length of a support: a multiple of 8."""
    return ((support + 7) // 8) * 8


def padded_coeffs(kernel, lanes: int, dtype) -> np.ndarray:
    """Tap polynomials zero-padded to ``lanes`` columns and to one of the fixed row counts
    :data:`.grid.COEF_ROWS` (leading zero coefficients), in the compute dtype."""
    n = kernel.coeffs.shape[0]
    rows = next(r for r in COEF_ROWS if r >= n)
    c = np.zeros((rows, lanes), dtype=dtype)
    c[rows - n:, : kernel.support] = kernel.coeffs
    return c


def real_dtypes(plan: GriddingPlan) -> tuple[type, type, type]:
    """(tap dtype, accumulation dtype, FFT complex dtype) of a plan."""
    tap = np.float32 if plan.single else np.float64
    acc = np.float64 if plan.double_accum else np.float32
    fft = np.complex128 if plan.fft_double else np.complex64
    return tap, acc, fft


def plane_counts(plan: GriddingPlan, index: VisIndex) -> np.ndarray:
    """Number of samples touching each plane, shape (n_planes,)."""
    per_plane = index.plane_counts()
    if not _support_w(plan) or index.n_planes == 1:
        return per_plane
    return np.convolve(per_plane, np.ones(_support_w(plan), dtype=np.int64))[:index.n_planes]


def _support_w(plan: GriddingPlan) -> int:
    return plan.kernel_w.support if (plan.do_wgridding and plan.kernel_w is not None) else 0


class _Taps:
    """Kernel tables of a plan in the compute precision (see :func:`.grid.grid_es_items`)."""

    def __init__(self, plan: GriddingPlan):
        tap, _, _ = real_dtypes(plan)
        self.support = plan.kernel.support
        self.lanes = lanes_of(self.support)
        self.coeffs = padded_coeffs(plan.kernel, self.lanes, tap)
        self.support_w = _support_w(plan)
        self.coeffs_w = (padded_coeffs(plan.kernel_w, lanes_of(self.support_w), tap)
                         if self.support_w else np.zeros((COEF_ROWS[0], 8), tap))


#: Per plan: the quadrant ``y`` and correction (and the screen steps), computed once.
_QUADRANTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _screen_quadrants(plan: GriddingPlan):
    """``y = n - 1 - nshift`` on a quadrant (None without w) and the correction factor
    (cached per plan: do not modify)."""
    got = _QUADRANTS.get(plan)
    if got is not None:
        return got[0], got[1]
    nm1 = quadrant_nm1(plan.npix_x, plan.npix_y, plan.pixsize_x, plan.pixsize_y)
    hx, hy = plan.npix_x // 2 + 1, plan.npix_y // 2 + 1
    fu = plan.kernel.fourier(np.arange(hx) / plan.nu)
    fv = plan.kernel.fourier(np.arange(hy) / plan.nv)
    y, half, coeffs = None, 0.0, np.ones(1)
    if plan.do_wgridding:
        y = nm1 - plan.nshift
        half = float(np.abs(y).max() * plan.dw)
        coeffs = even_fit(plan.kernel_w.fourier, half)
    corr = np.empty(nm1.shape)
    correction_quadrant(fu, fv, nm1, plan.nshift, plan.dw, max(half, 1e-300), coeffs,
                        plan.do_wgridding, plan.divide_by_n, corr)
    # shared by every call on this plan: never modified (kept writeable, as numba compiles
    # read-only arrays as another type)
    _QUADRANTS[plan] = (y, corr, {})
    return y, corr


def _screen_step(plan: GriddingPlan, y, sign: float) -> np.ndarray:
    """``exp(sign 2 pi i dw y)`` (cached per plan and sign: do not modify)."""
    steps = _QUADRANTS[plan][2]
    if sign not in steps:
        steps[sign] = unit_phasor((sign * 2.0 * np.pi * plan.dw) * y)
    return steps[sign]


class _Screens:
    """W screens ``exp(sign 2 pi i w_p y)`` of consecutive planes on a quadrant.

    :meth:`use` returns the screen of plane ``p`` and the step to the next plane; the
    consumer advances the screen in the same pass (one complex multiplication per quadrant
    pixel; exact values are recomputed after a skipped plane; float64 drift over 100
    planes ~1e-14).
    """

    def __init__(self, plan: GriddingPlan, y, sign: float):
        self.plan, self.y, self.sign = plan, y, sign
        self.p = None
        if y is None:
            shape = (plan.npix_x // 2 + 1, plan.npix_y // 2 + 1)
            self.z = np.ones(shape, dtype=np.complex128)
            self.step = self.z
        else:
            self.step = _screen_step(plan, y, sign)

    def use(self, p: int) -> tuple[np.ndarray, np.ndarray, bool]:
        """``(screen of plane p, step, advance)``; the caller applies and advances it."""
        if self.y is None:
            return self.z, self.step, False
        if self.p != p:
            self.z = unit_phasor((self.sign * 2.0 * np.pi
                                  * (self.plan.w0 + p * self.plan.dw)) * self.y)
        self.p = p + 1
        return self.z, self.step, True


#: Samples per grid cell above which a plane is gridded by several threads (each onto a
#: grid of its own, summed afterwards: worth it when the samples outweigh the cells).
PARALLEL_SAMPLES_PER_CELL = 0.25


#: Samples of a plane below which it is degridded on one thread.
PARALLEL_MIN_SAMPLES = 20_000


def _grid_plane(plan, index, taps, p, n_p, target, bufs, private):
    """Grid plane ``p`` (``n_p`` samples) onto ``target``, on as many threads as pay."""
    n_threads = threads.count()
    if n_p < PARALLEL_SAMPLES_PER_CELL * target.size:
        n_threads = 1
    groups = threads.plane_items(index.offsets, index.n_tiles, index.n_planes, p,
                                 taps.support_w, n_threads)
    while len(bufs) < len(groups):
        bufs.append(np.zeros_like(bufs[0]))
    while len(private) < len(groups) - 1:
        private.append(np.zeros((plan.nu, plan.nv), dtype=target.dtype))
    grids = [target] + private[:len(groups) - 1]
    threads.run(grid_es_items, [
        (items, index.n_tiles_v, TILE, index.n_planes, p, taps.support_w, index.offsets,
         index.iu, index.iv, index.yu, index.yv, index.yw, index.val, taps.coeffs,
         taps.coeffs_w, taps.support, taps.lanes, bufs[k], grids[k])
        for k, items in enumerate(groups)])
    for g in grids[1:]:  # sum (and zero) the threads' grids, rows shared among threads
        threads.run(add_rows, [(target, g) + r for r in threads.ranges(plan.nu, len(groups))])


def grid_planes(plan: GriddingPlan, index: VisIndex, *, into=None):
    """Grid the indexed samples; yields ``(p, grid_p)`` for each non-empty plane.

    Without ``into``, ``grid_p`` is one complex ``(nu, nv)`` buffer of the plan's FFT
    precision reused for all planes, lent as :class:`_Zeroed` (the consumer,
    :func:`planes_to_dirty`, transforms it in place and leaves it zeroed); with ``into``
    (an array of shape ``plan.grid_shape``) each plane is accumulated into ``into[p]``.

    Threads (:func:`daskcal.kernels._threads.count`): a plane with at least
    :data:`PARALLEL_SAMPLES_PER_CELL` samples per cell is gridded by every thread onto
    a grid of its own (memory: ``threads - 1`` extra ``(nu, nv)`` grids).
    """
    _, acc, fft = real_dtypes(plan)
    taps = _Taps(plan)
    bufs = [np.zeros((TILE + taps.support, 2 * (TILE + taps.lanes)), dtype=acc)]
    private: list[np.ndarray] = []
    grid = None
    if into is None:
        grid = np.empty((plan.nu, plan.nv), dtype=fft)
        grid[...] = 0.0
    counts = plane_counts(plan, index)
    for p in range(index.n_planes):
        if counts[p] == 0:
            continue
        target = grid if into is None else into[p]
        _grid_plane(plan, index, taps, p, int(counts[p]), target, bufs, private)
        yield (p, _Zeroed(grid)) if into is None else (p, into[p])


class _Zeroed:
    """A grid view lent to :func:`planes_to_dirty`, which must zero it after use."""

    def __init__(self, view: np.ndarray):
        self.view = view


def planes_to_dirty(plan: GriddingPlan, planes, *, inplace: bool = False) -> np.ndarray:
    """FFT, w screen and sum of ``(p, grid_p)`` pairs, then the corrections.

    With ``inplace`` the grids are transformed in place when they have the FFT precision
    (they are destroyed); otherwise each is copied to a work buffer first.

    Returns
    -------
    ndarray, float64, shape (npix_x, npix_y)
    """
    _, _, fft = real_dtypes(plan)
    image = np.zeros((plan.npix_x, plan.npix_y), dtype=np.float64)
    y, corr = _screen_quadrants(plan)
    screens = _Screens(plan, y, -1.0)
    work = None
    for p, grid in planes:
        lent = isinstance(grid, _Zeroed)
        if lent:
            grid = grid.view
        elif not inplace or grid.dtype != fft:
            if work is None:
                work = np.empty((plan.nu, plan.nv), dtype=fft)
            work[...] = grid
            grid = work
        grid_to_image_inplace(grid, plan.npix_x, plan.npix_y)
        accumulate_screen(grid, plan.npix_x, plan.npix_y, *screens.use(p), image, lent)
    apply_quadrant(image, corr)
    return image


def dirty(plan: GriddingPlan, index: VisIndex) -> np.ndarray:
    """Dirty image of the indexed samples (gridding, FFT and screens plane by plane)."""
    return planes_to_dirty(plan, grid_planes(plan, index), inplace=True)


def predict(plan: GriddingPlan, index: VisIndex, image: np.ndarray) -> np.ndarray:
    """Adjoint of :func:`dirty`: model visibilities of the indexed samples, in index order.

    Returns
    -------
    ndarray, complex128, shape (n,)
        The degridded values times ``index.val`` (conjugated for mirrored samples).
    """
    _, _, fft = real_dtypes(plan)
    taps = _Taps(plan)
    pad = taps.lanes
    buf = np.empty((plan.nu + pad, plan.nv + pad), dtype=fft)
    view = buf[:plan.nu, :plan.nv]
    real = buf.view(np.float64 if fft == np.complex128 else np.float32)
    y, corr = _screen_quadrants(plan)
    img = np.array(image, dtype=np.float64, copy=True)
    apply_quadrant(img, corr)
    out = np.zeros(index.val.size, dtype=np.complex128)
    counts = plane_counts(plan, index)
    screens = _Screens(plan, y, 1.0)
    n_threads = threads.count()
    for p in range(index.n_planes):
        if counts[p] == 0:
            continue
        place_screened(img, *screens.use(p), view)
        image_to_grid_inplace(view, plan.npix_x, plan.npix_y)
        fill_guard(buf, plan.nu, plan.nv)
        groups = threads.plane_items(index.offsets, index.n_tiles, index.n_planes, p,
                                     taps.support_w,
                                     n_threads if counts[p] >= PARALLEL_MIN_SAMPLES else 1)
        # items hold disjoint samples: the threads share ``out``
        threads.run(degrid_es_items, [
            (items, index.n_planes, p, taps.support_w, index.offsets, index.iu, index.iv,
             index.yu, index.yv, index.yw, taps.coeffs, taps.coeffs_w, taps.support,
             taps.lanes, real, out) for items in groups])
    out *= index.val
    np.conjugate(out, out=out, where=index.flipped())
    return out


__all__ = ["dirty", "grid_planes", "lanes_of", "padded_coeffs", "plane_counts",
           "planes_to_dirty", "predict", "real_dtypes"]
