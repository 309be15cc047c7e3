"""open_observation dispatch, describe() and flagged_fraction()."""

from __future__ import annotations

import json
import sys
import types

import dask
import numpy as np
import pytest
import xarray as xr

from daskcal import DaskcalError
from daskcal.data import model
from daskcal.data.open import DataInputError, describe, flagged_fraction, open_observation
from daskcal.data.zarr_store import write_zarr

POLS = ("RR", "LL")


def partition(rng, *, n_time, n_ant, n_chan, t0, f0, field, scan, spw, ra_dec, dask_chunks=None,
              autocorrelations=True):
    a1, a2 = model.baseline_antenna_pairs(n_ant, autocorrelations)
    shape = (n_time, a1.size, n_chan, len(POLS))
    vis = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)
    flag = rng.random(shape) < 0.3
    if dask_chunks:
        import dask.array as da

        vis = da.from_array(vis, chunks=(dask_chunks, -1, -1, -1))
        flag = da.from_array(flag, chunks=(dask_chunks, -1, -1, -1))
    names = [f"EA{i:02d}" for i in range(n_ant)]
    xds = model.make_visibility_xds(
        time_s=t0 + 2.0 * np.arange(n_time), frequency_hz=f0 + 0.5e6 * np.arange(n_chan),
        polarization=list(POLS), antenna_names=names, antenna1=a1, antenna2=a2, visibility=vis,
        uvw_m=np.zeros((n_time, a1.size, 3)), integration_time_s=2.0, channel_width_hz=0.5e6,
        flag=flag, field_name=field, scan_name=scan, spectral_window_name=spw)
    ant = model.make_antenna_xds(names, np.ones((n_ant, 3)), 25.0, telescope_name="VLA")
    fld = model.make_field_and_source_xds([field], [ra_dec])
    return model.make_partition(xds, ant, fld)


@pytest.fixture
def obs():
    rng = np.random.default_rng(5)
    return model.make_observation({
        "cal_0": partition(rng, n_time=4, n_ant=3, n_chan=8, t0=1.6e9, f0=1.0e9, field="3C286",
                           scan="1", spw="L", ra_dec=(3.54, 0.53), dask_chunks=2),
        "tgt_1": partition(rng, n_time=5, n_ant=4, n_chan=4, t0=1.6e9 + 60, f0=1.5e9,
                           field="N5921", scan="2", spw="Lhi", ra_dec=(4.0, 0.09),
                           autocorrelations=False),
    })


@pytest.fixture
def fake_readers(monkeypatch):
    """Stand-ins for the MS, UVFITS and Miriad readers, recording their calls."""
    calls = []

    def make(module, func):
        mod = types.ModuleType(f"daskcal.data.{module}")

        def reader(path, **kwargs):
            calls.append((func, path, kwargs))
            return func

        setattr(mod, func, reader)
        monkeypatch.setitem(sys.modules, f"daskcal.data.{module}", mod)

    make("ms", "read_ms")
    make("uvfits", "read_uvfits")
    make("uvdata_import", "read_with_pyuvdata")
    return calls


# ------------------------------------------------------------------ dispatch


def test_missing_path(tmp_path):
    with pytest.raises(DataInputError) as info:
        open_observation(tmp_path / "nope.ms")
    assert str(info.value) == f"{tmp_path / 'nope.ms'}: no such file or directory"
    assert isinstance(info.value, DaskcalError)


@pytest.mark.parametrize("make", [
    lambda p: p.mkdir(),
    lambda p: p.write_text("hello"),
    lambda p: p.write_bytes(b"SIMPLE  =                    T" + b" " * 50 + b"END".ljust(80)),
])
def test_unrecognised_input(tmp_path, make):
    target = tmp_path / "thing.dat"
    make(target)
    with pytest.raises(DataInputError) as info:
        open_observation(target)
    assert str(info.value) == (f"{target}: not a Measurement Set, zarr store, UVFITS file or "
                               "Miriad data set")


def test_measurement_set_goes_to_read_ms(tmp_path, fake_readers):
    ms = tmp_path / "obs.ms"
    ms.mkdir()
    (ms / "table.dat").write_bytes(b"")
    assert open_observation(ms, chunks="time=10") == "read_ms"
    assert fake_readers == [("read_ms", ms, {"chunks": "time=10", "data_column": "DATA"})]


def test_data_column_only_for_measurement_sets(tmp_path, fake_readers):
    (tmp_path / "a.fits").write_bytes(b"")
    with pytest.raises(DataInputError, match="only a Measurement Set has a CORRECTED_DATA"):
        open_observation(tmp_path / "a.fits", data_column="CORRECTED_DATA")


def test_uvfits_by_suffix_or_groups_header(tmp_path, fake_readers):
    for name in ("a.fits", "b.UVFITS", "c.uvf"):
        (tmp_path / name).write_bytes(b"")
        assert open_observation(tmp_path / name) == "read_uvfits"
    cards = [b"SIMPLE  =                    T", b"BITPIX  =                  -32",
             b"NAXIS   =                    0", b"GROUPS  =                    T / random groups",
             b"END"]
    (tmp_path / "d.dat").write_bytes(b"".join(c.ljust(80) for c in cards).ljust(2880))
    assert open_observation(tmp_path / "d.dat") == "read_uvfits"
    assert [c[2] for c in fake_readers] == [{"chunks": "64MB"}] * 4


def test_miriad_goes_to_pyuvdata(tmp_path, fake_readers):
    mir = tmp_path / "atca"
    mir.mkdir()
    (mir / "visdata").write_bytes(b"")
    (mir / "vartable").write_text("")
    assert open_observation(mir) == "read_with_pyuvdata"
    assert fake_readers[0][1] == mir


def test_zarr_store_is_opened(tmp_path, obs):
    path = write_zarr(obs, tmp_path / "obs.zarr")
    for target in (path, path / "zarr.json", str(path)):
        opened = open_observation(target, chunks="time=1")
        assert model.partition_names(opened) == ["cal_0", "tgt_1"]
        assert opened["cal_0"]["VISIBILITY"].chunks[0] == (1, 1, 1, 1)


def test_missing_reader_module_is_a_clean_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "daskcal.data.uvfits", None)
    (tmp_path / "x.uvfits").write_bytes(b"")
    with pytest.raises(DataInputError, match=r"x.uvfits: its reader daskcal.data.uvfits"):
        open_observation(tmp_path / "x.uvfits")


# ------------------------------------------------------------------ describe


def _raise(*args, **kwargs):
    raise AssertionError("a dask computation ran")


def test_describe_is_instant_and_complete(obs):
    with dask.config.set(scheduler=_raise):
        info = describe(obs)
    json.dumps(info)   # serialisable as is
    assert info["partitions"] == ["cal_0", "tgt_1"]
    t = info["time"]
    assert t["start_unix_s"] == 1.6e9 - 1.0 and t["end_unix_s"] == 1.6e9 + 60 + 8 + 1.0
    assert t["duration_s"] == 70.0 and t["integration_s"] == 2.0 and t["n_time"] == 9
    assert t["start"] == "2020-09-13T12:26:39.000+00:00"
    f = info["frequency"]
    assert f["min_hz"] == 1.0e9 and f["max_hz"] == 1.5e9 + 1.5e6 and f["n_chan"] == 12
    assert f["channel_width_hz"] == [0.5e6]
    assert [s["name"] for s in f["spectral_windows"]] == ["L", "Lhi"]
    assert info["antennas"] == {"count": 4, "names": ["EA00", "EA01", "EA02", "EA03"]}
    assert info["baselines"] == {"count": 9, "autocorrelations": True}   # 6 + 6, 3 shared
    assert info["fields"] == [{"name": "3C286", "ra_rad": 3.54, "dec_rad": 0.53},
                              {"name": "N5921", "ra_rad": 4.0, "dec_rad": 0.09}]
    assert info["scans"] == ["1", "2"] and info["polarizations"] == ["RR", "LL"]
    assert info["flagged_fraction"] is None
    n_cal, n_tgt = 4 * 6 * 8 * 2, 5 * 6 * 4 * 2
    per_sample = 8 + 1 + 4   # VISIBILITY, FLAG, WEIGHT
    uvw_etc = (4 * 6 + 5 * 6) * (3 * 8 + 8 + 8)   # UVW, EFFECTIVE_INTEGRATION_TIME, TIME_CENTROID
    assert info["data_bytes"] == (n_cal + n_tgt) * per_sample + uvw_etc


def test_flagged_fraction_is_one_compute(obs):
    calls = []

    def counting(dsk, keys, **kwargs):
        calls.append(len(keys) if isinstance(keys, list) else 1)
        return dask.get(dsk, keys, **kwargs)

    expected = ((obs["cal_0"]["FLAG"].values.sum() + obs["tgt_1"]["FLAG"].values.sum())
                / (obs["cal_0"]["FLAG"].size + obs["tgt_1"]["FLAG"].size))
    with dask.config.set(scheduler=counting):
        got = flagged_fraction(obs)
        info = describe(obs, flagged=True)
    assert got == pytest.approx(expected, abs=0) and info["flagged_fraction"] == got
    assert len(calls) == 2   # one per call above, covering both partitions


def test_describe_of_opened_store_needs_no_compute(tmp_path, obs):
    from daskcal.data.zarr_store import open_zarr

    path = write_zarr(obs, tmp_path / "o.zarr")
    with dask.config.set(scheduler=_raise):
        info = describe(open_zarr(path))
    assert info == describe(obs)


def test_describe_without_integration_attr_uses_time_steps(obs):
    vis = obs["tgt_1"].to_dataset(inherit=False)
    attrs = {k: v for k, v in vis["time"].attrs.items() if k != "integration_time"}
    vis = vis.assign_coords(time=xr.Variable("time", vis["time"].values, attrs))
    part = model.make_partition(vis, model.antenna_xds_of(obs["tgt_1"]),
                                model.field_xds_of(obs["tgt_1"]))
    info = describe(model.make_observation({"only": part}))
    assert info["time"]["integration_s"] == 2.0


# ------------------------------------------------------------------ real data, every format


@pytest.mark.realdata
@pytest.mark.filterwarnings("ignore:::pyuvdata")   # pyuvdata's remarks about the ATCA file
@pytest.mark.parametrize(("name", "n_ant", "pols"), [
    ("vla_day2_ms", 18, ["RR", "RL", "LR", "LL"]),          # Measurement Set
    ("ngc5921_uvfits", 28, ["RR", "LL"]),                   # UVFITS
    ("atca_miriad", 6, ["XX", "XY", "YX", "YY"]),           # Miriad
])
def test_every_format_opens_and_round_trips_through_zarr(realdata, tmp_path, name, n_ant, pols):
    from daskcal.data.schema import check_observation
    from daskcal.data.zarr_store import open_zarr

    obs = open_observation(realdata(name), chunks="time=8")
    assert check_observation(obs) == []
    info = describe(obs)
    assert info["antennas"]["count"] == n_ant and info["polarizations"] == pols
    back = open_zarr(write_zarr(obs, tmp_path / f"{name}.zarr"))
    assert describe(back) == info
    for group in obs.groups:
        x = obs[group].to_dataset(inherit=False).compute()
        y = back[group].to_dataset(inherit=False).compute()
        with np.errstate(invalid="ignore"):
            xr.testing.assert_identical(x, y)
        for var, data in x.variables.items():
            if data.dtype.kind in "biufc":
                assert data.values.tobytes() == y[var].values.tobytes(), f"{group}/{var}"
