"""The simulator: lazy, schema-valid, reproducible, chunking-independent, with a faithful truth."""

from __future__ import annotations

import pickle

import dask
import numpy as np
import pytest
import xarray as xr

from daskcal.data.schema import check_observation
from daskcal.kernels.dft import C_M_S, correlation_receptors, dft_predict, stokes_to_coherency
from daskcal.sky.model import SkyModel
from daskcal.testing import SimulationConfig, simulate_observation, write_simulation
from daskcal.testing.corruptions import TEC_PHASE_RAD_HZ
from daskcal.testing.simulate import SimulationError


def _raise_if_computed(*args, **kwargs):
    raise AssertionError("the graph was computed")


NO_COMPUTE = {"scheduler": _raise_if_computed}
SMALL = dict(lofar=dict(n_core=3, n_remote=2), n_chan=6, duration_s=50, integration_s=10,
             sky=dict(n_sources=4), chunks={"time": 2, "frequency": 4})


def _build(**overrides):
    cfg = {**SMALL, **overrides}
    with dask.config.set(NO_COMPUTE):
        return simulate_observation(cfg)


def _vis(obs):
    return obs["simulated_0"]


def test_lazy_schema_valid_and_shaped():
    obs, truth = _build(rfi=dict(enabled=True), screens=dict(enabled=True),
                        beam=dict(enabled=True), sky=dict(n_sources=3, ateam=True))
    assert check_observation(obs) == []
    vis = _vis(obs)
    assert vis.sizes == {"time": 5, "baseline_id": 28, "frequency": 6, "polarization": 4,
                         "uvw_label": 3}
    for name in ("VISIBILITY", "FLAG", "WEIGHT", "UVW"):
        assert vis[name].chunks is not None, name
    assert vis["VISIBILITY"].chunks == ((2, 2, 1), (28,), (4, 2), (4,))
    assert {"sky", "model", "gains", "screens", "beam", "noise", "rfi"} <= set(truth.children)
    for node, var in (("model", "VISIBILITY_MODEL"), ("gains", "GAIN"), ("screens", "TEC"),
                      ("beam", "BEAM"), ("rfi", "RFI_MASK")):
        assert truth[node][var].chunks is not None, var
    assert truth["sky"].sizes["source"] == 3 + 6  # 3 random + 6 A-team components
    assert list(vis["polarization"].values) == ["XX", "XY", "YX", "YY"]


def test_ten_gigabyte_graph_is_small_and_chunked():
    obs, truth = _build(lofar=dict(), n_chan=64, target_size="10GB", chunks="64MB",
                        rfi=dict(enabled=True))
    vis = _vis(obs)["VISIBILITY"]
    n_time, n_bl, n_chan, n_pol = vis.shape
    assert n_bl == 62 * 61 // 2 and n_pol == 4  # no autocorrelations
    assert n_time * n_bl * n_chan * n_pol * 13 == pytest.approx(10e9, rel=1e-3)
    assert max(vis.data.chunks[0]) * n_bl * n_chan * n_pol * 13 <= 64e6
    graph = dict(vis.data.__dask_graph__())
    assert len(pickle.dumps(graph)) < 5e6  # nothing big is embedded: data made in tasks
    assert len(pickle.dumps(dict(truth["rfi"]["RFI_MASK"].data.__dask_graph__()))) < 5e6


def test_reproducible_and_chunking_independent():
    cfg = dict(rfi=dict(enabled=True, spike_probability=0.01), screens=dict(enabled=True),
               beam=dict(enabled=True))
    obs_a, truth_a = _build(**cfg)
    obs_b, truth_b = _build(**cfg, chunks=None)
    obs_c, _ = _build(**cfg, chunks={"time": 1, "frequency": 1})
    obs_d, _ = _build(**{**cfg, "seed": 1})
    va, vb, vc, vd = (_vis(o)["VISIBILITY"].values for o in (obs_a, obs_b, obs_c, obs_d))
    scale = np.abs(va).max()
    np.testing.assert_allclose(va, vb, rtol=0, atol=2e-6 * scale)
    np.testing.assert_allclose(va, vc, rtol=0, atol=2e-6 * scale)
    assert np.abs(va - vd).max() > 0.1 * scale
    again = _vis(_build(**cfg)[0])["VISIBILITY"].values
    assert np.array_equal(va, again)
    for node, var in (("rfi", "RFI_MASK"), ("gains", "GAIN")):
        assert np.array_equal(truth_a[node][var].values, truth_b[node][var].values)
    np.testing.assert_allclose(truth_a["screens"]["TEC"].values, truth_b["screens"]["TEC"].values,
                               rtol=1e-12)
    np.testing.assert_allclose(_vis(obs_a)["UVW"].values, _vis(obs_b)["UVW"].values, rtol=0,
                               atol=1e-9)


def test_gain_truth_reproduces_noise_free_data():
    obs, truth = _build(noise=dict(enabled=False))
    data = _vis(obs)["VISIBILITY"].values
    model = truth["model"]["VISIBILITY_MODEL"].values
    gains = truth["gains"]["GAIN"].values  # (time, freq, ant, receptor)
    a1, a2 = _vis(obs)["antenna1"].values, _vis(obs)["antenna2"].values
    ra, rb = correlation_receptors(_vis(obs)["polarization"].values)
    gp = gains[:, :, a1][..., ra].transpose(0, 2, 1, 3)
    gq = gains[:, :, a2][..., rb].transpose(0, 2, 1, 3)
    np.testing.assert_allclose(data, gp * model * np.conj(gq), rtol=0,
                               atol=1e-5 * np.abs(data).max())
    assert np.abs(gains).std() > 0.01  # the gains are not trivial
    np.testing.assert_allclose(truth["model"]["VISIBILITY_CORRUPTED"].values, data, rtol=1e-6)


def test_direction_dependent_truth_reproduces_data():
    obs, truth = _build(noise=dict(enabled=False), gains=dict(enabled=False),
                        screens=dict(enabled=True), beam=dict(enabled=True),
                        sky=dict(n_sources=3, ateam=True))
    vis = _vis(obs)
    sky = SkyModel.from_dataset(truth["sky"].to_dataset())
    freq = vis["frequency"].values
    pols = list(vis["polarization"].values)
    pc = obs["simulated_0/field_and_source_base_xds"]["FIELD_PHASE_CENTER_DIRECTION"].values[0]
    tec = truth["screens"]["TEC"].values  # (t, ant, src)
    beam = truth["beam"]["BEAM"].values  # (t, ant, src, f)
    jones = beam * np.exp(1j * TEC_PHASE_RAD_HZ * tec[..., None] / freq)
    jones = np.repeat(jones[..., None], 2, axis=-1)
    expected = dft_predict(vis["UVW"].values, freq, sky.lmn(*pc),
                           stokes_to_coherency(sky.flux(freq), pols), sky.shape_params, jones,
                           vis["antenna1"].values, vis["antenna2"].values)
    data = vis["VISIBILITY"].values
    np.testing.assert_allclose(data, expected, rtol=0, atol=1e-5 * np.abs(data).max())
    # the beam passes the field and keeps the A-team to its sidelobes (or below the horizon)
    field = ~np.isin(truth["sky"]["patch"].values, ["CasA", "CygA", "TauA", "VirA"])
    assert beam[..., field, :].min() > 0.3
    assert beam[..., ~field, :].max() < 0.05
    # screens differ between stations and sources; phase ~ 1/f
    assert np.ptp(tec, axis=1).max() > 1e-3 and np.ptp(tec, axis=2).max() > 1e-3


def test_noise_matches_sefd_formula():
    sefd = {"ea01": 840.0}
    obs, truth = _build(array="vla", lofar=dict(), sky=dict(preset="none"),
                        gains=dict(enabled=False), noise=dict(sefd_jy=sefd), n_chan=8,
                        duration_s=120, channel_width_hz=2e6, integration_s=5)
    vis = _vis(obs)
    data = vis["VISIBILITY"].values
    sigma = truth["noise"]["NOISE_SIGMA"].values
    names1, names2 = vis["baseline_antenna1_name"].values, vis["baseline_antenna2_name"].values
    sefd_pq = np.where((names1 == "ea01") | (names2 == "ea01"), np.sqrt(840.0 * 420), 420.0)
    np.testing.assert_allclose(sigma, sefd_pq / np.sqrt(2 * 2e6 * 5), rtol=1e-12)
    for part in (data.real, data.imag):
        normalised = part / sigma[None, :, None, None]
        assert normalised.std() == pytest.approx(1.0, rel=0.02)
        assert abs(normalised.mean()) < 0.02
    ea01 = (names1 == "ea01") | (names2 == "ea01")
    assert data[:, ea01].real.std() == pytest.approx(sigma[ea01][0], rel=0.05)
    weight = vis["WEIGHT"].values
    np.testing.assert_allclose(weight[0, :, 0, 0], 1 / sigma**2, rtol=1e-6)
    assert list(vis["polarization"].values) == ["RR", "RL", "LR", "LL"]


def test_rfi_mask_marks_exactly_the_added_samples():
    rfi = dict(enabled=True, n_lines=1, n_bursts=1, burst_duration_s=10,
               burst_band_fraction=0.5, spike_probability=0.02)
    obs, truth = _build(rfi=rfi)
    clean, _ = _build()
    added = _vis(obs)["VISIBILITY"].values - _vis(clean)["VISIBILITY"].values
    mask = truth["rfi"]["RFI_MASK"].values
    assert mask.any() and not mask.all()
    assert np.array_equal(mask, added != 0)
    amp = truth["rfi"]["RFI_AMPLITUDE"].values
    np.testing.assert_allclose(np.abs(added)[mask], amp[mask], rtol=1e-4)
    # a persistent line: one channel flagged at every time, baseline and correlation
    full_channels = np.where(mask.all(axis=(0, 1, 3)))[0]
    assert full_channels.size >= 1
    assert not _vis(obs)["FLAG"].values.any()  # the flagger has to find it


def test_autocorrelations_and_stations_and_polarizations():
    stations = ["CS002HBA0", "CS002HBA1", "RS503HBA"]
    obs, _ = _build(stations=stations, autocorrelations=True, polarizations=["XX", "YY"])
    vis = _vis(obs)
    assert vis.sizes["baseline_id"] == 6 and list(vis["polarization"].values) == ["XX", "YY"]
    auto = vis["antenna1"].values == vis["antenna2"].values
    assert np.allclose(vis["UVW"].values[:, auto], 0)
    with pytest.raises(SimulationError, match="not in the lofar layout"):
        simulate_observation({**SMALL, "stations": ["XX999"]})


@pytest.mark.parametrize("bad", [
    dict(polarizations=["RR", "LL"]), dict(start_time="yesterday"), dict(target_size="big"),
    dict(chunks={"baseline_id": 3}), dict(sky=dict(flux_min_jy=2, flux_max_jy=1)),
    dict(integration_s=0), dict(unknown=1), dict(screens=dict(inner_scale_km=200)),
])
def test_invalid_config_is_a_value_error(bad):
    with pytest.raises(ValueError):
        SimulationConfig.model_validate({**SMALL, **bad})


def test_config_schema_is_documented():
    schema = SimulationConfig.model_json_schema()
    missing = [k for k, v in schema["properties"].items() if "description" not in v]
    assert missing == []
    for sub in schema["$defs"].values():
        assert all("description" in v for v in sub["properties"].values()), sub["title"]


def test_start_outside_iers_tables_is_refused():
    with pytest.raises(ValueError, match="IERS"):
        simulate_observation({**SMALL, "start_time": "2040-01-01T00:00:00"})


def test_uvw_and_phase_convention_image_the_source_where_it_is():
    """A dirty image (inverse DFT with -2 pi i: the data follow the MS convention
    exp(+2 pi i (u l + v m + w (n - 1)))) of simulated data peaks at the source."""
    ra0, dec0 = 123.4, 48.2
    comp = dict(name="s", ra_deg=ra0 + 0.3 / np.cos(np.radians(dec0)), dec_deg=dec0 - 0.2,
                flux_jy=1.0, spectral_index=[0.0])
    obs, _ = _build(sky=dict(preset="none", components=[comp]), gains=dict(enabled=False),
                    noise=dict(enabled=False), lofar=dict(n_core=12, n_remote=0), duration_s=300)
    vis = _vis(obs)
    uvw = vis["UVW"].values
    freq = vis["frequency"].values
    data = vis["VISIBILITY"].values[..., 0]  # XX
    lm = np.linspace(-0.012, 0.012, 49)
    ll, mm = np.meshgrid(lm, lm, indexing="ij")
    u = uvw[..., 0, None] * freq / C_M_S
    v = uvw[..., 1, None] * freq / C_M_S
    img = np.real(np.einsum("tbf,tbfp->p", data, np.exp(-2j * np.pi * (
        u[..., None] * ll.ravel() + v[..., None] * mm.ravel()))))
    peak = np.unravel_index(np.argmax(img), ll.shape)
    assert ll[peak] == pytest.approx(np.radians(0.3), abs=0.0006)  # east is +l
    assert mm[peak] == pytest.approx(np.radians(-0.2), abs=0.0006)


def test_write_zarr_and_truth(tmp_path):
    from daskcal.data.zarr_store import open_zarr

    cfg = {**SMALL, "rfi": {"enabled": True}}
    path, truth_path = write_simulation(cfg, tmp_path / "sim.zarr")
    assert truth_path == tmp_path / "sim.truth.zarr"
    obs = open_zarr(path)
    truth = xr.open_datatree(truth_path, engine="zarr")
    expected_obs, expected_truth = simulate_observation(cfg)
    np.testing.assert_array_equal(_vis(obs)["VISIBILITY"].values,
                                  _vis(expected_obs)["VISIBILITY"].values)
    np.testing.assert_array_equal(truth["rfi"]["RFI_MASK"].values,
                                  expected_truth["rfi"]["RFI_MASK"].values)
    np.testing.assert_array_equal(truth["gains"]["GAIN"].values,
                                  expected_truth["gains"]["GAIN"].values)
    assert SkyModel.from_dataset(truth["sky"].to_dataset()).n_source == 4
    with pytest.raises(SimulationError, match="exists"):
        write_simulation(cfg, tmp_path / "sim.zarr")
    write_simulation(cfg, tmp_path / "sim.zarr", overwrite=True)


def test_write_ms(tmp_path):
    from casacore.tables import table

    path, truth_path = write_simulation({**SMALL, "array": "vla", "lofar": {}}, tmp_path / "sim.ms",
                                        fmt="ms")
    with table(str(path), ack=False) as t:
        assert t.nrows() == 5 * 351
        assert t.getcol("DATA").shape[1:] == (6, 4)
    assert truth_path.exists()
    with pytest.raises(SimulationError, match="fmt"):
        write_simulation(SMALL, tmp_path / "x.uvfits", fmt="uvfits")
