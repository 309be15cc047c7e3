"""Declarative schemas of the data model, checked at stage and store boundaries.

Each schema is a table of what must be there (dimensions, dtype kind, attrs);
:func:`check_visibility_xds` and friends return *every* problem found, and
:func:`validate_observation` raises one :class:`SchemaError` listing them all.
Extra variables, coordinates and attributes are allowed (xradio's rule).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from daskcal import DaskcalError
from daskcal.data.model import ANTENNA_NODE, VIS_DIMS, partition_names


class SchemaError(DaskcalError, ValueError):
    """A dataset does not follow the daskcal / xradio MSv4 schema.

    ``problems`` holds one string per problem.
    """

    def __init__(self, problems: list[str], where: str = "dataset"):
        self.problems = list(problems)
        super().__init__(f"{where}: {len(problems)} schema problem(s): " + "; ".join(problems))


@dataclass(frozen=True)
class VarSpec:
    """What one variable or coordinate must look like.

    ``kind`` is a string of accepted numpy dtype kinds ("c" complex, "f" float,
    "b" bool, "i"/"u" integer, "U"/"O"/"S" strings); ``dtype`` an exact dtype
    if one is required.
    """

    dims: tuple[str, ...]
    kind: str
    dtype: str | None = None
    required: bool = True


VISIBILITY_COORDS: dict[str, VarSpec] = {
    "time": VarSpec(("time",), "f", "float64"),
    "baseline_id": VarSpec(("baseline_id",), "iu"),
    "frequency": VarSpec(("frequency",), "f", "float64"),
    "polarization": VarSpec(("polarization",), "UOS"),
    "baseline_antenna1_name": VarSpec(("baseline_id",), "UOS"),
    "baseline_antenna2_name": VarSpec(("baseline_id",), "UOS"),
    "uvw_label": VarSpec(("uvw_label",), "UOS", required=False),
    "antenna1": VarSpec(("baseline_id",), "iu", required=False),
    "antenna2": VarSpec(("baseline_id",), "iu", required=False),
}

VISIBILITY_VARS: dict[str, VarSpec] = {
    "VISIBILITY": VarSpec(VIS_DIMS, "c", "complex64"),
    "FLAG": VarSpec(VIS_DIMS, "b", "bool"),
    "WEIGHT": VarSpec(VIS_DIMS, "f", "float32"),
    "UVW": VarSpec(("time", "baseline_id", "uvw_label"), "f", "float64"),
    "EFFECTIVE_INTEGRATION_TIME": VarSpec(("time", "baseline_id"), "f", required=False),
    "TIME_CENTROID": VarSpec(("time", "baseline_id"), "f", required=False),
}

VISIBILITY_ATTRS: tuple[str, ...] = ("type", "schema_version", "data_groups")

ANTENNA_VARS: dict[str, VarSpec] = {
    "ANTENNA_POSITION": VarSpec(("antenna_name", "cartesian_pos_label"), "f"),
    "ANTENNA_DISH_DIAMETER": VarSpec(("antenna_name",), "f", required=False),
}
ANTENNA_COORDS: dict[str, VarSpec] = {"antenna_name": VarSpec(("antenna_name",), "UOS")}

FIELD_VARS: dict[str, VarSpec] = {
    "FIELD_PHASE_CENTER_DIRECTION": VarSpec(("field_name", "sky_dir_label"), "f"),
}


def _check_vars(xds: xr.Dataset, specs: dict[str, VarSpec], what: str) -> list[str]:
    problems = []
    for name, spec in specs.items():
        if name not in xds.variables:
            if spec.required:
                problems.append(f"missing {what} {name!r}")
            continue
        var = xds.variables[name]
        if tuple(var.dims) != spec.dims:
            problems.append(f"{what} {name!r} has dims {tuple(var.dims)}, expected {spec.dims}")
        if var.dtype.kind not in spec.kind:
            problems.append(f"{what} {name!r} has dtype {var.dtype}, expected kind {spec.kind!r}")
        elif spec.dtype is not None and var.dtype != np.dtype(spec.dtype):
            problems.append(f"{what} {name!r} has dtype {var.dtype}, expected {spec.dtype}")
    return problems


def check_visibility_xds(xds: xr.Dataset) -> list[str]:
    """All the ways a visibility partition departs from the schema (empty if none)."""
    problems = _check_vars(xds, VISIBILITY_COORDS, "coordinate")
    problems += _check_vars(xds, VISIBILITY_VARS, "variable")
    for key in VISIBILITY_ATTRS:
        if key not in xds.attrs:
            problems.append(f"missing attribute {key!r}")
    if xds.attrs.get("type", "visibility") != "visibility":
        problems.append(f"attribute 'type' is {xds.attrs.get('type')!r}, expected 'visibility'")
    groups = xds.attrs.get("data_groups") or {}
    if not isinstance(groups, dict):
        problems.append(f"attribute 'data_groups' is a {type(groups).__name__}, expected a mapping")
        groups = {}
    for name, group in groups.items():
        if not isinstance(group, dict):
            problems.append(f"data group {name!r} is not a mapping")
            continue
        for role in ("correlated_data", "flag", "weight"):
            var = group.get(role)
            if var is None:
                problems.append(f"data group {name!r} has no {role!r}")
            elif var not in xds.variables:
                problems.append(f"data group {name!r}: {role} variable {var!r} is missing")
            elif tuple(xds[var].dims) != VIS_DIMS:
                problems.append(f"data group {name!r}: {var!r} has dims {tuple(xds[var].dims)}")
    if "time" in xds.variables and xds.sizes.get("time", 0) > 1:
        t = np.asarray(xds["time"].values)
        if not np.all(np.diff(t) > 0):
            problems.append("time coordinate is not strictly increasing")
    if "time" in xds.variables:
        attrs = xds["time"].attrs
        for key, want in (("units", "s"), ("format", "unix")):
            got = attrs.get(key)
            got = got[0] if isinstance(got, list | tuple) and len(got) == 1 else got
            if got != want:
                problems.append(f"time attribute {key!r} is {got!r}, expected {want!r}")
    if "frequency" in xds.variables:
        units = xds["frequency"].attrs.get("units")
        units = units[0] if isinstance(units, list | tuple) and len(units) == 1 else units
        if units != "Hz":
            problems.append(f"frequency units are {units!r}, expected 'Hz'")
    return problems


def check_antenna_xds(xds: xr.Dataset) -> list[str]:
    """All the ways an antenna dataset departs from the schema."""
    return _check_vars(xds, ANTENNA_COORDS, "coordinate") + _check_vars(xds, ANTENNA_VARS, "variable")


def check_field_xds(xds: xr.Dataset) -> list[str]:
    """All the ways a field-and-source dataset departs from the schema."""
    return _check_vars(xds, FIELD_VARS, "variable")


def check_observation(obs: xr.DataTree) -> list[str]:
    """Every schema problem of an observation, each prefixed with its partition."""
    problems: list[str] = []
    names = partition_names(obs)
    if not names:
        problems.append("no visibility partitions")
    for name in names:
        node = obs[name]
        vis = node.to_dataset(inherit=False)
        problems += [f"{name}: {p}" for p in check_visibility_xds(vis)]
        if ANTENNA_NODE not in node.children:
            problems.append(f"{name}: missing child {ANTENNA_NODE!r}")
        else:
            ant = node[ANTENNA_NODE].to_dataset(inherit=False)
            problems += [f"{name}/{ANTENNA_NODE}: {p}" for p in check_antenna_xds(ant)]
            names_known = set(map(str, ant["antenna_name"].values)) if "antenna_name" in ant else set()
            for col in ("baseline_antenna1_name", "baseline_antenna2_name"):
                if col in vis.variables and names_known:
                    unknown = set(map(str, vis[col].values)) - names_known
                    if unknown:
                        problems.append(f"{name}: {col} names unknown antennas {sorted(unknown)[:5]}")
        groups = vis.attrs.get("data_groups")
        base = groups.get("base") if isinstance(groups, dict) else None
        fkey = (base if isinstance(base, dict) else {}).get(
            "field_and_source", "field_and_source_base_xds")
        if fkey not in node.children:
            problems.append(f"{name}: missing child {fkey!r}")
        else:
            problems += [f"{name}/{fkey}: {p}"
                         for p in check_field_xds(node[fkey].to_dataset(inherit=False))]
    return problems


def validate_observation(obs: xr.DataTree, where: str = "observation") -> xr.DataTree:
    """Raise :class:`SchemaError` listing every problem; return ``obs`` if none."""
    problems = check_observation(obs)
    if problems:
        raise SchemaError(problems, where)
    return obs


def validate_visibility_xds(xds: xr.Dataset, where: str = "partition") -> xr.Dataset:
    """Raise :class:`SchemaError` listing every problem; return ``xds`` if none."""
    problems = check_visibility_xds(xds)
    if problems:
        raise SchemaError(problems, where)
    return xds
