"""The data model: factories, baseline order, data groups, tree helpers."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from daskcal.data import model
from daskcal.data.schema import check_observation


def make_vis(n_time=4, names=("A", "B", "C"), n_chan=3, pols=("RR", "LL"), dask_chunks=None,
             autocorrelations=True):
    a1, a2 = model.baseline_antenna_pairs(len(names), autocorrelations)
    shape = (n_time, a1.size, n_chan, len(pols))
    vis = np.arange(np.prod(shape), dtype=np.float32).reshape(shape).astype(np.complex64)
    if dask_chunks:
        vis = da.from_array(vis, chunks=(dask_chunks, -1, -1, -1))
    return model.make_visibility_xds(
        time_s=1.6e9 + np.arange(n_time) * 2.0, frequency_hz=1.4e9 + np.arange(n_chan) * 1e6,
        polarization=list(pols), antenna_names=list(names), antenna1=a1, antenna2=a2,
        visibility=vis, uvw_m=np.zeros((n_time, a1.size, 3)), integration_time_s=2.0,
        channel_width_hz=1e6, field_name="F", scan_name=[str(i // 2) for i in range(n_time)])


def test_baseline_order():
    a1, a2 = model.baseline_antenna_pairs(4)
    assert list(zip(a1.tolist(), a2.tolist(), strict=True)) == [
        (0, 0), (0, 1), (0, 2), (0, 3), (1, 1), (1, 2), (1, 3), (2, 2), (2, 3), (3, 3)]
    assert a1.dtype == np.int32 and a2.dtype == np.int32
    b1, b2 = model.baseline_antenna_pairs(27, autocorrelations=False)
    assert b1.size == 27 * 26 // 2 and np.all(b1 < b2)
    keys = b1.astype(np.int64) * 27 + b2
    assert np.all(np.diff(keys) > 0)   # row major, no repeats
    c1, _ = model.baseline_antenna_pairs(27)
    assert c1.size == 27 * 28 // 2
    e1, e2 = model.baseline_antenna_pairs(0)
    assert e1.size == e2.size == 0


def test_visibility_xds_layout_and_defaults():
    xds = make_vis()
    assert tuple(xds["VISIBILITY"].dims) == model.VIS_DIMS
    assert xds.sizes == {"time": 4, "baseline_id": 6, "frequency": 3, "polarization": 2,
                         "uvw_label": 3}
    assert not xds["FLAG"].values.any() and (xds["WEIGHT"].values == 1).all()
    assert xds["WEIGHT"].dtype == np.float32
    assert (xds["EFFECTIVE_INTEGRATION_TIME"].values == 2.0).all()
    np.testing.assert_array_equal(xds["TIME_CENTROID"].values[:, 3], xds["time"].values)
    assert list(xds["baseline_antenna1_name"].values) == ["A", "A", "A", "B", "B", "C"]
    assert list(xds["baseline_antenna2_name"].values) == ["A", "B", "C", "B", "C", "C"]
    assert list(xds["scan_name"].values) == ["0", "0", "1", "1"]
    assert xds["time"].attrs["scale"] == "utc" and xds["time"].attrs["format"] == "unix"
    assert xds["frequency"].attrs["channel_width"]["data"] == 1e6
    assert xds["frequency"].attrs["reference_frequency"]["data"] == 1.401e9
    assert xds.attrs["data_groups"]["base"]["correlated_data"] == "VISIBILITY"


def test_defaults_follow_dask_chunks():
    xds = make_vis(dask_chunks=3)
    for name in ("FLAG", "WEIGHT"):
        assert xds[name].chunks == xds["VISIBILITY"].chunks == ((3, 1), (6,), (3,), (2,))


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match=r"visibility has shape \(2, 3, 3, 2\), expected"):
        model.make_visibility_xds(
            time_s=np.arange(4.0), frequency_hz=np.arange(3.0), polarization=["RR", "LL"],
            antenna_names=["A", "B"], antenna1=[0, 0, 1], antenna2=[0, 1, 1],
            visibility=np.zeros((2, 3, 3, 2), np.complex64), uvw_m=np.zeros((4, 3, 3)),
            integration_time_s=1.0, channel_width_hz=1.0)


def test_add_data_group():
    xds = make_vis()
    out = model.add_data_group(xds, "corrected", "VISIBILITY_CORRECTED",
                               data=xds["VISIBILITY"].values * 2, description="gains applied")
    assert set(out.attrs["data_groups"]) == {"base", "corrected"}
    group = out.attrs["data_groups"]["corrected"]
    assert group["correlated_data"] == "VISIBILITY_CORRECTED" and group["flag"] == "FLAG"
    assert group["weight"] == "WEIGHT" and group["description"] == "gains applied"
    assert tuple(out["VISIBILITY_CORRECTED"].dims) == model.VIS_DIMS
    # the input is untouched
    assert set(xds.attrs["data_groups"]) == {"base"} and "VISIBILITY_CORRECTED" not in xds
    # an existing variable can be named without data
    again = model.add_data_group(out, "model", "VISIBILITY_CORRECTED")
    assert again.attrs["data_groups"]["model"]["description"] == "model"
    with pytest.raises(ValueError, match="'VISIBILITY_MODEL' is not in the dataset"):
        model.add_data_group(xds, "model", "VISIBILITY_MODEL")


def test_antenna_and_field_xds():
    ant = model.make_antenna_xds(["A", "B"], [[1, 2, 3], [4, 5, 6]], 12.0, telescope_name="ATCA",
                                 polarization_type=("R", "L"))
    assert ant["ANTENNA_DISH_DIAMETER"].values.tolist() == [12.0, 12.0]
    assert ant["ANTENNA_POSITION"].sel(cartesian_pos_label="z").values.tolist() == [3.0, 6.0]
    assert ant["polarization_type"].values.tolist() == [["R", "L"], ["R", "L"]]
    assert ant["station_name"].values.tolist() == ["A", "B"]
    fld = model.make_field_and_source_xds(["F1", "F2"], [[0.1, 0.2], [0.3, 0.4]],
                                          source_names=["S1", "S2"])
    assert fld["FIELD_PHASE_CENTER_DIRECTION"].sel(field_name="F2").values.tolist() == [0.3, 0.4]
    assert fld["source_name"].values.tolist() == ["S1", "S2"]


def test_tree_helpers():
    ant = model.make_antenna_xds(["A", "B", "C"], np.zeros((3, 3)), 25.0, telescope_name="T")
    fld = model.make_field_and_source_xds(["F"], [[0.0, 0.0]])
    obs = model.make_observation(
        {"b_1": model.make_partition(make_vis(), ant, fld),
         "a_0": model.make_partition(make_vis(n_time=2), ant, fld)}, telescope="T")
    assert obs.attrs == {"type": "processing_set", "telescope": "T"}
    assert model.partition_names(obs) == ["b_1", "a_0"]   # store order, not sorted
    parts = dict(model.iter_partitions(obs))
    assert parts["a_0"].sizes["time"] == 2 and "antenna_name" not in parts["a_0"].dims
    assert model.antenna_xds_of(obs["b_1"]).sizes["antenna_name"] == 3
    assert model.field_xds_of(obs["b_1"])["field_name"].values.tolist() == ["F"]
    assert check_observation(obs) == []


def test_antenna_indices_with_and_without_index_coords():
    xds = make_vis(names=("A", "B", "C"), autocorrelations=False)
    ant = model.make_antenna_xds(["A", "B", "C"], np.zeros((3, 3)), 25.0, telescope_name="T")
    a1, a2 = model.antenna_indices(xds, ant)
    assert a1.tolist() == [0, 0, 1] and a2.tolist() == [1, 2, 2]
    no_index = xds.drop_vars(["antenna1", "antenna2"])   # as xradio writes it
    b1, b2 = model.antenna_indices(no_index, ant)
    assert b1.tolist() == a1.tolist() and b2.tolist() == a2.tolist() and b1.dtype == np.int32
    reordered = model.make_antenna_xds(["C", "B", "A"], np.zeros((3, 3)), 25.0, telescope_name="T")
    c1, c2 = model.antenna_indices(no_index, reordered)
    assert c1.tolist() == [2, 2, 1] and c2.tolist() == [1, 0, 0]


def test_ms_time_conversion():
    assert model.ms_time_to_unix(40587.0 * 86400.0) == 0.0
    assert model.unix_to_ms_time(0.0) == 40587.0 * 86400.0
    t = np.array([4.9e9, 5.0e9])
    np.testing.assert_array_equal(model.unix_to_ms_time(model.ms_time_to_unix(t)), t)
    assert set(model.STOKES_NAMES) == set(model.STOKES_CODES.values())
    assert model.STOKES_NAMES[model.STOKES_CODES["XY"]] == "XY"
