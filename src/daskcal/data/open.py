"""One entry point for every input format, and a summary of an observation.

:func:`open_observation` recognises what a path holds and hands it to the
reader of that format (each imported only when needed):

=======================================  ==================================================
what the path is                         reader
=======================================  ==================================================
directory with ``table.dat``             :func:`daskcal.data.ms.read_ms` (Measurement Set)
directory with ``zarr.json``/``.zgroup`` :func:`daskcal.data.zarr_store.open_zarr`
file ``*.fits``/``*.uvfits``/``*.uvf``   :func:`daskcal.data.uvfits.read_uvfits`
or a FITS file with ``GROUPS = T``
directory with ``visdata``+``vartable``  :func:`daskcal.data.uvdata_import.read_with_pyuvdata`
                                         (Miriad)
=======================================  ==================================================

:func:`describe` summarises an observation from its metadata only (instant);
:func:`flagged_fraction` is the one part that reads the data.
"""

from __future__ import annotations

import datetime as _dt
import importlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from daskcal import DaskcalError
from daskcal.data.chunking import ChunkSpec
from daskcal.data.model import (
    ANTENNA_NODE,
    antenna_xds_of,
    field_xds_of,
    iter_partitions,
    partition_names,
    quantity_value,
)


class DataInputError(DaskcalError, ValueError):
    """An input path that cannot be read: missing, of unknown format, or damaged.

    The message is one line starting with the path.
    """


_FITS_SUFFIXES = (".fits", ".uvfits", ".uvf")
_NOT_RECOGNISED = "not a Measurement Set, zarr store, UVFITS file or Miriad data set"


def open_observation(
    path: str | os.PathLike, *, chunks: ChunkSpec = "64MB", data_column: str = "DATA"
) -> xr.DataTree:
    """Open an observation from any supported format, lazily.

    Parameters
    ----------
    path : str or path-like
        A Measurement Set directory, a zarr store (daskcal or xradio
        processing set), a UVFITS file or a Miriad directory.
    chunks : ChunkSpec
        Chunk size of the visibility partitions, e.g. ``"64MB"`` or
        ``"time=100,frequency=64"`` (see :mod:`daskcal.data.chunking`).
    data_column : str
        For a Measurement Set, the column read as ``VISIBILITY`` (``DATA``,
        ``CORRECTED_DATA``, ``MODEL_DATA``); other formats have only ``DATA``.

    Returns
    -------
    xarray.DataTree
        The observation (see :mod:`daskcal.data.model`).

    Raises
    ------
    DataInputError
        The path does not exist, its format is not recognised, or its reader
        is not available.
    """
    p = Path(path)
    if not (p.exists() or p.is_symlink()):
        raise DataInputError(f"{path}: no such file or directory")
    is_ms = p.is_dir() and (p / "table.dat").is_file()
    if data_column != "DATA" and not is_ms:
        raise DataInputError(
            f"{path}: only a Measurement Set has a {data_column} column to choose")
    if p.is_dir():
        if is_ms:
            return _reader("ms", "read_ms", path)(p, chunks=chunks, data_column=data_column)
        if (p / "zarr.json").is_file() or (p / ".zgroup").is_file():
            return _reader("zarr_store", "open_zarr", path)(p, chunks=chunks)
        if (p / "visdata").exists() and (p / "vartable").exists():
            return _reader("uvdata_import", "read_with_pyuvdata", path)(p, chunks=chunks)
    elif p.is_file():
        if p.name == "zarr.json":
            return _reader("zarr_store", "open_zarr", path)(p.parent, chunks=chunks)
        if p.suffix.lower() in _FITS_SUFFIXES or _is_random_groups_fits(p):
            return _reader("uvfits", "read_uvfits", path)(p, chunks=chunks)
    raise DataInputError(f"{path}: {_NOT_RECOGNISED}")


def _reader(module: str, name: str, path) -> Any:
    """``daskcal.data.<module>.<name>``, imported now; a DataInputError if unavailable."""
    full = f"daskcal.data.{module}"
    try:
        return getattr(importlib.import_module(full), name)
    except ModuleNotFoundError as e:
        if e.name is not None and full.startswith(e.name):
            raise DataInputError(f"{path}: its reader {full}.{name} is not available") from e
        raise DataInputError(f"{path}: reading it needs the package {e.name!r}") from e


def _is_random_groups_fits(path: Path) -> bool:
    """Whether the primary header of a FITS file says ``GROUPS = T`` (reads <= 36 kB)."""
    try:
        with open(path, "rb") as f:
            head = f.read(2880 * 12)
    except OSError:
        return False
    if not head.startswith(b"SIMPLE  ="):
        return False
    for i in range(0, len(head) - 79, 80):
        card = head[i:i + 80]
        key = card[:8].strip()
        if key == b"END":
            break
        if key == b"GROUPS" and card[8:10] == b"= ":
            return card[10:].split(b"/")[0].strip() == b"T"
    return False


# --------------------------------------------------------------------------- summary


def _iso(t_unix_s: float) -> str:
    return _dt.datetime.fromtimestamp(t_unix_s, _dt.UTC).isoformat(timespec="milliseconds")


def _scalar_attr(attrs: dict, key: str) -> float | None:
    """A quantity attribute (xradio ``{"data": x, ...}`` dicts or plain numbers)."""
    try:
        return quantity_value(attrs.get(key))
    except (TypeError, ValueError):
        return None


def describe(obs: xr.DataTree, *, flagged: bool = False) -> dict[str, Any]:
    """Summary of an observation from its metadata (instant: no data are read).

    Parameters
    ----------
    obs : xarray.DataTree
        The observation.
    flagged : bool
        Also compute the flagged fraction (reads every flag; see
        :func:`flagged_fraction`). Otherwise ``"flagged_fraction"`` is None.

    Returns
    -------
    dict
        JSON-serialisable, with keys:

        - ``partitions``: list of partition names
        - ``time``: ``start``/``end`` (ISO 8601 UTC, edges of the first and
          last integration), ``start_unix_s``, ``end_unix_s``, ``duration_s``,
          ``integration_s`` (nominal), ``n_time`` (distinct time steps)
        - ``frequency``: ``min_hz``/``max_hz`` (channel centres), ``n_chan``
          (distinct channels), ``channel_width_hz`` (distinct widths),
          ``spectral_windows`` (name, n_chan, min_hz, max_hz per window)
        - ``antennas``: ``count`` and ``names``
        - ``baselines``: ``count`` (distinct antenna pairs),
          ``autocorrelations`` (bool)
        - ``fields``: list of ``{"name", "ra_rad", "dec_rad"}`` (phase centres)
        - ``scans``: distinct scan names; ``polarizations``: correlation names
        - ``flagged_fraction``: float in [0, 1] or None
        - ``data_bytes``: in-memory size of the partitions' data variables, bytes
    """
    names = partition_names(obs)
    times, widths, ints, freqs = [], set(), [], set()
    spws: dict[str, dict[str, Any]] = {}
    antennas: dict[str, None] = {}
    pairs: set[tuple[str, str]] = set()
    fields: dict[str, dict[str, Any]] = {}
    scans: set[str] = set()
    pols: dict[str, None] = {}
    nbytes = 0
    for name, xds in iter_partitions(obs):
        node = obs[name]
        t = np.asarray(xds["time"].values, dtype=np.float64)
        times.append(t)
        dt = _scalar_attr(xds["time"].attrs, "integration_time")
        if dt is None and t.size > 1:
            dt = float(np.median(np.diff(t)))
        ints.append(dt or 0.0)
        f = np.asarray(xds["frequency"].values, dtype=np.float64)
        freqs.update(f.tolist())
        width = _scalar_attr(xds["frequency"].attrs, "channel_width")
        if width is not None:
            widths.add(width)
        spw = str(xds["frequency"].attrs.get("spectral_window_name", name))
        if f.size:
            spws[spw] = {"name": spw, "n_chan": int(f.size),
                         "min_hz": float(f.min()), "max_hz": float(f.max())}
        if ANTENNA_NODE in node.children:
            antennas.update(dict.fromkeys(map(str, antenna_xds_of(node)["antenna_name"].values)))
        a1 = map(str, xds["baseline_antenna1_name"].values)
        a2 = map(str, xds["baseline_antenna2_name"].values)
        pairs.update(zip(a1, a2, strict=True))
        for key, val in _phase_centres(node).items():
            fields.setdefault(key, val)
        if "field_name" in xds.coords:
            for fname in np.unique(xds["field_name"].values).tolist():
                fields.setdefault(str(fname), {"name": str(fname), "ra_rad": None, "dec_rad": None})
        if "scan_name" in xds.coords:
            scans.update(map(str, np.unique(xds["scan_name"].values)))
        pols.update(dict.fromkeys(map(str, xds["polarization"].values)))
        nbytes += int(sum(v.nbytes for v in xds.data_vars.values()))

    all_t = np.concatenate(times) if times else np.empty(0)
    half = (max(ints) if ints else 0.0) / 2
    start = float(all_t.min()) - half if all_t.size else None
    end = float(all_t.max()) + half if all_t.size else None
    fr = np.array(sorted(freqs))
    return {
        "partitions": names,
        "time": {
            "start": _iso(start) if start is not None else None,
            "end": _iso(end) if end is not None else None,
            "start_unix_s": start, "end_unix_s": end,
            "duration_s": (end - start) if start is not None else 0.0,
            "integration_s": sorted(set(ints)) if len(set(ints)) > 1 else (ints[0] if ints else None),
            "n_time": int(np.unique(all_t).size),
        },
        "frequency": {
            "min_hz": float(fr.min()) if fr.size else None,
            "max_hz": float(fr.max()) if fr.size else None,
            "n_chan": int(fr.size),
            "channel_width_hz": sorted(widths),
            "spectral_windows": list(spws.values()),
        },
        "antennas": {"count": len(antennas), "names": list(antennas)},
        "baselines": {"count": len(pairs), "autocorrelations": any(a == b for a, b in pairs)},
        "fields": list(fields.values()),
        "scans": sorted(scans, key=_natural),
        "polarizations": list(pols),
        "flagged_fraction": flagged_fraction(obs) if flagged else None,
        "data_bytes": nbytes,
    }


def _natural(s: str) -> tuple:
    return (0, int(s), "") if s.isdigit() else (1, 0, s)


def _phase_centres(node: xr.DataTree) -> dict[str, dict[str, Any]]:
    """``{field: {"name", "ra_rad", "dec_rad"}}`` from a partition's field dataset."""
    try:
        fxds = field_xds_of(node)
    except KeyError:
        return {}
    if "FIELD_PHASE_CENTER_DIRECTION" not in fxds:
        return {}
    pc = fxds["FIELD_PHASE_CENTER_DIRECTION"]
    values = np.asarray(pc.values, dtype=np.float64).reshape(-1, pc.shape[-1])
    if "field_name" in pc.dims:
        keys = list(map(str, pc["field_name"].values))
    else:  # e.g. an ephemeris field: one direction per time; report the first
        keys = [str(np.asarray(fxds["field_name"].values).ravel()[0])] if "field_name" in fxds else ["?"]
    return {k: {"name": k, "ra_rad": float(v[0]), "dec_rad": float(v[1])}
            for k, v in zip(keys, values, strict=False)}


def flagged_fraction(obs: xr.DataTree) -> float:
    """Fraction of flagged visibility samples over all partitions, in [0, 1].

    Reads every flag chunk: one ``dask.compute`` over all partitions. Uses the
    flag variable of each partition's ``base`` data group (``FLAG``).
    """
    import dask

    sums, total = [], 0
    for _, xds in iter_partitions(obs):
        base = (xds.attrs.get("data_groups", {}).get("base", {}) or {})
        flag = xds[base.get("flag", "FLAG")]
        sums.append(flag.data.sum(dtype=np.int64) if flag.chunks else int(flag.values.sum()))
        total += flag.size
    if not total:
        return 0.0
    (computed,) = dask.compute(sums)
    return float(sum(int(s) for s in computed)) / total
