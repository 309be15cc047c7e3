"""StefCal iterations for full-Jones (2x2) gains (numba, private).

With ``V_pq = G_p M_pq G_q^H`` and ``Z = M_pq G_q^H``, row ``i`` of ``G_p``
given all other antennas minimises ``sum_{s,j} w_ij |V_ij - sum_k G_ik Z_kj|^2``
(weights per correlation), whose normal equations are ``g D = N`` with::

    N_l    = sum_{s,j} w_ij V_ij conj(Z_lj)
           = sum_{j,n} G_q[j,n] R[ij, ln]
    D_{kl} = sum_{s,j} w_ij Z_kj conj(Z_lj)
           = sum_{j,m,n} conj(G_q[j,m]) G_q[j,n] S[ij, km, ln]

using the per-cell sums ``R`` and ``S`` of :mod:`._reduce` (flat correlation
index ``2 i + j``). A baseline with ``p`` as its second antenna enters through
``V^H = G_p M^H G_q^H``: ``R'[ij, ln] = conj(R[ji, nl])`` and
``S'[ij, km, ln] = conj(S[ji, mk, nl])``. With equal weights over the four
correlations this is the 2x2 StefCal update ``G_p = [sum V Z^H][sum Z Z^H]^-1``.

Every second iteration ends with a collective step (:func:`_collective_step`):
Gauss-Newton on a transform common to all antennas, the direction in which the
per-antenna updates converge slowly.
"""

from __future__ import annotations

import numpy as np

from daskcal.kernels._jit import njit

#: Gauss-Newton steps of each collective step.
N_COLLECTIVE = 2


@njit
def _flag_full(ns, ss, a1, a2, n_bl_ant, n_samp, min_frac, ok):
    """Solvable antennas (``ok``, shape (n_ant,)); as :func:`._diag._flag_diag`."""
    n_ant = ok.shape[0]
    valid = np.zeros(n_ant, np.float64)
    for p in range(n_ant):
        ok[p] = n_bl_ant[p] > 0
    changed = True
    while changed:
        changed = False
        valid[:] = 0.0
        for b in range(a1.size):
            p = a1[b]
            q = a2[b]
            if p == q or not (ok[p] and ok[q]):
                continue
            for c in range(4):
                power = 0.0
                for k in range(4):
                    power += ss[b, c, k, k].real
                if power > 0.0:
                    valid[p] += ns[b, c]
                    valid[q] += ns[b, c]
        for p in range(n_ant):
            good = valid[p] > 0.0 and valid[p] >= min_frac * 4.0 * n_bl_ant[p] * n_samp
            if ok[p] and not good:
                ok[p] = False
                changed = True


@njit
def _normal_equations(rr, ss, a1, a2, ok, g, hh, nn, dd):
    """Fill ``nn`` (n_ant, 2, 2) = N[p, i, l] and ``dd`` (n_ant, 2, 2, 2) = D[p, i, k, l]."""
    n_ant = g.shape[0]
    for q in range(n_ant):
        for j in range(2):
            for m in range(2):
                for n in range(2):
                    hh[q, j, m, n] = g[q, j, m].conjugate() * g[q, j, n]
    nn[:, :, :] = 0.0
    dd[:, :, :, :] = 0.0
    for b in range(a1.size):
        p = a1[b]
        q = a2[b]
        if p == q or not (ok[p] and ok[q]):
            continue
        for i in range(2):
            for j in range(2):
                c = 2 * i + j
                ct = 2 * j + i
                for l in range(2):
                    for n in range(2):
                        nn[p, i, l] += g[q, j, n] * rr[b, c, 2 * l + n]
                        nn[q, i, l] += g[p, j, n] * rr[b, ct, 2 * n + l].conjugate()
                for k in range(2):
                    for l in range(2):
                        sp = 0j
                        sq = 0j
                        for m in range(2):
                            for n in range(2):
                                sp += hh[q, j, m, n] * ss[b, c, 2 * k + m, 2 * l + n]
                                sq += hh[p, j, m, n] * ss[b, ct, 2 * m + k, 2 * n + l].conjugate()
                        dd[p, i, k, l] += sp
                        dd[q, i, k, l] += sq


@njit
def _collective_normal(rr, ss, vv, ns, a1, a2, ok, g, nmat, rhs, gam, pi0, tt):
    """Gauss-Newton normal equations for a common ``G_p -> G_p (I + E)``, all antennas.

    ``E`` (2x2 complex) enters the prediction on both sides,
    ``G_p (E M + M E^H) G_q^H`` to first order, so it is linear over the reals only: the
    unknowns are ``x = (Re E, Im E)`` (index ``2 k + l`` and ``4 + 2 k + l``). Each of the
    eight derivative columns of correlation ``ij`` is a linear form in the four model
    entries, ``sum_c1 gam[a, c1] M_c1``, so the sums over samples come from ``S``/``R``.
    Fills ``nmat`` (8, 8) and ``rhs`` (8,).
    """
    nmat[:, :] = 0.0
    rhs[:] = 0.0
    for b in range(a1.size):
        p = a1[b]
        q = a2[b]
        if p == q or not (ok[p] and ok[q]):
            continue
        for i in range(2):
            for j in range(2):
                c = 2 * i + j
                if ns[b, c] == 0.0:
                    continue
                gam[:, :] = 0.0
                for k in range(2):
                    for m in range(2):
                        # prediction: sum_km G_p[i,k] M_km conj(G_q[j,m])
                        pi0[2 * k + m] = g[p, i, k] * g[q, j, m].conjugate()
                for k in range(2):
                    for l in range(2):
                        u = 2 * k + l
                        for m in range(2):
                            # G_p E M G_q^H: d/dE[k,l] -> G_p[i,k] M[l,m] conj(G_q[j,m])
                            al = g[p, i, k] * g[q, j, m].conjugate()
                            gam[u, 2 * l + m] += al
                            gam[4 + u, 2 * l + m] += 1j * al
                        for n in range(2):
                            # G_p M E^H G_q^H: conj(E[k,l]) -> G_p[i,n] M[n,l] conj(G_q[j,k])
                            be = g[p, i, n] * g[q, j, k].conjugate()
                            gam[u, 2 * n + l] += be
                            gam[4 + u, 2 * n + l] -= 1j * be
                s_c = ss[b, c]
                r_c = rr[b, c]
                # tt[a, c2] = sum_c1 conj(gam[a, c1]) sum_s w conj(M_c1) M_c2
                for a in range(8):
                    for c2 in range(4):
                        acc = 0j
                        for c1 in range(4):
                            acc += gam[a, c1].conjugate() * s_c[c2, c1]
                        tt[a, c2] = acc
                for a in range(8):
                    # sum_s w conj(col_a) (V - P0) and sum_s w conj(col_a) col_bb
                    acc = 0j
                    for c1 in range(4):
                        acc += gam[a, c1].conjugate() * r_c[c1] - tt[a, c1] * pi0[c1]
                    rhs[a] += acc.real
                    for bb in range(a, 8):
                        acc = 0j
                        for c2 in range(4):
                            acc += tt[a, c2] * gam[bb, c2]
                        nmat[a, bb] += acc.real
    for a in range(8):
        for bb in range(a):
            nmat[a, bb] = nmat[bb, a]


@njit
def _collective_step(rr, ss, vv, ns, a1, a2, ok, g, n_steps, gtry):
    """Gauss-Newton steps on a transform ``X`` common to all antennas, ``G_p -> G_p X``.

    The per-antenna updates move slowly along this collective direction (an exact
    symmetry for an unpolarised model, weakly constrained by a polarised one). The
    normal matrix is pseudo-inverted (its null space is the symmetry, which is left
    alone); a step is kept only if it lowers chi-squared, else halved (twice).
    """
    nmat = np.empty((8, 8))
    rhs = np.empty(8)
    gam = np.empty((8, 4), np.complex128)
    pi0 = np.empty(4, np.complex128)
    tt = np.empty((8, 4), np.complex128)
    x = np.empty((2, 2), np.complex128)
    chi_now = _chi2_full(rr, ss, vv, ns, a1, a2, ok, g)
    for _ in range(n_steps):
        _collective_normal(rr, ss, vv, ns, a1, a2, ok, g, nmat, rhs, gam, pi0, tt)
        if not np.all(np.isfinite(nmat)) or not np.all(np.isfinite(rhs)):
            return
        lam, vec = np.linalg.eigh(nmat)
        top = lam[-1]
        if not top > 0.0:
            return
        step = np.zeros(8)
        for k in range(8):
            if lam[k] > 1e-9 * top:
                step += vec[:, k] * (vec[:, k] @ rhs) / lam[k]
        accepted = False
        for _half in range(3):
            for k in range(2):
                for l in range(2):
                    x[k, l] = (1.0 if k == l else 0.0) + step[2 * k + l] + 1j * step[4 + 2 * k + l]
            for p in range(g.shape[0]):
                for i in range(2):
                    for k in range(2):
                        if ok[p]:
                            gtry[p, i, k] = g[p, i, 0] * x[0, k] + g[p, i, 1] * x[1, k]
                        else:
                            gtry[p, i, k] = g[p, i, k]
            chi_try = _chi2_full(rr, ss, vv, ns, a1, a2, ok, gtry)
            if chi_try < chi_now:
                g[:, :, :] = gtry
                chi_now = chi_try
                accepted = True
                break
            step *= 0.5
        if not accepted:
            return


@njit
def _iterate_full(rr, ss, vv, ns, a1, a2, ok, g, max_iter, tol, damping, damp_every, gnew, hh,
                  nn, dd, gtry):
    """Iterate in place on ``g`` (n_ant, 2, 2); returns (n_iter, converged).

    Every second iteration ends with a collective step (:func:`_collective_step`).
    """
    n_ant = g.shape[0]
    for it in range(max_iter):
        _normal_equations(rr, ss, a1, a2, ok, g, hh, nn, dd)
        for p in range(n_ant):
            for i in range(2):
                for k in range(2):
                    gnew[p, i, k] = g[p, i, k] if ok[p] else (1.0 if i == k else 0.0)
            if not ok[p]:
                continue
            for i in range(2):
                d00 = dd[p, i, 0, 0]
                d01 = dd[p, i, 0, 1]
                d10 = dd[p, i, 1, 0]
                d11 = dd[p, i, 1, 1]
                det = d00 * d11 - d01 * d10
                scale = abs(d00) + abs(d11)
                if not abs(det) > 1e-12 * scale * scale:
                    continue  # this row is not constrained: keep it
                n0 = nn[p, i, 0]
                n1 = nn[p, i, 1]
                gnew[p, i, 0] = (n0 * d11 - n1 * d10) / det
                gnew[p, i, 1] = (n1 * d00 - n0 * d01) / det
        if damping > 0.0 and (it + 1) % damp_every == 0:
            for p in range(n_ant):
                if ok[p]:
                    for i in range(2):
                        for k in range(2):
                            gnew[p, i, k] = (1.0 - damping) * gnew[p, i, k] + damping * g[p, i, k]
        if it % 2 == 1:
            _collective_step(rr, ss, vv, ns, a1, a2, ok, gnew, N_COLLECTIVE, gtry)
        d2 = 0.0
        n2 = 0.0
        for p in range(n_ant):
            for i in range(2):
                for k in range(2):
                    if ok[p]:
                        dz = gnew[p, i, k] - g[p, i, k]
                        d2 += dz.real * dz.real + dz.imag * dz.imag
                        n2 += gnew[p, i, k].real ** 2 + gnew[p, i, k].imag ** 2
                    g[p, i, k] = gnew[p, i, k]
        if n2 > 0.0 and d2 <= tol * tol * n2:
            return it + 1, True
    return max_iter, False


@njit
def _chi2_full(rr, ss, vv, ns, a1, a2, ok, g):
    """Weighted residual sum over the used samples / real degrees of freedom."""
    resid = 0.0
    n_obs = 0.0
    a = np.empty(4, np.complex128)
    for b in range(a1.size):
        p = a1[b]
        q = a2[b]
        if p == q or not (ok[p] and ok[q]):
            continue
        for i in range(2):
            for j in range(2):
                c = 2 * i + j
                if ns[b, c] == 0.0:
                    continue
                # model prediction of correlation ij = sum_km a[km] M_km
                for k in range(2):
                    for m in range(2):
                        a[2 * k + m] = g[p, i, k] * g[q, j, m].conjugate()
                cross = 0j
                quad = 0j
                for x in range(4):
                    cross += a[x].conjugate() * rr[b, c, x]
                    for y in range(4):
                        quad += a[x] * a[y].conjugate() * ss[b, c, x, y]
                resid += vv[b, c] - 2.0 * cross.real + quad.real
                n_obs += ns[b, c]
    n_ok = 0.0
    for p in range(ok.shape[0]):
        n_ok += ok[p]
    dof = 2.0 * n_obs - (8.0 * n_ok - 1.0 if n_ok > 0 else 0.0)
    if dof <= 0.0:
        return np.nan
    return max(resid, 0.0) / dof


@njit
def _solve_full(rr, ss, vv, ns, a1, a2, n_ant, n_samp, g0, use_g0, max_iter, tol, damping,
                damp_every, ref, min_frac):
    n_ts, n_fs = rr.shape[0], rr.shape[1]
    gains = np.zeros((n_ts, n_fs, n_ant, 2, 2), np.complex128)
    gains[:, :, :, 0, 0] = 1.0
    gains[:, :, :, 1, 1] = 1.0
    gflag = np.ones((n_ts, n_fs, n_ant, 2, 2), np.bool_)
    chi2 = np.full((n_ts, n_fs), np.nan)
    n_iter = np.zeros((n_ts, n_fs), np.int32)
    conv = np.zeros((n_ts, n_fs), np.bool_)
    ref_used = np.full((n_ts, n_fs, 2), -1, np.int32)
    n_bl_ant = np.zeros(n_ant, np.float64)
    for b in range(a1.size):
        if a1[b] != a2[b]:
            n_bl_ant[a1[b]] += 1.0
            n_bl_ant[a2[b]] += 1.0
    ok = np.empty(n_ant, np.bool_)
    g = np.empty((n_ant, 2, 2), np.complex128)
    gnew = np.empty((n_ant, 2, 2), np.complex128)
    hh = np.empty((n_ant, 2, 2, 2), np.complex128)
    nn = np.empty((n_ant, 2, 2), np.complex128)
    dd = np.empty((n_ant, 2, 2, 2), np.complex128)
    gtry = np.empty((n_ant, 2, 2), np.complex128)
    for ts in range(n_ts):
        for fs in range(n_fs):
            _flag_full(ns[ts, fs], ss[ts, fs], a1, a2, n_bl_ant, n_samp[ts, fs], min_frac, ok)
            any_ok = False
            for p in range(n_ant):
                any_ok = any_ok or ok[p]
                for i in range(2):
                    for k in range(2):
                        if ok[p] and use_g0:
                            g[p, i, k] = g0[ts, fs, p, i, k]
                        else:
                            g[p, i, k] = 1.0 if i == k else 0.0
            if not any_ok:
                continue
            it, cv = _iterate_full(rr[ts, fs], ss[ts, fs], vv[ts, fs], ns[ts, fs], a1, a2, ok, g,
                                   max_iter, tol, damping, damp_every, gnew, hh, nn, dd, gtry)
            n_iter[ts, fs] = it
            if not np.all(np.isfinite(g)):
                continue
            # reference: a common phase so that G_ref[0, 0] is real and positive
            if ref >= 0:
                a = -1
                for k in range(n_ant):
                    if ok[(ref + k) % n_ant]:
                        a = (ref + k) % n_ant
                        break
                if a >= 0:
                    ref_used[ts, fs, 0] = a
                    ref_used[ts, fs, 1] = a
                    z = g[a, 0, 0]
                    if abs(z) > 0.0:
                        rot = z.conjugate() / abs(z)
                        for p in range(n_ant):
                            if ok[p]:
                                for i in range(2):
                                    for k in range(2):
                                        g[p, i, k] = g[p, i, k] * rot
            chi2[ts, fs] = _chi2_full(rr[ts, fs], ss[ts, fs], vv[ts, fs], ns[ts, fs], a1, a2,
                                      ok, g)
            conv[ts, fs] = cv
            for p in range(n_ant):
                if ok[p]:
                    for i in range(2):
                        for k in range(2):
                            gains[ts, fs, p, i, k] = g[p, i, k]
                            gflag[ts, fs, p, i, k] = False
    return gains, gflag, chi2, n_iter, conv, ref_used
