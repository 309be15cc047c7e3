"""The solve stage: dask result equals the numpy kernel, laziness, gains layout, zarr."""

from __future__ import annotations

import dask
import numpy as np
import pytest
import xarray as xr

from daskcal.data.chunking import chunk_data_vars
from daskcal.data.model import add_data_group, baseline_antenna_pairs, make_visibility_xds
from daskcal.kernels.solvers import solve_gains
from daskcal.stages.solve import SolveConfig, SolveError, solve

LINEAR = ("XX", "XY", "YX", "YY")


def _raise_on_compute(*args, **kwargs):
    raise AssertionError("the graph was computed while it was being built")


def make_xds(n_ant=6, n_time=8, n_chan=6, pols=LINEAR, t_cell=2, f_cell=3, mode="diagonal",
             seed=0, sigma=0.0):
    """A partition with VISIBILITY = G_p M G_q^H (+ noise) and VISIBILITY_MODEL = M.

    The gains are constant within (t_cell x f_cell) cells; returns (xds, true gains) with
    gains (n_tc, n_fc, n_ant, 2) (``mode="diagonal"``) or (..., 2, 2) (``"full"``; the model
    is then polarised).
    """
    rng = np.random.default_rng(seed)
    a1, a2 = baseline_antenna_pairs(n_ant)
    n_bl = a1.size
    time = 1.7e9 + 10.0 * np.arange(n_time)
    freq = 1.4e8 + 1e5 * np.arange(n_chan)
    uvw = rng.normal(scale=800.0, size=(n_bl, 3))[None] * (1 + 0.02 * np.arange(n_time))[:, None, None]
    uvw[:, a1 == a2] = 0.0
    model = np.zeros((n_time, n_bl, n_chan, 2, 2), complex)
    for _ in range(3):
        l, m = rng.uniform(-0.02, 0.02, 2)
        flux = rng.uniform(1, 5)
        q, u, v = rng.uniform(-0.4, 0.4, 3) * flux if mode == "full" else (0.0, 0.0, 0.0)
        bright = np.array([[flux + q, u + 1j * v], [u - 1j * v, flux - q]])
        k = np.exp(2j * np.pi * (uvw[..., 0, None] * l + uvw[..., 1, None] * m) * freq / 3e8)
        model += k[..., None, None] * bright
    n_tc, n_fc = -(-n_time // t_cell), -(-n_chan // f_cell)
    g = rng.uniform(0.8, 1.2, (n_tc, n_fc, n_ant, 2)) * np.exp(
        1j * rng.uniform(-np.pi, np.pi, (n_tc, n_fc, n_ant, 2)))
    jones = np.zeros(g.shape + (2,), complex)
    jones[..., 0, 0], jones[..., 1, 1] = g[..., 0], g[..., 1]
    if mode == "full":
        jones[..., 0, 1] = 0.1 * rng.normal(size=g.shape[:-1])
        jones[..., 1, 0] = 0.1j * rng.normal(size=g.shape[:-1])
    jt = jones[np.arange(n_time) // t_cell][:, np.arange(n_chan) // f_cell]
    gp, gq = (jt[:, :, a].transpose(0, 2, 1, 3, 4) for a in (a1, a2))
    vis = (gp @ model @ np.conj(np.swapaxes(gq, -1, -2))).reshape(n_time, n_bl, n_chan, 4)
    if sigma:
        vis = vis + sigma * (rng.standard_normal(vis.shape) + 1j * rng.standard_normal(vis.shape))
    model = model.reshape(vis.shape)
    sel = [LINEAR.index(p) if p in LINEAR else ("RR", "RL", "LR", "LL").index(p) for p in pols]
    xds = make_visibility_xds(
        time_s=time, frequency_hz=freq, polarization=list(pols),
        antenna_names=[f"CS{i:03d}" for i in range(n_ant)], antenna1=a1, antenna2=a2,
        visibility=vis[..., sel].astype(np.complex64), uvw_m=uvw, integration_time_s=10.0,
        channel_width_hz=1e5,
        weight=np.full(vis[..., sel].shape, 1.0 / sigma**2 if sigma else 1.0, np.float32))
    xds = add_data_group(xds, "model", "VISIBILITY_MODEL", data=model[..., sel].astype(np.complex64))
    return xds, (jones if mode == "full" else g)


def referenced(g, ref=0):
    if g.ndim == 5:
        z = g[:, :, ref, 0, 0]
        return g * (np.conj(z) / abs(z))[:, :, None, None, None]
    z = g[:, :, ref]
    return g * (np.conj(z) / abs(z))[:, :, None]


def test_dask_result_equals_numpy_kernel():
    xds, _ = make_xds(sigma=0.1)
    rng = np.random.default_rng(1)
    flag = rng.random(xds.VISIBILITY.shape) < 0.1
    xds["FLAG"] = (xds.FLAG.dims, flag)
    chunked = chunk_data_vars(xds, {"time": 3, "frequency": 4})
    config = SolveConfig(solint_time=2, solint_freq=3, tolerance=1e-9, max_iter=200,
                         ref_antenna="CS002")
    gains = solve(chunked, config=config)
    assert gains.GAIN.chunks[0] == (1, 1, 1, 1)  # time rechunked to 2 = one cell per task
    ref = solve_gains(xds.VISIBILITY.values, xds.VISIBILITY_MODEL.values, xds.WEIGHT.values,
                      flag, xds.antenna1.values, xds.antenna2.values, 6, 2, 3,
                      mode="diagonal_complex", max_iter=200, tolerance=1e-9, ref_antenna=2)
    out = gains.compute()
    np.testing.assert_allclose(out.GAIN.values, ref.gains, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(out.GAIN_FLAG.values, ref.flags)
    np.testing.assert_allclose(out.CHI2.values, ref.chi2, rtol=1e-12)
    np.testing.assert_array_equal(out.N_ITER.values, ref.n_iter)
    np.testing.assert_array_equal(out.CONVERGED.values, ref.converged)
    np.testing.assert_array_equal(out.REF_ANTENNA.values, ref.ref_antenna)
    # unchunked input gives the same again
    np.testing.assert_allclose(solve(xds, config=config).GAIN.values, ref.gains, rtol=1e-12,
                               atol=1e-14)


def test_graph_building_never_computes():
    xds, _ = make_xds()
    chunked = chunk_data_vars(xds, {"time": 4, "frequency": 3})
    with dask.config.set(scheduler=_raise_on_compute):
        gains = solve(chunked, config=SolveConfig(solint_time=2, solint_freq=3))
        full = solve(chunked, config=SolveConfig(mode="full_jones", solint_time=4))
    assert all(isinstance(v.data, dask.array.Array) for v in gains.data_vars.values())
    assert full.GAIN.dims[-2:] == ("receptor", "receptor2")


@pytest.mark.parametrize("pols", [LINEAR, ("XX", "YY"), ("RR", "RL", "LR", "LL")])
def test_recovers_injected_gains_and_layout(pols):
    xds, g = make_xds(pols=pols, seed=2)
    config = SolveConfig(solint_time=2, solint_freq=3, tolerance=1e-10, max_iter=300)
    gains = solve(chunk_data_vars(xds, {"time": 4}), config=config).compute()
    assert gains.GAIN.dims == ("gain_time", "gain_frequency", "antenna_name", "receptor")
    assert gains.GAIN.dtype == np.complex128
    assert list(gains.receptor.values) == (["R", "L"] if pols[0] == "RR" else ["X", "Y"])
    assert list(gains.antenna_name.values) == [f"CS{i:03d}" for i in range(6)]
    np.testing.assert_allclose(gains.GAIN.values, referenced(g), atol=1e-4)
    assert gains.CONVERGED.all() and not gains.GAIN_FLAG.any()
    t = xds.time.values
    np.testing.assert_allclose(gains.gain_time.values, t.reshape(4, 2).mean(1))
    np.testing.assert_allclose(gains.gain_time_lower.values, t[::2] - 5.0)
    np.testing.assert_allclose(gains.gain_time_upper.values, t[1::2] + 5.0)
    f = xds.frequency.values
    np.testing.assert_allclose(gains.gain_frequency.values, f.reshape(2, 3).mean(1))
    np.testing.assert_allclose(gains.gain_frequency_lower.values, f[::3] - 5e4)
    assert gains.attrs["mode"] == "diagonal_complex" and gains.attrs["solint_time"] == 2
    assert gains.attrs["ref_antenna"] == "CS000"


def test_full_jones_stage():
    xds, g = make_xds(mode="full", seed=3)
    config = SolveConfig(mode="full_jones", solint_time=2, solint_freq=3, tolerance=1e-10,
                         max_iter=300)
    gains = solve(chunk_data_vars(xds, {"time": 2, "frequency": 3}), config=config).compute()
    assert gains.GAIN.dims[-2:] == ("receptor", "receptor2")
    np.testing.assert_allclose(gains.GAIN.values, referenced(g), atol=1e-4)


def test_model_sources_and_whole_axis_intervals():
    xds, _ = make_xds(seed=4)
    model = xds.VISIBILITY_MODEL
    plain = xds.drop_vars("VISIBILITY_MODEL")
    plain.attrs = {**plain.attrs, "data_groups": {"base": plain.attrs["data_groups"]["base"]}}
    config = SolveConfig(solint_time=0, solint_freq=0)
    by_group = solve(xds, config=config).compute()
    assert by_group.sizes["gain_time"] == 1 and by_group.sizes["gain_frequency"] == 1
    by_array = solve(plain, model, config=config).compute()
    by_name = solve(xds.rename({"VISIBILITY_MODEL": "MY_MODEL"}), "MY_MODEL", config=config).compute()
    by_dataset = solve(plain, xds, config=config).compute()
    for other in (by_array, by_name, by_dataset):
        np.testing.assert_array_equal(other.GAIN.values, by_group.GAIN.values)
    with pytest.raises(SolveError, match="data group 'model'"):
        solve(plain)


def test_flagged_antenna_and_reference_by_name():
    xds, g = make_xds(seed=5)
    on0 = (xds.antenna1.values == 0) | (xds.antenna2.values == 0)
    flag = xds.FLAG.values.copy()
    flag[:2, on0] = True
    xds["FLAG"] = (xds.FLAG.dims, flag)
    gains = solve(xds, config=SolveConfig(solint_time=2, solint_freq=3, ref_antenna="CS000",
                                          tolerance=1e-10, max_iter=300)).compute()
    assert gains.GAIN_FLAG.values[0, :, 0].all() and not gains.GAIN_FLAG.values[1:].any()
    assert (gains.REF_ANTENNA.values[0] == 1).all() and (gains.REF_ANTENNA.values[1:] == 0).all()
    np.testing.assert_allclose(gains.GAIN.values[0, :, 1:], referenced(g, 1)[0, :, 1:], atol=1e-4)


# numpy fixed-width strings and consolidated metadata: zarr extensions daskcal uses on purpose
@pytest.mark.filterwarnings("ignore:The data type .* does not have a Zarr V3 specification")
@pytest.mark.filterwarnings("ignore:Consolidated metadata is currently not part")
def test_gains_persist_to_zarr(tmp_path):
    xds, _ = make_xds(seed=6)
    gains = solve(chunk_data_vars(xds, {"time": 4}), config=SolveConfig(solint_time=2, solint_freq=3,
                                                              mode="full_jones"))
    gains.to_zarr(tmp_path / "gains.zarr", mode="w")
    back = xr.open_zarr(tmp_path / "gains.zarr").compute()
    xr.testing.assert_identical(back, gains.compute())
    assert back.attrs["config"]["mode"] == "full_jones"


def test_errors():
    xds, _ = make_xds()
    with pytest.raises(SolveError, match="reference antenna"):
        solve(xds, config=SolveConfig(ref_antenna="RS999"))
    two = make_xds(pols=("XX", "YY"))[0]
    with pytest.raises(SolveError, match="four correlations"):
        solve(two, config=SolveConfig(mode="full_jones"))
    odd = xds.assign_coords(polarization=["XX", "YX", "XY", "YY"])
    with pytest.raises(SolveError, match="not supported"):
        solve(odd)
    with pytest.raises(SolveError, match="dims"):
        solve(xds, xds.VISIBILITY_MODEL.isel(time=slice(0, 2)))
    with pytest.raises(ValueError):
        SolveConfig(damping=1.0)
    with pytest.raises(ValueError):
        SolveConfig(mode="amplitude_only")
