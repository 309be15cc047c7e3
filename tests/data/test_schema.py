"""Schema checks: every problem reported at once, as one-line errors."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from daskcal import DaskcalError
from daskcal.data import model
from daskcal.data.schema import (
    SchemaError,
    check_antenna_xds,
    check_field_xds,
    check_observation,
    check_visibility_xds,
    validate_observation,
    validate_visibility_xds,
)

NAMES = ["A0", "A1", "A2"]


def vis_xds(n_time=3, n_chan=2, pols=("XX", "YY")):
    a1, a2 = model.baseline_antenna_pairs(len(NAMES))
    shape = (n_time, a1.size, n_chan, len(pols))
    return model.make_visibility_xds(
        time_s=1e9 + np.arange(n_time, dtype=float), frequency_hz=1e9 + np.arange(n_chan) * 1e6,
        polarization=list(pols), antenna_names=NAMES, antenna1=a1, antenna2=a2,
        visibility=np.ones(shape, np.complex64), uvw_m=np.zeros((n_time, a1.size, 3)),
        integration_time_s=1.0, channel_width_hz=1e6)


def observation(vis=None, ant=None, fld=None):
    vis = vis_xds() if vis is None else vis
    ant = model.make_antenna_xds(NAMES, np.zeros((3, 3)), 25.0, telescope_name="T") if ant is None else ant
    fld = model.make_field_and_source_xds(["f"], [[0.1, 0.2]]) if fld is None else fld
    return model.make_observation({"p0": model.make_partition(vis, ant, fld)})


def test_valid_model_has_no_problems():
    assert check_visibility_xds(vis_xds()) == []
    assert check_observation(observation()) == []
    obs = observation()
    assert validate_observation(obs) is obs


def test_three_problems_reported_at_once():
    xds = vis_xds()
    xds = xds.drop_vars("WEIGHT")                                   # 1: missing variable
    xds["FLAG"] = xds["FLAG"].astype(np.uint8)                       # 2: wrong dtype kind
    xds["UVW"] = xds["UVW"].transpose("baseline_id", "time", "uvw_label")   # 3: wrong dims order
    problems = check_visibility_xds(xds)
    assert "missing variable 'WEIGHT'" in problems
    assert "variable 'FLAG' has dtype uint8, expected kind 'b'" in problems
    assert ("variable 'UVW' has dims ('baseline_id', 'time', 'uvw_label'), "
            "expected ('time', 'baseline_id', 'uvw_label')") in problems
    # the data group also names the missing weight
    assert "data group 'base': weight variable 'WEIGHT' is missing" in problems
    assert len(problems) == 4
    with pytest.raises(SchemaError) as info:
        validate_visibility_xds(xds, where="p0")
    err = info.value
    assert err.problems == problems and isinstance(err, DaskcalError)
    assert str(err).startswith("p0: 4 schema problem(s): ") and "\n" not in str(err)


def test_exact_dtype_and_kind_errors():
    xds = vis_xds()
    xds["VISIBILITY"] = xds["VISIBILITY"].astype(np.complex128)
    xds["WEIGHT"] = xds["WEIGHT"].astype(np.float64)
    xds = xds.assign_coords(time=xds["time"].astype(np.int64))
    problems = check_visibility_xds(xds)
    assert "variable 'VISIBILITY' has dtype complex128, expected complex64" in problems
    assert "variable 'WEIGHT' has dtype float64, expected float32" in problems
    assert "coordinate 'time' has dtype int64, expected kind 'f'" in problems


def test_missing_coordinates_and_attributes():
    xds = vis_xds().drop_vars(["baseline_antenna1_name", "antenna1"])
    xds.attrs = {k: v for k, v in xds.attrs.items() if k not in ("schema_version", "type")}
    problems = check_visibility_xds(xds)
    assert problems == ["missing coordinate 'baseline_antenna1_name'",
                        "missing attribute 'type'", "missing attribute 'schema_version'"]


def test_data_groups_referencing_missing_variables():
    xds = vis_xds()
    groups = dict(xds.attrs["data_groups"])
    groups["corrected"] = {"correlated_data": "VISIBILITY_CORRECTED", "flag": "FLAG_X",
                           "weight": "WEIGHT"}
    groups["model"] = {"correlated_data": "UVW", "flag": "FLAG"}
    groups["junk"] = "VISIBILITY"
    xds.attrs = {**xds.attrs, "data_groups": groups}
    problems = check_visibility_xds(xds)
    assert problems == [
        "data group 'corrected': correlated_data variable 'VISIBILITY_CORRECTED' is missing",
        "data group 'corrected': flag variable 'FLAG_X' is missing",
        "data group 'model': 'UVW' has dims ('time', 'baseline_id', 'uvw_label')",
        "data group 'model' has no 'weight'",
        "data group 'junk' is not a mapping",
    ]


def test_data_groups_that_are_not_a_mapping():
    xds = vis_xds()
    xds.attrs = {**xds.attrs, "data_groups": "VISIBILITY"}
    assert check_visibility_xds(xds) == ["attribute 'data_groups' is a str, expected a mapping"]
    problems = check_observation(observation(xds))
    assert problems == ["p0: attribute 'data_groups' is a str, expected a mapping"]


def test_time_order_units_and_type():
    xds = vis_xds()
    t = xds["time"].values.copy()
    t[1] = t[0]
    attrs = {**xds["time"].attrs, "units": ["s"], "format": "mjd"}
    xds = xds.assign_coords(time=xr.Variable("time", t, attrs))
    xds["frequency"].attrs["units"] = "MHz"
    xds.attrs = {**xds.attrs, "type": "spectrum"}
    problems = check_visibility_xds(xds)
    assert problems == [
        "attribute 'type' is 'spectrum', expected 'visibility'",
        "time coordinate is not strictly increasing",
        "time attribute 'format' is 'mjd', expected 'unix'",
        "frequency units are 'MHz', expected 'Hz'",
    ]


def test_antenna_and_field_datasets():
    ant = model.make_antenna_xds(NAMES, np.zeros((3, 3)), 25.0, telescope_name="T")
    assert check_antenna_xds(ant) == []
    assert check_antenna_xds(ant.drop_vars("ANTENNA_POSITION")) == [
        "missing variable 'ANTENNA_POSITION'"]
    fld = model.make_field_and_source_xds(["f"], [[0.0, 0.0]])
    assert check_field_xds(fld) == []
    assert check_field_xds(fld.drop_vars("FIELD_PHASE_CENTER_DIRECTION")) == [
        "missing variable 'FIELD_PHASE_CENTER_DIRECTION'"]


def test_observation_problems_carry_their_partition():
    ant = model.make_antenna_xds(["A0", "A1", "XX"], np.zeros((3, 3)), 25.0, telescope_name="T")
    obs = observation(vis_xds().drop_vars("UVW"), ant=ant)
    obs["p0/field_and_source_base_xds"] = xr.DataTree()
    problems = check_observation(obs)
    assert "p0: missing variable 'UVW'" in problems
    assert "p0: baseline_antenna1_name names unknown antennas ['A2']" in problems
    assert "p0: baseline_antenna2_name names unknown antennas ['A2']" in problems
    assert ("p0/field_and_source_base_xds: missing variable 'FIELD_PHASE_CENTER_DIRECTION'"
            in problems)
    with pytest.raises(SchemaError, match=r"obs.zarr: 4 schema problem\(s\)"):
        validate_observation(obs, where="obs.zarr")


def test_missing_children_and_empty_observation():
    vis = vis_xds()
    obs = model.make_observation({"p0": xr.DataTree(dataset=vis)})
    assert check_observation(obs) == ["p0: missing child 'antenna_xds'",
                                      "p0: missing child 'field_and_source_base_xds'"]
    assert check_observation(model.make_observation({})) == ["no visibility partitions"]
