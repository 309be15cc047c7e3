"""Tests of the joint multi-direction gain solver."""

from __future__ import annotations

import numpy as np
import pytest

from daskcal.kernels.solvers import solve_multidir

C = 299_792_458.0


def _problem(seed=1, n_ant=8, n_time=6, n_chan=4, lm=((0.0, 0.0), (0.3, 0.1), (-0.2, 0.4)),
             flux=(10.0, 5.0, 3.0)):
    rng = np.random.default_rng(seed)
    a1, a2 = np.triu_indices(n_ant, 1)
    uvw = rng.normal(0, 500, (n_time, a1.size, 3))
    freq = 120e6 + 1e6 * np.arange(n_chan)
    model = np.zeros((len(lm), n_time, a1.size, n_chan, 4), complex)
    for d, (l, m) in enumerate(lm):
        n = np.sqrt(1 - l * l - m * m)
        ph = np.exp(2j * np.pi * (uvw[..., 0] * l + uvw[..., 1] * m + uvw[..., 2] * (n - 1))
                    [..., None] * freq / C)
        model[d, ..., 0] = model[d, ..., 3] = flux[d] * ph
    g = np.exp(rng.normal(0, 0.2, (len(lm), n_ant, 2))
               + 1j * rng.uniform(-np.pi, np.pi, (len(lm), n_ant, 2)))
    return rng, a1, a2, model, g


def _corrupt(g, model, a1, a2):
    """Data for gains g (n_dir, [n_time,] n_ant, 2): time-constant or per time step."""
    if g.ndim == 3:
        g = np.broadcast_to(g[:, None], (g.shape[0], model.shape[1]) + g.shape[1:])
    gp = g[:, :, a1][..., [0, 0, 1, 1]]
    gq = g[:, :, a2][..., [0, 1, 0, 1]]
    return np.einsum("dtbc,dtbfc,dtbc->tbfc", gp, model, np.conj(gq))


def _referenced(g, ref=0):
    return g * np.exp(-1j * np.angle(g[..., ref:ref + 1, :]))


def test_noise_free_recovery():
    _, a1, a2, model, g = _problem()
    data = _corrupt(g, model, a1, a2).astype(np.complex64)
    w = np.ones(data.shape, np.float32)
    sol = solve_multidir(data, model, w, np.zeros(data.shape, bool), a1, a2, 8, 2, 2,
                         max_iter=300, tolerance=1e-9)
    assert sol.gains.shape == (3, 3, 2, 8, 2)
    assert sol.converged.all() and not sol.flags.any()
    np.testing.assert_allclose(sol.gains, np.broadcast_to(_referenced(g)[:, None, None],
                                                         sol.gains.shape), atol=1e-4)
    assert np.all(sol.ref_antenna == 0)
    assert np.nanmax(sol.chi2) < 1e-8


def test_per_direction_intervals_and_scalar_mode():
    _, a1, a2, model, g = _problem(seed=2, n_time=8)
    g[..., 1] = g[..., 0]
    # direction 0 varies per 2 integrations, directions 1 and 2 per 4
    rng = np.random.default_rng(5)
    gt = np.repeat(g[:, None], 8, axis=1)
    for k in range(4):
        gt[0, 2 * k:2 * k + 2] = g[0] * np.exp(1j * rng.normal(0, 0.3, (8, 1)))
    for d in (1, 2):
        gt[d, 4:] = g[d] * np.exp(1j * rng.normal(0, 0.3, (8, 1)))
    data = _corrupt(gt, model, a1, a2)
    w = np.ones(data.shape)
    sol = solve_multidir(data, model, w, np.zeros(data.shape, bool), a1, a2, 8, [2, 4, 4], 4,
                         mode="scalar_complex", max_iter=400, tolerance=1e-10)
    assert sol.gains.shape == (3, 4, 1, 8, 2)
    expect = _referenced(gt[:, ::2])[:, :, None]
    np.testing.assert_allclose(sol.gains, expect, atol=1e-4)
    np.testing.assert_array_equal(sol.gains[1:, 0], sol.gains[1:, 1])  # repeated cells


def test_noise_and_flags():
    rng, a1, a2, model, g = _problem(seed=3, n_ant=10, n_time=20, n_chan=8)
    data = _corrupt(g, model, a1, a2)
    sigma = 0.5
    data = data + sigma * (rng.normal(size=data.shape) + 1j * rng.normal(size=data.shape))
    flag = rng.uniform(size=data.shape) < 0.1
    data[flag] = 1e6  # flagged garbage must not matter
    w = np.full(data.shape, 1 / sigma**2)
    sol = solve_multidir(data, model, w, flag, a1, a2, 10, 20, 8, max_iter=300, tolerance=1e-8)
    err = np.abs(sol.gains[:, 0, 0] - _referenced(g))
    # expected error ~ sigma / (S sqrt(n_samples per antenna and receptor))
    n_samp = 9 * 20 * 8 * 0.9
    for d, s in enumerate((10.0, 5.0, 3.0)):
        assert err[d].max() < 5 * sigma / (s * np.sqrt(n_samp)) * np.sqrt(2), d
    assert np.all(np.abs(sol.chi2 - 1) < 0.1)


def _reference_one_iteration(data, model, g0, a1, a2):
    """Slow numpy reference: one outer iteration, one StefCal step per direction."""
    g = g0.copy()
    v = data[..., [0, 3]]
    m = model[..., [0, 3]]
    for d in range(g.shape[0]):
        others = sum(g[e][0][a1][:, None] * m[e] * np.conj(g[e][0][a2][:, None])
                     for e in range(g.shape[0]) if e != d)  # (t, b, f, h), one cell
        r = v - others
        vm = np.sum(r * np.conj(m[d]), axis=(0, 2))  # (b, h)
        mm = np.sum(np.abs(m[d]) ** 2, axis=(0, 2))
        gd = g[d][0]
        num = np.zeros_like(gd)
        den = np.zeros(gd.shape)
        np.add.at(num, a1, gd[a2] * vm)
        np.add.at(num, a2, gd[a1] * np.conj(vm))
        np.add.at(den, a1, np.abs(gd[a2]) ** 2 * mm)
        np.add.at(den, a2, np.abs(gd[a1]) ** 2 * mm)
        g[d] = (num / den)[None]
    return _referenced(g)


def test_one_iteration_matches_numpy_reference():
    rng, a1, a2, model, g = _problem(seed=4)
    data = _corrupt(g, model, a1, a2)
    data += 0.3 * (rng.normal(size=data.shape) + 1j * rng.normal(size=data.shape))
    g0 = g * np.exp(0.1 * rng.normal(size=g.shape) + 0.3j * rng.normal(size=g.shape))
    sol = solve_multidir(data, model, np.ones(data.shape), np.zeros(data.shape, bool), a1, a2,
                         8, 6, 4, max_iter=1, inner_iter=1, initial_gains=g0[:, None, None])
    ref = _reference_one_iteration(data, model, g0[:, None], a1, a2)
    assert sol.n_iter == 1
    np.testing.assert_allclose(sol.gains[:, 0, 0], ref[:, 0], rtol=1e-10, atol=1e-12)


def test_validation():
    _, a1, a2, model, _ = _problem(n_time=2, n_chan=2)
    data = model.sum(axis=0)
    w = np.ones(data.shape)
    f = np.zeros(data.shape, bool)
    with pytest.raises(ValueError, match="multiple"):
        solve_multidir(data, model, w, f, a1, a2, 8, [2, 3, 2], 1)
    with pytest.raises(ValueError, match="model"):
        solve_multidir(data, model[:, :1], w, f, a1, a2, 8, 1, 1)
    with pytest.raises(ValueError, match="mode"):
        solve_multidir(data, model, w, f, a1, a2, 8, 1, 1, mode="full_jones")
    with pytest.raises(ValueError, match="antenna"):
        solve_multidir(data, model, w, f, a1, a2, 4, 1, 1)

