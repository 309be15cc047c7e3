"""Gains datasets to and from H5parm, the HDF5 solution format of LoSoTo and DP3.

Layout written (one solution set; every name and string is what LoSoTo's
``makeSolset`` / ``makeSoltab`` and DP3's ``H5Parm`` write)::

    /<solset>                    group, attr h5parm_version = "1.0"
        antenna                  table: name S16, position float32[3] (ITRF, m)
        source                   table: name S128, dir float32[2] (RA, Dec, rad, J2000)
        amplitude000             group, attr TITLE = "amplitude"  [complex modes]
            time                 float64 (n_time,)  cell centres, MJD seconds (UTC);
                                 attrs daskcal_lower/daskcal_upper: cell edges
            freq                 float64 (n_freq,)  cell centres, Hz; edges as time
            ant                  S (n_ant,)          antenna names
            dir                  S (1,)              direction name
            pol                  S (n_pol,)          XX, YY or XX, XY, YX, YY [not scalar]
            val                  float64, attr AXES = "time,freq,ant,dir,pol"
            weight               float32, same shape and AXES; 0 where GAIN_FLAG
        phase000                 as amplitude000, TITLE = "phase", val in radians

Scalar modes have no ``pol`` axis (``AXES = "time,freq,ant,dir"``), phase-only modes no
``amplitude000``. Strings are fixed length and NUL-terminated (DP3 needs the NUL).
Flagged solutions keep their values with weight 0 (LoSoTo's convention). Nothing but
the standard names is added to a soltab (strict H5parm readers reject other children):
daskcal's extras (cell edges of axes up to 4096 long, mode, receptors) are attributes.

:func:`read_h5parm` reads such a file (or one written by LoSoTo or DP3 with ``time``,
``freq`` and ``ant`` axes, in any axis order) back into a gains dataset as made by
:func:`daskcal.stages.solve.solve` (``GAIN``, ``GAIN_FLAG`` and cell edges; the solver
diagnostics are not stored).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import xarray as xr

from daskcal import DaskcalError
from daskcal.data.model import MJD_UNIX_OFFSET_S

_TIME_ATTRS = {"type": "time", "units": "s", "scale": "utc", "format": "unix"}
_FREQ_ATTRS = {"type": "spectral_coord", "units": "Hz"}
_GAIN_DIMS = ("gain_time", "gain_frequency", "antenna_name", "receptor")
_SCALAR_MODES = ("scalar_phase", "scalar_complex")
_PHASE_MODES = ("scalar_phase", "diagonal_phase")
#: Longest axis whose cell edges are stored (as attributes: HDF5 keeps attributes below 64 kB).
_MAX_EDGE_ATTR = 4096


class H5parmError(DaskcalError, ValueError):
    """An H5parm file, or a gains dataset, that cannot be converted."""


def _import_h5py():
    try:
        import h5py
    except ImportError:  # pragma: no cover - h5py is a dependency
        raise H5parmError("H5parm support needs h5py: pip install h5py") from None
    return h5py


def _names(values, extra: int = 1) -> np.ndarray:
    """Fixed-length NUL-terminated byte strings (one spare byte, as DP3 expects)."""
    enc = [str(v).encode() for v in values]
    width = max([len(e) for e in enc] + [1]) + extra
    return np.array(enc, dtype=f"S{width}")


def _leaf_attrs(dset, title: str = "") -> None:
    # PyTables' bookkeeping attributes, so that PyTables (LoSoTo) sees plain arrays
    dset.attrs["CLASS"] = np.bytes_("ARRAY")
    dset.attrs["VERSION"] = np.bytes_("2.4")
    dset.attrs["TITLE"] = np.bytes_(title)
    dset.attrs["FLAVOR"] = np.bytes_("numpy")


def _table(group, name: str, rows: np.ndarray, title: str) -> None:
    dset = group.create_dataset(name, data=rows, maxshape=(None,), chunks=True)
    dset.attrs["CLASS"] = np.bytes_("TABLE")
    dset.attrs["VERSION"] = np.bytes_("2.7")
    dset.attrs["TITLE"] = np.bytes_(title)
    for i, field in enumerate(rows.dtype.names):
        dset.attrs[f"FIELD_{i}_NAME"] = np.bytes_(field)
    dset.attrs["NROWS"] = np.int64(rows.size)


def _antenna_rows(names: list[str], antenna_xds: xr.Dataset | None) -> np.ndarray:
    rows = np.zeros(len(names), dtype=[("name", "S16"), ("position", np.float32, (3,))])
    rows["name"] = [n.encode()[:16] for n in names]
    if antenna_xds is not None and "ANTENNA_POSITION" in antenna_xds:
        pos = antenna_xds["ANTENNA_POSITION"]
        known = {str(n): i for i, n in enumerate(antenna_xds["antenna_name"].values)}
        values = np.asarray(pos.values, dtype=np.float64)
        for i, n in enumerate(names):
            if n in known:
                rows["position"][i] = values[known[n]]
    return rows


def _gain_arrays(gains: xr.Dataset) -> tuple[np.ndarray, np.ndarray, bool]:
    if "GAIN" not in gains or "GAIN_FLAG" not in gains:
        raise H5parmError("the gains dataset has no GAIN or GAIN_FLAG variable")
    full = "receptor2" in gains["GAIN"].dims
    dims = _GAIN_DIMS + (("receptor2",) if full else ())
    if set(gains["GAIN"].dims) != set(dims):
        raise H5parmError(f"GAIN has dims {gains['GAIN'].dims}; expected {dims}")
    g = np.asarray(gains["GAIN"].transpose(*dims).values, dtype=np.complex128)
    f = np.asarray(gains["GAIN_FLAG"].transpose(*dims).values, dtype=bool)
    return g, f, full


def write_h5parm(
    gains: xr.Dataset,
    path: str | os.PathLike,
    *,
    solset: str = "sol000",
    antenna_xds: xr.Dataset | None = None,
    direction_rad: tuple[float, float] | None = None,
    direction_name: str = "pointing",
    overwrite: bool = False,
) -> Path:
    """Write a gains dataset as an H5parm solution set (see the module notes for the layout).

    Parameters
    ----------
    gains : xarray.Dataset
        Gains as made by :func:`daskcal.stages.solve.solve` (``GAIN``, ``GAIN_FLAG``,
        coordinates with cell edges, attribute ``mode``); dask-backed gains are computed.
    path : path-like
        The H5parm file; created, or opened for appending a new solution set.
    solset : str
        Name of the solution set (LoSoTo: ``[A-Za-z0-9_-]+``, e.g. ``sol000``).
    antenna_xds : xarray.Dataset, optional
        Antenna metadata (``ANTENNA_POSITION``, ITRF m) for the ``antenna`` table;
        positions are zero without it.
    direction_rad : (float, float), optional
        (RA, Dec) of the solutions' direction, radians (J2000), for the ``source``
        table; (0, 0) without it.
    direction_name : str
        Name of the single direction (``dir`` axis and ``source`` table).
    overwrite : bool
        Replace an existing solution set of that name (else it is an error).

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    H5parmError
        For gains without GAIN/GAIN_FLAG, a bad solset name or an existing solset.
    """
    import re

    h5py = _import_h5py()
    if not re.fullmatch(r"[A-Za-z0-9_-]+", solset):
        raise H5parmError(f"solset name {solset!r} must match [A-Za-z0-9_-]+ (LoSoTo)")
    path = Path(path)
    mode = str(gains.attrs.get("mode", "diagonal_complex"))
    g, flag, full = _gain_arrays(gains)
    receptors = [str(r) for r in gains["receptor"].values]
    names = [str(n) for n in gains["antenna_name"].values]
    scalar = mode in _SCALAR_MODES and not full
    if full:
        pols = [a + b for a in receptors for b in receptors]
        g = g.reshape(g.shape[:3] + (4,))
        flag = flag.reshape(flag.shape[:3] + (4,))
    else:
        pols = [r + r for r in receptors]
    if scalar:
        g, flag = g[..., :1], flag.any(axis=-1, keepdims=True)
    g = g[:, :, :, None, :]          # (time, freq, ant, dir, pol)
    weight = (~flag[:, :, :, None, :]).astype(np.float32)
    axes = "time,freq,ant,dir" if scalar else "time,freq,ant,dir,pol"
    if scalar:
        g, weight = g[..., 0], weight[..., 0]
    time_mjd = np.asarray(gains["gain_time"].values, np.float64) + MJD_UNIX_OFFSET_S
    axis_values = {"time": time_mjd,
                   "freq": np.asarray(gains["gain_frequency"].values, np.float64),
                   "ant": _names(names), "dir": _names([direction_name]), "pol": _names(pols)}
    edges = {}
    for key, coord, offset in (("time", "gain_time", MJD_UNIX_OFFSET_S),
                               ("freq", "gain_frequency", 0.0)):
        for side in ("lower", "upper"):
            if f"{coord}_{side}" in gains.coords:
                edges[f"{key}_{side}"] = np.asarray(gains[f"{coord}_{side}"].values,
                                                    np.float64) + offset
    soltabs = {"phase000": ("phase", np.angle(g))}
    if mode not in _PHASE_MODES:
        soltabs = {"amplitude000": ("amplitude", np.abs(g)), **soltabs}

    with h5py.File(path, "a") as h5:
        if solset in h5:
            if not overwrite:
                raise H5parmError(f"{path}: solution set {solset!r} exists (use overwrite)")
            del h5[solset]
        ss = h5.create_group(solset)
        ss.attrs["h5parm_version"] = np.bytes_("1.0")
        _table(ss, "antenna", _antenna_rows(names, antenna_xds), "Antenna names and positions")
        src = np.zeros(1, dtype=[("name", "S128"), ("dir", np.float32, (2,))])
        src["name"] = direction_name.encode()[:128]
        if direction_rad is not None:
            src["dir"][0] = np.asarray(direction_rad, np.float64)
        _table(ss, "source", src, "Source names and directions")
        for tab_name, (title, values) in soltabs.items():
            st = ss.create_group(tab_name)
            st.attrs["TITLE"] = np.bytes_(title)
            st.attrs["parmdb_type"] = np.bytes_("")
            st.attrs["daskcal_mode"] = np.bytes_(mode)
            st.attrs["daskcal_receptors"] = np.bytes_(",".join(receptors))
            st.attrs["daskcal_ref_antenna"] = np.bytes_(str(gains.attrs.get("ref_antenna", "")))
            for ax in axes.split(","):
                dset = st.create_dataset(ax, data=axis_values[ax])
                _leaf_attrs(dset)
                for side in ("lower", "upper"):
                    if f"{ax}_{side}" in edges and edges[f"{ax}_{side}"].size <= _MAX_EDGE_ATTR:
                        dset.attrs[f"daskcal_{side}"] = edges[f"{ax}_{side}"]
            for leaf, data in (("val", values.astype(np.float64)), ("weight", weight)):
                dset = st.create_dataset(leaf, data=data)
                _leaf_attrs(dset)
                dset.attrs["AXES"] = np.bytes_(axes)
    return path


def _decode(values) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in np.asarray(values).tolist()]


def _attr_str(obj, key: str, default: str = "") -> str:
    val = obj.attrs.get(key, default)
    return val.decode() if isinstance(val, bytes) else str(val)


def _edges(centres: np.ndarray, lower, upper) -> tuple[np.ndarray, np.ndarray]:
    """Cell edges stored in the file, else half-way between neighbouring centres."""
    if lower is not None and upper is not None:
        return np.asarray(lower, np.float64), np.asarray(upper, np.float64)
    if centres.size == 1:
        return centres - 0.5, centres + 0.5
    mid = 0.5 * (centres[1:] + centres[:-1])
    lo = np.concatenate([[centres[0] - (mid[0] - centres[0])], mid])
    hi = np.concatenate([mid, [centres[-1] + (centres[-1] - mid[-1])]])
    return lo, hi


def _read_soltab(st, path, name, direction):
    axes = _attr_str(st["val"], "AXES").split(",") if "val" in st else []
    if not axes or "weight" not in st:
        raise H5parmError(f"{path}: soltab {name!r} has no val/weight with an AXES attribute")
    missing = [a for a in ("time", "freq", "ant") if a not in axes]
    if missing:
        raise H5parmError(f"{path}: soltab {name!r} has no {'/'.join(missing)} axis "
                          f"(axes {','.join(axes)})")
    unknown = [a for a in axes if a not in ("time", "freq", "ant", "dir", "pol")]
    if unknown:
        raise H5parmError(f"{path}: soltab {name!r} has unsupported axes {unknown}")
    val = np.asarray(st["val"][()], np.float64)
    weight = np.asarray(st["weight"][()], np.float64)
    if val.shape != weight.shape or val.ndim != len(axes):
        raise H5parmError(f"{path}: soltab {name!r}: val {val.shape} and weight "
                          f"{weight.shape} do not match the axes {','.join(axes)}")
    if "dir" in axes:
        dirs = _decode(st["dir"][()])
        if direction is None and len(dirs) > 1:
            raise H5parmError(f"{path}: soltab {name!r} has directions {dirs}; pick one")
        k = 0 if direction is None else dirs.index(direction) if direction in dirs else -1
        if k < 0:
            raise H5parmError(f"{path}: soltab {name!r} has no direction {direction!r} "
                              f"(directions {dirs})")
        i = axes.index("dir")
        val, weight = np.take(val, k, axis=i), np.take(weight, k, axis=i)
        axes = axes[:i] + axes[i + 1:]
    order = [a for a in ("time", "freq", "ant", "pol") if a in axes]
    perm = [axes.index(a) for a in order]
    val, weight = val.transpose(perm), weight.transpose(perm)
    if "pol" not in axes:
        val, weight = val[..., None], weight[..., None]
    pols = _decode(st["pol"][()]) if "pol" in axes else None
    return val, weight, pols


def read_h5parm(path: str | os.PathLike, *, solset: str = "sol000",
                direction: str | None = None) -> xr.Dataset:
    """Read an H5parm solution set back into a gains dataset.

    Parameters
    ----------
    path : path-like
    solset : str
        Solution set to read.
    direction : str, optional
        Direction to read (default: the only one).

    Returns
    -------
    xarray.Dataset
        ``GAIN`` complex128 (gain_time, gain_frequency, antenna_name, receptor
        [, receptor2]) (amplitude x exp(i phase), amplitude 1 without an amplitude
        soltab), ``GAIN_FLAG`` (weight 0 or non-finite value; such gains are set to 1
        where not finite), coordinates with cell edges (from the file, or half-way
        between centres), numpy-backed. Attributes ``type``, ``mode``, ``ref_antenna``.

    Raises
    ------
    H5parmError
        For a missing or unreadable file, solset, soltab or axis.
    """
    h5py = _import_h5py()
    path = Path(path)
    if not path.is_file():
        raise H5parmError(f"{path}: no such H5parm file")
    try:
        h5 = h5py.File(path, "r")
    except OSError:
        raise H5parmError(f"{path}: not an HDF5 file") from None
    with h5:
        if solset not in h5:
            raise H5parmError(f"{path}: no solution set {solset!r} (has {sorted(h5)})")
        ss = h5[solset]
        tabs = {}
        for name, st in ss.items():
            if isinstance(st, h5py.Group):
                title = _attr_str(st, "TITLE")
                kind = title.removeprefix("scalar") if title.startswith("scalar") else title
                if kind in ("amplitude", "phase") and kind not in tabs:
                    tabs[kind] = (name, st)
        if "phase" not in tabs and "amplitude" not in tabs:
            raise H5parmError(f"{path}: solution set {solset!r} has no phase or amplitude soltab")
        ref_name, ref_st = tabs.get("amplitude", tabs.get("phase"))
        parts = {k: _read_soltab(st, path, name, direction) for k, (name, st) in tabs.items()}
        time = np.asarray(ref_st["time"][()], np.float64)
        freq = np.asarray(ref_st["freq"][()], np.float64)
        ants = _decode(ref_st["ant"][()])
        t_lo, t_hi = _edges(time, *(ref_st["time"].attrs.get(f"daskcal_{k}")
                                    for k in ("lower", "upper")))
        f_lo, f_hi = _edges(freq, *(ref_st["freq"].attrs.get(f"daskcal_{k}")
                                    for k in ("lower", "upper")))
        mode = _attr_str(ref_st, "daskcal_mode")
        receptors = _attr_str(ref_st, "daskcal_receptors")
        ref_antenna = _attr_str(ref_st, "daskcal_ref_antenna")
    shapes = {k: v[0].shape for k, v in parts.items()}
    if len(set(shapes.values())) > 1:
        raise H5parmError(f"{path}: amplitude and phase soltabs have different shapes {shapes}")
    amp, a_w, pols = parts.get("amplitude", (None, None, None))
    phase, p_w, p_pols = parts.get("phase", (None, None, None))
    pols = pols or p_pols
    if amp is None:
        amp, a_w = np.ones_like(phase), np.ones_like(phase)
    if phase is None:
        phase, p_w = np.zeros_like(amp), np.ones_like(amp)
    gain = amp * np.exp(1j * phase)
    flag = (a_w == 0) | (p_w == 0) | ~np.isfinite(gain)
    gain = np.where(np.isfinite(gain), gain, 1.0 + 0j)
    if pols is None:
        labels = receptors.split(",") if receptors else ["X", "Y"]
        gain = np.repeat(gain, 2, axis=-1)
        flag = np.repeat(flag, 2, axis=-1)
        full = False
    elif len(pols) == 4:
        labels = [pols[0][0], pols[3][0]]
        gain = gain.reshape(gain.shape[:3] + (2, 2))
        flag = flag.reshape(flag.shape[:3] + (2, 2))
        full = True
    elif len(pols) == 2:
        labels = [p[0] for p in pols]
        full = False
    else:
        raise H5parmError(f"{path}: unsupported polarizations {pols}")
    if not mode:
        phase_only = "amplitude" not in parts
        mode = ("full_jones" if full else
                ("scalar_" if pols is None else "diagonal_") + ("phase" if phase_only
                                                                else "complex"))
    dims = _GAIN_DIMS + (("receptor2",) if full else ())
    t_unix = time - MJD_UNIX_OFFSET_S
    coords = {
        "gain_time": ("gain_time", t_unix, _TIME_ATTRS),
        "gain_time_lower": ("gain_time", t_lo - MJD_UNIX_OFFSET_S, _TIME_ATTRS),
        "gain_time_upper": ("gain_time", t_hi - MJD_UNIX_OFFSET_S, _TIME_ATTRS),
        "gain_frequency": ("gain_frequency", freq, _FREQ_ATTRS),
        "gain_frequency_lower": ("gain_frequency", f_lo, _FREQ_ATTRS),
        "gain_frequency_upper": ("gain_frequency", f_hi, _FREQ_ATTRS),
        "antenna_name": ("antenna_name", np.asarray(ants, dtype=str)),
        "receptor": ("receptor", np.asarray(labels, dtype=str)),
    }
    if full:
        coords["receptor2"] = ("receptor2", np.asarray(labels, dtype=str))
    return xr.Dataset(
        {"GAIN": (dims, gain.astype(np.complex128), {"type": "gain", "units": "unitless"}),
         "GAIN_FLAG": (dims, flag, {"type": "flag"})},
        coords=coords,
        attrs={"type": "gain", "mode": mode, "jones_convention": "V_pq = G_p M_pq G_q^H",
               "ref_antenna": ref_antenna or ants[0], "source": f"{path.name}:{solset}"})


__all__ = ["H5parmError", "read_h5parm", "write_h5parm"]
