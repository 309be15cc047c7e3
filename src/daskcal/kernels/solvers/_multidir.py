"""Joint multi-direction gain solver (alternating directions, "SAGECal-lite" / DDECal style).

Measurement equation
--------------------
For each solution cell and every baseline ``(p, q)`` and parallel hand ``r``::

    V_pq,r = sum_d g^d_p,r M^d_pq,r conj(g^d_q,r)

with one scalar (both receptors equal) or diagonal gain per antenna and direction.
Cross-hands are not used (as in the direction-independent diagonal solvers).

Algorithm
---------
Alternating least squares over directions (the expectation-maximisation view of
Kazemi et al. 2011 / SAGECal, as DP3's DDECal iterates directions):

1. the residual ``R = V - sum_d g^d M^d g^dH`` is kept for every sample;
2. for each direction ``d`` in turn: add its current prediction back
   (``R_d = R + g^d M^d g^dH``: the data minus all *other* directions' current
   predictions), reduce ``R_d`` against ``M^d`` to per-baseline sums per solution cell
   of ``d`` and run ``inner_iter`` StefCal iterations (:mod:`._diag`, with its damping)
   on direction ``d`` alone, then subtract the new prediction from ``R``. A visit
   whose prediction fits its cell worse than predicting nothing (StefCal is not a
   descent method: a step can overshoot, and a direction with little or no signal
   behind its model, e.g. a faint target patch, runs away to huge gains that swamp
   the residual of every other direction) has its gains scaled to the least-cost
   scale, or reverted if no scale helps, and does not count as converged;
   A cold start (no initial gains) enters the directions one at a time in the first
   pass, each starting from a real gain ``sqrt(sum |R conj(M)| / sum |M|^2)`` per
   cell, so that a model far brighter than its apparent flux (an A-team source seen
   through a sidelobe) does not swamp the residual of the others;
3. repeat until the relative change of every direction's gains in an outer iteration
   is at most ``tolerance`` (``||g_new - g_old|| <= tol ||g_new||`` per cell), or
   ``max_iter`` outer iterations.

Solution intervals: each direction has its own time interval ``t_int[d]`` (an
integer multiple of the smallest); the frequency interval ``f_int`` is common.
Results are returned on the grid of the *smallest* interval; a direction with a
longer interval repeats its value over the cells it covers.

Phase references: each direction's gains are determined up to a phase per receptor
(``g^d -> g^d e^{i phi_d}`` leaves the model unchanged); after convergence each
direction is rotated so that the reference antenna's gain is real and positive.

Flags and weights: flagged samples, non-finite values and weights <= 0 are not used.
An (antenna, receptor) without valid data in a direction's cell (on baselines where
that direction's model is non-zero), or whose summed model power is below
``1e-6`` of the best antenna's (a source resolved out on its baselines), is not
solved: its gain is flagged (1) and its baselines get no prediction of that direction.

chi-squared per direction and cell: the weighted residual of the *joint* model over the
cell's samples divided by ``2 N_vis - N_par``, where ``N_par`` counts the real
parameters of every direction that the cell involves (scaled by interval ratios).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from daskcal.kernels._jit import njit
from daskcal.kernels.solvers import _diag

#: Antennas whose summed model power in a direction is below this fraction of the
#: best antenna's are not solved in that direction (gain flagged, nothing predicted).
_MIN_MODEL_POWER = 1e-6

#: Modes supported by the multi-direction solver.
MULTIDIR_MODES: dict[str, int] = {
    "scalar_phase": _diag.SCALAR_PHASE,
    "scalar_complex": _diag.SCALAR_COMPLEX,
    "diagonal_phase": _diag.DIAGONAL_PHASE,
    "diagonal_complex": _diag.DIAGONAL_COMPLEX,
}


class MultiDirSolutions(NamedTuple):
    """Solutions of one chunk on the grid of the smallest time interval.

    ``n_t_sol = ceil(n_time / min(t_int))``, ``n_f_sol = ceil(n_chan / f_int)``.

    Attributes
    ----------
    gains : ndarray, complex128, shape (n_dir, n_t_sol, n_f_sol, n_ant, 2)
        Gain per direction, cell, antenna and receptor (scalar modes: equal receptors);
        flagged entries hold 1.
    flags : ndarray of bool, same shape
        True where no solution could be made.
    chi2 : ndarray, float64, shape (n_dir, n_t_sol, n_f_sol)
        Reduced chi-squared of the joint model over each direction's cell (NaN: none).
    n_iter : int
        Outer iterations done.
    converged : ndarray of bool, shape (n_dir, n_t_sol, n_f_sol)
        Whether the cell's gains met the tolerance in the last outer iteration.
    ref_antenna : ndarray, int32, shape (n_dir, n_t_sol, n_f_sol, 2)
        Reference antenna used per direction, cell and receptor (-1: none).
    """

    gains: np.ndarray
    flags: np.ndarray
    chi2: np.ndarray
    n_iter: int
    converged: np.ndarray
    ref_antenna: np.ndarray


def _check(data, model, weight, flag):
    for name, arr in (("data", data), ("model", model), ("weight", weight), ("flag", flag)):
        if not isinstance(arr, np.ndarray):
            raise ValueError(f"{name} must be a numpy array, got {type(arr).__name__}")
    if data.ndim != 4 or data.shape[3] not in (2, 4):
        raise ValueError(f"data must be (n_time, n_bl, n_chan, 2 or 4), got {data.shape}")
    if model.ndim != 5 or model.shape[1:] != data.shape or model.shape[0] < 1:
        raise ValueError(f"model must be (n_dir, *data.shape) = (n_dir, {data.shape}), "
                         f"got {model.shape}")
    if weight.shape != data.shape or flag.shape != data.shape:
        raise ValueError("weight and flag must have the shape of data")
    if data.dtype.kind != "c" or model.dtype.kind != "c":
        raise ValueError("data and model must be complex")
    if weight.dtype.kind != "f":
        raise ValueError(f"weight must be float, got {weight.dtype}")
    if flag.dtype != np.bool_:
        raise ValueError(f"flag must be bool, got {flag.dtype}")


def _int(name, value, low=1):
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def solve_multidir(
    data: np.ndarray,
    model: np.ndarray,
    weight: np.ndarray,
    flag: np.ndarray,
    antenna1: np.ndarray,
    antenna2: np.ndarray,
    n_ant: int,
    t_int,
    f_int: int,
    *,
    mode: str = "diagonal_complex",
    max_iter: int = 100,
    inner_iter: int = 2,
    tolerance: float = 1e-6,
    damping: float = 0.5,
    damping_every: int = 2,
    ref_antenna: int | None = 0,
    min_unflagged_fraction: float = 0.0,
    initial_gains: np.ndarray | None = None,
) -> MultiDirSolutions:
    """Solve direction-dependent gains of several directions jointly, per solution cell.

    Parameters
    ----------
    data : ndarray, complex, shape (n_time, n_bl, n_chan, n_corr)
        Observed visibilities ``V``, Jy; ``n_corr`` 4 (``XX, XY, YX, YY``) or 2
        (parallel hands).
    model : ndarray, complex, shape (n_dir, n_time, n_bl, n_chan, n_corr)
        Model visibilities ``M^d`` of each direction, Jy.
    weight : ndarray, float, shape of ``data``
        Inverse noise variance per real component, Jy^-2 (0: unused).
    flag : ndarray of bool, shape of ``data``
        True: unused.
    antenna1, antenna2 : ndarray of int, shape (n_bl,)
        Antennas of each baseline, in ``[0, n_ant)``; baselines may repeat (e.g. the
        same baselines at several phase centres stacked along the baseline axis).
    n_ant : int
    t_int : int or sequence of int, length n_dir
        Time solution interval of each direction, integrations; each a multiple of the
        smallest.
    f_int : int
        Frequency solution interval, channels (all directions).
    mode : str
        One of :data:`MULTIDIR_MODES`.
    max_iter : int
        Outer iterations (each visits every direction once).
    inner_iter : int
        StefCal iterations per direction visit.
    tolerance : float
        Convergence threshold on the relative gain change per outer iteration.
    damping, damping_every : float, int
        StefCal damping of the inner iterations (see :func:`solve_gains`).
    ref_antenna : int or None
        Phase reference antenna of every direction (None: no referencing).
    min_unflagged_fraction : float
        Minimum fraction of valid samples for an antenna to be solved, in [0, 1].
    initial_gains : ndarray, complex, shape (n_dir, n_t_sol, n_f_sol, n_ant, 2), optional
        Starting point on the finest grid; a direction with a longer interval starts
        from its first covered cell. Default: a cold start (module notes).

    Returns
    -------
    MultiDirSolutions
    """
    _check(data, model, weight, flag)
    n_dir = model.shape[0]
    n_time, n_bl, n_chan, n_corr = data.shape
    n_ant = _int("n_ant", n_ant)
    a1 = np.asarray(antenna1)
    a2 = np.asarray(antenna2)
    if a1.shape != (n_bl,) or a2.shape != (n_bl,) or a1.dtype.kind not in "iu" \
            or a2.dtype.kind not in "iu":
        raise ValueError(f"antenna1/antenna2 must be integer arrays of shape ({n_bl},)")
    if n_bl and (min(a1.min(), a2.min()) < 0 or max(a1.max(), a2.max()) >= n_ant):
        raise ValueError(f"antenna indices must lie in [0, {n_ant})")
    t_arr = np.atleast_1d(np.asarray(t_int))
    if t_arr.size == 1:
        t_arr = np.repeat(t_arr, n_dir)
    if t_arr.shape != (n_dir,) or t_arr.dtype.kind not in "iu" or np.any(t_arr < 1):
        raise ValueError(f"t_int must be a positive integer or {n_dir} of them, got {t_int!r}")
    t_min = int(t_arr.min())
    if np.any(t_arr % t_min):
        raise ValueError(f"every t_int must be a multiple of the smallest ({t_min}): {t_arr}")
    f_int = _int("f_int", f_int)
    if mode not in MULTIDIR_MODES:
        raise ValueError(f"mode must be one of {sorted(MULTIDIR_MODES)}, got {mode!r}")
    max_iter = _int("max_iter", max_iter)
    inner_iter = _int("inner_iter", inner_iter)
    damping_every = _int("damping_every", damping_every)
    if not (np.isfinite(tolerance) and tolerance >= 0):
        raise ValueError(f"tolerance must be >= 0, got {tolerance!r}")
    if not 0.0 <= damping < 1.0:
        raise ValueError(f"damping must lie in [0, 1), got {damping!r}")
    if not 0.0 <= min_unflagged_fraction <= 1.0:
        raise ValueError(f"min_unflagged_fraction must lie in [0, 1], got "
                         f"{min_unflagged_fraction!r}")
    ref = -1 if ref_antenna is None else int(ref_antenna)
    if ref_antenna is not None and not 0 <= ref < n_ant:
        raise ValueError(f"ref_antenna must lie in [0, {n_ant}) or be None")
    n_ts = -(-n_time // t_min)
    n_fs = -(-n_chan // f_int)
    gshape = (n_dir, n_ts, n_fs, n_ant, 2)
    if initial_gains is not None:
        g0 = np.asarray(initial_gains)
        if g0.shape != gshape or g0.dtype.kind != "c":
            raise ValueError(f"initial_gains must be complex of shape {gshape}")
        g0 = np.ascontiguousarray(g0, np.complex128)
    else:
        g0 = np.ones((1, 1, 1, 1, 1), np.complex128)
    # parallel hands in double precision, invalid samples folded into zero weights
    c1 = 3 if n_corr == 4 else 1
    hands = [0, c1]
    v = np.ascontiguousarray(data[..., hands], np.complex128)
    m = np.ascontiguousarray(model[..., hands], np.complex128)
    w = np.where(flag[..., hands], 0.0, weight[..., hands]).astype(np.float64)
    bad = ~(np.isfinite(w) & np.isfinite(v) & np.all(np.isfinite(m), axis=0) & (w > 0))
    w[bad] = 0.0
    v[bad] = 0.0
    m[:, bad] = 0.0
    out = _solve(v, m, w, a1.astype(np.int64), a2.astype(np.int64), n_ant,
                 (t_arr // t_min).astype(np.int64), t_min, f_int, MULTIDIR_MODES[mode],
                 max_iter, inner_iter, float(tolerance), float(damping), damping_every, ref,
                 float(min_unflagged_fraction), g0, initial_gains is not None)
    gains, gflag, chi2, n_iter, conv, ref_used = out
    return MultiDirSolutions(gains, gflag, chi2, int(n_iter), conv, ref_used)


@njit
def _reduce_dir(r, m, w, a1, a2, t_cell, f_int, n_tc, n_fs, vm, mm, ns):
    """Per-cell, per-baseline sums ``sum w R conj(M)``, ``sum w |M|^2`` and counts."""
    n_time, n_bl, n_chan, _ = r.shape
    vm[:] = 0.0
    mm[:] = 0.0
    ns[:] = 0.0
    for t in range(n_time):
        tc = t // t_cell
        for b in range(n_bl):
            if a1[b] == a2[b]:
                continue
            for f in range(n_chan):
                fc = f // f_int
                for h in range(2):
                    wt = w[t, b, f, h]
                    if wt == 0.0:
                        continue
                    mv = m[t, b, f, h]
                    vm[tc, fc, b, h] += wt * r[t, b, f, h] * mv.conjugate()
                    mm[tc, fc, b, h] += wt * (mv.real * mv.real + mv.imag * mv.imag)
                    ns[tc, fc, b, h] += 1.0


@njit
def _limit_runaway(vm, mm, a1, a2, ok, g, gold):
    """Keep a direction's prediction from fitting its cell worse than no prediction.

    With ``G_pq = g_p conj(g_q)`` and the per-baseline sums ``vm = sum w R conj(M)``,
    ``mm = sum w |M|^2`` of :func:`_reduce_dir`, the cell's cost relative to predicting
    nothing is ``sum |G|^2 mm - 2 Re(G conj(vm))`` = ``A - 2 B``. Where it is positive
    (a StefCal step can overshoot, and a model with no signal behind it runs away),
    ``g`` is scaled by ``sqrt(B / A)``, the scale of least cost, which makes it
    ``-B^2 / A <= 0``; if ``B <= 0`` or the gains are not finite, ``g`` reverts to
    ``gold``. Returns whether ``g`` was changed.
    """
    a = 0.0
    bsum = 0.0
    for b in range(a1.size):
        p = a1[b]
        q = a2[b]
        if p == q:
            continue
        for h in range(2):
            if mm[b, h] == 0.0 or not (ok[p, h] and ok[q, h]):
                continue
            gg = g[p, h] * g[q, h].conjugate()
            a += (gg.real * gg.real + gg.imag * gg.imag) * mm[b, h]
            bsum += (gg * vm[b, h].conjugate()).real
    if np.isfinite(a) and np.isfinite(bsum) and a <= 2.0 * bsum:
        return False
    if np.isfinite(a) and np.isfinite(bsum) and bsum > 0.0 and a > 0.0:
        scale = np.sqrt(bsum / a)
        for p in range(g.shape[0]):
            for h in range(2):
                if ok[p, h]:
                    g[p, h] *= scale
    else:
        for p in range(g.shape[0]):
            for h in range(2):
                g[p, h] = gold[p, h]
    return True


@njit
def _flag_unseen(mm, a1, a2, scalar, ok):
    """Unset ``ok`` where an antenna sees under ``_MIN_MODEL_POWER`` of the best one's.

    A direction resolved out on an antenna's baselines (a large source seen by remote
    stations) leaves its gain undetermined; solving it would only amplify noise.
    """
    n_ant = ok.shape[0]
    power = np.zeros((n_ant, 2))
    for b in range(a1.size):
        if a1[b] == a2[b]:
            continue
        for h in range(2):
            power[a1[b], h] += mm[b, h]
            power[a2[b], h] += mm[b, h]
    if scalar:
        for p in range(n_ant):
            power[p, 0] += power[p, 1]
            power[p, 1] = power[p, 0]
    for h in range(2):
        best = 0.0
        for p in range(n_ant):
            best = max(best, power[p, h])
        for p in range(n_ant):
            if power[p, h] < _MIN_MODEL_POWER * best:
                ok[p, h] = False


@njit
def _add_prediction(r, m, w, a1, a2, g, ok, t_cell, f_int, sign):
    """``r += sign * g_p M conj(g_q)`` with ``g``, ``ok`` of shape (n_tc, n_fs, n_ant, 2).

    Baselines with an unsolved antenna predict nothing.
    """
    n_time, n_bl, n_chan, _ = r.shape
    for t in range(n_time):
        tc = t // t_cell
        for b in range(n_bl):
            p = a1[b]
            q = a2[b]
            for f in range(n_chan):
                fc = f // f_int
                for h in range(2):
                    if w[t, b, f, h] == 0.0 or not (ok[tc, fc, p, h] and ok[tc, fc, q, h]):
                        continue
                    r[t, b, f, h] += sign * g[tc, fc, p, h] * m[t, b, f, h] * \
                        g[tc, fc, q, h].conjugate()


@njit
def _solve(v, m, w, a1, a2, n_ant, ratio, t_min, f_int, mode, max_iter, inner_iter, tol,
           damping, damp_every, ref, min_frac, g0, use_g0):
    n_dir = m.shape[0]
    n_time, n_bl, n_chan, _ = v.shape
    n_ts = (n_time + t_min - 1) // t_min
    n_fs = (n_chan + f_int - 1) // f_int
    scalar = mode == _diag.SCALAR_PHASE or mode == _diag.SCALAR_COMPLEX
    per_ant = 1.0 if (mode == _diag.SCALAR_PHASE or mode == _diag.DIAGONAL_PHASE) else 2.0
    n_bl_ant = _diag._antenna_baselines(a1, a2, n_ant)
    # per-direction gains on that direction's own grid (padded to the finest grid size)
    g = np.ones((n_dir, n_ts, n_fs, n_ant, 2), np.complex128)
    ok = np.zeros((n_dir, n_ts, n_fs, n_ant, 2), np.bool_)
    n_tc = np.empty(n_dir, np.int64)
    vm = np.empty((n_ts, n_fs, n_bl, 2), np.complex128)
    mm = np.empty((n_ts, n_fs, n_bl, 2), np.float64)
    ns = np.empty((n_ts, n_fs, n_bl, 2), np.float64)
    for d in range(n_dir):
        t_cell = ratio[d] * t_min
        n_tc[d] = (n_time + t_cell - 1) // t_cell
        _reduce_dir(v, m[d], w, a1, a2, t_cell, f_int, n_tc[d], n_fs, vm, mm, ns)
        for tc in range(n_tc[d]):
            for fc in range(n_fs):
                nt = min(t_cell, n_time - tc * t_cell)
                nf = min(f_int, n_chan - fc * f_int)
                _diag._flag_diag(ns[tc, fc], mm[tc, fc], a1, a2, n_bl_ant, float(nt * nf),
                                 min_frac, scalar, ok[d, tc, fc])
                _flag_unseen(mm[tc, fc], a1, a2, scalar, ok[d, tc, fc])
                for p in range(n_ant):
                    for h in range(2):
                        if ok[d, tc, fc, p, h] and use_g0:
                            g[d, tc, fc, p, h] = g0[d, tc * ratio[d], fc, p, 0 if scalar else h]
    # residual of the starting point; a cold start enters the directions one by one,
    # each scaled to the data left by the previous ones (see the module notes)
    r = v.copy()
    if use_g0:
        for d in range(n_dir):
            _add_prediction(r, m[d], w, a1, a2, g[d], ok[d], ratio[d] * t_min, f_int, -1.0)
    else:
        for d in range(n_dir):
            t_cell = ratio[d] * t_min
            _reduce_dir(r, m[d], w, a1, a2, t_cell, f_int, n_tc[d], n_fs, vm, mm, ns)
            for tc in range(n_tc[d]):
                for fc in range(n_fs):
                    s_vm = 0.0
                    s_mm = 0.0
                    for b in range(n_bl):
                        for h in range(2):
                            s_vm += abs(vm[tc, fc, b, h])
                            s_mm += mm[tc, fc, b, h]
                    scale = np.sqrt(s_vm / s_mm) if s_mm > 0.0 else 1.0
                    for p in range(n_ant):
                        for h in range(2):
                            if ok[d, tc, fc, p, h]:
                                g[d, tc, fc, p, h] = scale
            _add_prediction(r, m[d], w, a1, a2, g[d], ok[d], t_cell, f_int, -1.0)
    gold = np.empty((n_ant, 2), np.complex128)
    gnew = np.empty((n_ant, 2), np.complex128)
    num = np.empty((n_ant, 2), np.complex128)
    den = np.empty((n_ant, 2), np.float64)
    conv = np.zeros((n_dir, n_ts, n_fs), np.bool_)
    n_done = 0
    for it in range(max_iter):
        n_done = it + 1
        all_conv = True
        for d in range(n_dir):
            t_cell = ratio[d] * t_min
            _add_prediction(r, m[d], w, a1, a2, g[d], ok[d], t_cell, f_int, 1.0)
            _reduce_dir(r, m[d], w, a1, a2, t_cell, f_int, n_tc[d], n_fs, vm, mm, ns)
            for tc in range(n_tc[d]):
                for fc in range(n_fs):
                    gc = g[d, tc, fc]
                    okc = ok[d, tc, fc]
                    any_ok = False
                    for p in range(n_ant):
                        for h in range(2):
                            gold[p, h] = gc[p, h]
                            any_ok = any_ok or okc[p, h]
                    if not any_ok:
                        continue
                    _diag._iterate_diag(vm[tc, fc], mm[tc, fc], a1, a2, okc, gc, mode,
                                        inner_iter, 0.0, damping, damp_every, gnew, num, den)
                    rejected = _limit_runaway(vm[tc, fc], mm[tc, fc], a1, a2, okc, gc,
                                              gold)
                    d2 = 0.0
                    n2 = 0.0
                    for p in range(n_ant):
                        for h in range(2):
                            if okc[p, h]:
                                dz = gc[p, h] - gold[p, h]
                                d2 += dz.real * dz.real + dz.imag * dz.imag
                                n2 += gc[p, h].real ** 2 + gc[p, h].imag ** 2
                    cv = n2 > 0.0 and d2 <= tol * tol * n2 and not rejected
                    for k in range(ratio[d]):
                        if tc * ratio[d] + k < n_ts:
                            conv[d, tc * ratio[d] + k, fc] = cv
                    if not cv:
                        all_conv = False
            _add_prediction(r, m[d], w, a1, a2, g[d], ok[d], t_cell, f_int, -1.0)
        if all_conv:
            break
    # chi-squared of the joint residual over each direction's cells
    n_par_cell = np.zeros(n_dir)
    for d in range(n_dir):
        n_par_cell[d] = per_ant * (1.0 if scalar else 2.0) * n_ant
    chi2 = np.full((n_dir, n_ts, n_fs), np.nan)
    for d in range(n_dir):
        t_cell = ratio[d] * t_min
        res = np.zeros((n_tc[d], n_fs))
        nobs = np.zeros((n_tc[d], n_fs))
        for t in range(n_time):
            tc = t // t_cell
            for b in range(n_bl):
                if a1[b] == a2[b]:
                    continue
                for f in range(n_chan):
                    for h in range(2):
                        wt = w[t, b, f, h]
                        if wt > 0.0:
                            z = r[t, b, f, h]
                            res[tc, f // f_int] += wt * (z.real * z.real + z.imag * z.imag)
                            nobs[tc, f // f_int] += 1.0
        n_par = 0.0
        for e in range(n_dir):
            n_par += n_par_cell[e] * ratio[d] / ratio[e]
        for tc in range(n_tc[d]):
            for fc in range(n_fs):
                dof = 2.0 * nobs[tc, fc] - n_par
                if nobs[tc, fc] > 0 and dof > 0:
                    for k in range(ratio[d]):
                        if tc * ratio[d] + k < n_ts:
                            chi2[d, tc * ratio[d] + k, fc] = res[tc, fc] / dof
    # phase references and expansion to the finest grid
    gains = np.ones((n_dir, n_ts, n_fs, n_ant, 2), np.complex128)
    gflag = np.ones((n_dir, n_ts, n_fs, n_ant, 2), np.bool_)
    ref_used = np.full((n_dir, n_ts, n_fs, 2), -1, np.int32)
    ru = np.empty(2, np.int32)
    for d in range(n_dir):
        for tc in range(n_tc[d]):
            for fc in range(n_fs):
                gc = g[d, tc, fc]
                _diag._reference_diag(gc, ok[d, tc, fc], ref, ru)
                for k in range(ratio[d]):
                    ts = tc * ratio[d] + k
                    if ts >= n_ts:
                        continue
                    ref_used[d, ts, fc, 0] = ru[0]
                    ref_used[d, ts, fc, 1] = ru[1]
                    for p in range(n_ant):
                        for h in range(2):
                            if ok[d, tc, fc, p, h] and np.isfinite(gc[p, h]):
                                gains[d, ts, fc, p, h] = gc[p, h]
                                gflag[d, ts, fc, p, h] = False
    return gains, gflag, chi2, n_done, conv, ref_used
