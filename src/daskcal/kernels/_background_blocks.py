"""Block-grid kernels of the background fit: block sums, residuals, hole filling, interpolation.

Private to :mod:`daskcal.kernels.rfi_background` and
:mod:`daskcal.kernels.rfi_strategy`.
"""

from __future__ import annotations

import math

import numpy as np

from daskcal.kernels._jit import njit


@njit
def _reduce_block_row(bt, row_sum, row_cnt, row_tw, d_f, sums, census):
    """Close block row ``bt``: per-channel accumulators -> block sums and census.

    ``row_sum`` (n_v, n_chan) holds the masked sums, ``row_cnt`` (n_chan) the
    unflagged counts and ``row_tw`` (n_chan) the counts weighted by the time offset
    from the block row's centre (fine samples). Census channels: count, and the
    summed time and frequency offsets of the unflagged samples in block units.
    """
    n_v, n_f = row_sum.shape
    n_bf = census.shape[1]
    for bf in range(n_bf):
        f0 = bf * d_f
        f1 = min(f0 + d_f, n_f)
        fc = f0 + (f1 - f0 - 1) / 2.0
        c = 0.0
        ct = 0.0
        cf = 0.0
        for f in range(f0, f1):
            c += row_cnt[f]
            ct += row_tw[f]
            cf += row_cnt[f] * (f - fc)
        census[bt, bf, 0] = c
        census[bt, bf, 1] = ct
        census[bt, bf, 2] = cf / d_f
        for v in range(n_v):
            acc = 0.0
            for f in range(f0, f1):
                acc += row_sum[v, f]
            sums[bt, bf, v] = acc


@njit
def _block_sums_real(values, flags, d_t, d_f, sums, census):
    """Masked block sums (n_bt, n_bf, 1) and census (n_bt, n_bf, 3) of a real plane."""
    n_t, n_f = values.shape
    row_sum = np.zeros((1, n_f), np.float64)
    row_cnt = np.zeros(n_f, np.float64)
    row_tw = np.zeros(n_f, np.float64)
    for bt in range(census.shape[0]):
        t0 = bt * d_t
        t1 = min(t0 + d_t, n_t)
        tc = t0 + (t1 - t0 - 1) / 2.0
        row_sum[:, :] = 0.0
        row_cnt[:] = 0.0
        row_tw[:] = 0.0
        for t in range(t0, t1):
            w_t = (t - tc) / d_t
            for f in range(n_f):
                use = not flags[t, f]
                row_sum[0, f] += values[t, f] if use else 0.0
                row_cnt[f] += 1.0 if use else 0.0
                row_tw[f] += w_t if use else 0.0
        _reduce_block_row(bt, row_sum, row_cnt, row_tw, d_f, sums, census)


@njit
def _complex_block_sums(planes, pols, mask, d_t, d_f, sums, census):
    """Masked block sums of the real and imaginary parts of ``planes[pols]``.

    ``sums`` (n_bt, n_bf, 2 * len(pols)) and ``census`` (n_bt, n_bf, 3) are
    overwritten (see :func:`~daskcal.kernels._background_blocks._reduce_block_row`).
    """
    n_t = planes.shape[1]
    n_f = planes.shape[2]
    k = pols.shape[0]
    row_sum = np.empty((2 * k, n_f), np.float64)
    row_cnt = np.empty(n_f, np.float64)
    row_tw = np.empty(n_f, np.float64)
    for bt in range(census.shape[0]):
        t0 = bt * d_t
        t1 = min(t0 + d_t, n_t)
        tc = t0 + (t1 - t0 - 1) / 2.0
        row_sum[:, :] = 0.0
        row_cnt[:] = 0.0
        row_tw[:] = 0.0
        for t in range(t0, t1):
            m_row = mask[t]
            w_t = (t - tc) / d_t
            for f in range(n_f):
                use = not m_row[f]
                row_cnt[f] += 1.0 if use else 0.0
                row_tw[f] += w_t if use else 0.0
            for q in range(k):
                p_row = planes[pols[q], t]
                re_acc = row_sum[2 * q]
                im_acc = row_sum[2 * q + 1]
                for f in range(n_f):
                    z = p_row[f]
                    use = not m_row[f]
                    re_acc[f] += z.real if use else 0.0
                    im_acc[f] += z.imag if use else 0.0
        _reduce_block_row(bt, row_sum, row_cnt, row_tw, d_f, sums, census)


@njit
def _complex_statistic(planes, pols, coarse, idx_t, frac_t, idx_f, frac_f, mask, d_t, d_f,
                       out, sums, census):
    """Complex detection statistic ``x = sqrt(mean_q |V_q - B_q|^2)`` (n_time, n_chan) float32
    (0 where not finite), and its masked block ``sums`` (n_bt, n_bf, 1) and ``census``.

    ``B`` is interpolated bilinearly from the block background ``coarse`` (n_bt, n_bf, 2k)
    of :func:`_complex_block_sums`.
    """
    n_t = planes.shape[1]
    n_f = planes.shape[2]
    k = pols.shape[0]
    n_bt = coarse.shape[0]
    n_bf = coarse.shape[1]
    n_v = coarse.shape[2]
    row = np.empty((n_v, n_bf), np.float64)
    bg = np.empty((n_v, n_f), np.float32)
    row_sum = np.zeros((1, n_f), np.float64)
    row_cnt = np.zeros(n_f, np.float64)
    row_tw = np.zeros(n_f, np.float64)
    inv_k = np.float32(1.0 / k)
    for t in range(n_t):
        i0 = idx_t[t]
        i1 = min(i0 + 1, n_bt - 1)
        a = frac_t[t]
        for v in range(n_v):
            for j in range(n_bf):
                row[v, j] = coarse[i0, j, v] + (coarse[i1, j, v] - coarse[i0, j, v]) * a
        for v in range(n_v):
            for f in range(n_f):
                j0 = idx_f[f]
                j1 = min(j0 + 1, n_bf - 1)
                bg[v, f] = row[v, j0] + (row[v, j1] - row[v, j0]) * frac_f[f]
        x_row = out[t]
        x_row[:] = 0.0
        for q in range(k):
            p_row = planes[pols[q], t]
            bre = bg[2 * q]
            bim = bg[2 * q + 1]
            for f in range(n_f):
                z = p_row[f]
                dr = z.real - bre[f]
                di = z.imag - bim[f]
                x_row[f] += dr * dr + di * di
        m_row = mask[t]
        bt = t // d_t
        t0 = bt * d_t
        w_t = (t - (t0 + (min(t0 + d_t, n_t) - t0 - 1) / 2.0)) / d_t
        for f in range(n_f):
            x = np.sqrt(x_row[f] * inv_k)
            x = x if math.isfinite(x) else np.float32(0.0)
            x_row[f] = x
            use = not m_row[f]
            row_sum[0, f] += x if use else 0.0
            row_cnt[f] += 1.0 if use else 0.0
            row_tw[f] += w_t if use else 0.0
        if (t + 1) % d_t == 0 or t == n_t - 1:
            _reduce_block_row(bt, row_sum, row_cnt, row_tw, d_f, sums, census)
            row_sum[:, :] = 0.0
            row_cnt[:] = 0.0
            row_tw[:] = 0.0


@njit
def _residual_into(values, coarse, idx_t, frac_t, idx_f, frac_f, out, out_t):
    """``out = values - B`` and its transpose ``out_t``, ``B`` bilinear from ``coarse[..., 0]``.

    ``values`` and ``out`` are (n_time, n_chan) float32, ``out_t`` (n_chan, n_time).
    ``B`` is interpolated along frequency once per block row, then along time
    row by row (contiguous, vectorised); the transpose is written tile by tile
    while the tile is in cache.
    """
    n_t, n_f = values.shape
    n_bt = coarse.shape[0]
    n_bf = coarse.shape[1]
    fine = np.empty((n_bt, n_f), np.float64)
    for i in range(n_bt):
        for f in range(n_f):
            j0 = idx_f[f]
            j1 = min(j0 + 1, n_bf - 1)
            fine[i, f] = coarse[i, j0, 0] + (coarse[i, j1, 0] - coarse[i, j0, 0]) * frac_f[f]
    tile = 32
    for t0 in range(0, n_t, tile):
        t1 = min(t0 + tile, n_t)
        for t in range(t0, t1):
            lo = fine[idx_t[t]]
            hi = fine[min(idx_t[t] + 1, n_bt - 1)]
            a = np.float64(frac_t[t])
            v_row = values[t]
            o_row = out[t]
            for f in range(n_f):
                o_row[f] = v_row[f] - (lo[f] + (hi[f] - lo[f]) * a)
        for f0 in range(0, n_f, tile):
            f1 = min(f0 + tile, n_f)
            for f in range(f0, f1):
                for t in range(t0, t1):
                    out_t[f, t] = out[t, f]


@njit
def _upsample_into(coarse, v, idx_t, frac_t, idx_f, frac_f, out):
    """Bilinear interpolation of block channel ``v`` onto the full (n_time, n_chan) grid."""
    n_t, n_f = out.shape
    last_t = coarse.shape[0] - 1
    last_f = coarse.shape[1] - 1
    for t in range(n_t):
        i0 = idx_t[t]
        i1 = min(i0 + 1, last_t)
        a = frac_t[t]
        for f in range(n_f):
            j0 = idx_f[f]
            j1 = min(j0 + 1, last_f)
            b = frac_f[f]
            top = coarse[i0, j0, v] + (coarse[i0, j1, v] - coarse[i0, j0, v]) * b
            bottom = coarse[i1, j0, v] + (coarse[i1, j1, v] - coarse[i1, j0, v]) * b
            out[t, f] = top + (bottom - top) * a


@njit
def _gap_fill_line(values, hole, pos, acc, wsum, acc_out, wsum_out):
    """Add gap-filling candidates along one line (views of shape (n, n_v) and (n,)).

    ``pos`` are the block positions along the line (blocks need not be evenly
    spaced: the last one may be short). Inside a gap bracketed by filled cells
    ``p < g < q`` the candidate is the linear interpolation, weighted
    ``1 / (pos[q] - pos[p])^2``, into ``acc``/``wsum``. Beyond the last filled cell
    ``p`` (a gap open to the end of the line) it is the linear extrapolation from
    ``p`` and its filled neighbour (or ``p``'s value alone), weighted ``1 / d^2`` at
    distance ``d``, into ``acc_out``/``wsum_out``.
    """
    n, n_v = values.shape
    prev = -1
    for j in range(n + 1):
        if j < n and hole[j]:
            continue
        if j - prev > 1 and (prev >= 0 or j < n):
            bracketed = prev >= 0 and j < n
            src = prev if prev >= 0 else j
            step = -1 if prev >= 0 else 1  # towards the filled side
            nb = src + step
            slope_ok = 0 <= nb < n and not hole[nb]
            for g in range(prev + 1, j):
                if bracketed:
                    span = pos[j] - pos[prev]
                    w = 1.0 / (span * span)
                    frac = (pos[g] - pos[prev]) / span
                    for v in range(n_v):
                        acc[g, v] += w * (values[prev, v] * (1.0 - frac) + values[j, v] * frac)
                    wsum[g] += w
                else:
                    d = pos[g] - pos[src]
                    w = 1.0 / (d * d)
                    for v in range(n_v):
                        value = values[src, v]
                        if slope_ok:
                            value += (values[src, v] - values[nb, v]) / (pos[src] - pos[nb]) * d
                        acc_out[g, v] += w * value
                    wsum_out[g] += w
        if j < n:
            prev = j


@njit
def _fill_holes(out, hole, pos_t, pos_f):
    """Fill empty blocks from the filled ones (in place; ``hole`` is updated).

    ``pos_t``, ``pos_f`` are the block positions along time and frequency.

    Each empty block takes the inverse-square-gap weighted mean of the linear
    interpolations across its gap along frequency and along time, so that a
    narrow gap in one direction wins over a wide one in the other; blocks not
    bracketed in either direction (gaps open to an edge) are extrapolated
    linearly from the nearest filled blocks. Blocks whose row and column are
    both entirely empty are filled in further rounds; if no block is filled at
    all, ``out`` is left as it is.
    """
    n, m, n_v = out.shape
    acc = np.zeros((n, m, n_v), np.float64)
    wsum = np.zeros((n, m), np.float64)
    acc_out = np.zeros((n, m, n_v), np.float64)
    wsum_out = np.zeros((n, m), np.float64)
    col = np.empty((n, n_v), np.float64)
    col_hole = np.empty(n, np.bool_)
    col_acc = np.empty((n, n_v), np.float64)
    col_w = np.empty(n, np.float64)
    col_acc_out = np.empty((n, n_v), np.float64)
    col_w_out = np.empty(n, np.float64)
    while True:
        n_hole = 0
        for i in range(n):
            for j in range(m):
                if hole[i, j]:
                    n_hole += 1
        if n_hole == 0 or n_hole == n * m:
            return
        acc[:, :, :] = 0.0
        wsum[:, :] = 0.0
        acc_out[:, :, :] = 0.0
        wsum_out[:, :] = 0.0
        for i in range(n):
            _gap_fill_line(out[i], hole[i], pos_f, acc[i], wsum[i], acc_out[i], wsum_out[i])
        for j in range(m):
            for i in range(n):
                col_hole[i] = hole[i, j]
                for v in range(n_v):
                    col[i, v] = out[i, j, v]
            col_acc[:, :] = 0.0
            col_w[:] = 0.0
            col_acc_out[:, :] = 0.0
            col_w_out[:] = 0.0
            _gap_fill_line(col, col_hole, pos_t, col_acc, col_w, col_acc_out, col_w_out)
            for i in range(n):
                wsum[i, j] += col_w[i]
                wsum_out[i, j] += col_w_out[i]
                for v in range(n_v):
                    acc[i, j, v] += col_acc[i, v]
                    acc_out[i, j, v] += col_acc_out[i, v]
        filled = 0
        for i in range(n):
            for j in range(m):
                if not hole[i, j]:
                    continue
                if wsum[i, j] > 0.0:
                    for v in range(n_v):
                        out[i, j, v] = acc[i, j, v] / wsum[i, j]
                elif wsum_out[i, j] > 0.0:
                    for v in range(n_v):
                        out[i, j, v] = acc_out[i, j, v] / wsum_out[i, j]
                else:
                    continue
                hole[i, j] = False
                filled += 1
        if filled == 0:  # pragma: no cover - cannot happen with at least one filled block
            return
