"""Interoperability with xradio: its processing sets open as daskcal observations, and back.

The real VLA MS ``day2_TDEM0003`` (18 antennas, 153 baselines, 15 times, 64 channels, 4
correlations, 1360 of 2295 (time, baseline) cells present) is converted with xradio's own
converter; the values are checked against plain casacore reads of the MS.
"""

from __future__ import annotations

import warnings

import dask
import numpy as np
import pytest
import xarray as xr

from daskcal.data import model
from daskcal.data.open import describe
from daskcal.data.schema import check_observation
from daskcal.data.zarr_store import open_zarr, write_zarr

pytestmark = pytest.mark.realdata

MS_NAME = "vla_day2_ms"


@pytest.fixture(scope="module")
def xradio_ms():
    """``xradio.measurement_set``, imported with the python-casacore backend."""
    with pytest.MonkeyPatch.context() as mp:
        # xradio picks its casacore backend at import time (arcae is not installed)
        mp.setenv("XRADIO_CASACORE_BACKEND", "casacore")
        pytest.importorskip("toolviper")
        import xradio.measurement_set as xms

        yield xms


@pytest.fixture(scope="module")
def vla_ms(realdata_cache, tmp_path_factory):
    """A private copy of the VLA MS (casacore may touch lock files)."""
    from daskcal.testing.realdata import copy_dataset

    return copy_dataset(MS_NAME, tmp_path_factory.mktemp("ms"), realdata_cache)


@pytest.fixture(scope="module")
def vla_ps(xradio_ms, vla_ms, tmp_path_factory):
    out = tmp_path_factory.mktemp("xradio") / "vla_day2.ps.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # xradio's own deprecation warnings (pandas, zarr)
        xradio_ms.convert_msv2_to_processing_set(str(vla_ms), str(out))
    return out


def _raise(*args, **kwargs):
    raise AssertionError("a dask computation ran")


def _ms_rows(ms):
    from casacore.tables import table

    with table(str(ms), ack=False) as t:
        cols = {c: t.getcol(c) for c in ("TIME", "ANTENNA1", "ANTENNA2", "DATA", "FLAG",
                                         "FLAG_ROW", "WEIGHT_SPECTRUM", "UVW", "TIME_CENTROID")}
    with table(str(ms / "ANTENNA"), ack=False) as t:
        cols["NAME"], cols["STATION"] = t.getcol("NAME"), t.getcol("STATION")
    return cols


def _cell_of_rows(xds, ant_xds, rows, names_of_ms_antenna):
    """(time index, baseline index) of each MS row in a partition."""
    t_unix = model.ms_time_to_unix(rows["TIME"])
    it = np.searchsorted(xds["time"].values, t_unix)
    np.testing.assert_allclose(xds["time"].values[it], t_unix, rtol=0, atol=1e-6)
    a1, a2 = model.antenna_indices(xds, ant_xds)
    ant_names = ant_xds["antenna_name"].values
    key = {(str(ant_names[i]), str(ant_names[j])): b for b, (i, j) in enumerate(zip(a1, a2, strict=True))}
    ib = np.array([key[(names_of_ms_antenna[i], names_of_ms_antenna[j])]
                   for i, j in zip(rows["ANTENNA1"], rows["ANTENNA2"], strict=True)])
    return it, ib


def test_processing_set_opens_as_a_valid_observation(vla_ps):
    with dask.config.set(scheduler=_raise):
        obs = open_zarr(vla_ps)
        info = describe(obs)
    assert check_observation(obs) == []
    (name,) = model.partition_names(obs)
    xds = obs[name].to_dataset(inherit=False)
    assert "antenna1" not in xds.coords   # xradio stores names only
    assert xds.sizes == {"time": 15, "baseline_id": 153, "frequency": 64, "polarization": 4,
                         "uvw_label": 3}
    assert info["antennas"]["count"] == 18 and info["baselines"] == {"count": 153,
                                                                     "autocorrelations": False}
    assert info["polarizations"] == ["RR", "RL", "LR", "LL"] and info["time"]["n_time"] == 15
    assert info["fields"][0]["name"].startswith("J1008+0730")


def test_values_equal_casacore_getcol(vla_ps, vla_ms):
    obs = open_zarr(vla_ps, chunks="time=4")
    (name,) = model.partition_names(obs)
    xds = obs[name].to_dataset(inherit=False)
    ant = model.antenna_xds_of(obs[name])
    rows = _ms_rows(vla_ms)
    xradio_names = [f"{n}_{s}" for n, s in zip(rows["NAME"], rows["STATION"], strict=True)]
    it, ib = _cell_of_rows(xds, ant, rows, xradio_names)
    assert len(set(zip(it.tolist(), ib.tolist(), strict=True))) == len(it) == 1360

    vis, flag = xds["VISIBILITY"].values, xds["FLAG"].values
    weight, uvw = xds["WEIGHT"].values, xds["UVW"].values
    rng = np.random.default_rng(42)
    for r in rng.choice(len(it), 40, replace=False):
        t, b = it[r], ib[r]
        np.testing.assert_array_equal(vis[t, b], rows["DATA"][r])
        np.testing.assert_array_equal(flag[t, b], rows["FLAG"][r] | rows["FLAG_ROW"][r])
        np.testing.assert_array_equal(weight[t, b], rows["WEIGHT_SPECTRUM"][r])
        np.testing.assert_array_equal(uvw[t, b], rows["UVW"][r])
    # every (time, baseline) cell the MS does not have is present and flagged, with zero weight
    missing = np.ones(flag.shape[:2], bool)
    missing[it, ib] = False
    assert missing.sum() == 15 * 153 - 1360 and flag[missing].all() and (weight[missing] == 0).all()
    assert weight.dtype == np.float32
    # xradio itself writes them as NaN but unflagged
    raw = xr.open_datatree(vla_ps, engine="zarr")[name]
    assert np.isnan(raw["VISIBILITY"].values[missing]).all() and not raw["FLAG"].values[missing].any()
    assert not flag[~missing].all(axis=(1, 2)).all()


def test_equal_to_read_ms(vla_ps, vla_ms):
    ms_mod = pytest.importorskip("daskcal.data.ms")
    ours = ms_mod.read_ms(vla_ms, chunks="time=5")
    theirs = open_zarr(vla_ps)
    (p_ours,) = model.partition_names(ours)
    (p_theirs,) = model.partition_names(theirs)
    a, b = ours[p_ours].to_dataset(inherit=False), theirs[p_theirs].to_dataset(inherit=False)
    np.testing.assert_array_equal(a["time"].values, b["time"].values)
    np.testing.assert_array_equal(a["frequency"].values, b["frequency"].values)
    np.testing.assert_array_equal(a["polarization"].values, b["polarization"].values)

    def station_pairs(node, xds):   # names differ (xradio: NAME_STATION); stations do not
        ant = model.antenna_xds_of(node)
        station = dict(zip(map(str, ant["antenna_name"].values),
                           map(str, ant["station_name"].values), strict=True))
        return [(station[str(x)], station[str(y)]) for x, y in
                zip(xds["baseline_antenna1_name"].values, xds["baseline_antenna2_name"].values,
                    strict=True)]

    pairs_a = station_pairs(ours[p_ours], a)
    index_b = {p: i for i, p in enumerate(station_pairs(theirs[p_theirs], b))}
    assert set(pairs_a) == set(index_b)
    order = np.array([index_b[p] for p in pairs_a])
    b = b.isel(baseline_id=order)
    flag_a, flag_b = a["FLAG"].values, b["FLAG"].values
    np.testing.assert_array_equal(flag_a, flag_b)
    present = ~flag_a.all(axis=(2, 3))          # cells that exist in the MS
    for name in ("VISIBILITY", "WEIGHT"):
        np.testing.assert_array_equal(a[name].values[present], b[name].values[present])
    np.testing.assert_array_equal(a["UVW"].values[present], b["UVW"].values[present])


def test_processing_set_round_trips_through_write_zarr(vla_ps, tmp_path, xradio_ms):
    from xradio.schema.check import check_datatree

    theirs = open_zarr(vla_ps)
    path = write_zarr(theirs, tmp_path / "rewritten.zarr")
    back = open_zarr(path)
    for group in theirs.groups:
        x = theirs[group].to_dataset(inherit=False).compute()
        y = back[group].to_dataset(inherit=False).compute()
        with np.errstate(invalid="ignore"):
            xr.testing.assert_identical(x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # xradio's own deprecations are not ours to judge
        assert str(check_datatree(xr.open_datatree(path, engine="zarr", chunks={}))) == \
            "No schema issues found"


def _random_observation(rng, n_part=2):
    parts = {}
    for k in range(n_part):
        names = [f"ANT{i}" for i in range(5)]
        a1, a2 = model.baseline_antenna_pairs(5)
        shape = (4, a1.size, 6, 2)
        vis = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)
        xds = model.make_visibility_xds(
            time_s=1.7e9 + 100 * k + 8.0 * np.arange(4), frequency_hz=1.2e9 + 2e6 * np.arange(6),
            polarization=["XX", "YY"], antenna_names=names, antenna1=a1, antenna2=a2,
            visibility=vis, uvw_m=rng.standard_normal((4, a1.size, 3)), integration_time_s=8.0,
            channel_width_hz=2e6, flag=rng.random(shape) < 0.1, field_name="TARGET",
            scan_name=str(k + 1), spectral_window_name=f"spw_{k}")
        ant = model.make_antenna_xds(names, rng.standard_normal((5, 3)) * 6e6, 13.5,
                                     telescope_name="MeerKAT")
        fld = model.make_field_and_source_xds(["TARGET"], [[1.2, -0.6]])
        parts[f"obs_{k}"] = model.make_partition(xds, ant, fld)
    return model.make_observation(parts)


def test_xradio_reads_our_store(tmp_path, xradio_ms):
    """xradio opens a daskcal store; ``open_processing_set`` itself needs s3fs (not installed)."""
    from xradio.schema.check import check_datatree

    obs = _random_observation(np.random.default_rng(1))
    path = write_zarr(obs, tmp_path / "ours.ps.zarr")
    tree = xr.open_datatree(path, engine="zarr", chunks={})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        summary = tree.xr_ps.summary()
        issues = check_datatree(tree)
    assert str(issues) == "No schema issues found"
    assert sorted(summary["name"]) == ["obs_0", "obs_1"]
    assert [tuple(s) for s in summary.sort_values("name")["shape"]] == [(4, 15, 6, 2)] * 2
    assert sorted(summary["spw_name"]) == ["spw_0", "spw_1"]
    fld = tree["obs_1"].xr_ms.get_field_and_source_xds()
    np.testing.assert_array_equal(fld["FIELD_PHASE_CENTER_DIRECTION"].values, [[1.2, -0.6]])
    np.testing.assert_array_equal(tree["obs_0"]["VISIBILITY"].values,
                                  obs["obs_0"]["VISIBILITY"].values)
