"""Applying gain solutions: ``V_corr = G_p^-1 V_pq G_q^-H`` (numba, private)."""

from __future__ import annotations

import numpy as np

from daskcal.kernels._jit import njit


@njit
def _invert_diag(gains, gflag):
    """Inverse diagonal gains (..., n_ant, 2) and a 'bad' mask (flagged, zero or non-finite)."""
    inv = np.zeros(gains.shape, np.complex128)
    bad = np.ones(gains.shape, np.bool_)
    g = gains.reshape(-1)
    f = gflag.reshape(-1)
    iv = inv.reshape(-1)
    bd = bad.reshape(-1)
    for k in range(g.size):
        z = g[k]
        if f[k] or not np.isfinite(z) or z == 0:
            continue
        iv[k] = 1.0 / z
        bd[k] = False
    return inv, bad


@njit
def _invert_full(gains, gflag):
    """Inverse 2x2 gains (..., n_ant, 2, 2) and a per-antenna 'bad' mask (..., n_ant)."""
    shp = gains.shape
    n = gains.size // 4
    g = gains.reshape((n, 2, 2))
    f = gflag.reshape((n, 4))
    inv = np.zeros((n, 2, 2), np.complex128)
    bad = np.ones(n, np.bool_)
    for k in range(n):
        if f[k, 0] or f[k, 1] or f[k, 2] or f[k, 3]:
            continue
        a = g[k, 0, 0]
        b = g[k, 0, 1]
        c = g[k, 1, 0]
        d = g[k, 1, 1]
        det = a * d - b * c
        scale = abs(a) + abs(b) + abs(c) + abs(d)
        if not (np.isfinite(det) and abs(det) > 1e-12 * scale * scale):
            continue
        inv[k, 0, 0] = d / det
        inv[k, 0, 1] = -b / det
        inv[k, 1, 0] = -c / det
        inv[k, 1, 1] = a / det
        bad[k] = False
    return inv.reshape(shp), bad.reshape(shp[:-2])


@njit
def _correct_diag(vis, inv, bad, a1, a2, t_idx, f_idx, ra, rb):
    n_time, n_bl, n_chan, n_corr = vis.shape
    out = np.empty_like(vis)
    for t in range(n_time):
        tc = t_idx[t]
        for b in range(n_bl):
            p = a1[b]
            q = a2[b]
            for f in range(n_chan):
                fc = f_idx[f]
                for c in range(n_corr):
                    i = ra[c]
                    j = rb[c]
                    if bad[tc, fc, p, i] or bad[tc, fc, q, j]:
                        out[t, b, f, c] = 0
                    else:
                        out[t, b, f, c] = vis[t, b, f, c] * (
                            inv[tc, fc, p, i] * inv[tc, fc, q, j].conjugate())
    return out


@njit
def _correct_full(vis, inv, bad, a1, a2, t_idx, f_idx):
    n_time, n_bl, n_chan, _ = vis.shape
    out = np.empty_like(vis)
    for t in range(n_time):
        tc = t_idx[t]
        for b in range(n_bl):
            p = a1[b]
            q = a2[b]
            for f in range(n_chan):
                fc = f_idx[f]
                if bad[tc, fc, p] or bad[tc, fc, q]:
                    for c in range(4):
                        out[t, b, f, c] = 0
                    continue
                hp = inv[tc, fc, p]
                hq = inv[tc, fc, q]
                v00 = np.complex128(vis[t, b, f, 0])
                v01 = np.complex128(vis[t, b, f, 1])
                v10 = np.complex128(vis[t, b, f, 2])
                v11 = np.complex128(vis[t, b, f, 3])
                # X = Hp V
                x00 = hp[0, 0] * v00 + hp[0, 1] * v10
                x01 = hp[0, 0] * v01 + hp[0, 1] * v11
                x10 = hp[1, 0] * v00 + hp[1, 1] * v10
                x11 = hp[1, 0] * v01 + hp[1, 1] * v11
                # X Hq^H: (X Hq^H)_ij = sum_k X_ik conj(Hq_jk)
                out[t, b, f, 0] = x00 * hq[0, 0].conjugate() + x01 * hq[0, 1].conjugate()
                out[t, b, f, 1] = x00 * hq[1, 0].conjugate() + x01 * hq[1, 1].conjugate()
                out[t, b, f, 2] = x10 * hq[0, 0].conjugate() + x11 * hq[0, 1].conjugate()
                out[t, b, f, 3] = x10 * hq[1, 0].conjugate() + x11 * hq[1, 1].conjugate()
    return out


@njit
def _flags_diag(flag, bad, a1, a2, t_idx, f_idx, ra, rb):
    n_time, n_bl, n_chan, n_corr = flag.shape
    out = np.empty_like(flag)
    for t in range(n_time):
        tc = t_idx[t]
        for b in range(n_bl):
            p = a1[b]
            q = a2[b]
            for f in range(n_chan):
                fc = f_idx[f]
                for c in range(n_corr):
                    out[t, b, f, c] = (flag[t, b, f, c] or bad[tc, fc, p, ra[c]]
                                       or bad[tc, fc, q, rb[c]])
    return out


@njit
def _flags_full(flag, bad, a1, a2, t_idx, f_idx):
    n_time, n_bl, n_chan, n_corr = flag.shape
    out = np.empty_like(flag)
    for t in range(n_time):
        tc = t_idx[t]
        for b in range(n_bl):
            p = a1[b]
            q = a2[b]
            for f in range(n_chan):
                # a full-Jones correction mixes the correlations: one flag flags them all
                bad_f = bad[tc, f_idx[f], p] or bad[tc, f_idx[f], q]
                for c in range(n_corr):
                    bad_f = bad_f or flag[t, b, f, c]
                for c in range(n_corr):
                    out[t, b, f, c] = bad_f
    return out
