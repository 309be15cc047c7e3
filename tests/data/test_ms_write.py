"""write_ms: bit-exact round trips, complete new MSs, column writes into existing MSs, errors."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys

import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr
from casacore.tables import table, taql

from daskcal import DaskcalError
from daskcal.data import model
from daskcal.data import ms_write as msw
from daskcal.data.ms import MeasurementSetError, read_ms
from daskcal.data.ms_write import write_ms
from daskcal.data.schema import check_observation
from daskcal.testing.factories import random_observation as make_obs

POLS = ("XX", "XY", "YX", "YY")
VLA_CENTRE = np.array([-1601185.4, -5041977.5, 3554875.9])
SUBTABLES = ("ANTENNA", "DATA_DESCRIPTION", "FEED", "FIELD", "FLAG_CMD", "HISTORY", "OBSERVATION",
             "POINTING", "POLARIZATION", "PROCESSOR", "SPECTRAL_WINDOW", "STATE", "SOURCE")


def _vis(node):
    return node.to_dataset(inherit=False)


def assert_observations_identical(a, b):
    """Values, flags, weights, uvw, times, frequencies and metadata equal bit for bit."""
    names_a, names_b = model.partition_names(a), model.partition_names(b)
    assert len(names_a) == len(names_b)
    for na, nb in zip(names_a, names_b, strict=True):
        xa, xb = _vis(a[na]), _vis(b[nb])
        for var in ("VISIBILITY", "FLAG", "WEIGHT", "UVW", "EFFECTIVE_INTEGRATION_TIME",
                    "TIME_CENTROID"):
            assert xa[var].dtype == xb[var].dtype, var
            np.testing.assert_array_equal(xa[var].values, xb[var].values, err_msg=var)
        for coord in ("time", "frequency", "polarization", "baseline_antenna1_name",
                      "baseline_antenna2_name", "antenna1", "antenna2", "field_name",
                      "scan_name"):
            np.testing.assert_array_equal(xa[coord].values, xb[coord].values, err_msg=coord)
            assert xa[coord].attrs == xb[coord].attrs, coord
        for key in ("observation_info", "processor_info"):
            assert xa.attrs[key] == xb.attrs[key]
        assert xa.UVW.attrs == xb.UVW.attrs
        for child in ("antenna_xds", "field_and_source_base_xds"):
            xr.testing.assert_identical(_vis(a[na][child]), _vis(b[nb][child]))


@pytest.fixture(scope="module")
def two_by_two(tmp_path_factory):
    obs = make_obs(1, fields=("F0", "F1"), spws=((1.4e9, 6), (1.6e9, 4)))
    return write_ms(obs, tmp_path_factory.mktemp("ms") / "two.ms"), obs


def test_round_trip_is_bit_exact(two_by_two, tmp_path):
    path, _ = two_by_two
    # missing rows and FLAG_ROW make the round trip carry NaN UVW and flagged cells
    src = tmp_path / "src.ms"
    with table(str(path), ack=False) as t:
        sel = t.selectrows(np.setdiff1d(np.arange(t.nrows()), [3, 4, 40, 41, 42]))
        sel.copy(str(src), deep=True).close()
        sel.close()
    with table(str(src), readonly=False, ack=False) as t:
        fr = t.getcol("FLAG_ROW")
        fr[[5, 9]] = True
        t.putcol("FLAG_ROW", fr)
    first = read_ms(src, chunks={"time": 2, "frequency": 4})
    out = write_ms(first, tmp_path / "copy.ms")
    assert out == tmp_path / "copy.ms"
    second = read_ms(out, chunks={"time": 3})
    assert check_observation(second) == []
    assert _vis(second[model.partition_names(second)[0]]).FLAG.values.all(axis=(2, 3)).sum() >= 4
    assert_observations_identical(first, second)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.ms", "src.ms"]


def test_new_ms_from_synthetic_observation(tmp_path):
    src = make_obs(3, n_time=4, chunks=(3, 2))
    out = write_ms(src, tmp_path / "syn.ms")
    x, want = _vis(read_ms(out)["syn_0"]), _vis(src["obs_0"])
    for var in ("VISIBILITY", "FLAG", "WEIGHT", "UVW"):
        np.testing.assert_array_equal(x[var].values, want[var].values, err_msg=var)
    np.testing.assert_allclose(x.time.values, want.time.values, rtol=0, atol=1e-6)
    with table(str(out), ack=False) as t:
        assert t.nrows() == 4 * 10
        np.testing.assert_array_equal(t.getcol("FLAG_ROW"), want.FLAG.values.all(axis=(2, 3)).ravel())
        np.testing.assert_allclose(t.getcol("WEIGHT"), want.WEIGHT.values.mean(axis=2).reshape(40, 4),
                                   rtol=1e-6)
        assert set(t.getcol("INTERVAL")) == {10.0}


def test_new_ms_is_complete(two_by_two):
    path, _ = two_by_two
    with table(str(path), ack=False) as t:
        keywords = t.getkeywords()
        assert all(s in keywords for s in SUBTABLES)
        assert t.getcolkeywords("UVW")["MEASINFO"] == {"type": "uvw", "Ref": "J2000"}
        assert t.getcolkeywords("TIME")["MEASINFO"]["Ref"] == "UTC"
        for col in ("DATA", "FLAG", "WEIGHT_SPECTRUM"):
            assert t.getdminfo(col)["TYPE"] == "TiledShapeStMan"
        assert set(t.getcol("FIELD_ID")) == {0, 1} and set(t.getcol("DATA_DESC_ID")) == {0, 1}
        # derived MS columns need consistent ANTENNA/FIELD/OBSERVATION tables and measures
        res = taql("select mscal.ha1() as ha, mscal.pa1() as pa, mscal.azel1() as azel, "
                   "mscal.uvwj2000() as uvw, mscal.last() as lst from $1", tables=[t])
        for col in ("ha", "pa", "azel", "uvw", "lst"):
            assert np.isfinite(res.getcol(col)).all(), col
        res.close()
        # baselines computed from ANTENNA positions have the right length
        uvw = taql("select mscal.uvwj2000() as uvw, ANTENNA1, ANTENNA2 from $1", tables=[t])
        pos = table(str(path / "ANTENNA"), ack=False).getcol("POSITION")
        lengths = np.linalg.norm(pos[uvw.getcol("ANTENNA2")] - pos[uvw.getcol("ANTENNA1")], axis=1)
        np.testing.assert_allclose(np.linalg.norm(uvw.getcol("uvw"), axis=1), lengths, atol=1e-3)
        uvw.close()
    for sub, n in (("FIELD", 2), ("SPECTRAL_WINDOW", 2), ("DATA_DESCRIPTION", 2), ("ANTENNA", 4),
                   ("FEED", 4), ("POLARIZATION", 1), ("OBSERVATION", 1), ("SOURCE", 2)):
        with table(str(path / sub), ack=False) as t:
            assert t.nrows() == n, sub
    with table(str(path / "FIELD"), ack=False) as t:
        assert t.getcolkeywords("PHASE_DIR")["MEASINFO"]["Ref"] == "J2000"
        assert list(t.getcol("NAME")) == ["F0", "F1"]
    with table(str(path / "SPECTRAL_WINDOW"), ack=False) as t:
        assert list(t.getcol("NUM_CHAN")) == [6, 4]
    with table(str(path / "POLARIZATION"), ack=False) as t:
        assert list(t.getcell("CORR_TYPE", 0)) == [9, 10, 11, 12]
        np.testing.assert_array_equal(t.getcell("CORR_PRODUCT", 0), [[0, 0], [0, 1], [1, 0], [1, 1]])


def test_small_write_blocks(monkeypatch, tmp_path):
    """Row blocks hold whole channels and at most WRITE_CHUNK_BYTES; results do not change."""
    src = make_obs(4, n_time=6, chunks=(4, 3))
    monkeypatch.setattr(msw, "WRITE_CHUNK_BYTES", 6 * 4 * 13 * 7)  # 7 rows per block
    part = msw._partitions(src, "x")[0]
    token = msw._write_new_rows(part, tmp_path / "unused", 0,
                                msw._layout([part], "x", "base")[1][0],
                                {"DATA": "VISIBILITY"}, "base", "x")
    assert token.numblocks == (sum(-(-c // 7) for c in (40, 20)),)
    out = write_ms(src, tmp_path / "blocks.ms")
    x = _vis(read_ms(out)["blocks_0"])
    np.testing.assert_array_equal(x.VISIBILITY.values, _vis(src["obs_0"]).VISIBILITY.values)


def test_write_corrected_data_into_existing_ms(two_by_two, tmp_path, monkeypatch):
    path, _ = two_by_two
    monkeypatch.setattr(msw, "WRITE_CHUNK_BYTES", 4 * 4 * 13 * 7)  # blocks of 7 rows
    ms = tmp_path / "existing.ms"
    shutil.copytree(path, ms)
    obs = read_ms(ms, chunks={"time": 2, "frequency": 2})
    name = model.partition_names(obs)[1]
    node = obs[name]
    x = _vis(node)
    corrected = x.VISIBILITY * np.complex64(2 - 1j)
    written = write_ms(node.assign(VISIBILITY=corrected), ms, column="CORRECTED_DATA")
    assert written == ms
    info = x.attrs["partition_info"]
    with table(str(ms), ack=False) as t:
        t.lock(write=False)
        assert t.getdminfo("CORRECTED_DATA")["TYPE"] == "TiledShapeStMan"
        rows = np.flatnonzero((t.getcol("FIELD_ID") == info["field_id"])
                              & (t.getcol("DATA_DESC_ID") == info["data_desc_id"]))
        want = corrected.values
        times = model.unix_to_ms_time(x.time.values)
        for r in rows:
            ti = int(np.flatnonzero(times == t.getcell("TIME", r))[0])
            bi = int(np.flatnonzero((x.antenna1.values == t.getcell("ANTENNA1", r))
                                    & (x.antenna2.values == t.getcell("ANTENNA2", r)))[0])
            np.testing.assert_array_equal(t.getcell("CORRECTED_DATA", r), want[ti, bi])
        # rows of the other partitions (another shape) are defined and zero
        other = np.setdiff1d(np.arange(t.nrows()), rows)
        assert all(not t.getcell("CORRECTED_DATA", r).any() for r in other[::7])
        t.unlock()
    back = read_ms(ms)
    np.testing.assert_array_equal(_vis(back[model.partition_names(back)[1]]).VISIBILITY_CORRECTED,
                                  corrected.values)


def test_write_flags_into_existing_ms(two_by_two, tmp_path):
    path, _ = two_by_two
    ms = tmp_path / "flags.ms"
    shutil.copytree(path, ms)
    obs = read_ms(ms)
    with table(str(ms), readonly=False, ack=False) as t:
        t.lock()
        t.putcol("FLAG_ROW", np.ones(t.nrows(), bool))
        t.unlock()
    new = obs.copy()
    for name in model.partition_names(obs):
        x = _vis(obs[name])
        flag = np.zeros(x.FLAG.shape, bool)
        flag[:, 0] = True
        new[name] = obs[name].assign(FLAG=x.FLAG.copy(data=flag))
    write_ms(new, ms, column="FLAG")
    with table(str(ms), ack=False) as t:
        t.lock(write=False)
        assert t.getcol("FLAG_ROW").sum() == 2 * 5 * 2  # baseline 0 of each partition
        t.unlock()
    back = read_ms(ms)
    for name in model.partition_names(back):
        fl = _vis(back[name]).FLAG.values
        assert fl[:, 0].all() and not fl[:, 1:].any()


@pytest.mark.realdata
def test_vla_round_trip_and_corrected_data(realdata_copy, tmp_path):
    ms = realdata_copy("vla_day2_ms")
    first = read_ms(ms, chunks={"time": 4, "frequency": 16})
    out = write_ms(first, tmp_path / "vla.ms")
    assert_observations_identical(first, read_ms(out))
    name = model.partition_names(first)[0]
    x = _vis(first[name])
    write_ms(first[name].assign(VISIBILITY=x.VISIBILITY * 3), ms, column="CORRECTED_DATA")
    with table(str(ms), ack=False) as t:
        t.lock(write=False)
        rows = np.random.default_rng(7).choice(t.nrows(), 50, replace=False)
        for r in rows:
            np.testing.assert_array_equal(t.getcell("CORRECTED_DATA", r), 3 * t.getcell("DATA", r))
        t.unlock()


def test_overwrite_and_atomicity(tmp_path):
    src = make_obs(5, n_time=2)
    blocker = tmp_path / "taken"
    blocker.mkdir()
    (blocker / "keep.txt").write_text("x")
    with pytest.raises(MeasurementSetError, match="taken: exists and is not a Measurement Set"):
        write_ms(src, blocker)
    assert (blocker / "keep.txt").exists()
    out = write_ms(src, blocker, overwrite=True)
    assert (out / "table.dat").is_file() and not (out / "keep.txt").exists()

    def boom(x):
        raise RuntimeError("failed half way")

    bad = src.copy()
    x = _vis(src["obs_0"])
    vis = da.from_array(x.VISIBILITY.values, chunks=(1, -1, -1, -1)).map_blocks(
        boom, dtype=np.complex64, meta=np.empty((0, 0, 0, 0), np.complex64))
    bad["obs_0"] = src["obs_0"].assign(VISIBILITY=x.VISIBILITY.copy(data=vis))
    with pytest.raises(RuntimeError, match="failed half way"):
        write_ms(bad, tmp_path / "half.ms")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]
    with pytest.raises(RuntimeError, match="failed half way"):
        write_ms(bad, out, overwrite=True)
    assert read_ms(out)  # the old MS is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_errors(two_by_two, tmp_path):
    path, src = two_by_two
    with pytest.raises(MeasurementSetError, match="out.ms: cannot write column 'SIGMA'"):
        write_ms(src, tmp_path / "out.ms", column="SIGMA")
    with pytest.raises(MeasurementSetError, match="out.ms: partition obs_0 has no data group 'x'"):
        write_ms(src, tmp_path / "out.ms", data_group="x")
    other = make_obs(6, spws=((1.5e9, 6),))
    with pytest.raises(MeasurementSetError, match="two.ms: no spectral window/polarization matches"):
        write_ms(other, path, column="MODEL_DATA")
    renamed = make_obs(6, fields=("elsewhere",))
    with pytest.raises(MeasurementSetError, match="two.ms: has no field 'elsewhere'"):
        write_ms(renamed, path, column="MODEL_DATA")
    obs = read_ms(path)
    with pytest.raises(MeasurementSetError, match="cannot overwrite the Measurement Set"):
        write_ms(obs, path, overwrite=True)
    assert issubclass(MeasurementSetError, DaskcalError)
    with table(str(path), ack=False) as t:
        t.lock(write=False)
        assert "MODEL_DATA" not in t.colnames()
        t.unlock()


def test_write_computes_once(two_by_two, tmp_path):
    """All partitions are written by a single compute (one pass over the lazy inputs)."""
    path, _ = two_by_two
    calls = []

    def counting_get(dsk, keys, **kwargs):
        calls.append(len(keys))
        return dask.get(dsk, keys, **kwargs)

    obs = read_ms(path)
    with dask.config.set(scheduler=counting_get):
        write_ms(obs, tmp_path / "lazy.ms")
    assert len(calls) == 1


CASATOOLS_CHECK = """
import json, sys
import casatools
ms = casatools.ms()
ms.open(sys.argv[1])
summary = ms.summary(verbose=False)
ms.selectinit(datadescid=1)
data = ms.getdata(["data", "flag", "antenna1"])
out = {"nrow": ms.nrow(), "nfields": summary["nfields"], "shape": list(data["data"].shape)}
ms.close()
md = casatools.msmetadata()
md.open(sys.argv[1])
out.update(nant=md.nantennas(), fields=list(md.fieldnames()), nspw=md.nspw(),
           freqs=list(md.chanfreqs(1)))
md.close()
print("RESULT" + json.dumps(out))
"""


@pytest.mark.realdata
@pytest.mark.skipif(importlib.util.find_spec("casatools") is None, reason="casatools not installed")
def test_casatools_opens_new_ms(two_by_two, realdata_cache, tmp_path):
    """CASA's own ms and msmetadata tools read the new MS (offline, in a subprocess)."""
    import zipfile

    from daskcal.testing.realdata import CASADATA, fetch_wheel

    path, src = two_by_two
    # casatools needs measures data: the geodetic tables of the casadata wheel, no downloads
    with zipfile.ZipFile(fetch_wheel(CASADATA, realdata_cache)) as zf:
        zf.extractall(tmp_path / "data", [m for m in zf.namelist()
                                          if m.startswith("casadata/__data__/geodetic/")])
    home = tmp_path / "home"
    (home / ".casa").mkdir(parents=True)
    (home / ".casa" / "config.py").write_text(
        f"measurespath = {str(tmp_path / 'data' / 'casadata' / '__data__')!r}\n"
        "measures_auto_update = False\ndata_auto_update = False\nnologfile = True\n")
    res = subprocess.run([sys.executable, "-c", CASATOOLS_CHECK, str(path)], capture_output=True,
                         text=True, timeout=300, cwd=tmp_path, env={**os.environ, "HOME": str(home)})
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout.split("RESULT", 1)[1])
    assert out["nrow"] == 4 * 5 * 10 and out["nfields"] == 2 and out["nspw"] == 2
    assert out["nant"] == 4 and out["fields"] == ["F0", "F1"]
    assert out["shape"] == [4, 4, 2 * 5 * 10]  # (corr, chan, rows) of DATA_DESC_ID 1
    np.testing.assert_array_equal(out["freqs"], _vis(src["obs_1"]).frequency.values)
