"""read_ms: the regular grid, missing rows, flags and weights, data groups, laziness, chunks, errors."""

from __future__ import annotations

import shutil

import dask
import numpy as np
import pytest
from casacore.tables import table

from daskcal import DaskcalError
from daskcal.data import model
from daskcal.data.chunking import ChunkSpecError, resolve_chunks
from daskcal.data.ms import MeasurementSetError, MeasurementSetNotFoundError, read_ms
from daskcal.data.ms_write import write_ms
from daskcal.data.schema import check_observation
from daskcal.testing.factories import random_observation as make_obs

POLS = ("XX", "XY", "YX", "YY")
VLA_CENTRE = np.array([-1601185.4, -5041977.5, 3554875.9])


@pytest.fixture(scope="module")
def two_by_two(tmp_path_factory):
    """An MS with 2 fields x 2 spectral windows (6 and 4 channels), and its source."""
    obs = make_obs(1, fields=("F0", "F1"), spws=((1.4e9, 6), (1.6e9, 4)))
    path = write_ms(obs, tmp_path_factory.mktemp("ms") / "two.ms")
    return path, obs


@pytest.fixture
def small_ms(tmp_path):
    obs = make_obs(2)
    return write_ms(obs, tmp_path / "small.ms"), obs


def drop_rows(path, rows):
    """Remove main-table rows (tiled storage cannot removerows: deep-copy the rest, like split)."""
    tmp = path.with_name(path.name + ".drop")
    with table(str(path), ack=False) as t:
        keep = np.setdiff1d(np.arange(t.nrows()), rows)
        sel = t.selectrows(keep)
        sel.copy(str(tmp), deep=True).close()
        sel.close()
    shutil.rmtree(path)
    tmp.rename(path)


def _raise_on_compute(*args, **kwargs):
    raise AssertionError("something was computed while building the graph")


def _first(obs):
    name = model.partition_names(obs)[0]
    return obs[name].to_dataset(inherit=False)


def test_partitions_grid_and_values(two_by_two):
    path, src = two_by_two
    obs = read_ms(path, chunks={"time": 2, "frequency": 3})
    assert check_observation(obs) == []
    names = model.partition_names(obs)
    assert names == ["two_0", "two_1", "two_2", "two_3"]
    infos = [obs[n].attrs["partition_info"] for n in names]
    assert [(i["field_id"], i["spectral_window_id"]) for i in infos] == [
        (0, 0), (0, 1), (1, 0), (1, 1)]
    assert all(i["ms_path"] == str(path) for i in infos)
    for name, src_name in zip(names, model.partition_names(src), strict=True):
        got, want = obs[name].to_dataset(inherit=False), src[src_name].to_dataset(inherit=False)
        a1, a2 = model.baseline_antenna_pairs(4)
        np.testing.assert_array_equal(got.antenna1, a1)
        np.testing.assert_array_equal(got.antenna2, a2)
        for var in ("VISIBILITY", "FLAG", "WEIGHT", "UVW"):
            np.testing.assert_array_equal(got[var].values, want[var].values, err_msg=var)
        np.testing.assert_allclose(got.time.values, want.time.values, rtol=0, atol=1e-6)
        np.testing.assert_array_equal(got.frequency.values, want.frequency.values)
        assert list(got.polarization.values) == list(POLS)
        assert set(got.field_name.values) == set(want.field_name.values)
        assert got.frequency.attrs["channel_width"]["data"] == 1e6
        assert got.attrs["observation_info"]["observer"] == ["me"]
        ant = obs[name]["antenna_xds"]
        np.testing.assert_array_equal(ant.ANTENNA_POSITION.values,
                                      src[src_name]["antenna_xds"].ANTENNA_POSITION.values)
        fld = obs[name]["field_and_source_base_xds"]
        np.testing.assert_array_equal(
            fld.FIELD_PHASE_CENTER_DIRECTION.values,
            src[src_name]["field_and_source_base_xds"].FIELD_PHASE_CENTER_DIRECTION.values)


def test_missing_rows_are_flagged(small_ms):
    path, src = small_ms
    want = _first(src)
    with table(str(path), readonly=False, ack=False) as t:
        a1, a2, tm = t.getcol("ANTENNA1"), t.getcol("ANTENNA2"), t.getcol("TIME")
        times = np.unique(tm)
        # baseline (0, 2) at the 2nd time, every row of antenna 3 at the 4th, all of the last time
        drop = (((a1 == 0) & (a2 == 2) & (tm == times[1]))
                | (((a1 == 3) | (a2 == 3)) & (tm == times[3])) | (tm == times[-1]))
    drop_rows(path, np.flatnonzero(drop))
    x = _first(read_ms(path, chunks={"time": 2}))
    assert x.sizes["time"] == 4 and x.sizes["baseline_id"] == 10
    missing = np.zeros((4, 10), bool)
    bl = {(int(i), int(j)): k for k, (i, j) in enumerate(zip(x.antenna1.values, x.antenna2.values,
                                                              strict=True))}
    missing[1, bl[0, 2]] = True
    missing[3, [k for (i, j), k in bl.items() if 3 in (i, j)]] = True
    assert (x.FLAG.values[missing]).all()
    assert (x.WEIGHT.values[missing] == 0).all() and (x.VISIBILITY.values[missing] == 0).all()
    assert np.isnan(x.UVW.values[missing]).all()
    assert np.isnan(x.TIME_CENTROID.values[missing]).all()
    present = ~missing
    np.testing.assert_array_equal(x.VISIBILITY.values[present], want.VISIBILITY.values[:4][present])
    np.testing.assert_array_equal(x.FLAG.values[present], want.FLAG.values[:4][present])
    np.testing.assert_array_equal(x.UVW.values[present], want.UVW.values[:4][present])


def test_antennas_present_and_autocorrelations(small_ms):
    path, _ = small_ms
    with table(str(path), readonly=False, ack=False) as t:
        a1, a2 = t.getcol("ANTENNA1"), t.getcol("ANTENNA2")
    drop_rows(path, np.flatnonzero((a1 == a2) | (a1 == 1) | (a2 == 1)))
    x = _first(read_ms(path))
    assert list(x.baseline_antenna1_name.values) == ["A0", "A0", "A2"]
    assert list(x.baseline_antenna2_name.values) == ["A2", "A3", "A3"]
    assert x.attrs["partition_info"]["antenna_ids"] == [0, 2, 3]
    assert not x.FLAG.values.all()


def test_flag_row_is_ored_into_flag(small_ms):
    path, _ = small_ms
    with table(str(path), readonly=False, ack=False) as t:
        flag = t.getcol("FLAG")
        flag[:] = False
        t.putcol("FLAG", flag)
        flag_row = np.zeros(t.nrows(), bool)
        flag_row[[3, 7]] = True
        t.putcol("FLAG_ROW", flag_row)
        a1, a2, tm = t.getcol("ANTENNA1"), t.getcol("ANTENNA2"), t.getcol("TIME")
    x = _first(read_ms(path))
    times = model.unix_to_ms_time(x.time.values)
    fl = x.FLAG.values
    assert fl.sum() == 2 * fl[0, 0].size
    for r in (3, 7):
        ti = int(np.argmin(np.abs(times - tm[r])))
        bi = int(np.flatnonzero((x.antenna1.values == a1[r]) & (x.antenna2.values == a2[r]))[0])
        assert fl[ti, bi].all()


def test_weight_spectrum_takes_precedence(small_ms):
    path, src = small_ms
    np.testing.assert_array_equal(_first(read_ms(path)).WEIGHT.values, _first(src).WEIGHT.values)
    with table(str(path), readonly=False, ack=False) as t:
        row_weight = t.getcol("WEIGHT")
        t.removecols("WEIGHT_SPECTRUM")
    x = _first(read_ms(path, chunks={"frequency": 4}))
    assert x.WEIGHT.dtype == np.float32 and x.WEIGHT.chunks[2] == (4, 2)
    # WEIGHT is the channel mean, broadcast back over channels
    np.testing.assert_array_equal(x.WEIGHT.values[0, 0], np.broadcast_to(row_weight[0], (6, 4)))


def test_corrected_and_model_data_groups(small_ms):
    path, src = small_ms
    base = _first(src)
    corrected = src.copy()
    name = model.partition_names(src)[0]
    corrected[name] = corrected[name].assign(VISIBILITY=base.VISIBILITY * 2)
    write_ms(corrected, path, column="CORRECTED_DATA")
    model_obs = src.copy()
    model_obs[name] = model_obs[name].assign(VISIBILITY=base.VISIBILITY * 3)
    write_ms(model_obs, path, column="MODEL_DATA")

    x = _first(read_ms(path))
    assert set(x.attrs["data_groups"]) == {"base", "corrected", "model"}
    assert x.attrs["data_groups"]["corrected"]["correlated_data"] == "VISIBILITY_CORRECTED"
    np.testing.assert_array_equal(x.VISIBILITY_CORRECTED.values, 2 * base.VISIBILITY.values)
    np.testing.assert_array_equal(x.VISIBILITY_MODEL.values, 3 * base.VISIBILITY.values)

    y = _first(read_ms(path, data_column="CORRECTED_DATA", columns=["MODEL_DATA"]))
    assert set(y.attrs["data_groups"]) == {"base", "model"}
    np.testing.assert_array_equal(y.VISIBILITY.values, 2 * base.VISIBILITY.values)
    assert set(_first(read_ms(path, columns=[])).attrs["data_groups"]) == {"base"}


def test_graph_building_computes_nothing(two_by_two):
    path, src = two_by_two
    with dask.config.set(scheduler=_raise_on_compute):
        obs = read_ms(path, chunks={"time": 2, "frequency": 2})
    x = _first(obs)
    for var in ("VISIBILITY", "FLAG", "WEIGHT", "UVW", "TIME_CENTROID"):
        assert x[var].chunks is not None, var
    np.testing.assert_array_equal(x.VISIBILITY.values, _first(src).VISIBILITY.values)


@pytest.mark.parametrize("chunks", [{"time": 2, "frequency": 4}, "time=3,frequency=5", "2kB"])
def test_chunk_specs(small_ms, chunks):
    path, src = small_ms
    x = _first(read_ms(path, chunks=chunks))
    ck = resolve_chunks(chunks, 5, 10, 6, 4)
    tc, fc = ck["time"], ck["frequency"]
    assert x.VISIBILITY.chunks[0][0] == tc and sum(x.VISIBILITY.chunks[0]) == 5
    assert x.VISIBILITY.chunks[2][0] == fc and x.VISIBILITY.chunks[1] == (10,)
    assert x.FLAG.chunks == x.VISIBILITY.chunks == x.WEIGHT.chunks
    assert x.UVW.chunks[0] == x.VISIBILITY.chunks[0]
    np.testing.assert_array_equal(x.VISIBILITY.values, _first(src).VISIBILITY.values)


def test_each_chunk_reads_only_its_rows(small_ms):
    """An output chunk depends on exactly one dask-ms read of DATA: its own rows."""
    path, src = small_ms
    vis = _first(read_ms(path, chunks={"time": 2, "frequency": 3})).VISIBILITY.data
    assert vis.numblocks == (3, 1, 2, 1)
    for i in range(3):
        for j in range(2):
            block = vis.blocks[i, 0, j, 0]
            graph = block.__dask_graph__().cull(set(dask.core.flatten(block.__dask_keys__())))
            reads = [k for k in graph if isinstance(k, tuple) and str(k[0]).startswith("read~DATA")]
            assert len(reads) == 1, reads
            want = _first(src).VISIBILITY.values[2 * i:2 * i + 2, :, 3 * j:3 * j + 3]
            np.testing.assert_array_equal(block.compute(), want)


def test_errors_name_the_path(tmp_path, small_ms):
    path, _ = small_ms
    missing = tmp_path / "nope.ms"
    with pytest.raises(MeasurementSetNotFoundError, match="nope.ms: no such file"):
        read_ms(missing)
    empty = tmp_path / "empty.ms"
    empty.mkdir()
    with pytest.raises(MeasurementSetError, match=r"empty.ms: is not a Measurement Set \(no table"):
        read_ms(empty)
    afile = tmp_path / "file.ms"
    afile.write_text("x")
    with pytest.raises(MeasurementSetError, match="file.ms: is not a Measurement Set"):
        read_ms(afile)
    from casacore.tables import makescacoldesc, maketabdesc

    plain = tmp_path / "plain.tab"
    table(str(plain), maketabdesc([makescacoldesc("X", 0.0)]), nrow=2, ack=False).close()
    with pytest.raises(MeasurementSetError, match="plain.tab: is not a Measurement Set .*ANTENNA"):
        read_ms(plain)
    broken = tmp_path / "broken.ms"
    broken.mkdir()
    (broken / "table.dat").write_bytes(b"garbage")
    with pytest.raises(MeasurementSetError, match="broken.ms: cannot open table"):
        read_ms(broken)
    with pytest.raises(MeasurementSetError, match="small.ms: has no CORRECTED_DATA column"):
        read_ms(path, data_column="CORRECTED_DATA")
    with pytest.raises(MeasurementSetError, match="small.ms: has no MODEL_DATA column"):
        read_ms(path, columns=["MODEL_DATA"])
    with pytest.raises(ChunkSpecError):
        read_ms(path, chunks="lots")
    with pytest.raises(ChunkSpecError):
        read_ms(path, chunks={"baseline_id": 3})
    for exc in (MeasurementSetError, MeasurementSetNotFoundError, ChunkSpecError):
        assert issubclass(exc, DaskcalError)
    try:
        read_ms(missing)
    except DaskcalError as exc:
        assert "\n" not in str(exc)


def _compare_with_casacore(path, obs, rng, n_samples=200):
    """read_ms values at scattered (time, baseline, channel, pol) == casacore getcol of the row."""
    name = model.partition_names(obs)[0]
    x = obs[name].to_dataset(inherit=False)
    ids = x.attrs["partition_info"]["antenna_ids"]
    vis, flag, weight, uvw = (x[v].values for v in ("VISIBILITY", "FLAG", "WEIGHT", "UVW"))
    times = model.unix_to_ms_time(x.time.values)
    with table(str(path), ack=False) as t:
        t.lock(write=False)
        tm, a1, a2 = t.getcol("TIME"), t.getcol("ANTENNA1"), t.getcol("ANTENNA2")
        has_spectrum = "WEIGHT_SPECTRUM" in t.colnames()
        for r in rng.choice(t.nrows(), size=min(n_samples, t.nrows()), replace=False):
            ti = int(np.flatnonzero(times == tm[r])[0])
            bi = int(np.flatnonzero((x.antenna1.values == ids.index(a1[r]))
                                    & (x.antenna2.values == ids.index(a2[r])))[0])
            c = int(rng.integers(vis.shape[2]))
            p = int(rng.integers(vis.shape[3]))
            assert vis[ti, bi, c, p] == t.getcell("DATA", r)[c, p]
            assert flag[ti, bi, c, p] == (t.getcell("FLAG", r)[c, p] or t.getcell("FLAG_ROW", r))
            w = t.getcell("WEIGHT_SPECTRUM", r)[c, p] if has_spectrum else t.getcell("WEIGHT", r)[p]
            assert weight[ti, bi, c, p] == w
            np.testing.assert_array_equal(uvw[ti, bi], t.getcell("UVW", r))
        t.unlock()
    return x


@pytest.mark.realdata
def test_vla_matches_casacore(realdata):
    path = realdata("vla_day2_ms")
    obs = read_ms(path, chunks={"time": 4, "frequency": 16})
    assert check_observation(obs) == []
    x = _compare_with_casacore(path, obs, np.random.default_rng(5))
    assert x.sizes == {"time": 15, "baseline_id": 153, "frequency": 64, "polarization": 4,
                       "uvw_label": 3}
    assert list(x.polarization.values) == ["RR", "RL", "LR", "LL"]
    with table(str(path), ack=False) as t:
        n_rows = t.nrows()
    assert (~x.FLAG.values.all(axis=(2, 3))).sum() <= n_rows
    assert x.FLAG.values.all(axis=(2, 3)).sum() >= 15 * 153 - n_rows
    ant = obs[model.partition_names(obs)[0]]["antenna_xds"]
    assert ant.attrs["overall_telescope_name"] == "EVLA"
    assert set(ant.polarization_type.values.ravel()) == {"R", "L"}


@pytest.mark.realdata
def test_mwa_matches_casacore(realdata):
    path = realdata("mwa_small_ms")
    obs = read_ms(path)
    assert check_observation(obs) == []
    x = _compare_with_casacore(path, obs, np.random.default_rng(6))
    n_ant = len(x.attrs["partition_info"]["antenna_ids"])
    assert x.sizes["baseline_id"] == n_ant * (n_ant + 1) // 2  # the MS has autocorrelations
    assert list(x.polarization.values) == ["XX", "XY", "YX", "YY"]
