"""Pre-reduction of visibilities per solution cell (numba, private).

The gain solvers never touch individual samples during their iterations: the
least-squares normal equations of every mode can be written with per-baseline
sums over the (time, channel) samples of a solution cell, so one pass over the
data reduces a chunk to a few numbers per baseline and cell.

Diagonal and scalar modes (parallel hands ``r = 0, 1`` only)::

    VM[b, r] = sum_s w V conj(M)        complex
    MM[b, r] = sum_s w |M|^2            real
    VV[b, r] = sum_s w |V|^2            real (for chi-squared)
    NS[b, r] = number of valid samples

Full Jones (correlation ``c = 2 i + j`` of the 2x2 matrix, all four used)::

    R[b, c, c1]     = sum_s w_c V_c conj(M_c1)
    S[b, c, c1, c2] = sum_s w_c M_c1 conj(M_c2)
    VV[b, c], NS[b, c] as above

A sample is *valid* when it is unflagged, its weight is positive and finite and
its data and model are finite; anything else is skipped before any arithmetic
(flagged rows may hold NaN). Autocorrelations are never used.
"""

from __future__ import annotations

import numpy as np

from daskcal.kernels._jit import njit

_INF = np.inf


@njit
def _reduce_diag(data, model, weight, flag, a1, a2, t_int, f_int, c0, c1):
    n_time, n_bl, n_chan, _ = data.shape
    n_ts = (n_time + t_int - 1) // t_int
    n_fs = (n_chan + f_int - 1) // f_int
    vm = np.zeros((n_ts, n_fs, n_bl, 2), np.complex128)
    mm = np.zeros((n_ts, n_fs, n_bl, 2), np.float64)
    vv = np.zeros((n_ts, n_fs, n_bl, 2), np.float64)
    ns = np.zeros((n_ts, n_fs, n_bl, 2), np.float64)
    for t in range(n_time):
        ts = t // t_int
        for b in range(n_bl):
            if a1[b] == a2[b]:
                continue
            for fs in range(n_fs):
                f_lo = fs * f_int
                f_hi = min(f_lo + f_int, n_chan)
                for r in range(2):
                    c = c0 if r == 0 else c1
                    s_re = 0.0
                    s_im = 0.0
                    s_mm = 0.0
                    s_vv = 0.0
                    s_n = 0.0
                    for f in range(f_lo, f_hi):
                        if flag[t, b, f, c]:
                            continue
                        w = np.float64(weight[t, b, f, c])
                        v = data[t, b, f, c]
                        m = model[t, b, f, c]
                        vr = np.float64(v.real)
                        vi = np.float64(v.imag)
                        mr = np.float64(m.real)
                        mi = np.float64(m.imag)
                        # one comparison rejects w <= 0, NaN and inf anywhere
                        if not (w > 0.0 and abs(vr) + abs(vi) + abs(mr) + abs(mi) + w < _INF):
                            continue
                        wmr = w * mr
                        wmi = w * mi
                        s_re += vr * wmr + vi * wmi
                        s_im += vi * wmr - vr * wmi
                        s_mm += wmr * mr + wmi * mi
                        s_vv += w * (vr * vr + vi * vi)
                        s_n += 1.0
                    if s_n > 0.0:
                        vm[ts, fs, b, r] += complex(s_re, s_im)
                        mm[ts, fs, b, r] += s_mm
                        vv[ts, fs, b, r] += s_vv
                        ns[ts, fs, b, r] += s_n
    return vm, mm, vv, ns


@njit
def _reduce_full(data, model, weight, flag, a1, a2, t_int, f_int):
    n_time, n_bl, n_chan, _ = data.shape
    n_ts = (n_time + t_int - 1) // t_int
    n_fs = (n_chan + f_int - 1) // f_int
    rr = np.zeros((n_ts, n_fs, n_bl, 4, 4), np.complex128)
    ss = np.zeros((n_ts, n_fs, n_bl, 4, 4, 4), np.complex128)
    vv = np.zeros((n_ts, n_fs, n_bl, 4), np.float64)
    ns = np.zeros((n_ts, n_fs, n_bl, 4), np.float64)
    m = np.empty(4, np.complex128)
    v = np.empty(4, np.complex128)
    w = np.empty(4, np.float64)
    ok = np.empty(4, np.bool_)
    # samples whose four correlations are valid with one common weight (the usual case)
    # share one accumulator for S; the others go to S directly, per correlation
    sc = np.empty((4, 4), np.complex128)
    for t in range(n_time):
        ts = t // t_int
        for b in range(n_bl):
            if a1[b] == a2[b]:
                continue
            for fs in range(n_fs):
                f_lo = fs * f_int
                f_hi = min(f_lo + f_int, n_chan)
                sc[:, :] = 0.0
                r_cell = rr[ts, fs, b]
                s_cell = ss[ts, fs, b]
                for f in range(f_lo, f_hi):
                    msum = 0.0
                    for c in range(4):
                        m[c] = model[t, b, f, c]
                        msum += abs(m[c].real) + abs(m[c].imag)
                    if not msum < _INF:
                        continue
                    n_ok = 0
                    for c in range(4):
                        ok[c] = False
                        if flag[t, b, f, c]:
                            continue
                        wc = np.float64(weight[t, b, f, c])
                        vc = data[t, b, f, c]
                        if not (wc > 0.0 and abs(vc.real) + abs(vc.imag) + wc < _INF):
                            continue
                        ok[c] = True
                        w[c] = wc
                        v[c] = vc
                        n_ok += 1
                    if n_ok == 0:
                        continue
                    common = n_ok == 4 and w[0] == w[1] and w[0] == w[2] and w[0] == w[3]
                    if common:  # Hermitian: the upper triangle here, the lower one below
                        w0 = w[0]
                        for k1 in range(4):
                            wm = w0 * m[k1]
                            for k2 in range(k1, 4):
                                sc[k1, k2] += wm * m[k2].conjugate()
                    for c in range(4):
                        if not ok[c]:
                            continue
                        wv = w[c] * v[c]
                        for k1 in range(4):
                            r_cell[c, k1] += wv * m[k1].conjugate()
                        if not common:
                            for k1 in range(4):
                                wm = w[c] * m[k1]
                                for k2 in range(4):
                                    s_cell[c, k1, k2] += wm * m[k2].conjugate()
                        vv[ts, fs, b, c] += w[c] * (v[c].real ** 2 + v[c].imag ** 2)
                        ns[ts, fs, b, c] += 1.0
                for k1 in range(4):
                    for k2 in range(k1):
                        sc[k1, k2] = sc[k2, k1].conjugate()
                for c in range(4):
                    for k1 in range(4):
                        for k2 in range(4):
                            s_cell[c, k1, k2] += sc[k1, k2]
    return rr, ss, vv, ns
