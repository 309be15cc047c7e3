"""Numba gridding loops: visibilities (from a :class:`.index.VisIndex`) onto uv grids.

Layout (ES kernels). The index sorts samples by tile of the uv grid; the samples of a tile
are accumulated in a small local buffer of ``(tile + W) x (tile + lanes)`` cells, seen as
real numbers with real and imaginary parts interleaved, which is then added once onto the
periodic complex grid (with wrap-around). A sample whose first cell is ``(iu, iv)`` writes
rows ``iu .. iu + W - 1`` of the buffer and the ``2 lanes`` reals of columns
``iv .. iv + lanes - 1`` without any modulo. Per sample the ``v`` taps times the
visibility are formed once as an interleaved vector ``q``; each kernel row is then one
contiguous multiply-add ``row += ku[a] * q`` over ``2 lanes`` reals (``lanes`` is the
support rounded up to a multiple of 8, taps zero-padded), which the compiler turns into
SIMD instructions. With double accumulation the buffer is float64 and the grid may stay
complex64: the long sums happen in the buffer.

Layout (w-projection). Grids are complex arrays of shape ``(nu + pad, nv + pad)``, seen
as interleaved reals; the guard band is folded back afterwards (:func:`fold_guard`).

Kernels. ES taps are piecewise polynomials evaluated by Horner's rule (all taps of an axis
in SIMD registers; the polynomials are padded to a few fixed lengths so that the Horner
loops have compile-time trip counts), on the fly for every plane a sample touches: keeping
them between planes costs ~100 bytes per sample and was slower (memory first touch).
W-projection taps come from :func:`.wtaps.wp_taps` (exact, per visibility and axis); the
Taylor terms of the non-separable w remainder are gridded onto ``n_taylor`` grids in the
same pass, each visibility only onto as many as its ``|w|`` needs.
"""

from __future__ import annotations

import numpy as np

from daskcal.kernels._jit import njit
from daskcal.kernels.gridding.wtaps import wp_taps

#: Fast-math flags of the loops: fused multiply-add only (no reassociation, NaN-safe).
FASTMATH = {"contract"}


#: Row counts the tap polynomials are padded to (leading zero coefficients), so that the
#: Horner loops have compile-time trip counts (unrolled, taps kept in SIMD registers).
COEF_ROWS = (6, 8, 10, 12, 14, 16, 18, 20)


@njit(fastmath=FASTMATH, inline="always")
def _taps_uv_n(coeffs, yu, yv, ku, kv, lanes, n_coef):
    for j in range(lanes):
        au = coeffs[0, j]
        av = au
        for d in range(1, n_coef):
            c = coeffs[d, j]
            au = au * yu + c
            av = av * yv + c
        ku[j] = au
        kv[j] = av


@njit(fastmath=FASTMATH, inline="always")
def taps_uv(coeffs, yu, yv, ku, kv, lanes):
    """Taps of both axes: ``k[j] = sum_d coeffs[d, j] y^(rows-1-d)`` for ``j < lanes``.

    ``coeffs`` has one of :data:`COEF_ROWS` rows; each branch has a constant Horner length.
    """
    n_coef = coeffs.shape[0]
    if n_coef == 6:
        _taps_uv_n(coeffs, yu, yv, ku, kv, lanes, 6)
    elif n_coef == 8:
        _taps_uv_n(coeffs, yu, yv, ku, kv, lanes, 8)
    elif n_coef == 10:
        _taps_uv_n(coeffs, yu, yv, ku, kv, lanes, 10)
    elif n_coef == 12:
        _taps_uv_n(coeffs, yu, yv, ku, kv, lanes, 12)
    elif n_coef == 14:
        _taps_uv_n(coeffs, yu, yv, ku, kv, lanes, 14)
    elif n_coef == 16:
        _taps_uv_n(coeffs, yu, yv, ku, kv, lanes, 16)
    elif n_coef == 18:
        _taps_uv_n(coeffs, yu, yv, ku, kv, lanes, 18)
    else:
        _taps_uv_n(coeffs, yu, yv, ku, kv, lanes, 20)


@njit(fastmath=FASTMATH, inline="always")
def _tap_n(coeffs, y, j, n_coef):
    a = coeffs[0, j]
    for d in range(1, n_coef):
        a = a * y + coeffs[d, j]
    return a


@njit(fastmath=FASTMATH, inline="always")
def one_tap(coeffs, y, j):
    """Tap ``j`` of a kernel at sub-cell position ``y`` (see :func:`taps_uv`)."""
    n_coef = coeffs.shape[0]
    if n_coef == 6:
        return _tap_n(coeffs, y, j, 6)
    if n_coef == 8:
        return _tap_n(coeffs, y, j, 8)
    if n_coef == 10:
        return _tap_n(coeffs, y, j, 10)
    if n_coef == 12:
        return _tap_n(coeffs, y, j, 12)
    if n_coef == 14:
        return _tap_n(coeffs, y, j, 14)
    if n_coef == 16:
        return _tap_n(coeffs, y, j, 16)
    if n_coef == 18:
        return _tap_n(coeffs, y, j, 18)
    return _tap_n(coeffs, y, j, 20)


@njit(fastmath=FASTMATH)
def grid_es_items(items, n_tiles_v, tile, n_planes, plane, support_w, offsets, iu, iv, yu, yv,
                  yw, val, coeffs, coeffs_w, support, lanes, buf, grid):
    """Add the samples of the work items (all touching w-plane ``plane``) onto ``grid``.

    The samples of one item (part of one tile, see
    :func:`daskcal.kernels._threads.plane_items`) are accumulated in the small local buffer
    ``buf`` (L1/L2-resident, in the accumulation precision), which is then added once onto
    the periodic complex ``grid``. Long sums happen in
    ``buf``, so a complex64 ``grid`` receives only a few additions per cell even when
    ``buf`` is float64 (double accumulation without a complex128 plane).

    Parameters
    ----------
    items : ndarray, int64, shape (n_items, 3)
        Rows ``(tile, i0, i1)``: index samples ``i0 .. i1 - 1`` of one tile.
    n_tiles_v, tile : int
        Tiles along v and the tile size (cells); tile ``t`` starts at cell
        ``((t // n_tiles_v) tile, (t % n_tiles_v) tile)``.
    n_planes, plane : int
        Planes of the index and the plane gridded.
    support_w : int
        W-kernel support (planes); 0 without w-stacking (every sample, weight 1).
    offsets : ndarray, int64, shape (n_tiles * n_planes + 1,)
        Key offsets of the index (key = tile * n_planes + first plane).
    iu, iv, yu, yv, yw, val : ndarrays
        Index columns (see :class:`.index.VisIndex`).
    coeffs, coeffs_w : ndarray, shape (rows, lanes)
        Tap polynomials of the uv and w kernels, zero-padded to ``lanes`` columns and
        :data:`COEF_ROWS` rows.
    support, lanes : int
        UV support and the SIMD row length (multiple of 8, >= support).
    buf : ndarray, float32 or float64, shape (>= tile + support, >= 2 (tile + lanes))
        Local accumulation buffer (interleaved real and imaginary parts).
    grid : ndarray, complex, shape (nu, nv)
        Written only by this call while it runs (threads grid into separate grids).
    """
    nu, nv = grid.shape
    ku = np.zeros(lanes, dtype=coeffs.dtype)
    kv = np.zeros(lanes, dtype=coeffs.dtype)
    q = np.zeros(2 * lanes, dtype=buf.dtype)
    p_first = max(plane - max(support_w, 1) + 1, 0)
    one = coeffs.dtype.type(1.0)
    n_rows = tile + support - 1
    n_cols = tile + lanes - 1
    for it in range(items.shape[0]):
        t, i_lo, i_hi = items[it, 0], items[it, 1], items[it, 2]
        u0 = (t // n_tiles_v) * tile
        v0 = (t % n_tiles_v) * tile
        for r in range(n_rows):
            buf[r, : 2 * n_cols] = 0.0
        for p_lo in range(p_first, plane + 1):
            key = t * n_planes + p_lo
            j = plane - p_lo
            for i in range(max(offsets[key], i_lo), min(offsets[key + 1], i_hi)):
                taps_uv(coeffs, yu[i], yv[i], ku, kv, lanes)
                kw = one_tap(coeffs_w, yw[i], j) if support_w > 0 else one
                vr = val[i].real * kw
                vi = val[i].imag * kw
                for b in range(lanes):
                    q[2 * b] = vr * kv[b]
                    q[2 * b + 1] = vi * kv[b]
                r0 = np.uint64(iu[i] - u0)
                c0 = np.uint64(2 * (iv[i] - v0))
                for a in range(support):
                    f = ku[a]
                    row = buf[r0 + np.uint64(a)]
                    for k in range(2 * lanes):
                        row[c0 + np.uint64(k)] += f * q[k]
        # add the tile onto the periodic grid (columns in at most two contiguous runs)
        split = min(n_cols, nv - v0)
        for r in range(n_rows):
            dst = grid[(u0 + r) % nu]
            src = buf[r]
            for c in range(split):
                dst[v0 + c] += complex(src[2 * c], src[2 * c + 1])
            for c in range(split, n_cols):
                dst[(v0 + c) % nv] += complex(src[2 * c], src[2 * c + 1])


@njit
def add_rows(dst, src, r_lo, r_hi):
    """``dst[r] += src[r]; src[r] = 0`` for rows ``r_lo .. r_hi - 1`` (reduction of
    per-thread grids)."""
    for r in range(r_lo, r_hi):
        d = dst[r]
        s = src[r]
        for c in range(d.shape[0]):
            d[c] += s[c]
            s[c] = 0.0


@njit
def fold_guard(grid, nu, nv):
    """Fold the guard band of a padded complex grid onto its periodic ``[:nu, :nv]`` part
    and zero the band."""
    n_rows, n_cols = grid.shape
    for r in range(n_rows):
        dst = grid[r % nu]
        src = grid[r]
        c_start = 0 if r >= nu else nv
        for c in range(c_start, n_cols):
            dst[c % nv] += src[c]
            src[c] = 0.0


@njit
def wp_entry(w_abs, w_table):
    """Index of the first support-table entry valid for ``|w|`` (binary search)."""
    lo, hi = 0, w_table.shape[0] - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if w_table[mid] >= w_abs:
            hi = mid
        else:
            lo = mid + 1
    return lo


@njit
def taylor_terms(w_abs, w_scale, arg, n_taylor, tol):
    """Taylor terms a visibility with ``|w|`` needs: ``(arg |w|/w_scale)^k / k! < tol``."""
    s = arg * w_abs / w_scale
    term = 1.0
    for k in range(1, n_taylor):
        term *= s / k
        if term < tol:
            return k
    return n_taylor


@njit(fastmath=FASTMATH)
def wp_sample(i, gu, gv, w, nu, nv, wt_u, sup_u, len_u, amp_u, aoff_u, xi0_u, post_u,
              wt_v, sup_v, len_v, amp_v, aoff_v, xi0_v, post_v, scale_u, scale_v,
              w_scale, arg, n_taylor, tol, tw_re, tw_im, bre, bim, kur, kui, kvr, kvi):
    """Per-sample w-projection set-up shared by gridding and degridding.

    Fills the taps ``ku = kur + i kui`` (u axis) and ``kv`` of sample ``i`` and returns
    ``(su, sv, lanes, r0, c0, n_k, s)``: supports, padded v lanes, grid row and
    interleaved column of the first tap, number of Taylor terms and ``w / w_scale``.
    """
    wa = abs(w[i])
    eu = wp_entry(wa, wt_u)
    ev = wp_entry(wa, wt_v)
    su = sup_u[eu]
    sv = sup_v[ev]
    lanes = ((sv + 7) // 8) * 8
    i0u = wp_taps(gu[i], w[i], su, len_u[eu], amp_u[aoff_u[eu]:aoff_u[eu + 1]], xi0_u[eu],
                  scale_u, post_u[eu, :, 0], post_u[eu, :, 1], tw_re, tw_im, bre, bim,
                  kur, kui)
    i0v = wp_taps(gv[i], w[i], sv, len_v[ev], amp_v[aoff_v[ev]:aoff_v[ev + 1]], xi0_v[ev],
                  scale_v, post_v[ev, :, 0], post_v[ev, :, 1], tw_re, tw_im, bre, bim,
                  kvr, kvi)
    r0 = np.uint64(i0u % nu)
    c0 = np.uint64(2 * (i0v % nv))
    n_k = taylor_terms(wa, w_scale, arg, n_taylor, tol)
    return su, sv, lanes, r0, c0, n_k, w[i] / w_scale


@njit
def wp_scratch(len_u, len_v, lanes_max, g):
    """Work buffers of :func:`wp_sample`: ``(bre, bim, kur, kui, kvr, kvi)``, the
    quadrature scratch (float64, the longest table) and the taps (``g``'s dtype)."""
    lmax = max(len_u.max(), len_v.max())
    return (np.empty(lmax), np.empty(lmax), np.zeros(lanes_max, dtype=g.dtype),
            np.zeros(lanes_max, dtype=g.dtype), np.zeros(lanes_max, dtype=g.dtype),
            np.zeros(lanes_max, dtype=g.dtype))


@njit(fastmath=FASTMATH)
def grid_wproject(gu, gv, w, val, nu, nv, wt_u, sup_u, len_u, amp_u, aoff_u, xi0_u, post_u,
                  wt_v, sup_v, len_v, amp_v, aoff_v, xi0_v, post_v, scale_u, scale_v,
                  w_scale, arg, n_taylor, tol, tw_re, tw_im, lanes_max, g):
    """Grid all samples with exact w-projection taps onto ``n_taylor`` padded grids.

    Parameters
    ----------
    gu, gv, w, val : ndarrays, shape (n,)
        Continuous cell coordinates, w (wavelengths) and factors of the samples.
    wt_*, sup_*, len_*, amp_*, aoff_*, xi0_*, post_* : ndarrays
        Support tables and quadrature tables of each axis (see :mod:`.wkernels`).
    scale_u, scale_v : float
        ``D`` of each axis.
    w_scale, arg : float
        Taylor normalisation ``max |w|`` and ``2 pi max|w| max|R - r0|``.
    n_taylor : int
    tol : float
        Taylor terms below ``tol`` are skipped per sample.
    g : ndarray, shape (n_taylor, nu + pad, 2 (nv + pad))
        Interleaved real views of the grids.
    """
    n = gu.shape[0]
    bre, bim, kur, kui, kvr, kvi = wp_scratch(len_u, len_v, lanes_max, g)
    q = np.zeros(2 * lanes_max, dtype=g.dtype)
    qs = np.zeros(2 * lanes_max, dtype=g.dtype)
    for i in range(n):
        su, sv, lanes, r0, c0, n_k, s = wp_sample(
            i, gu, gv, w, nu, nv, wt_u, sup_u, len_u, amp_u, aoff_u, xi0_u, post_u, wt_v,
            sup_v, len_v, amp_v, aoff_v, xi0_v, post_v, scale_u, scale_v, w_scale, arg,
            n_taylor, tol, tw_re, tw_im, bre, bim, kur, kui, kvr, kvi)
        fr = val[i].real
        fi = val[i].imag
        for k in range(n_k):
            # q = val s^k kv (interleaved), qs = i q: row += Re(ku) q + Im(ku) qs
            for b in range(lanes):
                qr = fr * kvr[b] - fi * kvi[b]
                qi = fr * kvi[b] + fi * kvr[b]
                q[2 * b] = qr
                q[2 * b + 1] = qi
                qs[2 * b] = -qi
                qs[2 * b + 1] = qr
            gk = g[k]
            for a in range(su):
                cr = kur[a]
                ci = kui[a]
                row = gk[r0 + np.uint64(a)]
                for m in range(2 * lanes):
                    row[c0 + np.uint64(m)] += cr * q[m] + ci * qs[m]
            fr, fi = fr * s, fi * s


__all__ = ["COEF_ROWS", "FASTMATH", "add_rows", "fold_guard", "grid_es_items", "grid_wproject",
           "one_tap", "taps_uv", "taylor_terms", "wp_entry", "wp_sample"]
