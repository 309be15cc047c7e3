"""StefCal iterations for the scalar and diagonal modes (numba, private).

Works on the per-cell sums of :mod:`._reduce` (``VM``, ``MM``, ``VV``, ``NS``,
parallel hands ``r = 0, 1``). With ``V_pq,r = g_p,r M_pq,r conj(g_q,r)`` the
least-squares update of antenna ``p`` given all the others is::

    g_p,r <- sum_q g_q,r VM_pq,r / sum_q |g_q,r|^2 MM_pq,r

where a baseline with ``p`` as its second antenna enters conjugated
(``conj(VM)``): every antenna sees all its baselines. Phase-only modes keep
the phase of the numerator (the exact minimiser for unit-modulus gains);
scalar modes add the numerators and denominators of both receptors.
"""

from __future__ import annotations

import numpy as np

from daskcal.kernels._jit import njit

SCALAR_PHASE = 0
SCALAR_COMPLEX = 1
DIAGONAL_PHASE = 2
DIAGONAL_COMPLEX = 3
FULL_JONES = 4


@njit
def _antenna_baselines(a1, a2, n_ant):
    """Number of cross-correlation baselines of each antenna."""
    n = np.zeros(n_ant, np.float64)
    for b in range(a1.size):
        if a1[b] != a2[b]:
            n[a1[b]] += 1.0
            n[a2[b]] += 1.0
    return n


@njit
def _flag_diag(ns, mm, a1, a2, n_bl_ant, n_samp, min_frac, scalar, ok):
    """Decide which (antenna, receptor) pairs are solvable; fills ``ok`` (n_ant, 2).

    A pair is solvable when it has valid samples (with a non-zero model) on
    baselines to solvable partners, at least ``min_frac`` of all its samples.
    Repeated until stable, since flagging one antenna removes data of others.
    """
    n_ant = ok.shape[0]
    valid = np.zeros((n_ant, 2), np.float64)
    for p in range(n_ant):
        good = n_bl_ant[p] > 0
        ok[p, 0] = good
        ok[p, 1] = good
    changed = True
    while changed:
        changed = False
        valid[:, :] = 0.0
        for b in range(a1.size):
            p = a1[b]
            q = a2[b]
            if p == q:
                continue
            for r in range(2):
                if ok[p, r] and ok[q, r] and mm[b, r] > 0.0:
                    valid[p, r] += ns[b, r]
                    valid[q, r] += ns[b, r]
        for p in range(n_ant):
            if scalar:
                tot = valid[p, 0] + valid[p, 1]
                good = tot > 0.0 and tot >= min_frac * 2.0 * n_bl_ant[p] * n_samp
                if ok[p, 0] and not good:
                    ok[p, 0] = False
                    ok[p, 1] = False
                    changed = True
            else:
                for r in range(2):
                    good = valid[p, r] > 0.0 and valid[p, r] >= min_frac * n_bl_ant[p] * n_samp
                    if ok[p, r] and not good:
                        ok[p, r] = False
                        changed = True


@njit
def _iterate_diag(vm, mm, a1, a2, ok, g, mode, max_iter, tol, damping, damp_every,
                  gnew, num, den):
    """Iterate in place on ``g`` (n_ant, 2); returns (n_iter, converged)."""
    n_ant = g.shape[0]
    phase_only = mode == SCALAR_PHASE or mode == DIAGONAL_PHASE
    scalar = mode == SCALAR_PHASE or mode == SCALAR_COMPLEX
    for it in range(max_iter):
        num[:, :] = 0.0
        den[:, :] = 0.0
        for b in range(a1.size):
            p = a1[b]
            q = a2[b]
            if p == q:
                continue
            for r in range(2):
                bm = mm[b, r]
                if bm == 0.0 or not (ok[p, r] and ok[q, r]):
                    continue
                a = vm[b, r]
                gp = g[p, r]
                gq = g[q, r]
                num[p, r] += gq * a
                num[q, r] += gp * a.conjugate()
                den[p, r] += (gq.real * gq.real + gq.imag * gq.imag) * bm
                den[q, r] += (gp.real * gp.real + gp.imag * gp.imag) * bm
        for p in range(n_ant):
            if scalar:
                if not ok[p, 0]:
                    gnew[p, 0] = 1.0
                    gnew[p, 1] = 1.0
                    continue
                n = num[p, 0] + num[p, 1]
                d = den[p, 0] + den[p, 1]
                val = g[p, 0]
                if phase_only:
                    an = abs(n)
                    if an > 0.0:
                        val = n / an
                elif d > 0.0:
                    val = n / d
                gnew[p, 0] = val
                gnew[p, 1] = val
            else:
                for r in range(2):
                    if not ok[p, r]:
                        gnew[p, r] = 1.0
                        continue
                    val = g[p, r]
                    if phase_only:
                        an = abs(num[p, r])
                        if an > 0.0:
                            val = num[p, r] / an
                    elif den[p, r] > 0.0:
                        val = num[p, r] / den[p, r]
                    gnew[p, r] = val
        if damping > 0.0 and (it + 1) % damp_every == 0:
            for p in range(n_ant):
                for r in range(2):
                    if ok[p, r]:
                        x = (1.0 - damping) * gnew[p, r] + damping * g[p, r]
                        if phase_only:
                            ax = abs(x)
                            if ax > 0.0:
                                x = x / ax
                        gnew[p, r] = x
        d2 = 0.0
        n2 = 0.0
        for p in range(n_ant):
            for r in range(2):
                if ok[p, r]:
                    dz = gnew[p, r] - g[p, r]
                    d2 += dz.real * dz.real + dz.imag * dz.imag
                    n2 += gnew[p, r].real ** 2 + gnew[p, r].imag ** 2
                g[p, r] = gnew[p, r]
        if n2 > 0.0 and d2 <= tol * tol * n2:
            return it + 1, True
    return max_iter, False


@njit
def _chi2_diag(vm, mm, vv, ns, a1, a2, ok, g, mode):
    """Weighted residual sum over the used samples / real degrees of freedom."""
    resid = 0.0
    n_obs = 0.0
    for b in range(a1.size):
        p = a1[b]
        q = a2[b]
        if p == q:
            continue
        for r in range(2):
            if ns[b, r] == 0.0 or not (ok[p, r] and ok[q, r]):
                continue
            c = g[p, r] * g[q, r].conjugate()
            resid += (vv[b, r] - 2.0 * (c.conjugate() * vm[b, r]).real
                      + (c.real * c.real + c.imag * c.imag) * mm[b, r])
            n_obs += ns[b, r]
    n_ok0 = 0.0
    n_ok1 = 0.0
    for p in range(ok.shape[0]):
        n_ok0 += ok[p, 0]
        n_ok1 += ok[p, 1]
    per_ant = 1.0 if (mode == SCALAR_PHASE or mode == DIAGONAL_PHASE) else 2.0
    if mode == SCALAR_PHASE or mode == SCALAR_COMPLEX:
        n_par = per_ant * n_ok0 - 1.0 if n_ok0 > 0 else 0.0
    else:
        n_par = 0.0
        if n_ok0 > 0:
            n_par += per_ant * n_ok0 - 1.0
        if n_ok1 > 0:
            n_par += per_ant * n_ok1 - 1.0
    dof = 2.0 * n_obs - n_par
    if dof <= 0.0:
        return np.nan
    return max(resid, 0.0) / dof


@njit
def _reference_diag(g, ok, ref, ref_used):
    """Rotate each receptor's gains so that the reference antenna's phase is 0."""
    n_ant = g.shape[0]
    for r in range(2):
        ref_used[r] = -1
        if ref < 0:
            continue
        for k in range(n_ant):
            a = (ref + k) % n_ant
            if ok[a, r]:
                ref_used[r] = a
                break
        if ref_used[r] < 0:
            continue
        z = g[ref_used[r], r]
        az = abs(z)
        if az == 0.0:
            continue
        rot = z.conjugate() / az
        for p in range(n_ant):
            if ok[p, r]:
                g[p, r] = g[p, r] * rot


@njit
def _solve_diag(vm, mm, vv, ns, a1, a2, n_ant, n_samp, mode, g0, use_g0, max_iter, tol,
                damping, damp_every, ref, min_frac):
    n_ts, n_fs = vm.shape[0], vm.shape[1]
    gains = np.ones((n_ts, n_fs, n_ant, 2), np.complex128)
    gflag = np.ones((n_ts, n_fs, n_ant, 2), np.bool_)
    chi2 = np.full((n_ts, n_fs), np.nan)
    n_iter = np.zeros((n_ts, n_fs), np.int32)
    conv = np.zeros((n_ts, n_fs), np.bool_)
    ref_used = np.full((n_ts, n_fs, 2), -1, np.int32)
    scalar = mode == SCALAR_PHASE or mode == SCALAR_COMPLEX
    n_bl_ant = _antenna_baselines(a1, a2, n_ant)
    ok = np.empty((n_ant, 2), np.bool_)
    g = np.empty((n_ant, 2), np.complex128)
    gnew = np.empty((n_ant, 2), np.complex128)
    num = np.empty((n_ant, 2), np.complex128)
    den = np.empty((n_ant, 2), np.float64)
    for ts in range(n_ts):
        for fs in range(n_fs):
            _flag_diag(ns[ts, fs], mm[ts, fs], a1, a2, n_bl_ant, n_samp[ts, fs], min_frac,
                       scalar, ok)
            any_ok = False
            for p in range(n_ant):
                for r in range(2):
                    g[p, r] = 1.0
                    if ok[p, r]:
                        any_ok = True
                        if use_g0:
                            g[p, r] = g0[ts, fs, p, 0 if scalar else r]
            if not any_ok:
                continue
            it, cv = _iterate_diag(vm[ts, fs], mm[ts, fs], a1, a2, ok, g, mode, max_iter,
                                   tol, damping, damp_every, gnew, num, den)
            finite = True
            for p in range(n_ant):
                for r in range(2):
                    if ok[p, r] and not np.isfinite(g[p, r]):
                        finite = False
            if not finite:
                n_iter[ts, fs] = it
                continue
            _reference_diag(g, ok, ref, ref_used[ts, fs])
            chi2[ts, fs] = _chi2_diag(vm[ts, fs], mm[ts, fs], vv[ts, fs], ns[ts, fs], a1, a2,
                                      ok, g, mode)
            n_iter[ts, fs] = it
            conv[ts, fs] = cv
            for p in range(n_ant):
                for r in range(2):
                    if ok[p, r]:
                        gains[ts, fs, p, r] = g[p, r]
                        gflag[ts, fs, p, r] = False
    return gains, gflag, chi2, n_iter, conv, ref_used
