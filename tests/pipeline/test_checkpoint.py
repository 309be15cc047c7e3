"""Region-by-region step outputs (daskcal.pipeline.checkpoint): what is written is the data."""

from __future__ import annotations

import dask
import numpy as np
import pandas as pd
import xarray as xr

from daskcal.pipeline.checkpoint import Region, StepStore, _direct_write


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


def test_direct_write_takes_plain_variables_and_leaves_encoded_ones(tmp_path):
    import zarr

    tree = _tree()
    store = StepStore(tmp_path / "01-toy.zarr", "f" * 16)
    prepared, _, _ = store.prepare(tree, {})
    group = zarr.open_group(str(store.partial), mode="r+", zarr_format=3,
                            use_consolidated=False)["obs_0"]
    xds = prepared["obs_0"].to_dataset(inherit=False)
    region = Region("/obs_0", "time", 4, 8)
    plain = _direct_write(group, xds, ["VISIBILITY", "FLAG", "WEIGHT"], region)
    assert plain is not None
    with dask.config.set(scheduler="threads"):
        plain.compute()
    got = group["FLAG"][4:8]
    np.testing.assert_array_equal(got, tree["obs_0"]["FLAG"].values[4:8])
    assert _direct_write(group, xds, ["STAMP"], region) is None  # CF-encoded: to_zarr
    other = xds.assign(WEIGHT=xds["WEIGHT"].astype(np.float64))  # stored float32
    assert _direct_write(group, other, ["WEIGHT"], region) is None
    # only the region's rows were written: the others still hold the fill value
    assert np.isnan(group["WEIGHT"][0:4]).all() and np.isnan(group["WEIGHT"][8:]).all()

