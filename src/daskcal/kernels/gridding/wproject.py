"""W-projection with exact per-visibility kernels (see :mod:`.wkernels`, :mod:`.wtaps`).

Gridding: each sample is convolved onto the grid with the separable kernel
``k_w(u) k_w(v)`` that carries the window ``A`` and the separable part of the w term, and
with ``val * (w / w_scale)^k`` onto the grid of Taylor term ``k``; each grid is
transformed, multiplied by ``(-2 pi i w_scale (R - r0))^k / k!`` (``R`` the non-separable
remainder of ``n - 1``, ``r0`` its centre, whose phase ``exp(-2 pi i w r0)`` the samples
carry) and the real parts summed; the image is divided by ``A(xi_x) A(xi_y)`` and ``n``.
Degridding is the exact adjoint.
"""

from __future__ import annotations

import numpy as np

from daskcal.kernels.gridding.degrid import degrid_wproject, fill_guard
from daskcal.kernels.gridding.grid import fold_guard, grid_wproject
from daskcal.kernels.gridding.index import VisIndex
from daskcal.kernels.gridding.plan import GriddingPlan
from daskcal.kernels.gridding.transforms import (
    accumulate_screen,
    apply_quadrant,
    grid_to_image_inplace,
    image_to_grid_inplace,
    place_screened,
    quadrant_lm,
    quadrant_nm1,
)
from daskcal.kernels.gridding.wkernels import quadrature_tables, separable_nm1, window
from daskcal.kernels.gridding.wstack import lanes_of, real_dtypes
from daskcal.kernels.gridding.wtaps import twiddles


def _axis_tables(kern):
    amp, aoff, xi0 = quadrature_tables(kern)
    lmax = int(kern.fft_len_table.max())
    j = np.arange(lmax)
    ang = -2.0 * np.pi * xi0[:, None] * j[None, :]
    post = np.ascontiguousarray(np.stack([np.cos(ang), np.sin(ang)], axis=-1))
    return (kern.w_table, kern.support_table, kern.fft_len_table, amp, aoff, xi0, post)


def _setup(plan: GriddingPlan):
    tu = _axis_tables(plan.wp_u)
    tv = _axis_tables(plan.wp_v)
    lmax = int(max(tu[2].max(), tv[2].max()))
    tw = twiddles(lmax)
    smax = int(max(tu[1].max(), tv[1].max()))
    lanes = lanes_of(smax)
    return tu, tv, tw, lanes, max(lanes, smax)


def _tol(plan: GriddingPlan) -> float:
    return plan.epsilon / 8.0


def _screens(plan: GriddingPlan):
    """Quadrant Taylor screens ``S_k`` (complex, list) and the correction factor."""
    nm1 = quadrant_nm1(plan.npix_x, plan.npix_y, plan.pixsize_x, plan.pixsize_y)
    l, m = quadrant_lm(plan.npix_x, plan.npix_y, plan.pixsize_x, plan.pixsize_y)
    res = nm1 - separable_nm1(l) - separable_nm1(m) - plan.r0
    base = -2j * np.pi * plan.w_scale * res
    screens = [np.ones_like(base)]
    for k in range(1, plan.n_taylor):
        screens.append(screens[-1] * base / k)
    xl, xm = quadrant_lm(plan.npix_x, plan.npix_y, 1.0 / plan.nu, 1.0 / plan.nv)
    corr = 1.0 / (window(xl, plan.wp_u.xi_c, plan.wp_u.beta)
                  * window(xm, plan.wp_v.xi_c, plan.wp_v.beta))
    if plan.divide_by_n:
        corr = corr / (nm1 + 1.0)
    return screens, corr


def grid_planes(plan: GriddingPlan, index: VisIndex, *, into=None):
    """Grid the indexed samples; yields ``(k, grid_k)`` for each Taylor term.

    ``grid_k`` is a complex ``(nu, nv)`` view into the term's padded grid (or a copy in the
    FFT precision), or ``into[k]``.
    """
    _, acc, fft = real_dtypes(plan)
    tu, tv, tw, lanes, pad = _setup(plan)
    cacc = np.complex128 if acc == np.float64 else np.complex64
    buf = np.empty((plan.n_taylor, plan.nu + pad, plan.nv + pad), dtype=cacc)
    buf[...] = 0.0
    grid_wproject(index.gu, index.gv, index.w, index.val, plan.nu, plan.nv, *tu, *tv,
                  plan.wp_u.scale, plan.wp_v.scale, plan.w_scale, plan.taylor_arg,
                  plan.n_taylor, _tol(plan), tw[0], tw[1], lanes, buf.view(acc))
    for k in range(plan.n_taylor):
        fold_guard(buf[k], plan.nu, plan.nv)
        view = buf[k, :plan.nu, :plan.nv]
        if into is not None:
            into[k] = view
            yield k, into[k]
        elif cacc != fft:
            yield k, view.astype(fft)
        else:
            yield k, view


def planes_to_dirty(plan: GriddingPlan, planes, *, inplace: bool = False) -> np.ndarray:
    """FFT, Taylor screens and sum of ``(k, grid_k)`` pairs, then the corrections.

    With ``inplace`` the grids (of the FFT precision) are transformed in place.
    """
    _, _, fft = real_dtypes(plan)
    image = np.zeros((plan.npix_x, plan.npix_y), dtype=np.float64)
    screens, corr = _screens(plan)
    work = None
    for k, grid in planes:
        if not inplace or grid.dtype != fft:
            if work is None:
                work = np.empty((plan.nu, plan.nv), dtype=fft)
            work[...] = grid
            grid = work
        grid_to_image_inplace(grid, plan.npix_x, plan.npix_y)
        accumulate_screen(grid, plan.npix_x, plan.npix_y, screens[k], screens[k], False, image,
                          False)
    apply_quadrant(image, corr)
    return image


def dirty(plan: GriddingPlan, index: VisIndex) -> np.ndarray:
    """Dirty image of the indexed samples."""
    return planes_to_dirty(plan, grid_planes(plan, index), inplace=True)


def predict(plan: GriddingPlan, index: VisIndex, image: np.ndarray) -> np.ndarray:
    """Adjoint of :func:`dirty`: visibilities of the indexed samples, in index order."""
    _, _, fft = real_dtypes(plan)
    tu, tv, tw, lanes, pad = _setup(plan)
    screens, corr = _screens(plan)
    img = np.array(image, dtype=np.float64, copy=True)
    apply_quadrant(img, corr)
    buf = np.empty((plan.n_taylor, plan.nu + pad, plan.nv + pad), dtype=fft)
    for k in range(plan.n_taylor):
        view = buf[k, :plan.nu, :plan.nv]
        s = np.conj(screens[k])
        place_screened(img, s, s, False, view)
        image_to_grid_inplace(view, plan.npix_x, plan.npix_y)
        fill_guard(buf[k], plan.nu, plan.nv)
    out = np.zeros(index.val.size, dtype=np.complex128)
    real = buf.view(np.float64 if fft == np.complex128 else np.float32)
    degrid_wproject(index.gu, index.gv, index.w, plan.nu, plan.nv, *tu, *tv,
                    plan.wp_u.scale, plan.wp_v.scale, plan.w_scale, plan.taylor_arg,
                    plan.n_taylor, _tol(plan), tw[0], tw[1], lanes, real, out)
    out *= index.val
    np.conjugate(out, out=out, where=index.flipped())
    return out


__all__ = ["dirty", "grid_planes", "planes_to_dirty", "predict"]
