"""The apply stage: true gains turn corrupted data into the model, flags propagate, laziness."""

from __future__ import annotations

import dask
import numpy as np
import pytest

from daskcal.data.chunking import chunk_data_vars
from daskcal.data.model import add_data_group, baseline_antenna_pairs, make_visibility_xds
from daskcal.kernels.solvers import correct_visibilities
from daskcal.stages.apply import ApplyConfig, ApplyError, apply, cell_index
from daskcal.stages.solve import SolveConfig, solve

LINEAR = ("XX", "XY", "YX", "YY")


def _raise_on_compute(*args, **kwargs):
    raise AssertionError("the graph was computed while it was being built")


def make_xds(n_ant=5, n_time=6, n_chan=6, pols=LINEAR, t_cell=2, f_cell=3, full=False, seed=0):
    """VISIBILITY = G_p M G_q^H with gains constant in (t_cell x f_cell) cells; M random."""
    rng = np.random.default_rng(seed)
    a1, a2 = baseline_antenna_pairs(n_ant)
    n_bl = a1.size
    shape = (n_time, n_bl, n_chan, 2, 2)
    model = 1 + rng.normal(size=shape) + 1j * rng.normal(size=shape)
    n_tc, n_fc = -(-n_time // t_cell), -(-n_chan // f_cell)
    jones = np.zeros((n_tc, n_fc, n_ant, 2, 2), complex)
    g = rng.uniform(0.8, 1.2, (n_tc, n_fc, n_ant, 2)) * np.exp(1j * rng.uniform(-3, 3, (n_tc, n_fc, n_ant, 2)))
    jones[..., 0, 0], jones[..., 1, 1] = g[..., 0], g[..., 1]
    if full:
        jones[..., 0, 1] = 0.2 * (rng.normal(size=g.shape[:-1]) + 1j * rng.normal(size=g.shape[:-1]))
        jones[..., 1, 0] = 0.2 * (rng.normal(size=g.shape[:-1]) + 1j * rng.normal(size=g.shape[:-1]))
    jt = jones[np.arange(n_time) // t_cell][:, np.arange(n_chan) // f_cell]
    gp, gq = (jt[:, :, a].transpose(0, 2, 1, 3, 4) for a in (a1, a2))
    vis = (gp @ model @ np.conj(np.swapaxes(gq, -1, -2))).reshape(n_time, n_bl, n_chan, 4)
    model = model.reshape(vis.shape)
    sel = [LINEAR.index(p) for p in pols]
    xds = make_visibility_xds(
        time_s=1.7e9 + 8.0 * np.arange(n_time), frequency_hz=1.5e8 + 2e5 * np.arange(n_chan),
        polarization=list(pols), antenna_names=[f"RS{i}" for i in range(n_ant)],
        antenna1=a1, antenna2=a2, visibility=vis[..., sel].astype(np.complex64),
        uvw_m=np.zeros((n_time, n_bl, 3)), integration_time_s=8.0, channel_width_hz=2e5)
    xds = add_data_group(xds, "model", "VISIBILITY_MODEL", data=model[..., sel].astype(np.complex64))
    return xds, (jones if full else g)


def true_gains(xds, g, **config):
    """A gains dataset (layout of the solve stage) holding the true gains."""
    gains = solve(xds, config=SolveConfig(solint_time=2, solint_freq=3, max_iter=1,
                                          **config)).compute()
    gains["GAIN"] = (gains.GAIN.dims, g)
    return gains


@pytest.mark.parametrize("pols", [LINEAR, ("XX", "YY")])
def test_true_gains_give_the_model(pols):
    xds, g = make_xds(pols=pols)
    out = apply(chunk_data_vars(xds, {"time": 4, "frequency": 2}), true_gains(xds, g)).compute()
    corrected = out.VISIBILITY_CORRECTED.values
    assert corrected.dtype == np.complex64
    scale = abs(xds.VISIBILITY_MODEL.values).max()
    np.testing.assert_allclose(corrected, xds.VISIBILITY_MODEL.values, atol=1e-5 * scale)
    assert out.attrs["data_groups"]["corrected"]["correlated_data"] == "VISIBILITY_CORRECTED"
    assert not out.FLAG.values.any()


def test_true_full_jones_gains_give_the_model():
    xds, g = make_xds(full=True, seed=1)
    out = apply(chunk_data_vars(xds, {"time": 3}), true_gains(xds, g, mode="full_jones"))
    scale = abs(xds.VISIBILITY_MODEL.values).max()
    np.testing.assert_allclose(out.VISIBILITY_CORRECTED.values, xds.VISIBILITY_MODEL.values,
                               atol=1e-5 * scale)


def test_solve_then_apply_recovers_the_model():
    xds, _ = make_xds(seed=2)
    gains = solve(chunk_data_vars(xds, {"time": 2}),
                  config=SolveConfig(solint_time=2, solint_freq=3, tolerance=1e-10, max_iter=300))
    out = apply(chunk_data_vars(xds, {"time": 3}), gains)  # lazy gains, other chunks
    # parallel hands only: per-receptor phase references leave the XY phase undetermined
    par = xds.VISIBILITY_MODEL.values[..., [0, 3]]
    np.testing.assert_allclose(out.VISIBILITY_CORRECTED.values[..., [0, 3]], par,
                               atol=1e-4 * abs(par).max())


@pytest.mark.parametrize("full", [False, True])
def test_flags_propagate(full):
    xds, g = make_xds(full=full, seed=3)
    gains = true_gains(xds, g, mode="full_jones" if full else "diagonal_complex")
    gflag = gains.GAIN_FLAG.values.copy()
    gflag[1, 0, 2, 1] = True  # time cell 1, frequency cell 0, antenna RS2, receptor Y (row Y)
    gains["GAIN_FLAG"] = (gains.GAIN_FLAG.dims, gflag)
    flag_in = xds.FLAG.values.copy()
    flag_in[0, 0, 0, 0] = True
    xds["FLAG"] = (xds.FLAG.dims, flag_in)
    out = apply(chunk_data_vars(xds, {"time": 4}), gains).compute()
    flag = out.FLAG.values
    a1, a2 = xds.antenna1.values, xds.antenna2.values
    expect = flag_in.copy()
    if full:  # the correction mixes correlations: one flagged flags the sample
        expect[0, 0, 0, :] = True
    for b in np.flatnonzero((a1 == 2) | (a2 == 2)):
        for c, (i, j) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
            if full or (a1[b] == 2 and i == 1) or (a2[b] == 2 and j == 1):
                expect[2:4, b, 0:3, c] = True
    np.testing.assert_array_equal(flag, expect)
    newly = flag & ~flag_in
    newly[0, 0, 0] = False  # flagged through its flagged correlation, not through the gains
    assert newly.any()
    np.testing.assert_array_equal(out.VISIBILITY_CORRECTED.values[newly], 0)
    ok = ~flag
    np.testing.assert_allclose(out.VISIBILITY_CORRECTED.values[ok], xds.VISIBILITY_MODEL.values[ok],
                               atol=1e-4)
    kept = apply(xds, gains, ApplyConfig(propagate_flags=False)).compute()
    assert "FLAG" in kept.attrs["data_groups"]["corrected"].values()
    np.testing.assert_array_equal(kept.FLAG.values, flag_in)


def test_dask_equals_numpy_and_graph_is_lazy():
    xds, g = make_xds(seed=4)
    gains = true_gains(xds, g)
    chunked = chunk_data_vars(xds, {"time": 4, "frequency": 4})
    with dask.config.set(scheduler=_raise_on_compute):
        out = apply(chunked, gains)
        lazy_gains = solve(chunked, config=SolveConfig(solint_time=2, solint_freq=3))
        apply(chunked, lazy_gains)
    ref = correct_visibilities(xds.VISIBILITY.values, g, np.zeros(g.shape, bool),
                               xds.antenna1.values, xds.antenna2.values,
                               np.arange(6) // 2, np.arange(6) // 3)
    np.testing.assert_array_equal(out.VISIBILITY_CORRECTED.values, ref)


def test_cells_are_looked_up_by_time_and_frequency():
    xds, g = make_xds(seed=5)
    gains = true_gains(xds, g)
    # a subset of the times and the channels in reverse order still find their cells
    sub = xds.isel(time=slice(1, 5), frequency=slice(None, None, -1))
    out = apply(sub, gains)
    scale = abs(xds.VISIBILITY_MODEL.values).max()
    np.testing.assert_allclose(out.VISIBILITY_CORRECTED.values, sub.VISIBILITY_MODEL.values,
                               atol=1e-5 * scale)


def test_cell_index():
    lower = np.array([0.0, 10.0, 20.0])
    upper = np.array([10.0, 20.0, 25.0])
    np.testing.assert_array_equal(cell_index([-50, 0, 9.9, 10, 24.9, 26, 1e9], lower, upper),
                                  [0, 0, 0, 1, 2, 2, 2])
    # cells given in descending order (frequency axes may be)
    np.testing.assert_array_equal(cell_index([1, 12, 22], lower[::-1], upper[::-1]), [2, 1, 0])


def test_errors():
    xds, g = make_xds()
    gains = true_gains(xds, g)
    with pytest.raises(ApplyError, match="no gains for antennas"):
        apply(xds, gains.isel(antenna_name=slice(0, 3)))
    circ = xds.assign_coords(polarization=["RR", "RL", "LR", "LL"])
    with pytest.raises(ApplyError, match="receptors"):
        apply(circ, gains)
    two, g2 = make_xds(pols=("XX", "YY"))
    full = true_gains(xds, make_xds(full=True)[1], mode="full_jones")
    with pytest.raises(ApplyError, match="four correlations"):
        apply(two, full)
