"""zarr v3 persistence: bit-identical round trips, atomic writes, damage detection, laziness."""

from __future__ import annotations

import json
import shutil
import threading
import warnings
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr
import zarr

from daskcal import DaskcalError
from daskcal.data import model
from daskcal.data.open import DataInputError, describe
from daskcal.data.schema import SchemaError
from daskcal.data.zarr_store import (
    COMPLETE_ATTR,
    WRITER_ATTR,
    check_zarr_store,
    open_zarr,
    write_zarr,
)

POLS = ("XX", "XY", "YX", "YY")

# complex64 = two float32 words: NaNs with payloads (quiet and signalling), +-inf, -0.0
SPECIAL_WORDS = np.array([0x7FC00001, 0x7F800001, 0xFFC0BEEF, 0x7F800000, 0xFF800000, 0x80000000],
                         dtype=np.uint32)


def random_partition(rng, *, n_time=6, n_ant=4, n_chan=5, pols=POLS, chunks=None, t0=1.7e9,
                     f0=1.4e9, field="F0", scan="1", spw="spw_0", specials=True):
    a1, a2 = model.baseline_antenna_pairs(n_ant)
    shape = (n_time, a1.size, n_chan, len(pols))
    vis = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)
    if specials:
        words = vis.view(np.uint32).reshape(-1)
        pos = rng.choice(words.size, SPECIAL_WORDS.size * 3, replace=False)
        words[pos] = np.tile(SPECIAL_WORDS, 3)
    flag = rng.random(shape) < 0.2
    weight = rng.random(shape).astype(np.float32)
    uvw = rng.standard_normal((n_time, a1.size, 3)) * 1e3
    if chunks is not None:
        tc, fc = chunks
        vis = da.from_array(vis, chunks=(tc, -1, fc, -1))
        flag = da.from_array(flag, chunks=(tc, -1, fc, -1))
        weight = da.from_array(weight, chunks=(tc, -1, fc, -1))
        uvw = da.from_array(uvw, chunks=(tc, -1, -1))
    names = [f"ANT{i:02d}" for i in range(n_ant)]
    vis_xds = model.make_visibility_xds(
        time_s=t0 + 10.0 * np.arange(n_time), frequency_hz=f0 + 1e6 * np.arange(n_chan),
        polarization=list(pols), antenna_names=names, antenna1=a1, antenna2=a2,
        visibility=vis, uvw_m=uvw, integration_time_s=10.0, channel_width_hz=1e6,
        flag=flag, weight=weight, field_name=field, scan_name=scan,
        spectral_window_name=spw, observer="tester", project="P1")
    ant = model.make_antenna_xds(names, rng.standard_normal((n_ant, 3)) * 1e6, 25.0,
                                 telescope_name="TEST")
    fld = model.make_field_and_source_xds([field], rng.random((1, 2)))
    return model.make_partition(vis_xds, ant, fld)


def random_observation(seed=0, n_part=3, chunks=(4, 3), **kw):
    rng = np.random.default_rng(seed)
    parts = {f"obs_{i}": random_partition(rng, chunks=chunks, scan=str(i + 1),
                                          t0=1.7e9 + 100 * i, **kw)
             for i in range(n_part)}
    return model.make_observation(parts, note={"nested": {"list": [1, 2.5, "x"], "flag": True}})


def assert_bitwise_equal(a: xr.DataTree, b: xr.DataTree):
    assert a.attrs == b.attrs
    assert sorted(a.groups) == sorted(b.groups)
    for group in a.groups:
        x = a[group].to_dataset(inherit=False).compute()
        y = b[group].to_dataset(inherit=False).compute()
        with np.errstate(invalid="ignore"):  # NaN payloads compared
            xr.testing.assert_identical(x, y)
        for name, var in x.variables.items():
            assert var.dtype == y[name].dtype, name
            if var.dtype.kind in "biufc":
                assert var.values.tobytes() == y[name].values.tobytes(), f"{group}/{name}"


@pytest.fixture
def obs():
    return random_observation()


@pytest.fixture
def store(obs, tmp_path):
    return write_zarr(obs, tmp_path / "obs.ps.zarr")


def plain_to_zarr(tree: xr.DataTree, path: Path):
    """Write with xarray alone, as xradio does (zarr warns about its v3 extensions)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tree.to_zarr(path, zarr_format=3, consolidated=True)


def raising_scheduler(*args, **kwargs):
    raise AssertionError("a dask computation ran")


# ------------------------------------------------------------------ round trips


def test_round_trip_is_bit_identical(obs, store):
    assert store.is_dir()
    back = open_zarr(store)
    assert_bitwise_equal(obs, back)
    # the NaN payloads really are in the data read back
    words = back["obs_0"]["VISIBILITY"].values.view(np.uint32)
    assert np.isin(SPECIAL_WORDS, words).all()
    assert back["obs_1"].attrs["data_groups"] == obs["obs_1"].attrs["data_groups"]
    assert back.attrs["note"] == {"nested": {"list": [1, 2.5, "x"], "flag": True}}


def test_round_trip_of_data_groups_and_numpy_backed_data(tmp_path):
    rng = np.random.default_rng(3)
    node = random_partition(rng, chunks=None)
    vis = node.to_dataset(inherit=False)
    with np.errstate(invalid="ignore"):
        corrected = vis["VISIBILITY"].values * np.complex64(2 - 1j)
    vis = model.add_data_group(vis, "corrected", "VISIBILITY_CORRECTED", data=corrected)
    part = model.make_partition(vis, model.antenna_xds_of(node), model.field_xds_of(node))
    obs = model.make_observation({"p0": part, "p1": random_partition(rng, chunks=None, n_ant=3)})
    back = open_zarr(write_zarr(obs, tmp_path / "np.zarr"))
    assert_bitwise_equal(obs, back)
    assert set(back["p0"].attrs["data_groups"]) == {"base", "corrected"}
    assert back["p0"]["VISIBILITY_CORRECTED"].chunks is not None


def test_zarr_chunks_are_the_dask_chunks(store):
    group = zarr.open_group(store, mode="r")
    assert group["obs_0/VISIBILITY"].chunks == (4, 10, 3, 4)   # last chunks (2, 2) are shorter
    assert group["obs_0/UVW"].chunks == (4, 10, 3)
    back = open_zarr(store)
    assert back["obs_0"]["VISIBILITY"].chunks == ((4, 2), (10,), (3, 2), (4,))


def test_irregular_dask_chunks_are_rechunked(tmp_path):
    obs = random_observation(n_part=1, chunks=None)
    vis = obs["obs_0"].to_dataset(inherit=False)
    vis = vis.chunk({"time": (1, 3, 2), "frequency": (2, 3)})   # zarr cannot store these
    obs["obs_0"] = model.make_partition(vis, model.antenna_xds_of(obs["obs_0"]),
                                        model.field_xds_of(obs["obs_0"]))
    back = open_zarr(write_zarr(obs, tmp_path / "irregular.zarr"))
    assert back["obs_0"]["VISIBILITY"].chunks == ((3, 3), (10,), (3, 2), (4,))
    assert_bitwise_equal(obs, back)


def test_write_streams_chunk_by_chunk(tmp_path):
    """Each visibility chunk is produced once and on its own: nothing loads a whole array."""
    obs = random_observation(n_part=1, chunks=(2, 2))
    seen, lock = [], threading.Lock()

    def record(block):
        with lock:
            seen.append(block.shape)
        return block

    vis = obs["obs_0"].to_dataset(inherit=False)
    vis["VISIBILITY"] = vis["VISIBILITY"].copy(data=vis["VISIBILITY"].data.map_blocks(
        record, meta=np.empty((0, 0, 0, 0), np.complex64)))
    obs["obs_0"] = model.make_partition(vis, model.antenna_xds_of(obs["obs_0"]),
                                        model.field_xds_of(obs["obs_0"]))
    write_zarr(obs, tmp_path / "stream.zarr")
    n_chunks = vis["VISIBILITY"].data.npartitions
    assert len(seen) == n_chunks == 9
    assert max(s[0] for s in seen) == 2 and max(s[2] for s in seen) == 2


def test_compression_codecs(store, tmp_path, obs):
    group = zarr.open_group(store, mode="r")
    for name, shuffle in (("VISIBILITY", "shuffle"), ("WEIGHT", "shuffle"), ("FLAG", "bitshuffle"),
                          ("UVW", "shuffle")):
        (codec,) = group[f"obs_0/{name}"].compressors
        assert codec.cname.value == "zstd" and codec.clevel == 1, name
        assert codec.shuffle.value == shuffle, name
    plain = write_zarr(obs, tmp_path / "plain.zarr", compression_level=0)
    assert zarr.open_group(plain, mode="r")["obs_0/VISIBILITY"].compressors == ()
    with pytest.raises(ValueError, match="compression_level"):
        write_zarr(obs, tmp_path / "bad.zarr", compression_level=12)


def test_xradio_style_store_opens(tmp_path):
    """A processing set without antenna1/antenna2 nor completion marker (as xradio writes)."""
    obs = random_observation(specials=False)
    datasets = {}
    for node in obs.subtree:
        xds = node.to_dataset(inherit=False).compute()
        datasets[node.path] = xds.drop_vars(["antenna1", "antenna2"], errors="ignore")
    # xradio's missing (time, baseline) cells: NaN data and weights, FLAG False
    vis = datasets["/obs_1"]
    vis["VISIBILITY"].values[0, 1] = np.nan
    vis["WEIGHT"].values[1, 2, 0, 0] = np.nan
    vis["FLAG"].values[...] = False
    path = tmp_path / "foreign.ps.zarr"
    plain_to_zarr(xr.DataTree.from_dict(datasets), path)
    with dask.config.set(scheduler=raising_scheduler):
        back = open_zarr(path)
    part = back["obs_2"]
    a1, a2 = model.antenna_indices(part.to_dataset(inherit=False), model.antenna_xds_of(part))
    np.testing.assert_array_equal(a1, obs["obs_2"]["antenna1"].values)
    np.testing.assert_array_equal(a2, obs["obs_2"]["antenna2"].values)
    assert part["VISIBILITY"].values.tobytes() == obs["obs_2"]["VISIBILITY"].values.tobytes()
    assert part["FLAG"].values.tobytes() == obs["obs_2"]["FLAG"].values.tobytes()
    flag, weight = back["obs_1"]["FLAG"].values, back["obs_1"]["WEIGHT"].values
    assert flag[0, 1].all() and flag[1, 2, 0, 0] and flag.sum() == 5 * 4 + 1
    assert (weight[0, 1] == 0).all() and weight[1, 2, 0, 0] == 0 and weight.dtype == np.float32
    assert back["obs_1"]["FLAG"].attrs == {"type": "flag"}


# ------------------------------------------------------------------ atomic writes, marker


def test_completion_marker_written_and_not_carried_over(store):
    root = json.loads((store / "zarr.json").read_text())
    assert COMPLETE_ATTR in root["attributes"] and WRITER_ATTR in root["attributes"]
    assert root["consolidated_metadata"]["metadata"]["obs_0"]["attributes"]["type"] == "visibility"
    back = open_zarr(store)
    assert COMPLETE_ATTR not in back.attrs and WRITER_ATTR not in back.attrs


def test_rewrite_of_an_opened_store_marks_only_at_the_end(store, tmp_path):
    again = write_zarr(open_zarr(store), tmp_path / "again.zarr", compute=False)
    partial = [p for p in tmp_path.iterdir() if "daskcal-partial" in p.name]
    assert len(partial) == 1 and not (tmp_path / "again.zarr").exists()
    root = json.loads((partial[0] / "zarr.json").read_text())
    assert WRITER_ATTR in root["attributes"] and COMPLETE_ATTR not in root["attributes"]
    assert "interrupted write" in check_zarr_store(partial[0])[0]
    assert again.compute() == tmp_path / "again.zarr"
    assert_bitwise_equal(open_zarr(store), open_zarr(tmp_path / "again.zarr"))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_existing_path_is_refused_without_overwrite(obs, store):
    with pytest.raises(DataInputError, match="already exists") as info:
        write_zarr(obs, store)
    assert str(store) in str(info.value) and "\n" not in str(info.value)


def test_overwrite_replaces_a_store_and_never_anything_else(obs, store, tmp_path):
    other = random_observation(seed=9, n_part=1)
    write_zarr(other, store, overwrite=True)
    assert open_zarr(store).groups == open_zarr(write_zarr(other, tmp_path / "o.zarr")).groups
    not_zarr = tmp_path / "my.ms"
    not_zarr.mkdir()
    (not_zarr / "table.dat").write_bytes(b"precious")
    with pytest.raises(DataInputError, match="not a zarr store; refusing"):
        write_zarr(obs, not_zarr, overwrite=True)
    assert (not_zarr / "table.dat").read_bytes() == b"precious"
    with pytest.raises(DataInputError, match="parent directory"):
        write_zarr(obs, tmp_path / "nowhere" / "x.zarr")


def test_schema_problems_are_all_reported_before_writing(obs, tmp_path):
    vis = obs["obs_1"].to_dataset(inherit=False)
    vis = vis.drop_vars("WEIGHT").assign(UVW=vis["UVW"].astype(np.float32))
    obs["obs_1"] = model.make_partition(vis, model.antenna_xds_of(obs["obs_1"]),
                                        model.field_xds_of(obs["obs_1"]))
    target = tmp_path / "bad.zarr"
    with pytest.raises(SchemaError) as info:
        write_zarr(obs, target)
    text = str(info.value)
    assert str(target) in text and "\n" not in text
    assert "missing variable 'WEIGHT'" in text and "'UVW' has dtype float32" in text
    assert "data group 'base': weight variable 'WEIGHT' is missing" in text
    assert list(tmp_path.iterdir()) == []


def test_failed_write_leaves_nothing(obs, tmp_path):
    def fail(block):
        raise RuntimeError("disk on fire")

    vis = obs["obs_0"].to_dataset(inherit=False)
    vis["WEIGHT"] = vis["WEIGHT"].copy(data=vis["WEIGHT"].data.map_blocks(
        fail, meta=np.empty((0, 0, 0, 0), np.float32)))
    obs["obs_0"] = model.make_partition(vis, model.antenna_xds_of(obs["obs_0"]),
                                        model.field_xds_of(obs["obs_0"]))
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_zarr(obs, tmp_path / "x.zarr")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ damaged stores


def _drop_chunk(store: Path):
    chunk = store / "obs_1" / "VISIBILITY" / "c" / "1" / "0" / "0" / "0"
    assert chunk.is_file()
    chunk.unlink()


def _drop_node_metadata(store: Path):
    (store / "obs_2" / "antenna_xds" / "zarr.json").unlink()


def _drop_marker(store: Path):
    root = json.loads((store / "zarr.json").read_text())
    del root["attributes"][COMPLETE_ATTR]
    (store / "zarr.json").write_text(json.dumps(root))


def _drop_consolidated(store: Path):
    root = json.loads((store / "zarr.json").read_text())
    del root["consolidated_metadata"]
    (store / "zarr.json").write_text(json.dumps(root))


def _truncate_root_metadata(store: Path):
    text = (store / "zarr.json").read_text()
    (store / "zarr.json").write_text(text[: len(text) // 2])


def _remove_root_metadata(store: Path):
    (store / "zarr.json").unlink()


@pytest.mark.parametrize(("damage", "message"), [
    (_drop_chunk, r"obs_1/VISIBILITY: 1 of 4 chunk file\(s\) missing \(e\.g\. c/1/0/0/0\)"),
    (_drop_node_metadata, "missing metadata obs_2/antenna_xds/zarr.json"),
    (_drop_marker, "interrupted write"),
    (_drop_consolidated, "no consolidated metadata"),
    (_truncate_root_metadata, "corrupt metadata zarr.json"),
    (_remove_root_metadata, r"not a zarr store \(no zarr.json\)"),
])
def test_damaged_store_gives_one_line_error(store, damage, message):
    damage(store)
    with pytest.raises(DataInputError, match=message) as info:
        open_zarr(store)
    text = str(info.value)
    assert text.startswith(f"{store}: ") and "\n" not in text
    assert isinstance(info.value, DaskcalError)


def test_missing_path_and_non_store(tmp_path):
    with pytest.raises(DataInputError, match="no such file or directory"):
        open_zarr(tmp_path / "nope.zarr")
    (tmp_path / "file.zarr").write_text("x")
    with pytest.raises(DataInputError, match="not a directory"):
        open_zarr(tmp_path / "file.zarr")


def test_zarr_v2_processing_sets_open(tmp_path):
    """Older xradio versions wrote zarr v2; those open too (consolidated metadata required)."""
    obs = random_observation(n_part=1, specials=False)
    path = tmp_path / "v2.ps.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        obs.to_zarr(path, zarr_format=2, consolidated=True)
    back = open_zarr(path)
    assert back["obs_0"]["VISIBILITY"].values.tobytes() == obs["obs_0"]["VISIBILITY"].values.tobytes()
    (path / ".zmetadata").unlink()
    with pytest.raises(DataInputError, match="without consolidated metadata"):
        open_zarr(path)


def test_check_can_skip_chunk_listing(store):
    _drop_chunk(store)
    assert check_zarr_store(store, chunk_files=False) == []
    assert len(check_zarr_store(store)) == 1


def test_opening_the_zarr_json_opens_the_store(store, obs):
    assert open_zarr(store / "zarr.json").groups == open_zarr(store).groups


# ------------------------------------------------------------------ laziness and chunks


def test_opening_builds_no_computation(store):
    with dask.config.set(scheduler=raising_scheduler):
        back = open_zarr(store)
        back2 = open_zarr(store, chunks="time=2,frequency=4")
        summary = describe(back)
        assert back["obs_0"]["VISIBILITY"].chunks is not None
        assert back2["obs_0"]["FLAG"].chunks is not None
    assert summary["antennas"]["count"] == 4
    with pytest.raises(AssertionError, match="computation ran"), \
            dask.config.set(scheduler=raising_scheduler):
        back["obs_0"]["VISIBILITY"].values  # noqa: B018  (the guard itself works)


def test_open_with_chunk_specs(store, obs):
    vis = open_zarr(store, chunks={"time": 5, "frequency": -1})["obs_0"]
    assert vis["VISIBILITY"].chunks == ((5, 1), (10,), (5,), (4,))
    assert vis["UVW"].chunks == ((5, 1), (10,), (3,))
    assert vis["EFFECTIVE_INTEGRATION_TIME"].chunks == ((5, 1), (10,))
    whole = open_zarr(store, chunks="64MB")["obs_0"]
    assert whole["VISIBILITY"].chunks == ((6,), (10,), (5,), (4,))
    # a byte target below one stored chunk is rounded to whole stored chunks
    small = open_zarr(store, chunks=1000)["obs_0"]
    assert small["VISIBILITY"].chunks[0] == (4, 2) and small["VISIBILITY"].chunks[2] == (3, 2)
    assert small["VISIBILITY"].values.tobytes() == obs["obs_0"]["VISIBILITY"].values.tobytes()
    with pytest.raises(DaskcalError, match="chunk"):
        open_zarr(store, chunks="lots")


def test_small_metadata_is_in_memory(store):
    back = open_zarr(store)
    node = back["obs_0"]
    assert node["baseline_antenna1_name"].chunks is None
    assert node["scan_name"].chunks is None
    assert node["antenna_xds"]["ANTENNA_POSITION"].chunks is None
    assert node["field_and_source_base_xds"]["FIELD_PHASE_CENTER_DIRECTION"].chunks is None


def test_validate_reports_schema_problems(tmp_path, obs):
    datasets = {n.path: n.to_dataset(inherit=False) for n in obs.subtree}
    datasets["/obs_0"] = datasets["/obs_0"].drop_vars("UVW")
    path = tmp_path / "noschema.zarr"
    plain_to_zarr(xr.DataTree.from_dict(datasets), path)
    with pytest.raises(SchemaError, match="missing variable 'UVW'"):
        open_zarr(path)
    assert "UVW" not in open_zarr(path, validate=False)["obs_0"]


def test_write_then_open_many_times_is_stable(store, tmp_path):
    copy = tmp_path / "copy.zarr"
    shutil.copytree(store, copy)
    assert_bitwise_equal(open_zarr(store), open_zarr(copy))
