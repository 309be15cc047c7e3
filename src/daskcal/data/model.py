"""The visibility data model: xradio MSv4 names on ``xarray`` objects.

An *observation* is an :class:`xarray.DataTree` laid out as an xradio
processing set: the root has ``attrs["type"] == "processing_set"`` and one
child node per *partition* (one field x spectral window x scan group). A
partition node holds the visibility dataset (``*_xds``) and two children,
``antenna_xds`` and ``field_and_source_base_xds``:

.. code-block:: text

    /                                   type: processing_set
    /<obs>_<n>                          VISIBILITY, FLAG, WEIGHT, UVW, ...
    /<obs>_<n>/antenna_xds              ANTENNA_POSITION, ...
    /<obs>_<n>/field_and_source_base_xds FIELD_PHASE_CENTER_DIRECTION, ...

Because the layout *is* xradio's, a daskcal zarr store is a processing set
and a processing set written by xradio opens as a daskcal observation.

Dimensions are ``time, baseline_id, frequency, polarization, uvw_label`` on a
regular (time, baseline) grid; samples missing from the source are present
and flagged (``FLAG=True``, ``WEIGHT=0``).

UVW follow the Measurement Set convention as real data hold it (CASA- and
cotter-written MSs, AIPS UVFITS): ``uvw = X(antenna1) - X(antenna2)`` in the
J2000 frame, and ``V_pq = sum J_p B J_q^H exp(+2 pi i (u l + v m + w (n - 1)) f / c)``
(the phase sign CASA's own predictions (``ft``) give with these UVW, which WSClean and
CASA image; bench/imaging.py).

Time is unix seconds in the UTC scale (``time.attrs["scale"] == "utc"``),
exactly as xradio writes it: Measurement Sets store UTC, so this keeps the
MS <-> zarr round trip lossless. Convert with :func:`ms_time_to_unix` /
:func:`unix_to_ms_time` (MS ``TIME`` is MJD seconds).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

#: MS TIME (MJD seconds, UTC) minus unix seconds: MJD 40587 is 1970-01-01.
MJD_UNIX_OFFSET_S: float = 40587.0 * 86400.0

#: Names of the visibility dimensions, in storage order.
VIS_DIMS: tuple[str, str, str, str] = ("time", "baseline_id", "frequency", "polarization")
#: Name of the child node holding antenna metadata.
ANTENNA_NODE = "antenna_xds"
#: Name of the child node holding field/source metadata (xradio's name).
FIELD_NODE = "field_and_source_base_xds"

#: Stokes/correlation codes of the Measurement Set ``CORR_TYPE`` column (casacore Stokes enum).
STOKES_CODES: dict[str, int] = {
    "I": 1, "Q": 2, "U": 3, "V": 4,
    "RR": 5, "RL": 6, "LR": 7, "LL": 8,
    "XX": 9, "XY": 10, "YX": 11, "YY": 12,
}
STOKES_NAMES: dict[int, str] = {v: k for k, v in STOKES_CODES.items()}

SCHEMA_VERSION = "4.0.0"


def ms_time_to_unix(t_mjd_s: np.ndarray | float) -> np.ndarray | float:
    """MS ``TIME`` (MJD seconds, UTC) to unix seconds (UTC)."""
    return t_mjd_s - MJD_UNIX_OFFSET_S


def unix_to_ms_time(t_unix_s: np.ndarray | float) -> np.ndarray | float:
    """Unix seconds (UTC) to MS ``TIME`` (MJD seconds, UTC)."""
    return t_unix_s + MJD_UNIX_OFFSET_S


def baseline_antenna_pairs(n_ant: int, autocorrelations: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The canonical baseline order: ``antenna1 <= antenna2``, row major.

    Parameters
    ----------
    n_ant : int
        Number of antennas.
    autocorrelations : bool
        Include ``(p, p)`` pairs.

    Returns
    -------
    antenna1, antenna2 : ndarray of int32, shape (n_bl,)
        ``n_bl = n_ant (n_ant + 1) / 2`` with autocorrelations, ``n_ant (n_ant - 1) / 2``
        without.
    """
    a1, a2 = np.triu_indices(n_ant, k=0 if autocorrelations else 1)
    return a1.astype(np.int32), a2.astype(np.int32)


def _now_iso() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat()


def _creator() -> dict[str, str]:
    from daskcal import __version__

    return {"software_name": "daskcal", "version": __version__}


def _quantity(value: float, units: str) -> dict[str, Any]:
    return {"data": float(value), "dims": [], "attrs": {"units": units, "type": "quantity"}}


def quantity_value(attr: Any, default: float | None = None) -> float | None:
    """The number of a quantity attribute (``{"data": x, ...}`` as xradio writes it, a
    one-element list, or a plain number); ``default`` when it is absent."""
    if isinstance(attr, dict):
        attr = attr.get("data")
    if isinstance(attr, list | tuple) and len(attr) == 1:
        attr = attr[0]
    return default if attr is None else float(attr)


def _full(shape: tuple[int, ...], value, dtype, like) -> Any:
    """An array of ``shape`` filled with ``value``: dask if ``like`` is dask."""
    if like is not None and hasattr(like, "dask"):
        import dask.array as da

        return da.full(shape, value, dtype=dtype, chunks=like.chunks)
    return np.full(shape, value, dtype=dtype)


def make_visibility_xds(
    *,
    time_s: np.ndarray,
    frequency_hz: np.ndarray,
    polarization: Sequence[str],
    antenna_names: Sequence[str],
    antenna1: np.ndarray,
    antenna2: np.ndarray,
    visibility,
    uvw_m,
    integration_time_s: float,
    channel_width_hz: float,
    flag=None,
    weight=None,
    effective_integration_time_s=None,
    time_centroid_s=None,
    field_name: str | Sequence[str] = "field_0",
    scan_name: str | Sequence[str] = "0",
    spectral_window_name: str = "spw_0",
    frequency_frame: str = "TOPO",
    uvw_frame: str = "fk5",
    observer: str = "",
    project: str = "",
    processor_type: str = "CORRELATOR",
    description: str = "",
) -> xr.Dataset:
    """Build one visibility partition dataset (an xradio MSv4 ``VisibilityXds``).

    Array arguments may be numpy or dask arrays; nothing is computed.

    Parameters
    ----------
    time_s : ndarray, shape (n_time,)
        Mid-points of the integrations, unix seconds (UTC).
    frequency_hz : ndarray, shape (n_chan,)
        Channel centre frequencies, Hz.
    polarization : sequence of str, length n_pol
        Correlation names, e.g. ``["XX", "XY", "YX", "YY"]`` or ``["RR", "LL"]``.
    antenna_names : sequence of str, length n_ant
        Names indexed by ``antenna1``/``antenna2``.
    antenna1, antenna2 : ndarray of int, shape (n_bl,)
        Antenna indices of each baseline.
    visibility : array, shape (n_time, n_bl, n_chan, n_pol), complex64
        Correlated data, Jy.
    uvw_m : array, shape (n_time, n_bl, 3), float64
        Baseline coordinates, metres, in the Measurement Set convention found in real
        data: ``uvw = X(antenna1) - X(antenna2)`` projected on the phase centre (J2000).
    integration_time_s : float
        Nominal integration time, s.
    channel_width_hz : float
        Channel width, Hz.
    flag : array of bool, same shape as ``visibility``, optional
        Default: all False.
    weight : array of float32, same shape as ``visibility``, optional
        Default: all 1.
    effective_integration_time_s, time_centroid_s : array, shape (n_time, n_bl), optional
        Defaults: ``integration_time_s`` and ``time_s``.
    field_name, scan_name : str or sequence of str (length n_time)
        Field and scan per time step.

    Returns
    -------
    xarray.Dataset
    """
    time_s = np.asarray(time_s, dtype=np.float64)
    frequency_hz = np.asarray(frequency_hz, dtype=np.float64)
    antenna1 = np.asarray(antenna1, dtype=np.int32)
    antenna2 = np.asarray(antenna2, dtype=np.int32)
    names = np.asarray(antenna_names, dtype=str)
    n_time, n_bl = time_s.size, antenna1.size
    n_chan, n_pol = frequency_hz.size, len(polarization)
    vshape = (n_time, n_bl, n_chan, n_pol)
    if tuple(visibility.shape) != vshape:
        raise ValueError(f"visibility has shape {tuple(visibility.shape)}, expected {vshape}")
    if flag is None:
        flag = _full(vshape, False, bool, visibility)
    if weight is None:
        weight = _full(vshape, 1.0, np.float32, visibility)
    if effective_integration_time_s is None:
        effective_integration_time_s = np.full((n_time, n_bl), float(integration_time_s))
    if time_centroid_s is None:
        time_centroid_s = np.repeat(time_s[:, None], n_bl, axis=1)
    if isinstance(field_name, str):
        field_name = [field_name] * n_time
    if isinstance(scan_name, str):
        scan_name = [scan_name] * n_time

    coords = {
        "time": ("time", time_s, {
            "type": "time", "units": "s", "scale": "utc", "format": "unix",
            "integration_time": _quantity(integration_time_s, "s"),
        }),
        "baseline_id": ("baseline_id", np.arange(n_bl, dtype=np.int64)),
        "frequency": ("frequency", frequency_hz, {
            "type": "spectral_coord", "units": "Hz", "observer": frequency_frame,
            "spectral_window_name": spectral_window_name,
            "spectral_window_intents": ["UNSPECIFIED"],
            "reference_frequency": {
                "data": float(frequency_hz[n_chan // 2]) if n_chan else 0.0, "dims": [],
                "attrs": {"units": "Hz", "type": "spectral_coord", "observer": frequency_frame},
            },
            "channel_width": _quantity(channel_width_hz, "Hz"),
        }),
        "polarization": ("polarization", np.asarray(polarization, dtype=str)),
        "uvw_label": ("uvw_label", np.array(["u", "v", "w"])),
        "baseline_antenna1_name": ("baseline_id", names[antenna1]),
        "baseline_antenna2_name": ("baseline_id", names[antenna2]),
        "antenna1": ("baseline_id", antenna1),
        "antenna2": ("baseline_id", antenna2),
        "field_name": ("time", np.asarray(field_name, dtype=str)),
        "scan_name": ("time", np.asarray(scan_name, dtype=str), {"scan_intents": ["UNSPECIFIED"]}),
    }
    data_vars = {
        "VISIBILITY": (VIS_DIMS, visibility, {"type": "quanta", "units": "Jy"}),
        "FLAG": (VIS_DIMS, flag, {"type": "flag"}),
        "WEIGHT": (VIS_DIMS, weight, {"type": "quanta", "units": "unitless"}),
        "UVW": (("time", "baseline_id", "uvw_label"), uvw_m,
                {"type": "uvw", "units": "m", "frame": uvw_frame}),
        "EFFECTIVE_INTEGRATION_TIME": (("time", "baseline_id"), effective_integration_time_s,
                                       {"type": "quantity", "units": "s"}),
        "TIME_CENTROID": (("time", "baseline_id"), time_centroid_s,
                          {"type": "time", "units": "s", "scale": "utc", "format": "unix"}),
    }
    now = _now_iso()
    attrs = {
        "type": "visibility",
        "schema_version": SCHEMA_VERSION,
        "creator": _creator(),
        "creation_date": now,
        "data_groups": {
            "base": {
                "correlated_data": "VISIBILITY", "flag": "FLAG", "weight": "WEIGHT",
                "uvw": "UVW", "field_and_source": FIELD_NODE,
                "description": description or "observed data", "date": now,
            }
        },
        "observation_info": {"observer": [observer], "project_UID": project, "release_date": ""},
        "processor_info": {"type": processor_type, "sub_type": ""},
    }
    return xr.Dataset(data_vars=data_vars, coords=coords, attrs=attrs)


def add_data_group(
    xds: xr.Dataset,
    name: str,
    correlated_data: str,
    *,
    data=None,
    flag: str = "FLAG",
    weight: str = "WEIGHT",
    description: str = "",
) -> xr.Dataset:
    """Return ``xds`` with a further data group (e.g. ``"corrected"`` -> ``VISIBILITY_CORRECTED``).

    Parameters
    ----------
    xds : xarray.Dataset
        A visibility partition.
    name : str
        Data group name (``"base"``, ``"corrected"``, ``"model"``, ...).
    correlated_data : str
        Name of its visibility variable, e.g. ``"VISIBILITY_CORRECTED"``.
    data : array, shape (n_time, n_bl, n_chan, n_pol), optional
        The data to store in ``correlated_data``; if omitted the variable must exist.
    flag, weight : str
        Names of the flag and weight variables of the group.
    """
    out = xds.copy()
    if data is not None:
        out[correlated_data] = (VIS_DIMS, data, {"type": "quanta", "units": "Jy"})
    if correlated_data not in out:
        raise ValueError(f"data group {name!r}: variable {correlated_data!r} is not in the dataset")
    groups = {k: dict(v) for k, v in out.attrs.get("data_groups", {}).items()}
    groups[name] = {
        "correlated_data": correlated_data, "flag": flag, "weight": weight, "uvw": "UVW",
        "field_and_source": FIELD_NODE, "description": description or name, "date": _now_iso(),
    }
    out.attrs = {**out.attrs, "data_groups": groups}
    return out


def make_antenna_xds(
    names: Sequence[str],
    position_itrf_m: np.ndarray,
    dish_diameter_m: np.ndarray | float,
    *,
    telescope_name: str,
    station_names: Sequence[str] | None = None,
    mount: str = "ALT-AZ",
    polarization_type: Sequence[str] = ("X", "Y"),
) -> xr.Dataset:
    """Antenna metadata (an xradio ``AntennaXds``).

    Parameters
    ----------
    names : sequence of str, length n_ant
    position_itrf_m : ndarray, shape (n_ant, 3)
        Geocentric ITRF positions, metres.
    dish_diameter_m : float or ndarray, shape (n_ant,)
        Dish or station diameter, metres.
    telescope_name : str
    station_names : sequence of str, optional
        Defaults to ``names``.
    polarization_type : sequence of str, length 2
        Receptor types, ``("X", "Y")`` or ``("R", "L")``.
    """
    names = np.asarray(names, dtype=str)
    n_ant = names.size
    pos = np.asarray(position_itrf_m, dtype=np.float64).reshape(n_ant, 3)
    diam = np.broadcast_to(np.asarray(dish_diameter_m, dtype=np.float64), (n_ant,)).copy()
    stations = np.asarray(station_names if station_names is not None else names, dtype=str)
    pol_type = np.tile(np.asarray(polarization_type, dtype=str), (n_ant, 1))
    return xr.Dataset(
        data_vars={
            "ANTENNA_POSITION": (("antenna_name", "cartesian_pos_label"), pos, {
                "type": "location", "units": "m", "frame": "ITRS",
                "coordinate_system": "geocentric", "origin_object_name": "earth",
            }),
            "ANTENNA_DISH_DIAMETER": ("antenna_name", diam, {"type": "quantity", "units": "m"}),
            "ANTENNA_RECEPTOR_ANGLE": (("antenna_name", "receptor_label"),
                                       np.zeros((n_ant, 2)), {"type": "quantity", "units": "rad"}),
        },
        coords={
            "antenna_name": ("antenna_name", names),
            "mount": ("antenna_name", np.full(n_ant, mount)),
            "station_name": ("antenna_name", stations),
            "telescope_name": ("antenna_name", np.full(n_ant, telescope_name)),
            "cartesian_pos_label": ("cartesian_pos_label", np.array(["x", "y", "z"])),
            "receptor_label": ("receptor_label", np.array(["pol_0", "pol_1"])),
            "polarization_type": (("antenna_name", "receptor_label"), pol_type),
        },
        attrs={"type": "antenna", "overall_telescope_name": telescope_name,
               "relocatable_antennas": False},
    )


def make_field_and_source_xds(
    field_names: Sequence[str],
    phase_center_rad: np.ndarray,
    *,
    source_names: Sequence[str] | None = None,
    frame: str = "fk5",
) -> xr.Dataset:
    """Field and source metadata (an xradio ``FieldSourceXds``).

    Parameters
    ----------
    field_names : sequence of str, length n_field
    phase_center_rad : ndarray, shape (n_field, 2)
        (RA, Dec) of each field's phase centre, radians, J2000 (FK5).
    source_names : sequence of str, optional
        Defaults to ``field_names``.
    """
    names = np.asarray(field_names, dtype=str)
    pc = np.asarray(phase_center_rad, dtype=np.float64).reshape(names.size, 2)
    sky_attrs = {"type": "sky_coord", "units": "rad", "frame": frame, "equinox": "j2000.0"}
    return xr.Dataset(
        data_vars={
            "FIELD_PHASE_CENTER_DIRECTION": (("field_name", "sky_dir_label"), pc, sky_attrs),
            "SOURCE_DIRECTION": (("field_name", "sky_dir_label"), pc.copy(), sky_attrs),
        },
        coords={
            "field_name": ("field_name", names),
            "source_name": ("field_name", np.asarray(
                source_names if source_names is not None else names, dtype=str)),
            "sky_dir_label": ("sky_dir_label", np.array(["ra", "dec"])),
        },
        attrs={"type": "field_and_source"},
    )


def make_partition(
    vis_xds: xr.Dataset, antenna_xds: xr.Dataset, field_and_source_xds: xr.Dataset
) -> xr.DataTree:
    """Bundle a partition's visibility dataset with its antenna and field metadata."""
    return xr.DataTree.from_dict({
        "/": vis_xds,
        ANTENNA_NODE: antenna_xds,
        FIELD_NODE: field_and_source_xds,
    })


def make_observation(partitions: Mapping[str, xr.DataTree], **attrs: Any) -> xr.DataTree:
    """An observation (processing set) from named partition nodes."""
    root = xr.DataTree(dataset=xr.Dataset(attrs={"type": "processing_set", **attrs}))
    for name, node in partitions.items():
        root[name] = node
    return root


def partition_names(obs: xr.DataTree) -> list[str]:
    """Names of the visibility partitions of an observation, in store order."""
    return [k for k, v in obs.children.items() if v.attrs.get("type") in ("visibility", "radiometer")]


def iter_partitions(obs: xr.DataTree) -> Iterator[tuple[str, xr.Dataset]]:
    """Yield ``(name, visibility xds)`` for each partition (without inherited children)."""
    for name in partition_names(obs):
        yield name, obs[name].to_dataset(inherit=False)


def antenna_xds_of(node: xr.DataTree) -> xr.Dataset:
    """The antenna dataset of a partition node."""
    return node[ANTENNA_NODE].to_dataset(inherit=False)


def field_xds_of(node: xr.DataTree) -> xr.Dataset:
    """The field-and-source dataset of a partition node (xradio data group aware)."""
    vis = node.to_dataset(inherit=False)
    key = FIELD_NODE
    groups = vis.attrs.get("data_groups", {})
    if "base" in groups and groups["base"].get("field_and_source") in node.children:
        key = groups["base"]["field_and_source"]
    return node[key].to_dataset(inherit=False)


def antenna_indices(vis_xds: xr.Dataset, antenna_xds: xr.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Integer antenna indices (into ``antenna_xds.antenna_name``) of each baseline.

    Uses the ``antenna1``/``antenna2`` coordinates when present, otherwise maps
    ``baseline_antenna{1,2}_name`` (as in stores written by xradio).
    """
    if "antenna1" in vis_xds.coords and "antenna2" in vis_xds.coords:
        return (np.asarray(vis_xds["antenna1"].values, dtype=np.int32),
                np.asarray(vis_xds["antenna2"].values, dtype=np.int32))
    lookup = {str(n): i for i, n in enumerate(antenna_xds["antenna_name"].values)}
    a1 = np.array([lookup[str(n)] for n in vis_xds["baseline_antenna1_name"].values], np.int32)
    a2 = np.array([lookup[str(n)] for n in vis_xds["baseline_antenna2_name"].values], np.int32)
    return a1, a2
