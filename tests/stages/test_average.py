"""The average stage against a slow numpy reference, laziness and chunking invariance."""

from __future__ import annotations

import dask
import numpy as np
import pytest
import xarray as xr

from daskcal.data.model import baseline_antenna_pairs, make_visibility_xds
from daskcal.stages.average import AverageConfig, AveragingError, average


def _raise_on_compute(*args, **kwargs):
    raise AssertionError("the graph was computed while it was being built")


def _random_xds(n_time=10, n_ant=4, n_chan=8, n_pol=2, seed=0, flag_frac=0.3):
    rng = np.random.default_rng(seed)
    a1, a2 = baseline_antenna_pairs(n_ant)
    n_bl = a1.size
    shape = (n_time, n_bl, n_chan, n_pol)
    vis = (rng.normal(size=shape) + 1j * rng.normal(size=shape)).astype(np.complex64)
    flag = rng.random(shape) < flag_frac
    # some whole output bins fully flagged
    flag[0:3, 1, 0:2, :] = True
    weight = rng.uniform(0.5, 2.0, shape).astype(np.float32)
    t = 1.7e9 + 10.0 * np.arange(n_time)
    uvw = rng.normal(scale=1000.0, size=(n_time, n_bl, 3))
    return make_visibility_xds(
        time_s=t, frequency_hz=1.2e8 + 1e5 * np.arange(n_chan), polarization=["XX", "YY"][:n_pol],
        antenna_names=[f"A{i}" for i in range(n_ant)], antenna1=a1, antenna2=a2,
        visibility=vis, flag=flag, weight=weight, uvw_m=uvw, integration_time_s=10.0,
        channel_width_hz=1e5,
        effective_integration_time_s=rng.uniform(9, 10, (n_time, n_bl)),
        time_centroid_s=t[:, None] + rng.uniform(-1, 1, (n_time, n_bl)),
    )


def _reference(xds, ft, fc):
    """Slow, obviously correct: loop over output bins with numpy."""
    vis = xds.VISIBILITY.values.astype(np.complex128)
    flag = xds.FLAG.values
    w = xds.WEIGHT.values.astype(np.float64)
    n_t, n_bl, n_c, n_p = vis.shape
    n_to, n_co = -(-n_t // ft), n_c // fc
    ov = np.zeros((n_to, n_bl, n_co, n_p), complex)
    of = np.zeros(ov.shape, bool)
    ow = np.zeros(ov.shape)
    ouvw = np.zeros((n_to, n_bl, 3))
    oeit = np.zeros((n_to, n_bl))
    for to in range(n_to):
        ts = slice(to * ft, min((to + 1) * ft, n_t))
        for b in range(n_bl):
            rows_w = np.where(flag[ts, b], 0.0, w[ts, b]).sum(axis=(1, 2))
            uvw = xds.UVW.values[ts, b]
            use = rows_w > 0
            ouvw[to, b] = (rows_w[use, None] * uvw[use]).sum(0) / rows_w.sum() if use.any() \
                else np.nanmean(uvw, axis=0)
            used = ~flag[ts, b].all(axis=(1, 2))
            oeit[to, b] = xds.EFFECTIVE_INTEGRATION_TIME.values[ts, b][used].sum()
            for co in range(n_co):
                cs = slice(co * fc, (co + 1) * fc)
                for p in range(n_p):
                    v, f, ww = vis[ts, b, cs, p], flag[ts, b, cs, p], w[ts, b, cs, p]
                    good = ~f
                    if good.any():
                        ov[to, b, co, p] = (ww[good] * v[good]).sum() / ww[good].sum()
                        ow[to, b, co, p] = ww[good].sum()
                    else:
                        of[to, b, co, p] = True
                        ov[to, b, co, p] = (ww * v).sum() / ww.sum()
                        ow[to, b, co, p] = ww.sum()
    return ov, of, ow, ouvw, oeit


@pytest.mark.parametrize("ft,fc", [(3, 2), (1, 4), (4, 1), (10, 8)])
def test_average_equals_numpy_reference(ft, fc):
    xds = _random_xds()
    out = average(xds.chunk({"time": 4, "frequency": 4}), AverageConfig(time_factor=ft, freq_factor=fc))
    ov, of, ow, ouvw, oeit = _reference(xds, ft, fc)
    np.testing.assert_allclose(out.VISIBILITY.values, ov, rtol=2e-6, atol=1e-6)
    np.testing.assert_array_equal(out.FLAG.values, of)
    np.testing.assert_allclose(out.WEIGHT.values, ow, rtol=1e-6)
    np.testing.assert_allclose(out.UVW.values, ouvw, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(out.EFFECTIVE_INTEGRATION_TIME.values, oeit, rtol=1e-12)
    n_to = -(-xds.sizes["time"] // ft)
    assert out.sizes["time"] == n_to
    assert out.sizes["frequency"] == xds.sizes["frequency"] // fc
    # coordinates: bin means; widths scaled
    t = xds.time.values
    np.testing.assert_allclose(out.time.values, [t[i * ft:(i + 1) * ft].mean() for i in range(n_to)])
    np.testing.assert_allclose(out.frequency.values,
                               xds.frequency.values.reshape(-1, fc).mean(axis=1))
    assert out.time.attrs["integration_time"]["data"] == pytest.approx(10.0 * ft)
    assert out.frequency.attrs["channel_width"]["data"] == pytest.approx(1e5 * fc)


def test_constant_data_stays_constant():
    xds = _random_xds(flag_frac=0.5)
    xds["VISIBILITY"] = xds.VISIBILITY.copy(data=np.full(xds.VISIBILITY.shape, 3 - 4j, np.complex64))
    out = average(xds, AverageConfig(time_factor=3, freq_factor=4))
    np.testing.assert_allclose(out.VISIBILITY.values, 3 - 4j, rtol=1e-6)


def test_chunked_equals_unchunked():
    xds = _random_xds(n_time=17, n_chan=12, seed=5)
    cfg = AverageConfig(time_factor=3, freq_factor=3)
    whole = average(xds, cfg).compute()
    chunked = average(xds.chunk({"time": 5, "frequency": 5}), cfg).compute()
    for name in ("VISIBILITY", "FLAG", "WEIGHT", "UVW", "TIME_CENTROID",
                 "EFFECTIVE_INTEGRATION_TIME"):
        np.testing.assert_array_equal(whole[name].values, chunked[name].values, err_msg=name)


def test_graph_building_does_not_compute():
    xds = _random_xds().chunk({"time": 4})
    with dask.config.set(scheduler=_raise_on_compute):
        out = average(xds, AverageConfig(time_factor=2, freq_factor=2))
    assert isinstance(out.VISIBILITY.data, dask.array.Array)
    out.compute()


def test_resolution_targets_become_factors():
    xds = _random_xds()
    out = average(xds, AverageConfig(time_interval_s=25.0, freq_resolution_hz=4.5e5))
    assert out.sizes["time"] == 5  # factor 2 from 25 s / 10 s
    assert out.sizes["frequency"] == 2  # factor 4 from 450 kHz / 100 kHz


def test_missing_rows_with_nan_metadata_do_not_poison_bins():
    xds = _random_xds()
    flag = xds.FLAG.values.copy()
    uvw = xds.UVW.values.copy()
    eit = xds.EFFECTIVE_INTEGRATION_TIME.values.copy()
    # a missing row (as read_ms gives it): flagged, zero weight, NaN UVW and exposure
    flag[4, 2] = True
    uvw[4, 2] = np.nan
    eit[4, 2] = np.nan
    xds["FLAG"] = xds.FLAG.copy(data=flag)
    xds["UVW"] = xds.UVW.copy(data=uvw)
    xds["EFFECTIVE_INTEGRATION_TIME"] = xds.EFFECTIVE_INTEGRATION_TIME.copy(data=eit)
    out = average(xds, AverageConfig(time_factor=3))
    assert np.isfinite(out.UVW.values[1, 2]).all()
    assert np.isfinite(out.EFFECTIVE_INTEGRATION_TIME.values[1, 2])
    _, _, _, ouvw, oeit = _reference(xds, 3, 1)
    np.testing.assert_allclose(out.UVW.values[1, 2], ouvw[1, 2])


def test_all_data_groups_averaged():
    from daskcal.data.model import add_data_group

    xds = _random_xds()
    xds = add_data_group(xds, "corrected", "VISIBILITY_CORRECTED", data=xds.VISIBILITY.data * 2)
    out = average(xds, AverageConfig(time_factor=2, freq_factor=2))
    np.testing.assert_allclose(out.VISIBILITY_CORRECTED.values, 2 * out.VISIBILITY.values,
                               rtol=1e-6)
    assert "corrected" in out.attrs["data_groups"]


def test_non_dividing_channel_factor_refused():
    with pytest.raises(AveragingError, match="does not divide the 8 channels"):
        average(_random_xds(), AverageConfig(freq_factor=3))


def test_config_validation():
    with pytest.raises(ValueError):
        AverageConfig(time_factor=0)
    with pytest.raises(ValueError):
        AverageConfig(time_factor=2, time_interval_s=10.0)
    schema = AverageConfig.model_json_schema()
    assert "time_factor" in schema["properties"]


def test_no_averaging_returns_input():
    xds = _random_xds()
    assert average(xds, AverageConfig()) is xds


def test_output_passes_schema():
    from daskcal.data.schema import check_visibility_xds

    out = average(_random_xds(), AverageConfig(time_factor=3, freq_factor=2))
    assert check_visibility_xds(out) == []
    assert isinstance(out, xr.Dataset)
