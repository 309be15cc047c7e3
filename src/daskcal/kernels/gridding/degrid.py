"""Numba degridding loops: the exact adjoints of :mod:`.grid`.

The periodic ``(nu, nv)`` part of the padded complex grid is transformed in place; its
guard band is then filled with the wrapped-around cells (:func:`fill_guard`), so that
each sample reads ``W`` rows of ``2 lanes`` contiguous reals without a modulo. Per row the
partial sums are kept per real (``acc[k] += ku[a] g[a, k]``, a SIMD multiply-add) and
reduced against the ``v`` taps once per sample.
"""

from __future__ import annotations

import numpy as np

from daskcal.kernels._jit import njit
from daskcal.kernels.gridding.grid import FASTMATH, one_tap, taps_uv, wp_sample, wp_scratch


@njit
def fill_guard(grid, nu, nv):
    """Copy the wrapped-around cells of ``grid[:nu, :nv]`` into its guard band (in place)."""
    n_rows, n_cols = grid.shape
    for r in range(n_rows):
        src = grid[r % nu]
        dst = grid[r]
        if r >= nu:
            for c in range(nv):
                dst[c] = src[c]
        for c in range(nv, n_cols):
            dst[c] = src[c % nv]


#: The degridders' sums may be reassociated (vectorised); no finite-math assumptions.
FASTMATH_SUM = {"contract", "reassoc"}


@njit(fastmath=FASTMATH_SUM, inline="always")
def _rows_n(g, r0, c0, ku, acc, n, support):
    # acc[k] = sum_a ku[a] g[r0 + a, c0 + k]; the row loop has a constant trip count, so
    # it is unrolled and the loop over k keeps its sums in SIMD registers
    for k in range(n):
        s = g.dtype.type(0.0)
        for a in range(support):
            s += ku[a] * g[r0 + np.uint64(a), c0 + np.uint64(k)]
        acc[k] = s


@njit(fastmath=FASTMATH_SUM, inline="always")
def weighted_rows(g, r0, c0, ku, acc, n, support):
    """``acc[k] = sum_a ku[a] g[r0 + a, c0 + k]`` for ``k < n`` (support 1..16)."""
    if support <= 4:
        _rows_n(g, r0, c0, ku, acc, n, 4)
    elif support == 5:
        _rows_n(g, r0, c0, ku, acc, n, 5)
    elif support == 6:
        _rows_n(g, r0, c0, ku, acc, n, 6)
    elif support == 7:
        _rows_n(g, r0, c0, ku, acc, n, 7)
    elif support == 8:
        _rows_n(g, r0, c0, ku, acc, n, 8)
    elif support == 9:
        _rows_n(g, r0, c0, ku, acc, n, 9)
    elif support == 10:
        _rows_n(g, r0, c0, ku, acc, n, 10)
    elif support == 11:
        _rows_n(g, r0, c0, ku, acc, n, 11)
    elif support == 12:
        _rows_n(g, r0, c0, ku, acc, n, 12)
    elif support <= 14:
        _rows_n(g, r0, c0, ku, acc, n, 14)
    else:
        _rows_n(g, r0, c0, ku, acc, n, 16)


@njit(fastmath=FASTMATH_SUM)
def degrid_es_items(items, n_planes, plane, support_w, offsets, iu, iv, yu, yv, yw, coeffs,
                    coeffs_w, support, lanes, g, out):
    """Add the plane's contribution to the items' samples: ``out[i] += kw sum ku kv g``.

    Parameters are those of :func:`.grid.grid_es_items` (``g`` the interleaved real view
    of a grid with a filled guard band; ``ku`` is zero beyond the support, so rows up to
    the next supported trip count may be read); ``out`` is complex128, shape (n,), in
    index order. Items hold disjoint samples, so threads may share ``out``.
    """
    ku = np.zeros(16, dtype=coeffs.dtype)
    kv = np.zeros(lanes, dtype=coeffs.dtype)
    acc = np.zeros(2 * lanes, dtype=g.dtype)
    p_first = max(plane - max(support_w, 1) + 1, 0)
    for it in range(items.shape[0]):
        t, i_lo, i_hi = items[it, 0], items[it, 1], items[it, 2]
        for p_lo in range(p_first, plane + 1):
            key = t * n_planes + p_lo
            j = plane - p_lo
            for i in range(max(offsets[key], i_lo), min(offsets[key + 1], i_hi)):
                taps_uv(coeffs, yu[i], yv[i], ku, kv, lanes)
                kw = one_tap(coeffs_w, yw[i], j) if support_w > 0 else 1.0
                weighted_rows(g, np.uint64(iu[i]), np.uint64(2 * iv[i]), ku, acc,
                              2 * lanes, support)
                sr = 0.0
                si = 0.0
                for b in range(lanes):
                    sr += acc[2 * b] * kv[b]
                    si += acc[2 * b + 1] * kv[b]
                out[i] += complex(sr * kw, si * kw)


@njit(fastmath=FASTMATH)
def degrid_wproject(gu, gv, w, nu, nv, wt_u, sup_u, len_u, amp_u, aoff_u, xi0_u, post_u,
                    wt_v, sup_v, len_v, amp_v, aoff_v, xi0_v, post_v, scale_u, scale_v,
                    w_scale, arg, n_taylor, tol, tw_re, tw_im, lanes_max, g, out):
    """Adjoint of :func:`.grid.grid_wproject`: ``out[i] = sum_k s^k sum conj(ku kv) g_k``.

    ``g`` has shape (n_taylor, nu + pad, 2 (nv + pad)) (interleaved real views of grids
    with filled guard bands); ``out`` is complex128, shape (n,), in index order.
    """
    n = gu.shape[0]
    bre, bim, kur, kui, kvr, kvi = wp_scratch(len_u, len_v, lanes_max, g)
    acc_r = np.zeros(2 * lanes_max, dtype=g.dtype)
    acc_i = np.zeros(2 * lanes_max, dtype=g.dtype)
    for i in range(n):
        su, sv, lanes, r0, c0, n_k, s = wp_sample(
            i, gu, gv, w, nu, nv, wt_u, sup_u, len_u, amp_u, aoff_u, xi0_u, post_u, wt_v,
            sup_v, len_v, amp_v, aoff_v, xi0_v, post_v, scale_u, scale_v, w_scale, arg,
            n_taylor, tol, tw_re, tw_im, bre, bim, kur, kui, kvr, kvi)
        tot_r = 0.0
        tot_i = 0.0
        sk = 1.0
        for k in range(n_k):
            gk = g[k]
            for m in range(2 * lanes):
                acc_r[m] = 0.0
                acc_i[m] = 0.0
            for a in range(su):
                cr = kur[a]
                ci = kui[a]
                row = gk[r0 + np.uint64(a)]
                for m in range(2 * lanes):
                    x = row[c0 + np.uint64(m)]
                    acc_r[m] += cr * x
                    acc_i[m] += ci * x
            # T_b = sum_a conj(ku_a) G_ab = (A_re + B_im) + i (A_im - B_re)
            sr = 0.0
            si = 0.0
            for b in range(sv):
                tr = acc_r[2 * b] + acc_i[2 * b + 1]
                ti = acc_r[2 * b + 1] - acc_i[2 * b]
                # conj(kv_b) T_b
                sr += kvr[b] * tr + kvi[b] * ti
                si += kvr[b] * ti - kvi[b] * tr
            tot_r += sk * sr
            tot_i += sk * si
            sk *= s
        out[i] = complex(tot_r, tot_i)


__all__ = ["degrid_es_items", "degrid_wproject", "fill_guard"]
