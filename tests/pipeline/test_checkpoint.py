"""Region-by-region step outputs (daskcal.pipeline.checkpoint): what is written is the data."""

from __future__ import annotations

import dask
import numpy as np
import pandas as pd
import xarray as xr

from daskcal.pipeline.checkpoint import Region, StepStore, _blocks, _write_region


def _tree() -> xr.DataTree:
    rng = np.random.default_rng(5)
    nt, nb, nf = 12, 5, 3
    vis = (rng.normal(size=(nt, nb, nf)) + 1j * rng.normal(size=(nt, nb, nf))).astype(np.complex64)
    vis[3, 1, 2] = np.nan  # NaN (the zarr fill value) and zeros (an empty chunk) survive
    vis[8:] = 0
    flag = rng.random((nt, nb, nf)) < 0.3
    weight = rng.random((nt, nb, nf)).astype(np.float32)
    stamp = pd.date_range("2026-01-01", periods=nt, freq="10s").values
    chunks = {"time": 4, "baseline_id": nb, "frequency": nf}
    xds = xr.Dataset(
        {"VISIBILITY": (("time", "baseline_id", "frequency"), vis),
         "FLAG": (("time", "baseline_id", "frequency"), flag),
         "WEIGHT": (("time", "baseline_id", "frequency"), weight),
         # datetime64 data: stored CF-encoded (units, calendar), so written by to_zarr
         "STAMP": (("time",), stamp),
         # no region dimension: written whole
         "GAIN_REF": (("baseline_id",), np.arange(nb, dtype=np.int32))},
        coords={"time": np.arange(nt, dtype=np.float64) * 10.0,
                "baseline_id": np.arange(nb), "frequency": [1e8, 1.1e8, 1.2e8]},
    ).chunk(chunks)
    return xr.DataTree.from_dict({"/": xr.Dataset(attrs={"kind": "test"}), "/obs_0": xds})


def test_region_writes_store_every_variable_as_it_is(tmp_path):
    tree = _tree()
    store = StepStore(tmp_path / "01-toy.zarr", "f" * 16)
    prepared, regions, done = store.prepare(tree, {})
    assert not done
    assert sorted(r.key for r in regions) == sorted(
        ["obs_0@static@0-0", "obs_0@time@0-4", "obs_0@time@4-8", "obs_0@time@8-12"])
    with dask.config.set(scheduler="threads"):
        dask.compute(*store.region_writes(prepared, regions, "a1"))
    assert store.marked() == {r.key for r in regions}
    store.publish()
    back = xr.open_datatree(tmp_path / "01-toy.zarr", engine="zarr", chunks=None)
    xr.testing.assert_identical(back["obs_0"].to_dataset().drop_attrs(),
                                tree["obs_0"].to_dataset().compute().drop_attrs())


def test_a_region_of_plain_variables_is_one_task_that_writes_only_its_rows(tmp_path):
    import zarr

    tree = _tree()
    store = StepStore(tmp_path / "01-toy.zarr", "f" * 16)
    prepared, _, _ = store.prepare(tree, {})
    store.progress.mkdir(exist_ok=True)
    group = zarr.open_group(str(store.partial), mode="r+", zarr_format=3,
                            use_consolidated=False)["obs_0"]
    xds = prepared["obs_0"].to_dataset(inherit=False)[["VISIBILITY", "FLAG", "WEIGHT"]]
    region = Region("/obs_0", "time", 4, 8)
    marker = str(store.progress / f"{region.key}.json")
    write = _write_region(str(store.partial), group, xds, region, marker, "a1")
    assert write.key == f"mark-{region.key}-a1"
    sources = {k for n in xds.data_vars for k in dict(xds[n].data.__dask_graph__())}
    graph = dict(write.__dask_graph__())
    assert set(graph) - sources == {write.key}  # one task: stores every block, marks
    with dask.config.set(scheduler="threads"):
        assert write.compute() == marker
    assert store.marked() == {region.key}
    for name in ("VISIBILITY", "FLAG", "WEIGHT"):
        np.testing.assert_array_equal(group[name][4:8], tree["obs_0"][name].values[4:8])
    # only the region's rows were written: the others still hold the fill value
    assert np.isnan(group["WEIGHT"][0:4]).all() and np.isnan(group["WEIGHT"][8:]).all()


def test_encoded_or_retyped_variables_go_through_to_zarr(tmp_path):
    import zarr

    tree = _tree()
    store = StepStore(tmp_path / "01-toy.zarr", "f" * 16)
    prepared, _, _ = store.prepare(tree, {})
    group = zarr.open_group(str(store.partial), mode="r+", zarr_format=3,
                            use_consolidated=False)["obs_0"]
    xds = prepared["obs_0"].to_dataset(inherit=False)
    region = Region("/obs_0", "time", 4, 8)
    marker = str(store.progress / f"{region.key}.json")
    for sub in (xds[["STAMP"]],  # datetime64, stored CF-encoded
                xds[["WEIGHT"]].assign(WEIGHT=xds["WEIGHT"].astype(np.float64))):  # f32 stored
        write = _write_region(str(store.partial), group, sub, region, marker, "a1")
        graph = dict(write.__dask_graph__())
        assert len(graph) > 2  # to_zarr's own tasks, then the marker's
        with dask.config.set(scheduler="threads"):
            write.compute()
    np.testing.assert_array_equal(group["WEIGHT"][4:8], tree["obs_0"]["WEIGHT"].values[4:8])
    assert np.isnan(group["WEIGHT"][0:4]).all()


def test_blocks_cover_a_span_once_whatever_the_chunks():
    rng = np.random.default_rng(2)
    data = rng.normal(size=(23, 7))
    for chunks in (((5, 5, 5, 5, 3), (4, 3)), ((1, 9, 2, 11), (7,)), ((23,), (2, 2, 3))):
        for start, stop in ((0, 23), (5, 10), (3, 17), (22, 23), (6, 6)):
            out = np.full_like(data, np.nan)
            edges = np.cumsum((0, *chunks[0]))
            for index, (target, within) in _blocks(chunks, 0, start, stop):
                block = data[edges[index[0]]:edges[index[0] + 1],
                             sum(chunks[1][:index[1]]):sum(chunks[1][:index[1] + 1])]
                assert np.isnan(out[target]).all()  # nothing written twice
                out[target] = block[within]
            np.testing.assert_array_equal(out[start:stop], data[start:stop])
            assert np.isnan(np.delete(out, np.s_[start:stop], axis=0)).all()
    # no region dimension: every block, whole
    got = list(_blocks(((2, 2), (3,)), None, 0, 0))
    assert [i for i, _ in got] == [(0, 0), (1, 0)]
    assert got[1][1] == ((slice(2, 4), slice(0, 3)), (slice(0, 2), slice(0, 3)))
