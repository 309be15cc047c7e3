"""Write observations to Measurement Sets: a complete new MS, or one column of an existing MS.

Both writers view a grid variable ``(time, baseline, ...)`` as rows
``(time * baseline, ...)`` (a reshape that keeps the time chunks, baselines
being whole) and write chunk by chunk; nothing is loaded whole.

* **New MS** (:func:`write_ms` on a path that does not exist, or with
  ``overwrite=True``): one row per grid cell, partitions one after the other.
  The MS is created with casacore's ``default_ms`` (required columns and
  subtables with their MEASINFO/QuantumUnits), the subtables are filled, then a
  :func:`dask.array.blockwise` task per row block ``putcol``\\ s every main-table
  column of its rows under a process lock and casacore's inter-process table
  lock. Row blocks hold whole channels and at most :data:`WRITE_CHUNK_BYTES` of
  visibilities+flags+weights. Everything happens in a temporary sibling
  directory renamed into place at the end.
* **Existing MS**: rows are matched by (TIME, ANTENNA1, ANTENNA2) within the
  partition's FIELD_ID(s) and DATA_DESC_ID (found by field name, channel
  frequencies and correlations); grid cells without an MS row are skipped and MS
  rows without a grid cell are left alone. The matched rows of each grid chunk
  are gathered by a blockwise task and written with dask-ms ``xds_to_table``
  (``ROWID``), which serialises table access with any dask-ms reads of the same MS.
"""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import xarray as xr

from daskcal.data._ms_tables import (
    DATA_COLUMNS,
    MeasurementSetError,
    NewMSTables,
    add_data_column,
    check_ms,
    create_ms,
    open_table,
    process_lock,
    read_metadata,
    receptor_types,
    regular_chunks,
    split_chunks,
    write_subtables,
)
from daskcal.data.chunking import BYTES_PER_SAMPLE, resolve_chunks
from daskcal.data.model import (
    antenna_indices,
    antenna_xds_of,
    field_xds_of,
    partition_names,
    unix_to_ms_time,
)

__all__ = ["WRITE_CHUNK_BYTES", "write_ms"]

#: Most bytes of visibilities+flags+weights (13 per sample) one write task holds.
WRITE_CHUNK_BYTES = 64_000_000
#: MS columns write_ms can write into an existing MS.
WRITABLE_COLUMNS = (*DATA_COLUMNS, "FLAG")


@dataclass
class _Part:
    name: str
    vis: xr.Dataset
    ant: xr.Dataset
    field: xr.Dataset

    @property
    def shape(self) -> tuple[int, int, int, int]:
        s = self.vis.sizes
        return s["time"], s["baseline_id"], s["frequency"], s["polarization"]


def write_ms(
    obs_or_node: xr.DataTree,
    path: str | Path,
    *,
    data_group: str = "base",
    column: str = "DATA",
    overwrite: bool = False,
) -> Path:
    """Write an observation or one partition to a Measurement Set.

    Parameters
    ----------
    obs_or_node : xarray.DataTree
        An observation (processing set) or one partition node of it.
    path : str or Path
        The MS. If it is an existing MS (and ``overwrite`` is False), ``column``
        of the rows matching the grid is written and nothing else changes. If it
        does not exist (or ``overwrite`` is True), a complete new MS is written.
    data_group : str
        Data group whose ``correlated_data`` (or ``flag``) is written.
    column : str
        ``DATA``, ``CORRECTED_DATA`` or ``MODEL_DATA`` (visibilities, Jy) or
        ``FLAG`` (the group's flags; ``FLAG_ROW`` is set to their AND over
        channels and correlations). In an existing MS a missing visibility
        column is created (tiled storage); rows the observation does not cover
        are set to 0. A new MS always has ``DATA`` (from ``data_group``, or from
        ``"base"`` when ``column`` names another column), ``FLAG``, ``FLAG_ROW``,
        ``WEIGHT_SPECTRUM``, ``WEIGHT`` (channel mean), ``SIGMA`` (``WEIGHT**-0.5``,
        0 where the weight is 0) and one row per grid cell.
    overwrite : bool
        Replace whatever is at ``path`` by a new MS.

    Returns
    -------
    Path
        The MS written.

    Raises
    ------
    MeasurementSetError
        ``path`` exists and is not an MS (without ``overwrite``); the data group
        or column is unknown; rows of an existing MS cannot be matched (no field,
        spectral window/polarization or antenna of that name, different shape).
    """
    name = str(path)
    column = column.upper()
    if column not in WRITABLE_COLUMNS:
        raise MeasurementSetError(
            f"{name}: cannot write column {column!r}; choose among {', '.join(WRITABLE_COLUMNS)}")
    parts = _partitions(obs_or_node, name)
    for p in parts:
        _group_var(p, data_group, "flag" if column == "FLAG" else "correlated_data", name)
    target = Path(path).expanduser()
    if (target.exists() or target.is_symlink()) and not overwrite:
        if (target / "table.dat").is_file():
            return _update_ms(parts, target, name, data_group, column)
        raise MeasurementSetError(
            f"{name}: exists and is not a Measurement Set; pass overwrite=True to replace it")
    return _new_ms(parts, target, name, data_group, column)


def _partitions(obj: xr.DataTree, name: str) -> list[_Part]:
    if not isinstance(obj, xr.DataTree):
        raise TypeError(f"write_ms needs an xarray.DataTree observation or partition, not {type(obj)}")
    if obj.attrs.get("type") == "visibility":
        nodes = [(obj.name or "partition", obj)]
    else:
        nodes = [(n, obj[n]) for n in partition_names(obj)]
    if not nodes:
        raise MeasurementSetError(f"{name}: the observation to write has no visibility partitions")
    return [_Part(n, node.to_dataset(inherit=False), antenna_xds_of(node), field_xds_of(node))
            for n, node in nodes]


def _group_var(part: _Part, group: str, role: str, name: str) -> str:
    groups = part.vis.attrs.get("data_groups", {})
    if group not in groups:
        raise MeasurementSetError(
            f"{name}: partition {part.name} has no data group {group!r} (has {sorted(groups)})")
    var = groups[group].get(role)
    if var not in part.vis:
        raise MeasurementSetError(f"{name}: partition {part.name} has no variable {var!r}")
    return var


# -- grid -> rows ----------------------------------------------------------------------------


def _time_chunks(part: _Part) -> tuple[int, ...]:
    data = part.vis["VISIBILITY"].data if "VISIBILITY" in part.vis else None
    if isinstance(data, da.Array):
        return data.chunks[0]
    n_t, n_bl, n_f, n_p = part.shape
    return regular_chunks(n_t, resolve_chunks(WRITE_CHUNK_BYTES, n_t, n_bl, n_f, n_p)["time"])


def _rows(values, tchunks: tuple[int, ...]) -> da.Array:
    """A grid array (n_time, n_bl, ...) as dask rows (n_time * n_bl, ...), time chunks kept."""
    x = values if isinstance(values, da.Array) else da.from_array(np.asarray(values))
    keep = {2: x.chunks[2]} if x.ndim == 4 else {}
    x = x.rechunk({0: tchunks, **{i: -1 for i in range(1, x.ndim)}, **keep})
    return x.reshape((x.shape[0] * x.shape[1],) + x.shape[2:])


def _per_row(per_time: np.ndarray, per_bl: np.ndarray | None, n_bl: int,
             tchunks: tuple[int, ...]) -> da.Array:
    """A per-time quantity, or a per-baseline one if given, on the (n_time, n_bl) grid."""
    n_t = sum(tchunks)
    if per_bl is None:
        x = da.from_array(per_time, chunks=(tchunks,))[:, None]
    else:
        x = da.from_array(per_bl, chunks=(n_bl,))[None, :]
    return da.broadcast_to(x, (n_t, n_bl), chunks=(tchunks, n_bl))


def _row_budget(n_chan: int, n_pol: int) -> int:
    return max(1, WRITE_CHUNK_BYTES // max(1, n_chan * n_pol * BYTES_PER_SAMPLE))


def _scan_numbers(names: np.ndarray) -> np.ndarray:
    """SCAN_NUMBER of each scan name (the number itself when numeric)."""
    lookup: dict[str, int] = {}
    out = np.empty(names.size, dtype=np.int32)
    for k, s in enumerate(map(str, names)):
        if s.lstrip("-").isdigit():
            out[k] = int(s)
        else:
            out[k] = lookup.setdefault(s, len(lookup) + 1)
    return out


# -- a new Measurement Set -------------------------------------------------------------------


def _new_ms(parts: list[_Part], target: Path, name: str, data_group: str, column: str) -> Path:
    target = target.absolute()
    for p in parts:
        src = p.vis.attrs.get("partition_info", {}).get("ms_path")
        if src and target.exists() and Path(src).resolve() == target.resolve():
            raise MeasurementSetError(
                f"{name}: cannot overwrite the Measurement Set the observation is read from")
    main = "DATA" if column == "FLAG" else column
    groups = {main: data_group}  # MS column -> data group whose correlated data it gets
    if main != "DATA":
        groups["DATA"] = "base" if "base" in parts[0].vis.attrs.get("data_groups", {}) else data_group
    tabs, layout = _layout(parts, name, data_group)
    n_rows = sum(p.shape[0] * p.shape[1] for p in parts)
    n_pol = max(p.shape[3] for p in parts)
    n_chan = max(p.shape[2] for p in parts)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        create_ms(tmp, name, n_rows, sorted(groups), n_pol, n_chan,
                  str(parts[0].vis["UVW"].attrs.get("frame", "fk5")))
        write_subtables(tmp, name, tabs)
        tokens = []
        row0 = 0
        for p, lay in zip(parts, layout, strict=True):
            data_vars = {c: _group_var(p, g, "correlated_data", name) for c, g in groups.items()}
            tokens.append(_write_new_rows(p, tmp, row0, lay, data_vars, data_group, name))
            row0 += p.shape[0] * p.shape[1]
        dask.compute(*tokens)
        old = None
        if target.exists() or target.is_symlink():
            old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(target, old)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old)
        else:
            old.unlink()
    return target


@dataclass
class _RowLayout:
    ddid: int
    obs_id: int
    field_ids: np.ndarray  # per time
    ant_ids: np.ndarray  # per antenna of the partition's antenna_xds


def _layout(parts: list[_Part], name: str, data_group: str) -> tuple[NewMSTables, list[_RowLayout]]:
    """Subtable rows (unions over partitions) and each partition's ids into them."""
    ants: dict[str, int] = {}
    ant_rows: list[tuple] = []
    fields: dict[str, int] = {}
    field_rows: list[tuple] = []
    sources: dict[str, int] = {}
    source_dirs: list[np.ndarray] = []
    spws: dict[tuple, int] = {}
    pols: dict[tuple, int] = {}
    ddids: dict[tuple[int, int], int] = {}
    obs: dict[tuple[str, str, str], int] = {}
    obs_range: list[list[float]] = []
    layout = []
    t_min = np.inf
    for p in parts:
        vis, ant, fld = p.vis, p.ant, p.field
        corr = [str(c) for c in vis["polarization"].values]
        names = [str(n) for n in ant["antenna_name"].values]
        default_types = receptor_types(corr)
        types = (ant["polarization_type"].values if "polarization_type" in ant.coords
                 else np.tile(default_types, (len(names), 1)))
        angles = (ant["ANTENNA_RECEPTOR_ANGLE"].values if "ANTENNA_RECEPTOR_ANGLE" in ant
                  else np.zeros((len(names), 2)))
        ids = []
        for k, n in enumerate(names):
            if n not in ants:
                ants[n] = len(ants)
                ant_rows.append((
                    n, str(ant["station_name"].values[k]) if "station_name" in ant.coords else n,
                    str(ant["mount"].values[k]) if "mount" in ant.coords else "ALT-AZ",
                    ant["ANTENNA_POSITION"].values[k],
                    float(ant["ANTENNA_DISH_DIAMETER"].values[k])
                    if "ANTENNA_DISH_DIAMETER" in ant else 0.0,
                    [str(x) for x in np.asarray(types[k]).reshape(-1)[:2]],
                    np.asarray(angles[k], dtype=np.float64).reshape(-1)[:2]))
            ids.append(ants[n])
        fnames = [str(f) for f in fld["field_name"].values]
        snames = ([str(s) for s in fld["source_name"].values] if "source_name" in fld.coords
                  else fnames)
        for k, f in enumerate(fnames):
            if f in fields:
                continue
            if snames[k] not in sources:
                sources[snames[k]] = len(sources)
                sdir = fld["SOURCE_DIRECTION"] if "SOURCE_DIRECTION" in fld else fld[
                    "FIELD_PHASE_CENTER_DIRECTION"]
                source_dirs.append(np.asarray(sdir.values[k], dtype=np.float64))
            fields[f] = len(fields)
            field_rows.append((f, np.asarray(fld["FIELD_PHASE_CENTER_DIRECTION"].values[k],
                                             dtype=np.float64), sources[snames[k]]))
        per_time = [str(f) for f in vis["field_name"].values] if "field_name" in vis.coords else (
            [fnames[0]] * p.shape[0])
        unknown = sorted(set(per_time) - set(fields))
        if unknown:
            raise MeasurementSetError(
                f"{name}: partition {p.name} observes fields {unknown} missing from its field xds")
        freq = vis["frequency"]
        width = freq.attrs.get("channel_width", {})
        ref = freq.attrs.get("reference_frequency", {})
        spw_key = (str(freq.attrs.get("spectral_window_name", f"spw_{len(spws)}")),
                   tuple(np.asarray(freq.values, dtype=np.float64).tolist()),
                   float(width.get("data", 0.0) if isinstance(width, dict) else width),
                   str(freq.attrs.get("observer", "TOPO")),
                   float(ref.get("data", freq.values[0]) if isinstance(ref, dict) else ref))
        spw = spws.setdefault(spw_key, len(spws))
        pol = pols.setdefault(tuple(corr), len(pols))
        ddid = ddids.setdefault((spw, pol), len(ddids))
        info = vis.attrs.get("observation_info", {})
        observer = info.get("observer", [""])
        key = (str(observer[0] if isinstance(observer, list | tuple) and observer else observer),
               str(info.get("project_UID", "")), str(ant.attrs.get("overall_telescope_name", "")))
        times = unix_to_ms_time(np.asarray(vis["time"].values, dtype=np.float64))
        o = obs.setdefault(key, len(obs))
        if o == len(obs_range):
            obs_range.append([np.inf, -np.inf])
        obs_range[o] = [min(obs_range[o][0], times.min()), max(obs_range[o][1], times.max())]
        t_min = min(t_min, times.min())
        layout.append(_RowLayout(ddid, o, np.array([fields[f] for f in per_time], np.int32),
                                 np.array(ids, np.int32)))
    proc = parts[0].vis.attrs.get("processor_info", {})
    from daskcal import __version__

    tabs = NewMSTables(
        ant_names=[a[0] for a in ant_rows], ant_stations=[a[1] for a in ant_rows],
        ant_mounts=[a[2] for a in ant_rows],
        ant_positions=np.array([a[3] for a in ant_rows], dtype=np.float64).reshape(-1, 3),
        ant_diameters=np.array([a[4] for a in ant_rows], dtype=np.float64),
        ant_pol_types=np.array([a[5] for a in ant_rows], dtype=str).reshape(-1, 2),
        ant_angles=np.array([a[6] for a in ant_rows], dtype=np.float64).reshape(-1, 2),
        field_names=[f[0] for f in field_rows],
        field_dirs=np.array([f[1] for f in field_rows], dtype=np.float64).reshape(-1, 2),
        field_frame=str(parts[0].field["FIELD_PHASE_CENTER_DIRECTION"].attrs.get("frame", "fk5")),
        field_source_ids=[f[2] for f in field_rows], source_names=list(sources),
        source_dirs=np.array(source_dirs, dtype=np.float64).reshape(-1, 2),
        spw_freqs=[np.array(k[1]) for k in spws], spw_widths=[k[2] for k in spws],
        spw_names=[k[0] for k in spws], spw_frames=[k[3] for k in spws],
        spw_ref_freqs=[k[4] for k in spws], pol_corrs=[list(k) for k in pols],
        ddid_spw=[k[0] for k in ddids], ddid_pol=[k[1] for k in ddids],
        obs_observer=[k[0] for k in obs], obs_project=[k[1] for k in obs],
        obs_telescope=[k[2] for k in obs], obs_time_range=[tuple(r) for r in obs_range],
        processor_type=str(proc.get("type", "CORRELATOR")),
        processor_sub_type=str(proc.get("sub_type", "")), t0_mjd=float(t_min),
        history=f"written by daskcal {__version__} from {len(parts)} partition(s), "
                f"data group {data_group!r}",
    )
    return tabs, layout


def _write_new_rows(part: _Part, path: Path, row0: int, lay: _RowLayout,
                    data_vars: dict[str, str], data_group: str, name: str) -> da.Array:
    """One blockwise task per row block writing all main-table columns of its rows."""
    vis = part.vis
    n_t, n_bl, n_f, n_p = part.shape
    tchunks = _time_chunks(part)
    rchunks = split_chunks(tuple(c * n_bl for c in tchunks), _row_budget(n_f, n_p))
    times = unix_to_ms_time(np.asarray(vis["time"].values, dtype=np.float64))
    a1, a2 = antenna_indices(vis, part.ant)
    integration = vis["time"].attrs.get("integration_time", {})
    interval = float(integration.get("data", 0.0) if isinstance(integration, dict) else integration)
    expo = vis["EFFECTIVE_INTEGRATION_TIME"].data if "EFFECTIVE_INTEGRATION_TIME" in vis else (
        np.full((n_t, n_bl), interval))
    centroid = vis["TIME_CENTROID"].data if "TIME_CENTROID" in vis else np.repeat(
        np.asarray(vis["time"].values)[:, None], n_bl, axis=1)
    scans = (_scan_numbers(vis["scan_name"].values) if "scan_name" in vis.coords
             else np.zeros(n_t, np.int32))
    flag_var = _group_var(part, data_group, "flag", name)
    weight_var = _group_var(part, data_group, "weight", name)

    def rows(x):
        r = _rows(x, tchunks)
        return r.rechunk({0: rchunks, **{i: -1 for i in range(1, r.ndim)}})

    args = [
        da.arange(row0, row0 + n_t * n_bl, chunks=rchunks, dtype=np.int64), "r",
        rows(_per_row(times, None, n_bl, tchunks)), "r",
        rows(_per_row(lay.field_ids, None, n_bl, tchunks)), "r",
        rows(_per_row(scans, None, n_bl, tchunks)), "r",
        rows(_per_row(times, lay.ant_ids[a1], n_bl, tchunks)), "r",
        rows(_per_row(times, lay.ant_ids[a2], n_bl, tchunks)), "r",
        rows(vis["UVW"].data), "ru", rows(expo), "r", rows(centroid), "r",
        rows(vis[flag_var].data), "rfp", rows(vis[weight_var].data), "rfp",
    ]
    for var in data_vars.values():
        args += [rows(vis[var].data), "rfp"]
    return da.blockwise(
        _put_new_rows, "r", *args, adjust_chunks={"r": 1}, concatenate=True, dtype=bool,
        meta=np.empty(0, bool), path=str(path), columns=tuple(data_vars), interval=interval,
        ddid=lay.ddid, obs_id=lay.obs_id)


def _put_new_rows(row, time, field, scan, a1, a2, uvw, expo, centroid, flag, weight, *data,
                  path, columns, interval, ddid, obs_id):
    """Write one contiguous block of new rows (all columns) into the MS at ``path``."""
    from casacore.tables import table

    start, n = int(row[0]), int(row.size)
    wrow = weight.mean(axis=1, dtype=np.float64).astype(np.float32)
    sigma = np.zeros_like(wrow)
    np.divide(1.0, np.sqrt(wrow, where=wrow > 0, out=np.zeros_like(wrow)), out=sigma,
              where=wrow > 0)
    ints = {"ARRAY_ID": 0, "DATA_DESC_ID": ddid, "FEED1": 0, "FEED2": 0,
            "OBSERVATION_ID": obs_id, "PROCESSOR_ID": 0, "STATE_ID": -1}
    cols = {
        "TIME": time, "TIME_CENTROID": unix_to_ms_time(np.asarray(centroid, np.float64)),
        "INTERVAL": np.full(n, interval), "EXPOSURE": np.asarray(expo, np.float64),
        "ANTENNA1": a1.astype(np.int32), "ANTENNA2": a2.astype(np.int32),
        "FIELD_ID": field.astype(np.int32), "SCAN_NUMBER": scan.astype(np.int32),
        **{k: np.full(n, v, np.int32) for k, v in ints.items()},
        "UVW": np.asarray(uvw, np.float64), "FLAG_ROW": flag.all(axis=(1, 2)),
        "FLAG": np.asarray(flag, bool), "WEIGHT": wrow, "SIGMA": sigma,
        "WEIGHT_SPECTRUM": np.asarray(weight, np.float32),
        **{c: np.asarray(d, np.complex64) for c, d in zip(columns, data, strict=True)},
    }
    with process_lock(path):
        t = table(path, readonly=False, ack=False, lockoptions="user")
        try:
            t.lock(write=True)
            for col, val in cols.items():
                t.putcol(col, val, startrow=start, nrow=n)
            t.flush()
        finally:
            t.unlock()
            t.close()
    return np.ones(1, bool)


# -- an existing Measurement Set -------------------------------------------------------------


def _update_ms(parts: list[_Part], target: Path, name: str, data_group: str, column: str) -> Path:
    from daskms import xds_to_table

    ms = check_ms(target)
    meta = read_metadata(ms, name)
    with open_table(ms, name) as t:
        create = column not in t.colnames()
        n_rows = t.nrows()
    datasets, covered = [], []
    sizes = {}
    for p in parts:
        ddid, field_ids = _match_ids(p, meta, name)
        rowids, cells = _match_rows(ms, name, p, meta, ddid, field_ids)
        covered.append(rowids)
        role = "flag" if column == "FLAG" else "correlated_data"
        n_t, n_bl, n_f, n_p = p.shape
        sizes[ddid] = (n_f, n_p)
        tchunks = _time_chunks(p)
        values = _rows(p.vis[_group_var(p, data_group, role, name)].data, tchunks)
        if column != "FLAG":
            values = values.astype(np.complex64)
        taken = _take_rows(values, cells, tuple(c * n_bl for c in tchunks))
        rchunks = split_chunks(taken.chunks[0], _row_budget(n_f, n_p))
        # cells with no shape yet (a new column) can only be written whole
        whole = create or not _cell_defined(ms, name, column, int(rowids[0]))
        taken = taken.rechunk({0: rchunks, **({1: -1} if whole else {})})
        xds = xr.Dataset({column: (("row", "chan", "corr"), taken)},
                         coords={"ROWID": ("row", _rowid(rowids, rchunks))})
        if column == "FLAG":
            xds["FLAG_ROW"] = (("row",), taken.all(axis=(1, 2)))
        datasets.append(xds)
    if create:
        n_f, n_p = max(sizes.values())
        add_data_column(ms, name, column, n_p, n_f)
        datasets += _zero_fill(ms, name, meta, np.concatenate(covered), n_rows, column)
    columns = [column, "FLAG_ROW"] if column == "FLAG" else [column]
    writes = xds_to_table(datasets, str(ms), columns=columns)
    dask.compute(writes)
    return ms


def _cell_defined(ms: Path, name: str, column: str, row: int) -> bool:
    with open_table(ms, name) as t:
        return bool(t.iscelldefined(column, row))


def _rowid(rowids: np.ndarray, chunks: tuple[int, ...]) -> da.Array:
    # dask-ms inlines ROWID into its write graph and expects a single "row-*" layer
    token = dask.base.tokenize(rowids, chunks)
    return da.from_array(rowids.astype(np.int64), chunks=(chunks,), name=f"row-{token}")


def _take(block, local):
    return block[local]


def _take_rows(values: da.Array, cells: np.ndarray, row_chunks: tuple[int, ...]) -> da.Array:
    """Rows ``cells`` (sorted) of a row-chunked array, each chunk taking only its own."""
    bounds = np.cumsum((0,) + row_chunks)
    counts = tuple(int(c) for c in np.diff(np.searchsorted(cells, bounds)))
    local = cells - np.repeat(bounds[:-1], counts)
    index = da.from_array(local, chunks=(counts,))
    return da.blockwise(
        _take, "r" + "xyz"[: values.ndim - 1], values, "r" + "xyz"[: values.ndim - 1],
        index, "r", align_arrays=False, adjust_chunks={"r": counts}, dtype=values.dtype,
        meta=np.empty((0,) * values.ndim, values.dtype))


def _zero_fill(ms: Path, name: str, meta, covered: np.ndarray, n_rows: int,
               column: str) -> list[xr.Dataset]:
    """Datasets setting a newly created column to 0 in the rows no partition covers."""
    with open_table(ms, name) as t:
        ddid = t.getcol("DATA_DESC_ID")
    mask = np.ones(n_rows, bool)
    mask[covered] = False
    out = []
    for d in np.unique(ddid[mask]):
        rows = np.flatnonzero(mask & (ddid == d))
        n_f = meta.spw_freqs[int(meta.ddid_spw[d])].size
        n_p = meta.pol_corr_types[int(meta.ddid_pol[d])].size
        chunks = split_chunks((rows.size,), _row_budget(n_f, n_p))
        zeros = da.zeros((rows.size, n_f, n_p), dtype=np.complex64, chunks=(chunks, -1, -1))
        out.append(xr.Dataset({column: (("row", "chan", "corr"), zeros)},
                              coords={"ROWID": ("row", _rowid(rows, chunks))}))
    return out


def _match_ids(part: _Part, meta, name: str) -> tuple[int, list[int]]:
    """The target MS's DATA_DESC_ID and FIELD_IDs of a partition (by names and frequencies)."""
    vis = part.vis
    field_lookup = {f: i for i, f in enumerate(meta.field_names)}
    wanted = sorted({str(f) for f in vis["field_name"].values}) if "field_name" in vis.coords else (
        [str(f) for f in part.field["field_name"].values])
    missing = [f for f in wanted if f not in field_lookup]
    if missing:
        raise MeasurementSetError(f"{name}: has no field {missing[0]!r} (partition {part.name})")
    freqs = np.asarray(vis["frequency"].values, dtype=np.float64)
    corr = [str(c) for c in vis["polarization"].values]
    candidates = []
    for d in range(meta.ddid_spw.size):
        f = meta.spw_freqs[int(meta.ddid_spw[d])]
        if f.size == freqs.size and np.allclose(f, freqs, rtol=1e-12, atol=1e-3):
            try:
                if meta.corr_names(int(meta.ddid_pol[d]), name) == corr:
                    candidates.append(d)
            except MeasurementSetError:
                continue
    if not candidates:
        raise MeasurementSetError(
            f"{name}: no spectral window/polarization matches partition {part.name} "
            f"({freqs.size} channels, {'/'.join(corr)})")
    hint = vis.attrs.get("partition_info", {}).get("data_desc_id")
    ddid = hint if hint in candidates else candidates[0]
    return int(ddid), [field_lookup[f] for f in wanted]


def _match_rows(ms: Path, name: str, part: _Part, meta, ddid: int,
                field_ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """MS rows of a partition and their grid cells ``t * n_bl + b``, sorted by cell."""
    n_t, n_bl = part.shape[:2]
    where = f"DATA_DESC_ID=={ddid} AND FIELD_ID IN [{','.join(map(str, field_ids))}]"
    with open_table(ms, name) as t:
        q = t.query(where, columns="ROWID() AS rid, TIME AS tm, ANTENNA1 AS a1, ANTENNA2 AS a2")
        rid, tm, r1, r2 = (q.getcol(c) if q.nrows() else np.zeros(0)
                           for c in ("rid", "tm", "a1", "a2"))
        q.close()
        t.lock(write=False)  # closing a TaQL result releases the lock of its table
    lookup = {n: i for i, n in enumerate(meta.unique_antenna_names())}
    names = [str(n) for n in part.ant["antenna_name"].values]
    missing = [n for n in names if n not in lookup]
    if missing:
        raise MeasurementSetError(f"{name}: has no antenna {missing[0]!r} (partition {part.name})")
    ms_ids = np.array([lookup[n] for n in names], dtype=np.int64)
    a1, a2 = antenna_indices(part.vis, part.ant)
    n_ms_ant = len(lookup)
    keys = ms_ids[a1] * n_ms_ant + ms_ids[a2]
    order = np.argsort(keys, kind="stable")
    row_keys = np.asarray(r1, np.int64) * n_ms_ant + np.asarray(r2, np.int64)
    pos = np.clip(np.searchsorted(keys[order], row_keys), 0, max(n_bl - 1, 0))
    bl_ok = keys[order][pos] == row_keys if n_bl else np.zeros(row_keys.size, bool)
    times = unix_to_ms_time(np.asarray(part.vis["time"].values, dtype=np.float64))
    ti = np.clip(np.searchsorted(times, tm), 1, max(n_t - 1, 1)) if n_t > 1 else np.zeros(
        tm.size, np.int64)
    if n_t > 1:
        ti = np.where(np.abs(times[ti - 1] - tm) <= np.abs(times[ti] - tm), ti - 1, ti)
    t_ok = np.abs(times[ti] - tm) <= 1e-5 if n_t else np.zeros(tm.size, bool)
    ok = bl_ok & t_ok
    cells = ti[ok].astype(np.int64) * n_bl + order[pos[ok]]
    sort = np.argsort(cells, kind="stable")
    if not ok.any():
        raise MeasurementSetError(f"{name}: no rows match partition {part.name}")
    return np.asarray(rid, np.int64)[ok][sort], cells[sort]
