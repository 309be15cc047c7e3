"""Direction-independent antenna gain solvers (StefCal / ADI least squares) and their application.

Measurement equation and conventions
------------------------------------
``V_pq = G_p M_pq G_q^H`` for every baseline ``(p, q) = (antenna1, antenna2)``
with 2x2 Jones matrices; the correlation axis holds ``(XX, XY, YX, YY)`` (or
``(RR, RL, LR, LL)``) for four correlations, the parallel hands ``(XX, YY)``
for two: correlation ``c`` of four is the matrix element ``(c // 2, c % 2)``.

Modes (``mode``):

``"scalar_phase"``
    one phase per antenna, shared by both receptors;
``"scalar_complex"``
    one complex gain per antenna, shared by both receptors;
``"diagonal_phase"``
    one phase per antenna and receptor;
``"diagonal_complex"``
    amplitude and phase per antenna and receptor;
``"full_jones"``
    a full 2x2 matrix per antenna (needs all four correlations).

Scalar and diagonal modes use the parallel hands only (as DP3's diagonal
solvers: cross-hands hold leakage that a diagonal gain cannot describe).

Algorithm
---------
Alternating least squares (StefCal, Salvini & Wijnholds 2014; Mitchell et al.
2008): each iteration updates every antenna from the previous iterate of all
the others, ``G_p <- [sum w V_pq Z_pq^H][sum w Z_pq Z_pq^H]^-1`` with
``Z_pq = M_pq G_q^H`` (per-element in the diagonal modes, per row with
per-correlation weights in full Jones), including the conjugate baselines.
Every ``damping_every``-th iterate is replaced by ``(1 - damping) G_new +
damping G_old`` (StefCal: 0.5 on even iterations). The iterations stop when
``||G_new - G_old||_F <= tolerance ||G_new||_F`` (over the solvable antennas of
the cell) or after ``max_iter``.

Full Jones adds, every second iteration, a collective step: Gauss-Newton on a
2x2 transform ``X`` common to all antennas (``G_p -> G_p X``), kept only if it
lowers chi-squared. Per-antenna updates hardly move along that direction (it is
an exact symmetry for an unpolarised model and weakly constrained by a
polarised one): without the step, a start off by a common non-unitary ``X``
took thousands of iterations on a 40 %-polarised model, with it a few tens.

The data are first reduced per solution cell to per-baseline sums over the
cell's samples (``sum w V M^*``, ``sum w |M|^2``; their 4x4 / 4x4x4 analogues
for full Jones, see :mod:`._reduce`), which makes the iterations independent of
the number of samples while staying exact least squares.

Flags and weights: flagged samples, samples with weight <= 0 or non-finite
weight, data or model are skipped before any arithmetic. Autocorrelations are
never used. An antenna (receptor, in the diagonal modes) with no valid data on
baselines to other solvable antennas, or with fewer than
``min_unflagged_fraction`` of its samples valid, gets gain 1 (identity) and a
gain flag.

Reference antenna: after convergence the gains of each cell are rotated by a
common phase so that the reference antenna's gain is real and positive (per
receptor in the diagonal modes, its ``[0, 0]`` element in full Jones). If the
reference is flagged in a cell, the next solvable antenna (cyclically) is used
and recorded. In the diagonal modes the relative phase of the two receptors
(the XY phase) is therefore not determined: cross-hands corrected with diagonal
gains keep a common phase offset. In full Jones with an unpolarised model a
unitary ambiguity ``G_p -> G_p U`` remains; it does not change corrected data.

chi-squared: ``sum w |V - G_p M G_q^H|^2 / (2 N_vis - N_par)`` over the used
samples, with ``N_par`` the real parameters (minus the reference phase). With
``WEIGHT = 1 / sigma^2`` and ``sigma`` the noise per real component (the
Measurement Set convention), chi2 ~ 1 for a correct model.

Gains are returned as complex128: they are tiny next to the data (a 60
antenna full-Jones cell is 4 kB) and double precision keeps the iterations and
repeated applications free of rounding drift.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from daskcal.kernels.solvers import _correct, _diag, _full, _reduce

MODES: dict[str, int] = {
    "scalar_phase": _diag.SCALAR_PHASE,
    "scalar_complex": _diag.SCALAR_COMPLEX,
    "diagonal_phase": _diag.DIAGONAL_PHASE,
    "diagonal_complex": _diag.DIAGONAL_COMPLEX,
    "full_jones": _diag.FULL_JONES,
}


class GainSolutions(NamedTuple):
    """Solutions of one chunk, ``n_t_sol = ceil(n_time / t_int)``, ``n_f_sol = ceil(n_chan / f_int)``.

    Attributes
    ----------
    gains : ndarray, complex128, shape (n_t_sol, n_f_sol, n_ant, 2) or (..., n_ant, 2, 2)
        Diagonal gains per receptor (scalar modes: both receptors equal), or
        full Jones matrices. Flagged entries hold 1 (identity).
    flags : ndarray of bool, same shape as ``gains``
        True where no solution could be made.
    chi2 : ndarray, float64, shape (n_t_sol, n_f_sol)
        Reduced chi-squared of each cell (NaN for a cell without solutions).
    n_iter : ndarray, int32, shape (n_t_sol, n_f_sol)
        Iterations done.
    converged : ndarray of bool, shape (n_t_sol, n_f_sol)
        Whether the tolerance was reached within ``max_iter``.
    ref_antenna : ndarray, int32, shape (n_t_sol, n_f_sol, 2)
        Reference antenna used for each receptor (-1: none).
    """

    gains: np.ndarray
    flags: np.ndarray
    chi2: np.ndarray
    n_iter: np.ndarray
    converged: np.ndarray
    ref_antenna: np.ndarray


def _check_vis_arrays(data, model, weight, flag):
    for name, arr in (("data", data), ("model", model), ("weight", weight), ("flag", flag)):
        if not isinstance(arr, np.ndarray):
            raise ValueError(f"{name} must be a numpy array, got {type(arr).__name__}")
    if data.ndim != 4:
        raise ValueError(f"data must be (n_time, n_bl, n_chan, n_corr), got shape {data.shape}")
    for name, arr in (("model", model), ("weight", weight), ("flag", flag)):
        if arr.shape != data.shape:
            raise ValueError(f"{name} has shape {arr.shape}, data has {data.shape}")
    complex_types = (np.complex64, np.complex128)
    if data.dtype not in complex_types or model.dtype not in complex_types:
        raise ValueError(f"data and model must be complex64 or complex128, got {data.dtype} "
                         f"and {model.dtype}")
    if weight.dtype not in (np.float32, np.float64):
        raise ValueError(f"weight must be float32 or float64, got {weight.dtype}")
    if flag.dtype != np.bool_:
        raise ValueError(f"flag must be bool, got {flag.dtype}")
    if data.shape[3] not in (2, 4):
        raise ValueError(f"n_corr must be 2 (parallel hands) or 4, got {data.shape[3]}")


def _check_antennas(antenna1, antenna2, n_bl, n_ant):
    a1 = np.asarray(antenna1)
    a2 = np.asarray(antenna2)
    if a1.shape != (n_bl,) or a2.shape != (n_bl,):
        raise ValueError(f"antenna1/antenna2 must have shape ({n_bl},), got {a1.shape}, {a2.shape}")
    if a1.dtype.kind not in "iu" or a2.dtype.kind not in "iu":
        raise ValueError("antenna1/antenna2 must be integer arrays")
    if n_bl and (min(a1.min(), a2.min()) < 0 or max(a1.max(), a2.max()) >= n_ant):
        raise ValueError(f"antenna indices must lie in [0, {n_ant})")
    return a1.astype(np.int64), a2.astype(np.int64)


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def solve_gains(
    data: np.ndarray,
    model: np.ndarray,
    weight: np.ndarray,
    flag: np.ndarray,
    antenna1: np.ndarray,
    antenna2: np.ndarray,
    n_ant: int,
    t_int: int,
    f_int: int,
    *,
    mode: str = "diagonal_complex",
    max_iter: int = 50,
    tolerance: float = 1e-6,
    damping: float = 0.5,
    damping_every: int = 2,
    ref_antenna: int | None = 0,
    min_unflagged_fraction: float = 0.0,
    initial_gains: np.ndarray | None = None,
) -> GainSolutions:
    """Solve for antenna gains per (time x frequency) solution cell of one chunk.

    Parameters
    ----------
    data : ndarray, complex64 or complex128, shape (n_time, n_bl, n_chan, n_corr)
        Observed visibilities ``V``, Jy; ``n_corr`` is 4 or 2 (parallel hands).
    model : ndarray, complex, same shape
        Model visibilities ``M``, Jy.
    weight : ndarray, float, same shape
        Inverse noise variance per real component, Jy^-2 (0: not used).
    flag : ndarray of bool, same shape
        True: not used.
    antenna1, antenna2 : ndarray of int, shape (n_bl,)
        Antenna indices of each baseline, in ``[0, n_ant)``.
    n_ant : int
        Number of antennas.
    t_int, f_int : int
        Solution interval in integrations and channels; the last interval of
        an axis may be partial.
    mode : str
        One of :data:`MODES`.
    max_iter : int
        Iteration limit (>= 1).
    tolerance : float
        Convergence threshold on the relative change of the gains (>= 0).
    damping : float
        Weight of the previous iterate in the damped update, in [0, 1).
    damping_every : int
        Damp every this many iterations (2: StefCal's even iterations; 1: every one).
    ref_antenna : int or None
        Phase reference antenna index; None: no phase referencing.
    min_unflagged_fraction : float
        Minimum fraction of valid samples for an antenna to be solved, in [0, 1].
    initial_gains : ndarray, complex, shape of the returned ``gains``, optional
        Starting point (default: identity).

    Returns
    -------
    GainSolutions
    """
    _check_vis_arrays(data, model, weight, flag)
    n_time, n_bl, n_chan, n_corr = data.shape
    n_ant = _positive_int("n_ant", n_ant)
    a1, a2 = _check_antennas(antenna1, antenna2, n_bl, n_ant)
    t_int = _positive_int("t_int", t_int)
    f_int = _positive_int("f_int", f_int)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {sorted(MODES)}, got {mode!r}")
    full = mode == "full_jones"
    if full and n_corr != 4:
        raise ValueError("full_jones needs all four correlations")
    max_iter = _positive_int("max_iter", max_iter)
    damping_every = _positive_int("damping_every", damping_every)
    if not (np.isfinite(tolerance) and tolerance >= 0):
        raise ValueError(f"tolerance must be >= 0, got {tolerance!r}")
    if not 0.0 <= damping < 1.0:
        raise ValueError(f"damping must lie in [0, 1), got {damping!r}")
    if not 0.0 <= min_unflagged_fraction <= 1.0:
        raise ValueError(f"min_unflagged_fraction must lie in [0, 1], got {min_unflagged_fraction!r}")
    ref = -1 if ref_antenna is None else int(ref_antenna)
    if ref_antenna is not None and not 0 <= ref < n_ant:
        raise ValueError(f"ref_antenna must lie in [0, {n_ant}) or be None, got {ref_antenna!r}")
    n_ts = -(-n_time // t_int)
    n_fs = -(-n_chan // f_int)
    gshape = (n_ts, n_fs, n_ant) + ((2, 2) if full else (2,))
    use_g0 = initial_gains is not None
    if use_g0:
        g0 = np.asarray(initial_gains)
        if g0.shape != gshape:
            raise ValueError(f"initial_gains must have shape {gshape}, got {g0.shape}")
        g0 = g0.astype(np.complex128)
    else:
        g0 = np.ones((1,) * len(gshape), np.complex128)
    # samples per baseline in each cell (the last interval of an axis may be partial)
    nt = np.minimum(t_int, n_time - t_int * np.arange(n_ts))
    nf = np.minimum(f_int, n_chan - f_int * np.arange(n_fs))
    n_samp = np.outer(nt, nf).astype(np.float64)
    args = (np.ascontiguousarray(data), np.ascontiguousarray(model),
            np.ascontiguousarray(weight), np.ascontiguousarray(flag), a1, a2, t_int, f_int)
    opts = (max_iter, float(tolerance), float(damping), damping_every, ref,
            float(min_unflagged_fraction))
    if full:
        rr, ss, vv, ns = _reduce._reduce_full(*args)
        out = _full._solve_full(rr, ss, vv, ns, a1, a2, n_ant, n_samp, g0, use_g0, *opts)
    else:
        c1 = 3 if n_corr == 4 else 1
        vm, mm, vv, ns = _reduce._reduce_diag(*args, 0, c1)
        out = _diag._solve_diag(vm, mm, vv, ns, a1, a2, n_ant, n_samp, MODES[mode], g0, use_g0,
                                *opts)
    return GainSolutions(*out)


def _check_apply(arr, gains, gain_flags, antenna1, antenna2, time_index, freq_index, receptors,
                 name):
    if not isinstance(arr, np.ndarray) or arr.ndim != 4:
        raise ValueError(f"{name} must be a numpy array (n_time, n_bl, n_chan, n_corr)")
    n_time, n_bl, n_chan, n_corr = arr.shape
    gains = np.asarray(gains)
    gain_flags = np.asarray(gain_flags)
    if not np.iscomplexobj(gains) or gains.ndim not in (4, 5) or gains.shape[3:] not in ((2,), (2, 2)):
        raise ValueError("gains must be complex, shape (n_t_sol, n_f_sol, n_ant, 2) or "
                         f"(n_t_sol, n_f_sol, n_ant, 2, 2), got {gains.dtype} {gains.shape}")
    if gain_flags.shape != gains.shape or gain_flags.dtype != np.bool_:
        raise ValueError(f"gain_flags must be bool with the shape of gains {gains.shape}")
    full = gains.ndim == 5
    if full and n_corr != 4:
        raise ValueError("full-Jones gains need all four correlations")
    a1, a2 = _check_antennas(antenna1, antenna2, n_bl, gains.shape[2])
    t_idx = np.asarray(time_index)
    f_idx = np.asarray(freq_index)
    if t_idx.shape != (n_time,) or f_idx.shape != (n_chan,):
        raise ValueError(f"time_index/freq_index must have shapes ({n_time},), ({n_chan},)")
    for idx, n, what in ((t_idx, gains.shape[0], "time_index"), (f_idx, gains.shape[1], "freq_index")):
        if idx.dtype.kind not in "iu" or (idx.size and (idx.min() < 0 or idx.max() >= n)):
            raise ValueError(f"{what} must be integers in [0, {n})")
    if receptors is None:
        receptors = ([0, 0, 1, 1], [0, 1, 0, 1]) if n_corr == 4 else ([0, 1], [0, 1])
    ra, rb = (np.asarray(r, dtype=np.int64) for r in receptors)
    if ra.shape != (n_corr,) or rb.shape != (n_corr,) or ra.min() < 0 or rb.min() < 0 \
            or ra.max() > 1 or rb.max() > 1:
        raise ValueError(f"receptors must be two arrays of {n_corr} values in {{0, 1}}")
    if full:
        inv, bad = _correct._invert_full(np.ascontiguousarray(gains, np.complex128),
                                         np.ascontiguousarray(gain_flags))
    else:
        inv, bad = _correct._invert_diag(np.ascontiguousarray(gains, np.complex128),
                                         np.ascontiguousarray(gain_flags))
    return full, inv, bad, a1, a2, t_idx.astype(np.int64), f_idx.astype(np.int64), ra, rb


def correct_visibilities(
    vis: np.ndarray,
    gains: np.ndarray,
    gain_flags: np.ndarray,
    antenna1: np.ndarray,
    antenna2: np.ndarray,
    time_index: np.ndarray,
    freq_index: np.ndarray,
    receptors: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Corrected visibilities ``G_p^-1 V_pq G_q^-H``.

    Parameters
    ----------
    vis : ndarray, complex, shape (n_time, n_bl, n_chan, n_corr)
        Visibilities, Jy.
    gains : ndarray, complex, shape (n_t_sol, n_f_sol, n_ant, 2) or (..., n_ant, 2, 2)
        Diagonal or full-Jones gains (see :func:`solve_gains`).
    gain_flags : ndarray of bool, same shape as ``gains``
    antenna1, antenna2 : ndarray of int, shape (n_bl,)
        Indices into the antenna axis of ``gains``.
    time_index : ndarray of int, shape (n_time,)
        Solution cell (along ``n_t_sol``) of each integration.
    freq_index : ndarray of int, shape (n_chan,)
        Solution cell (along ``n_f_sol``) of each channel.
    receptors : (ndarray, ndarray) of int, each shape (n_corr,), optional
        Receptor pair ``(i, j)`` of each correlation; default ``(XX, XY, YX, YY)``
        for 4 correlations, ``(XX, YY)`` for 2. Ignored for full Jones.

    Returns
    -------
    ndarray, dtype of ``vis``, shape of ``vis``
        Corrected data, Jy; 0 where a gain involved is flagged, zero or singular.
    """
    full, inv, bad, a1, a2, ti, fi, ra, rb = _check_apply(
        vis, gains, gain_flags, antenna1, antenna2, time_index, freq_index, receptors, "vis")
    if vis.dtype not in (np.complex64, np.complex128):
        raise ValueError(f"vis must be complex64 or complex128, got {vis.dtype}")
    vis = np.ascontiguousarray(vis)
    if full:
        return _correct._correct_full(vis, inv, bad, a1, a2, ti, fi)
    return _correct._correct_diag(vis, inv, bad, a1, a2, ti, fi, ra, rb)


def propagate_gain_flags(
    flag: np.ndarray,
    gains: np.ndarray,
    gain_flags: np.ndarray,
    antenna1: np.ndarray,
    antenna2: np.ndarray,
    time_index: np.ndarray,
    freq_index: np.ndarray,
    receptors: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """``flag`` OR'ed with the samples whose gains are flagged, zero or singular.

    Parameters are those of :func:`correct_visibilities`, with ``flag`` (bool,
    shape (n_time, n_bl, n_chan, n_corr)) instead of ``vis``. In the diagonal
    case correlation ``(i, j)`` is flagged when ``g_p,i`` or ``g_q,j`` is bad; with
    full Jones every correlation is flagged when ``G_p`` or ``G_q`` is, or when any
    correlation of the sample is flagged (the correction mixes them).
    """
    full, _, bad, a1, a2, ti, fi, ra, rb = _check_apply(
        flag, gains, gain_flags, antenna1, antenna2, time_index, freq_index, receptors, "flag")
    if flag.dtype != np.bool_:
        raise ValueError(f"flag must be bool, got {flag.dtype}")
    flag = np.ascontiguousarray(flag)
    if full:
        return _correct._flags_full(flag, bad, a1, a2, ti, fi)
    return _correct._flags_diag(flag, bad, a1, a2, ti, fi, ra, rb)


__all__ = ["MODES", "GainSolutions", "correct_visibilities", "propagate_gain_flags",
           "solve_gains"]

from daskcal.kernels.solvers._multidir import MULTIDIR_MODES, MultiDirSolutions, solve_multidir  # noqa: E402

__all__ += ["MULTIDIR_MODES", "MultiDirSolutions", "solve_multidir"]
