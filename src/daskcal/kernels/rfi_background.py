"""Smooth backgrounds of time x frequency planes with flagged samples masked out.

The background that RFI detection subtracts before thresholding is a
*normalised convolution* (Knutsson & Westin 1993): at every point a weighted
least-squares fit of a constant (order 0) or of a plane ``a + b dt + c df``
(order 1, the default) to the unflagged samples, with separable, approximately
Gaussian weights. Order 1 removes the bias that a plain masked average has
wherever the weights are lop-sided: at the edges of the plane (band edges, scan
boundaries) and around flagged regions. To stay O(N) whatever the kernel width:

1. the plane is summed in blocks of ``(d_time, d_chan)`` samples (masked sums,
   counts and the centroid of the unflagged samples, where the block then
   stands); the background is smooth, so little is lost;
2. the moments of the fit (counts, sums, and their first and second moments in
   block coordinates) are smoothed by three running boxes per axis; a stack of
   three boxes approximates a Gaussian of the same variance and each box is an
   O(1) sliding sum;
3. each block solves its 3 x 3 (order 1) or 1 x 1 (order 0) system, falling
   back to lower order where the weights are degenerate (e.g. a single row);
   the mask's part of the solution (its "geometry") is computed once and shared
   by every set of values with the same flags. Blocks with less than 20 % of a
   full neighbourhood's weight (inside wide flagged regions) are not
   extrapolated into but filled by linear interpolation across the gap from the
   fitted blocks, along time and along frequency weighted by the inverse square
   of the gap width, so the narrower direction wins;
4. the block background is interpolated back bilinearly (linear extrapolation
   over the outer half blocks), or evaluated on the fly by the fused residual
   kernels of the flagger.

The fit is exact for a plane ``a + b t + c f`` whatever the flags. Memory and
time are O(n_time * n_chan / (d_time * d_chan)) beyond the one pass over the
data; the block size defaults to ``round(sigma)``.

Values are real; complex data are fitted as two real channels (real and
imaginary parts), several planes at once as more channels.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from daskcal.kernels._background_blocks import (
    _block_sums_real,
    _fill_holes,
    _upsample_into,
)
from daskcal.kernels._jit import njit

__all__ = ["BackgroundGrid", "background_grid", "box_halves", "masked_smooth"]

#: Tile size (blocks) of the cache-resident background fit.
_TILE = 64
#: A slope is fitted along an axis only where the weighted variance of the block
#: coordinates exceeds this fraction of the kernel's own variance along that axis.
_MIN_VARIANCE_FRACTION = 0.05
#: Blocks whose kernel-weighted sample count is below this fraction of a fully
#: unflagged neighbourhood's are not extrapolated into but filled (see _fill_holes).
_MIN_WEIGHT_FRACTION = 0.2
#: Largest offset (blocks) between a block and the centroid of its data along an
#: axis on which no slope can be fitted, before the block is filled instead.
_MAX_FLAT_OFFSET = 0.25
#: Number of mask moments that precede the value channels in a moment stack.
_N_MASK_MOMENTS = 6
#: Boxes up to this half-width along frequency are summed directly, not by running sums.
_DIRECT_BOX_HALF = 3


# --------------------------------------------------------------------------- kernels


@njit
def _box_axis0(a, half, out, acc):
    """``out[i] = sum(a[i-half : i+half+1])`` along axis 0 (zero padding), vectorised on axis 1.

    ``acc`` is a work vector of length ``a.shape[1]``.
    """
    n, m = a.shape
    for j in range(m):
        acc[j] = 0.0
    for i in range(min(half, n)):
        for j in range(m):
            acc[j] += a[i, j]
    for i in range(n):
        hi = i + half
        lo = i - half
        if hi < n:
            for j in range(m):
                acc[j] += a[hi, j]
        for j in range(m):
            out[i, j] = acc[j]
        if lo >= 0:
            for j in range(m):
                acc[j] -= a[lo, j]


@njit
def _box_row_direct(a, half, out):
    """``out[j] = sum(a[j-half : j+half+1])`` along axis 0 of a C-ordered (m, k) array.

    Summed directly (``2 half + 1`` shifted adds over the flattened row, vectorised
    over all of it) rather than by a running sum, whose inner loop would only be
    ``k`` long: much faster for the narrow frequency boxes.
    """
    m, k = a.shape
    n = m * k
    src = a.reshape(n)
    dst = out.reshape(n)
    for p in range(n):
        dst[p] = src[p]
    for d in range(1, half + 1):
        s = min(d * k, n)
        for p in range(s, n):
            dst[p] += src[p - s]
        for p in range(n - s):
            dst[p] += src[p + s]


@njit
def _smooth_stack_inplace(a, tmp, halves_t, halves_f, acc):
    """Stacked running boxes along axes 0 and 1 of a C-ordered (n, m, k) stack, in place.

    ``acc`` is a work vector of length >= ``m * k``.
    """
    n, m, k = a.shape
    flat_a = a.reshape((n, m * k))
    flat_t = tmp.reshape((n, m * k))
    in_a = True
    for h in halves_t:
        if h > 0:
            if in_a:
                _box_axis0(flat_a, h, flat_t, acc)
            else:
                _box_axis0(flat_t, h, flat_a, acc)
            in_a = not in_a
    for h in halves_f:
        if h > 0:
            for i in range(n):
                src = a[i] if in_a else tmp[i]
                dst = tmp[i] if in_a else a[i]
                if h <= _DIRECT_BOX_HALF:
                    _box_row_direct(src, h, dst)
                else:
                    _box_axis0(src, h, dst, acc)
            in_a = not in_a
    if not in_a:
        a[:, :, :] = tmp


@njit
def _fill_mask_moments(census, pos_t, pos_f, i0, j0, stack):
    """Mask moments ``[c, c x, c y, c x^2, c y^2, c x y]`` of the cells from ``(i0, j0)``.

    ``x, y`` are the centroids of the unflagged samples of each block, in block
    units relative to the plane centre; zero outside the grid.
    """
    n, m, _ = stack.shape
    n_all, m_all, _ = census.shape
    stack[:, :, :] = 0.0
    for a in range(max(0, -i0), min(n, n_all - i0)):
        i = i0 + a
        for b in range(max(0, -j0), min(m, m_all - j0)):
            j = j0 + b
            c = census[i, j, 0]
            if c > 0.0:
                x = pos_t[i] + census[i, j, 1] / c
                y = pos_f[j] + census[i, j, 2] / c
                stack[a, b, 0] = c
                stack[a, b, 1] = c * x
                stack[a, b, 2] = c * y
                stack[a, b, 3] = c * x * x
                stack[a, b, 4] = c * y * y
                stack[a, b, 5] = c * x * y


@njit
def _fill_value_moments(sums, census, pos_t, pos_f, i0, j0, stack):
    """Value moments ``[s_v, s_v x, s_v y]`` per channel ``v`` of the cells from ``(i0, j0)``."""
    n, m, _ = stack.shape
    n_all, m_all, n_v = sums.shape
    stack[:, :, :] = 0.0
    for a in range(max(0, -i0), min(n, n_all - i0)):
        i = i0 + a
        for b in range(max(0, -j0), min(m, m_all - j0)):
            j = j0 + b
            c = census[i, j, 0]
            if c > 0.0:
                x = pos_t[i] + census[i, j, 1] / c
                y = pos_f[j] + census[i, j, 2] / c
                for v in range(n_v):
                    sv = sums[i, j, v]
                    stack[a, b, 3 * v] = sv
                    stack[a, b, 3 * v + 1] = sv * x
                    stack[a, b, 3 * v + 2] = sv * y


@njit
def _cell_geometry(mom, a, b, x0, y0, order, limits, geom_cell):
    """Fit geometry of one block from its smoothed mask moments.

    ``geom_cell = [1/s1, mt, mf, u1, u2]``: the fitted value of a channel with
    smoothed moments ``S, S_x, S_y`` is ``mx + u1 (S_x/s1 - mt mx) + u2 (S_y/s1 - mf mx)``
    with ``mx = S/s1``, i.e. the local plane evaluated at the block centre.
    ``1/s1 = 0`` marks a block with too little data in reach. ``limits`` is
    ``(min_weight, min_var_t, min_var_f)``.
    """
    s1 = mom[a, b, 0]
    if s1 < limits[0] or s1 < 0.5:
        geom_cell[:] = 0.0
        return
    mt = mom[a, b, 1] / s1
    mf = mom[a, b, 2] / s1
    ctt = mom[a, b, 3] / s1 - mt * mt
    cff = mom[a, b, 4] / s1 - mf * mf
    ctf = mom[a, b, 5] / s1 - mt * mf
    det = ctt * cff - ctf * ctf
    use_t = order >= 1 and ctt > limits[1]
    use_f = order >= 1 and cff > limits[2]
    dx = x0 - mt
    dy = y0 - mf
    u1 = 0.0
    u2 = 0.0
    if use_t and use_f and det > 1e-3 * ctt * cff:
        u1 = (cff * dx - ctf * dy) / det
        u2 = (ctt * dy - ctf * dx) / det
    else:
        if use_t and use_f:
            # degenerate (weights along a line): keep the better-sampled axis
            if ctt >= cff:
                use_f = False
            else:
                use_t = False
        if order >= 1 and ((not use_t and abs(dx) > _MAX_FLAT_OFFSET)
                           or (not use_f and abs(dy) > _MAX_FLAT_OFFSET)):
            # no slope can be fitted along an axis on which the data sit away from
            # the block: a constant would be biased, so the block is filled instead
            geom_cell[:] = 0.0
            return
        if use_t:
            u1 = dx / ctt
        if use_f:
            u2 = dy / cff
    geom_cell[0] = 1.0 / s1
    geom_cell[1] = mt
    geom_cell[2] = mf
    geom_cell[3] = u1
    geom_cell[4] = u2


@njit
def _tile_halos(halves_t, halves_f):
    halo_t = 0
    for h in halves_t:
        halo_t += h
    halo_f = 0
    for h in halves_f:
        halo_f += h
    return halo_t, halo_f


@njit
def _mask_geometry(census, pos_t, pos_f, halves_t, halves_f, order, limits, geom):
    """Fit geometry (n, m, 5) of every block from the block ``census`` (n, m, 3), tile by tile.

    Tiles plus a halo as wide as the kernel support stay in cache; the result
    inside each tile is exact because the halo covers the support.
    """
    n, m, _ = census.shape
    halo_t, halo_f = _tile_halos(halves_t, halves_f)
    tile = _TILE
    size = (tile + 2 * halo_t) * (tile + 2 * halo_f) * _N_MASK_MOMENTS
    stack_buf = np.empty(size, np.float64)
    tmp_buf = np.empty(size, np.float64)
    acc = np.empty((tile + 2 * halo_f) * _N_MASK_MOMENTS, np.float64)
    for i0 in range(0, n, tile):
        ti = min(tile, n - i0)
        for j0 in range(0, m, tile):
            tj = min(tile, m - j0)
            shape = (ti + 2 * halo_t, tj + 2 * halo_f, _N_MASK_MOMENTS)
            used = shape[0] * shape[1] * shape[2]
            stc = stack_buf[:used].reshape(shape)
            tmc = tmp_buf[:used].reshape(shape)
            _fill_mask_moments(census, pos_t, pos_f, i0 - halo_t, j0 - halo_f, stc)
            _smooth_stack_inplace(stc, tmc, halves_t, halves_f, acc)
            for a in range(ti):
                for b in range(tj):
                    _cell_geometry(stc, a + halo_t, b + halo_f, pos_t[i0 + a], pos_f[j0 + b],
                                   order, limits, geom[i0 + a, j0 + b])


@njit
def _fit_values(sums, census, pos_t, pos_f, geom, halves_t, halves_f, out):
    """Fitted block values (n, m, n_v) from block ``sums`` and the mask ``geom``.

    Blocks with no data in reach are filled by :func:`_fill_holes`.
    """
    n, m, n_v = sums.shape
    halo_t, halo_f = _tile_halos(halves_t, halves_f)
    n_ch = 3 * n_v
    tile = _TILE
    size = (tile + 2 * halo_t) * (tile + 2 * halo_f) * n_ch
    stack_buf = np.empty(size, np.float64)
    tmp_buf = np.empty(size, np.float64)
    acc = np.empty((tile + 2 * halo_f) * n_ch, np.float64)
    n_hole = 0
    for i0 in range(0, n, tile):
        ti = min(tile, n - i0)
        for j0 in range(0, m, tile):
            tj = min(tile, m - j0)
            shape = (ti + 2 * halo_t, tj + 2 * halo_f, n_ch)
            used = shape[0] * shape[1] * shape[2]
            stc = stack_buf[:used].reshape(shape)
            tmc = tmp_buf[:used].reshape(shape)
            _fill_value_moments(sums, census, pos_t, pos_f, i0 - halo_t, j0 - halo_f, stc)
            _smooth_stack_inplace(stc, tmc, halves_t, halves_f, acc)
            for a in range(ti):
                i = i0 + a
                for b in range(tj):
                    j = j0 + b
                    inv = geom[i, j, 0]
                    if inv == 0.0:
                        n_hole += 1
                    mt = geom[i, j, 1]
                    mf = geom[i, j, 2]
                    u1 = geom[i, j, 3]
                    u2 = geom[i, j, 4]
                    for v in range(n_v):
                        mx = stc[a + halo_t, b + halo_f, 3 * v] * inv
                        sx = stc[a + halo_t, b + halo_f, 3 * v + 1] * inv
                        sy = stc[a + halo_t, b + halo_f, 3 * v + 2] * inv
                        out[i, j, v] = mx + u1 * (sx - mt * mx) + u2 * (sy - mf * mx)
    if 0 < n_hole < n * m:
        hole = np.empty((n, m), np.bool_)
        for i in range(n):
            for j in range(m):
                hole[i, j] = geom[i, j, 0] == 0.0
        _fill_holes(out, hole, pos_t, pos_f)


# --------------------------------------------------------------------------- geometry


def box_halves(sigma: float) -> NDArray:
    """Half-widths of three running boxes whose stacked variance is close to ``sigma**2``.

    A box of odd width ``w = 2h + 1`` has variance ``(w**2 - 1) / 12``; the three
    widths are the two odd integers bracketing the ideal width, mixed so that
    the summed variance is as close as possible to ``sigma**2``.

    Parameters
    ----------
    sigma : float
        Target standard deviation in samples (>= 0); below ~0.7 gives no smoothing.

    Returns
    -------
    ndarray of int64, shape (3,)
    """
    if sigma <= 0:
        return np.zeros(3, np.int64)
    ideal = math.sqrt(4.0 * sigma * sigma + 1.0)  # width of three equal boxes
    lower = int(ideal)
    if lower % 2 == 0:
        lower -= 1
    lower = max(lower, 1)
    upper = lower + 2
    var_l, var_u = (lower * lower - 1) / 12.0, (upper * upper - 1) / 12.0
    n_lower = min(max(round((3 * var_u - sigma * sigma) / (var_u - var_l)), 0), 3)
    widths = [lower] * n_lower + [upper] * (3 - n_lower)
    return np.asarray([(w - 1) // 2 for w in widths], np.int64)


def _interp_axis(n: int, d: int) -> tuple[NDArray, NDArray]:
    """Lower block index and fraction for each of ``n`` samples.

    Linear between block centres, and linear extrapolation from the two outer
    blocks beyond the first and last centres (a single block gives a constant).
    """
    n_block = -(-n // d)
    starts = np.arange(n_block) * d
    centres = starts + (np.minimum(d, n - starts) - 1) / 2.0
    x = np.arange(n, dtype=np.float64)
    if n_block == 1:
        return np.zeros(n, np.int64), np.zeros(n, np.float32)
    idx = np.clip(np.searchsorted(centres, x, side="right") - 1, 0, n_block - 2)
    frac = (x - centres[idx]) / (centres[idx + 1] - centres[idx])
    return idx.astype(np.int64), frac.astype(np.float32)


def _block_positions(n: int, d: int) -> NDArray:
    """Block centres in block units relative to the middle of the axis."""
    starts = np.arange(-(-n // d)) * d
    centres = starts + (np.minimum(d, n - starts) - 1) / 2.0
    return (centres - (n - 1) / 2.0) / d


class BackgroundGrid:
    """Geometry of a block-summed, box-smoothed background (built by :func:`background_grid`).

    Attributes
    ----------
    shape : tuple of int
        ``(n_time, n_chan)`` of the full plane.
    block : tuple of int
        ``(d_time, d_chan)`` block size in samples.
    coarse_shape : tuple of int
        Number of blocks ``(ceil(n_time / d_time), ceil(n_chan / d_chan))``.
    order : int
        0 (masked average) or 1 (local plane fit).
    halves_time, halves_freq : ndarray of int64, shape (3,)
        Box half-widths in blocks.
    limits : ndarray of float64, shape (3,)
        Smallest kernel-weighted count for a block to be fitted rather than filled,
        and smallest coordinate variances (blocks^2) for fitting a slope in time
        and in frequency.
    idx_time, frac_time, idx_freq, frac_freq : ndarray
        Bilinear interpolation tables (block index int64, fraction float32).
    pos_time, pos_freq : ndarray of float64
        Block centres in block units relative to the middle of the plane.
    """

    def __init__(self, shape: tuple[int, int], sigma: tuple[float, float],
                 block: tuple[int, int], order: int) -> None:
        self.shape = (int(shape[0]), int(shape[1]))
        self.block = (int(block[0]), int(block[1]))
        self.order = int(order)
        self.coarse_shape = tuple(-(-n // d) for n, d in zip(self.shape, self.block, strict=True))
        sig_c = []
        for s, d in zip(sigma, self.block, strict=True):
            # block summing and linear interpolation add ~(d^2 - 1)/12 + d^2/6 of variance
            extra = (d * d - 1) / 12.0 + (d * d / 6.0 if d > 1 else 0.0)
            sig_c.append(math.sqrt(max(s * s - extra, 0.0)) / d)
        self.halves_time = box_halves(sig_c[0])
        self.halves_freq = box_halves(sig_c[1])
        widths_t = 2 * self.halves_time + 1
        widths_f = 2 * self.halves_freq + 1
        full_weight = float(np.prod(widths_t) * np.prod(widths_f)) * self.block[0] * self.block[1]
        var_t = float(np.sum((widths_t**2 - 1) / 12.0))
        var_f = float(np.sum((widths_f**2 - 1) / 12.0))
        self.limits = np.array([_MIN_WEIGHT_FRACTION * full_weight,
                                max(_MIN_VARIANCE_FRACTION * var_t, 1e-3),
                                max(_MIN_VARIANCE_FRACTION * var_f, 1e-3)])
        self.idx_time, self.frac_time = _interp_axis(self.shape[0], self.block[0])
        self.idx_freq, self.frac_freq = _interp_axis(self.shape[1], self.block[1])
        self.pos_time = _block_positions(self.shape[0], self.block[0])
        self.pos_freq = _block_positions(self.shape[1], self.block[1])


def background_grid(
    shape: tuple[int, int],
    sigma: tuple[float, float] = (6.0, 6.0),
    block: tuple[int, int] | None = None,
    order: int = 1,
) -> BackgroundGrid:
    """Validate smoothing parameters and build the :class:`BackgroundGrid`.

    Parameters
    ----------
    shape : (int, int)
        ``(n_time, n_chan)`` of the plane.
    sigma : (float, float)
        Gaussian-equivalent kernel widths ``(time, frequency)`` in samples (>= 0).
    block : (int, int) or None
        Block size ``(d_time, d_chan)`` in samples; None picks
        ``max(1, round(sigma))`` per axis.
    order : {0, 1}
        Fit a local constant (0) or a local plane (1).
    """
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"plane shape must be (n_time, n_chan) with both >= 1, got {shape!r}")
    if len(sigma) != 2 or not all(math.isfinite(s) and s >= 0 for s in sigma):
        raise ValueError(f"sigma must be two finite values >= 0, got {sigma!r}")
    if block is None:
        block = tuple(max(1, round(s)) for s in sigma)
    if len(block) != 2 or not all(int(b) == b and b >= 1 for b in block):
        raise ValueError(f"block must be two integers >= 1, got {block!r}")
    if order not in (0, 1):
        raise ValueError(f"order must be 0 or 1, got {order!r}")
    return BackgroundGrid(shape, (float(sigma[0]), float(sigma[1])), block, order)


def mask_geometry(census: NDArray, grid: BackgroundGrid) -> NDArray:
    """Fit geometry of every block from the masked block census (internal; no validation).

    Parameters
    ----------
    census : ndarray of float64, shape (*grid.coarse_shape, 3)
        Per block: number of unflagged samples and the sums of their time and
        frequency offsets from the block centre (block units).

    Returns
    -------
    ndarray of float64, shape (*grid.coarse_shape, 5)
        Reusable by :func:`fit_values` for any values sharing this mask.
    """
    geom = np.empty((*grid.coarse_shape, 5), np.float64)
    _mask_geometry(census, grid.pos_time, grid.pos_freq, grid.halves_time, grid.halves_freq,
                   grid.order, grid.limits, geom)
    return geom


def fit_values(sums: NDArray, census: NDArray, geom: NDArray, grid: BackgroundGrid) -> NDArray:
    """Block background from masked block sums and the mask's :func:`mask_geometry`.

    Parameters
    ----------
    sums : ndarray of float64, shape (*grid.coarse_shape, n_v)
    census : ndarray of float64, shape (*grid.coarse_shape, 3)
    geom : ndarray of float64, shape (*grid.coarse_shape, 5)

    Returns
    -------
    ndarray of float64, shape (*grid.coarse_shape, n_v)
        Zero everywhere if no block has data.
    """
    out = np.empty(sums.shape, np.float64)
    _fit_values(sums, census, grid.pos_time, grid.pos_freq, geom, grid.halves_time,
                grid.halves_freq, out)
    return out


def fit_blocks(sums: NDArray, census: NDArray, grid: BackgroundGrid) -> NDArray:
    """:func:`fit_values` with the geometry of ``census`` (internal; no validation)."""
    return fit_values(sums, census, mask_geometry(census, grid), grid)


def masked_smooth(
    values: NDArray,
    flags: NDArray | None = None,
    *,
    sigma: tuple[float, float] = (6.0, 6.0),
    block: tuple[int, int] | None = None,
    order: int = 1,
) -> NDArray:
    """Smooth background of a time x frequency plane, ignoring flagged samples.

    Parameters
    ----------
    values : ndarray, shape (n_time, n_chan)
        float32/float64 (e.g. amplitudes) or complex64/complex128 (visibilities).
    flags : ndarray of bool, shape (n_time, n_chan), or None
        Samples that take no part in the fit.
    sigma : (float, float)
        Gaussian-equivalent kernel widths ``(time, frequency)`` in samples;
        default ``(6.0, 6.0)``.
    block : (int, int) or None
        Block-summing factors ``(d_time, d_chan)``; default ``round(sigma)``.
    order : {0, 1}
        Local constant (0) or local plane (1, default) fit.

    Returns
    -------
    ndarray, shape (n_time, n_chan), dtype of ``values``
        The background, defined everywhere (flagged regions are interpolated;
        an all-flagged plane gives zeros).
    """
    values = np.asarray(values)
    if values.ndim != 2:
        raise ValueError(f"values must be 2-D (n_time, n_chan), got shape {values.shape}")
    if values.dtype not in (np.float32, np.float64, np.complex64, np.complex128):
        raise ValueError(f"values must be float32/64 or complex64/128, got {values.dtype}")
    if flags is None:
        flags = np.zeros(values.shape, np.bool_)
    flags = np.asarray(flags)
    if flags.dtype != np.bool_ or flags.shape != values.shape:
        raise ValueError("flags must be a bool array of the same shape as values")
    grid = background_grid(values.shape, sigma, block, order)
    flags = np.ascontiguousarray(flags | ~np.isfinite(values))
    parts = [values.real, values.imag] if np.iscomplexobj(values) else [values]
    sums = np.empty((*grid.coarse_shape, len(parts)), np.float64)
    census = np.empty((*grid.coarse_shape, 3), np.float64)
    one = np.empty((*grid.coarse_shape, 1), np.float64)
    for k, part in enumerate(parts):
        _block_sums_real(np.ascontiguousarray(part), flags, grid.block[0], grid.block[1],
                         one, census)
        sums[..., k] = one[..., 0]
    coarse = fit_blocks(sums, census, grid)
    out_parts = []
    for k in range(len(parts)):
        out = np.empty(values.shape, np.float64)
        _upsample_into(coarse, k, grid.idx_time, grid.frac_time, grid.idx_freq,
                       grid.frac_freq, out)
        out_parts.append(out)
    result = out_parts[0] + 1j * out_parts[1] if len(parts) == 2 else out_parts[0]
    return result.astype(values.dtype)
