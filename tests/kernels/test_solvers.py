"""Gain solvers: injected gains recovered, noise at the Fisher level, flags, weights, and one
StefCal iteration against a slow numpy reference computed from the samples themselves."""

from __future__ import annotations

import numpy as np
import pytest

from daskcal.kernels.solvers import (
    MODES,
    correct_visibilities,
    propagate_gain_flags,
    solve_gains,
)

C_M_S = 299792458.0
RA = np.array([0, 0, 1, 1])
RB = np.array([0, 1, 0, 1])


def make_problem(n_ant=7, n_time=4, n_chan=6, t_int=2, f_int=3, mode="diagonal_complex",
                 polarised=False, sigma=0.0, seed=0, n_corr=4):
    """A few point sources seen by random antennas, corrupted by per-cell gains.

    Returns a dict: data, model (complex64, (n_time, n_bl, n_chan, n_corr)), weight, flag,
    antenna1, antenna2 (autocorrelations included), gains (true, per solution cell:
    (n_ts, n_fs, n_ant, 2) or (..., 2, 2)), sigma (noise per real component, Jy).
    """
    rng = np.random.default_rng(seed)
    a1, a2 = np.triu_indices(n_ant)
    n_bl = a1.size
    xy = rng.uniform(-1500, 1500, (n_ant, 2))
    hour = np.linspace(0, 0.3, n_time)
    ant_u = xy[None, :, 0] * np.cos(hour)[:, None] - xy[None, :, 1] * np.sin(hour)[:, None]
    ant_v = (xy[None, :, 0] * np.sin(hour)[:, None] + xy[None, :, 1] * np.cos(hour)[:, None]) * 0.6
    u = ant_u[:, a2] - ant_u[:, a1]
    v = ant_v[:, a2] - ant_v[:, a1]
    freq = 1.3e8 + 2e5 * np.arange(n_chan)
    model = np.zeros((n_time, n_bl, n_chan, 2, 2), complex)
    for _ in range(3):
        l, m = rng.uniform(-0.03, 0.03, 2)
        i_flux = rng.uniform(1, 10)
        q, uu, vv = rng.uniform(-0.4, 0.4, 3) * i_flux if polarised else (0.0, 0.0, 0.0)
        bright = np.array([[i_flux + q, uu + 1j * vv], [uu - 1j * vv, i_flux - q]])
        k = np.exp(2j * np.pi * (u[..., None] * l + v[..., None] * m) * freq / C_M_S)
        model += k[..., None, None] * bright
    n_ts, n_fs = -(-n_time // t_int), -(-n_chan // f_int)
    # smooth in time and frequency, constant within a solution cell
    tt, ff = np.meshgrid(np.arange(n_ts), np.arange(n_fs), indexing="ij")
    amp0 = rng.uniform(0.7, 1.3, (n_ant, 2))
    ph0 = rng.uniform(-np.pi, np.pi, (n_ant, 2))
    rate = rng.normal(scale=0.3, size=(n_ant, 2))
    if mode.startswith("scalar"):
        amp0[:, 1], ph0[:, 1], rate[:, 1] = amp0[:, 0], ph0[:, 0], rate[:, 0]
    amp = amp0 * (1 + 0.1 * np.sin(0.5 * tt + 0.3 * ff))[..., None, None]
    if mode.endswith("phase"):
        amp = np.ones_like(amp)
    g = amp * np.exp(1j * (ph0 + rate * (tt + 0.5 * ff)[..., None, None]))
    jones = np.zeros(g.shape + (2,), complex)
    jones[..., 0, 0], jones[..., 1, 1] = g[..., 0], g[..., 1]
    if mode == "full_jones":
        jones[..., 0, 1] = 0.1 * (rng.normal(size=(n_ant,)) + 1j * rng.normal(size=(n_ant,)))
        jones[..., 1, 0] = 0.1 * (rng.normal(size=(n_ant,)) + 1j * rng.normal(size=(n_ant,)))
    ti = np.arange(n_time) // t_int
    fi = np.arange(n_chan) // f_int
    jt = jones[ti][:, fi]  # (n_time, n_chan, n_ant, 2, 2)
    gp = jt[:, :, a1].transpose(0, 2, 1, 3, 4)
    gq = jt[:, :, a2].transpose(0, 2, 1, 3, 4)
    vis = gp @ model @ np.conj(np.swapaxes(gq, -1, -2))
    vis = vis.reshape(n_time, n_bl, n_chan, 4)
    mod = model.reshape(n_time, n_bl, n_chan, 4)
    if sigma:
        vis = vis + sigma * (rng.standard_normal(vis.shape) + 1j * rng.standard_normal(vis.shape))
    if n_corr == 2:
        vis, mod = vis[..., [0, 3]], mod[..., [0, 3]]
    shape = vis.shape
    return {
        "data": vis.astype(np.complex64), "model": mod.astype(np.complex64),
        "weight": np.full(shape, 1.0 / sigma**2 if sigma else 1.0, np.float32),
        "flag": np.zeros(shape, bool), "antenna1": a1, "antenna2": a2, "n_ant": n_ant,
        "t_int": t_int, "f_int": f_int, "sigma": sigma, "ti": ti, "fi": fi,
        "gains": jones if mode == "full_jones" else g,
    }


def run(prob, **kw):
    kw.setdefault("tolerance", 1e-10)
    kw.setdefault("max_iter", 500)
    return solve_gains(prob["data"], prob["model"], prob["weight"], prob["flag"],
                       prob["antenna1"], prob["antenna2"], prob["n_ant"], prob["t_int"],
                       prob["f_int"], **kw)


def referenced(g, ref=0):
    """Rotate true gains like the solver does (per receptor; full Jones: G_ref[0, 0])."""
    if g.ndim == 5:
        z = g[:, :, ref, 0, 0]
        return g * (np.conj(z) / abs(z))[:, :, None, None, None]
    z = g[:, :, ref, :]
    return g * (np.conj(z) / abs(z))[:, :, None, :]


# ---------------------------------------------------------------------------- recovery


@pytest.mark.parametrize("mode", ["scalar_phase", "scalar_complex", "diagonal_phase",
                                  "diagonal_complex"])
@pytest.mark.parametrize("n_corr", [2, 4])
def test_noise_free_recovery_diagonal(mode, n_corr):
    prob = make_problem(mode=mode, n_corr=n_corr, seed=1)
    sol = run(prob, mode=mode)
    assert sol.gains.shape == prob["gains"].shape and sol.gains.dtype == np.complex128
    np.testing.assert_allclose(sol.gains, referenced(prob["gains"]), atol=1e-4)
    assert not sol.flags.any()
    assert sol.converged.all() and (sol.n_iter < 500).all()
    assert (sol.ref_antenna == 0).all()
    assert np.all(sol.chi2 < 1e-8)
    if mode.startswith("scalar"):
        np.testing.assert_array_equal(sol.gains[..., 0], sol.gains[..., 1])
    if mode.endswith("phase"):
        np.testing.assert_allclose(abs(sol.gains), 1.0, atol=1e-12)


def test_partial_intervals_at_chunk_end():
    prob = make_problem(n_time=5, n_chan=7, t_int=2, f_int=3, seed=2)
    sol = run(prob)
    assert sol.gains.shape[:2] == (3, 3)
    np.testing.assert_allclose(sol.gains, referenced(prob["gains"]), atol=1e-4)


def test_noise_free_recovery_full_jones_polarised_model():
    prob = make_problem(mode="full_jones", polarised=True, seed=3)
    sol = run(prob, mode="full_jones")
    assert sol.gains.shape == prob["gains"].shape
    np.testing.assert_allclose(sol.gains, referenced(prob["gains"]), atol=1e-4)
    assert sol.converged.all() and not sol.flags.any() and (sol.n_iter < 150).all()


def test_full_jones_unpolarised_model_corrects_data():
    """Unpolarised model: G_p -> G_p U is a symmetry, so compare the corrected data."""
    prob = make_problem(mode="full_jones", polarised=False, seed=4)
    sol = run(prob, mode="full_jones")
    assert sol.converged.all()
    corrected = correct_visibilities(prob["data"], sol.gains, sol.flags, prob["antenna1"],
                                     prob["antenna2"], prob["ti"], prob["fi"])
    cross = prob["antenna1"] != prob["antenna2"]
    scale = abs(prob["model"]).max()
    np.testing.assert_allclose(corrected[:, cross], prob["model"][:, cross], atol=1e-4 * scale)


def test_full_jones_needs_four_correlations():
    prob = make_problem(n_corr=2)
    with pytest.raises(ValueError, match="four correlations"):
        run(prob, mode="full_jones")


# ---------------------------------------------------------------------------- noise


def test_thermal_noise_within_fisher_errors_and_chi2():
    """Gain errors against sigma_g^2 = 1 / sum_q w |g_q M_pq|^2 per real component."""
    prob = make_problem(n_ant=16, n_time=8, n_chan=8, t_int=2, f_int=2, sigma=2.0, seed=5)
    sol = run(prob, tolerance=1e-9)
    g_true = prob["gains"]
    a1, a2 = prob["antenna1"], prob["antenna2"]
    cross = a1 != a2
    w = 1.0 / prob["sigma"] ** 2
    m2 = abs(prob["model"][..., [0, 3]].astype(complex)) ** 2  # (t, b, f, r)
    n_ts, n_fs, n_ant, _ = g_true.shape
    fisher = np.zeros(g_true.shape)
    for ts in range(n_ts):
        for fs in range(n_fs):
            cell = m2[ts * 2:(ts + 1) * 2, :, fs * 2:(fs + 1) * 2].sum(axis=(0, 2))  # (b, r)
            gabs = abs(g_true[ts, fs]) ** 2
            for b in np.flatnonzero(cross):
                fisher[ts, fs, a1[b]] += w * gabs[a2[b]] * cell[b]
                fisher[ts, fs, a2[b]] += w * gabs[a1[b]] * cell[b]
    sigma_g = 1.0 / np.sqrt(fisher)
    # remove the common-phase degeneracy by the best rotation per cell and receptor
    rot = np.sum(np.conj(sol.gains) * g_true, axis=2, keepdims=True)
    err = sol.gains * rot / abs(rot) - g_true
    z = np.concatenate([(err.real / sigma_g).ravel(), (err.imag / sigma_g).ravel()])
    assert (abs(z) < 3).mean() >= 0.99
    assert 0.85 < z.std() < 1.15  # the errors are those expected, not much smaller
    assert np.all(abs(sol.chi2 - 1.0) < 0.15)
    assert abs(sol.chi2.mean() - 1.0) < 0.03
    assert sol.converged.all()


def test_full_jones_with_noise_has_unit_chi2():
    prob = make_problem(n_ant=10, n_time=8, n_chan=8, t_int=4, f_int=4, sigma=1.0, seed=6,
                        mode="full_jones", polarised=True)
    sol = run(prob, mode="full_jones", tolerance=1e-8)
    assert sol.converged.all()
    assert np.all(abs(sol.chi2 - 1.0) < 0.1)


def test_full_jones_collective_offset_converges():
    """A start off by a common 2x2 transform (slow for per-antenna updates) converges."""
    prob = make_problem(mode="full_jones", polarised=True, seed=18)
    x = np.array([[1.0, 0.3], [0.2j, np.exp(1j)]])
    sol = run(prob, mode="full_jones", max_iter=100, initial_gains=prob["gains"] @ x)
    assert sol.converged.all()
    np.testing.assert_allclose(sol.gains, referenced(prob["gains"]), atol=1e-4)


# ---------------------------------------------------------------------------- flags, weights


def test_flagged_samples_are_never_touched():
    """Flagged samples hold NaN (and NaN weights): the solution does not change."""
    prob = make_problem(seed=6)
    rng = np.random.default_rng(0)
    flag = rng.random(prob["flag"].shape) < 0.25
    prob["flag"] = flag
    for key in ("data", "model"):
        prob[key][flag] = np.nan
    prob["weight"][flag] = np.nan
    sol = run(prob)
    np.testing.assert_allclose(sol.gains, referenced(prob["gains"]), atol=1e-4)
    assert not sol.flags.any() and np.isfinite(sol.chi2).all()


def test_zero_weight_corrupted_baseline_has_no_effect():
    prob = make_problem(seed=7)
    clean = run(prob)
    b = 3  # a cross-correlation
    assert prob["antenna1"][b] != prob["antenna2"][b]
    prob["data"][:, b] = 100.0 + 5j
    prob["weight"][:, b] = 0.0
    bad = run(prob)
    np.testing.assert_allclose(bad.gains, clean.gains, atol=1e-7)
    np.testing.assert_allclose(bad.gains, referenced(prob["gains"]), atol=1e-4)
    # and with a large weight the corrupted baseline does matter
    prob["weight"][:, b] = 1.0
    assert abs(run(prob).gains - clean.gains).max() > 1e-2


def test_weights_scale_chi2_not_gains():
    prob = make_problem(sigma=0.5, seed=8)
    sol = run(prob)
    prob["weight"] *= 7.0
    scaled = run(prob)
    np.testing.assert_allclose(scaled.gains, sol.gains, atol=1e-9)
    np.testing.assert_allclose(scaled.chi2, 7.0 * sol.chi2, rtol=1e-6)


def test_fully_flagged_antenna_gets_flagged_unit_gain():
    prob = make_problem(seed=9)
    a1, a2 = prob["antenna1"], prob["antenna2"]
    bad = (a1 == 4) | (a2 == 4)
    prob["flag"][:2, bad] = True  # time cell 0 only
    prob["data"][:2, bad] = np.nan
    sol = run(prob)
    assert sol.flags[0, :, 4].all() and not sol.flags[1].any()
    assert not np.delete(sol.flags[0], 4, axis=1).any()
    np.testing.assert_array_equal(sol.gains[0, :, 4], 1.0)
    keep = np.arange(prob["n_ant"]) != 4
    np.testing.assert_allclose(sol.gains[:, :, keep], referenced(prob["gains"])[:, :, keep],
                               atol=1e-4)


def test_flagged_receptor_and_reference_antenna():
    """Receptor Y of the reference flagged: receptor Y is referenced to the next antenna."""
    prob = make_problem(seed=10)
    a1, a2 = prob["antenna1"], prob["antenna2"]
    on0 = (a1 == 0) | (a2 == 0)
    prob["flag"][:, on0, :, 1:] = True  # XY, YX, YY of antenna 0: receptor Y unused
    sol = run(prob, ref_antenna=0)
    assert not sol.flags[..., 0].any()
    assert sol.flags[:, :, 0, 1].all() and not sol.flags[:, :, 1:, 1].any()
    assert (sol.ref_antenna[..., 0] == 0).all() and (sol.ref_antenna[..., 1] == 1).all()
    truth = prob["gains"].copy()
    truth[..., 0] *= np.conj(truth[:, :, :1, 0]) / abs(truth[:, :, :1, 0])
    truth[..., 1] *= np.conj(truth[:, :, 1:2, 1]) / abs(truth[:, :, 1:2, 1])
    np.testing.assert_allclose(sol.gains[:, :, :, 0], truth[..., 0], atol=1e-4)
    np.testing.assert_allclose(sol.gains[:, :, 1:, 1], truth[:, :, 1:, 1], atol=1e-4)
    # the reference antenna that is requested is honoured
    other = run(prob, ref_antenna=3)
    assert (other.ref_antenna == 3).all()
    np.testing.assert_allclose(np.angle(other.gains[:, :, 3]), 0.0, atol=1e-12)


def test_min_unflagged_fraction():
    prob = make_problem(seed=11)
    a1, a2 = prob["antenna1"], prob["antenna2"]
    on2 = np.flatnonzero(((a1 == 2) | (a2 == 2)) & (a1 != a2))
    prob["flag"][:, on2[:4]] = True  # 4 of its 6 baselines
    assert not run(prob, min_unflagged_fraction=0.3).flags.any()
    sol = run(prob, min_unflagged_fraction=0.5)
    assert sol.flags[:, :, 2].all() and not np.delete(sol.flags, 2, axis=2).any()


def test_convergence_outputs():
    prob = make_problem(seed=12)
    sol = run(prob, max_iter=3, tolerance=1e-12)
    assert not sol.converged.any() and (sol.n_iter == 3).all()
    full = run(prob)
    assert full.converged.all() and (full.n_iter > 3).all()


def test_everything_flagged():
    prob = make_problem(seed=13)
    prob["flag"][:] = True
    sol = run(prob)
    assert sol.flags.all() and np.isnan(sol.chi2).all() and (sol.ref_antenna == -1).all()
    np.testing.assert_array_equal(sol.gains, 1.0)
    assert not sol.converged.any() and (sol.n_iter == 0).all()


# ---------------------------------------------------------------------------- one iteration


def numpy_iteration_diag(prob, g, mode):
    """One StefCal update, straight from the samples (one cell covering the whole chunk)."""
    data, model = prob["data"].astype(complex), prob["model"].astype(complex)
    w = prob["weight"].astype(float)
    valid = ~prob["flag"] & (w > 0)
    corr = [0, 3] if data.shape[-1] == 4 else [0, 1]
    n_ant = g.shape[0]
    num = np.zeros((n_ant, 2), complex)
    den = np.zeros((n_ant, 2))
    for b, (p, q) in enumerate(zip(prob["antenna1"], prob["antenna2"], strict=True)):
        if p == q:
            continue
        for r, c in enumerate(corr):
            ok = valid[:, b, :, c]
            vv, mm, ww = data[:, b, :, c][ok], model[:, b, :, c][ok], w[:, b, :, c][ok]
            z = mm * np.conj(g[q, r])  # V_pq ~ g_p z
            num[p, r] += np.sum(ww * vv * np.conj(z))
            den[p, r] += np.sum(ww * abs(z) ** 2)
            z = np.conj(mm) * np.conj(g[p, r])  # conj(V_pq) ~ g_q z
            num[q, r] += np.sum(ww * np.conj(vv) * np.conj(z))
            den[q, r] += np.sum(ww * abs(z) ** 2)
    if mode.startswith("scalar"):
        num[:] = num.sum(axis=1, keepdims=True)
        den[:] = den.sum(axis=1, keepdims=True)
    return num / abs(num) if mode.endswith("phase") else num / den


def numpy_iteration_full(prob, g):
    """One full-Jones update, row by row with per-correlation weights, from the samples."""
    shape = prob["data"].shape[:3] + (2, 2)
    data = prob["data"].astype(complex).reshape(shape)
    model = prob["model"].astype(complex).reshape(shape)
    w = np.where(prob["flag"], 0.0, prob["weight"]).reshape(shape)
    n_ant = g.shape[0]
    out = np.empty_like(g)
    for p in range(n_ant):
        nn = np.zeros((2, 2), complex)
        dd = np.zeros((2, 2, 2), complex)
        for b, (a, c) in enumerate(zip(prob["antenna1"], prob["antenna2"], strict=True)):
            if a == c or p not in (a, c):
                continue
            if p == a:
                q, vb, mb, wb = c, data[:, b], model[:, b], w[:, b]
            else:
                q = a
                vb = np.conj(np.swapaxes(data[:, b], -1, -2))
                mb = np.conj(np.swapaxes(model[:, b], -1, -2))
                wb = np.swapaxes(w[:, b], -1, -2)
            z = mb @ np.conj(g[q].T)  # V ~ G_p Z
            for i in range(2):
                for j in range(2):
                    ww = wb[..., i, j]
                    for l in range(2):
                        nn[i, l] += np.sum(ww * vb[..., i, j] * np.conj(z[..., l, j]))
                        for k in range(2):
                            dd[i, k, l] += np.sum(ww * z[..., k, j] * np.conj(z[..., l, j]))
        for i in range(2):
            out[p, i] = np.linalg.solve(dd[i].T, nn[i])
    return out


def _one_cell(prob):
    n_time, _, n_chan, _ = prob["data"].shape
    prob["t_int"], prob["f_int"] = n_time, n_chan
    rng = np.random.default_rng(1)
    prob["weight"] = rng.uniform(0.2, 2.0, prob["weight"].shape).astype(np.float32)
    prob["flag"] = rng.random(prob["flag"].shape) < 0.2
    return prob


@pytest.mark.parametrize("mode", sorted(set(MODES) - {"full_jones"}))
def test_one_iteration_against_numpy(mode):
    prob = _one_cell(make_problem(mode=mode, sigma=0.3, seed=14))
    rng = np.random.default_rng(2)
    g0 = np.exp(1j * rng.uniform(-1, 1, (prob["n_ant"], 2))) * rng.uniform(0.8, 1.2, (prob["n_ant"], 2))
    if mode.startswith("scalar"):
        g0[:, 1] = g0[:, 0]
    sol = run(prob, mode=mode, max_iter=1, tolerance=0.0, ref_antenna=None,
              initial_gains=g0[None, None])
    g1 = numpy_iteration_diag(prob, g0, mode)
    np.testing.assert_allclose(sol.gains[0, 0], g1, rtol=1e-10)
    # a second iteration with StefCal's averaging
    sol2 = run(prob, mode=mode, max_iter=2, tolerance=0.0, ref_antenna=None, damping=0.5,
               damping_every=2, initial_gains=g0[None, None])
    g2 = 0.5 * (numpy_iteration_diag(prob, g1, mode) + g1)
    if mode.endswith("phase"):
        g2 /= abs(g2)
    np.testing.assert_allclose(sol2.gains[0, 0], g2, rtol=1e-10)


def test_one_iteration_against_numpy_full_jones():
    prob = _one_cell(make_problem(mode="full_jones", polarised=True, sigma=0.3, seed=15))
    rng = np.random.default_rng(3)
    g0 = np.eye(2) + 0.3 * (rng.normal(size=(prob["n_ant"], 2, 2))
                            + 1j * rng.normal(size=(prob["n_ant"], 2, 2)))
    sol = run(prob, mode="full_jones", max_iter=1, tolerance=0.0, ref_antenna=None,
              initial_gains=g0[None, None])
    np.testing.assert_allclose(sol.gains[0, 0], numpy_iteration_full(prob, g0), rtol=1e-10)


def test_chi2_matches_direct_residuals():
    prob = make_problem(sigma=0.5, seed=16)
    for mode in ("diagonal_complex", "full_jones"):
        sol = run(prob, mode=mode)
        gains = sol.gains
        if mode != "full_jones":
            jones = np.zeros(gains.shape + (2,), complex)
            jones[..., 0, 0], jones[..., 1, 1] = gains[..., 0], gains[..., 1]
            gains = jones
        a1, a2 = prob["antenna1"], prob["antenna2"]
        jt = gains[prob["ti"]][:, prob["fi"]]
        gp, gq = (jt[:, :, a].transpose(0, 2, 1, 3, 4) for a in (a1, a2))
        shape = prob["data"].shape[:3] + (2, 2)
        pred = gp @ prob["model"].astype(complex).reshape(shape) @ np.conj(np.swapaxes(gq, -1, -2))
        res = abs(prob["data"].reshape(shape) - pred) ** 2 * prob["weight"].reshape(shape)
        corr = [0, 3] if mode != "full_jones" else [0, 1, 2, 3]
        res = res.reshape(prob["data"].shape)[:, a1 != a2][..., corr]
        n_par = 2 * 2 * prob["n_ant"] - 2 if mode != "full_jones" else 8 * prob["n_ant"] - 1
        for ts in range(2):
            for fs in range(2):
                cell = res[2 * ts:2 * ts + 2, :, 3 * fs:3 * fs + 3]
                np.testing.assert_allclose(sol.chi2[ts, fs], cell.sum() / (2 * cell.size - n_par),
                                           rtol=1e-6)


# ---------------------------------------------------------------------------- apply


@pytest.mark.parametrize("mode", ["diagonal_complex", "full_jones"])
def test_correct_with_true_gains_and_flag_propagation(mode):
    prob = make_problem(mode=mode, polarised=True, seed=17)
    g = prob["gains"]
    gflag = np.zeros(g.shape, bool)
    args = (prob["antenna1"], prob["antenna2"], prob["ti"], prob["fi"])
    corrected = correct_visibilities(prob["data"], g, gflag, *args)
    assert corrected.dtype == np.complex64
    np.testing.assert_allclose(corrected, prob["model"], atol=1e-5 * abs(prob["model"]).max())
    gflag[1, 0, 2, 0] = True  # time cell 1, freq cell 0, antenna 2, receptor X (or row X)
    flag = propagate_gain_flags(prob["flag"], g, gflag, *args)
    corrected = correct_visibilities(prob["data"], g, gflag, *args)
    on2 = (prob["antenna1"] == 2) | (prob["antenna2"] == 2)
    sel = flag[2:4, :, 0:3]
    if mode == "full_jones":
        assert sel[:, on2].all()
    else:
        xa = (prob["antenna1"] == 2)[:, None] & (RA == 0)[None, :]
        xb = (prob["antenna2"] == 2)[:, None] & (RB == 0)[None, :]
        np.testing.assert_array_equal(sel, np.broadcast_to((xa | xb)[:, None, :], sel.shape))
    assert not np.delete(flag, np.s_[2:4], axis=0).any() and not flag[:, :, 3:].any()
    assert not sel[:, ~on2].any()
    np.testing.assert_array_equal(corrected[flag], 0)


def test_validation_errors():
    prob = make_problem()
    with pytest.raises(ValueError, match="mode"):
        run(prob, mode="amplitude")
    with pytest.raises(ValueError, match="damping"):
        run(prob, damping=1.0)
    with pytest.raises(ValueError, match="ref_antenna"):
        run(prob, ref_antenna=99)
    with pytest.raises(ValueError, match="t_int"):
        run(dict(prob, t_int=0))
    with pytest.raises(ValueError, match="antenna indices"):
        run(dict(prob, n_ant=3))
    with pytest.raises(ValueError, match="flag must be bool"):
        run(dict(prob, flag=prob["flag"].astype(np.uint8)))
    with pytest.raises(ValueError, match="shape"):
        run(dict(prob, model=prob["model"][:1]))
    with pytest.raises(ValueError, match="initial_gains"):
        run(prob, initial_gains=np.ones((1, 1, 7, 2)))
