"""Read a Measurement Set (v2) lazily into the daskcal data model, through dask-ms.

:func:`read_ms` returns an observation (an xradio-style processing set, see
:mod:`daskcal.data.model`) with one partition per (``FIELD_ID``,
``DATA_DESC_ID``), each on a regular (time, baseline) grid.

How rows reach the grid
-----------------------
When the graph is built, only per-time aggregates of the small index columns
are read, with plain casacore TaQL (no dask compute): for each partition the
sorted unique ``TIME`` values, the number of rows at each, the scan number and
the antennas present. From these the time axis is cut into chunks
(:func:`~daskcal.data.chunking.resolve_chunks`) and, because dask-ms returns
the partition's rows sorted by ``TIME`` (``index_cols=["TIME"]``), the rows of
a time chunk are one contiguous range: the row chunks handed to dask-ms are
the row counts of the time chunks. Each output chunk ``(time chunk, all
baselines, frequency chunk, all polarizations)`` is then one
:func:`dask.array.blockwise` task over exactly the dask-ms chunk holding its
rows: it recomputes each row's grid cell from that chunk's ``TIME``,
``ANTENNA1``, ``ANTENNA2`` (``searchsorted`` on the chunk's times, a closed
formula for the baseline) and scatters the rows into a freshly filled array.

Memory per task: the output chunk plus its input rows, which are at most as
many samples (one row per grid cell, barring duplicated rows), so at most
about twice the chunk size. dask-ms itself holds the partition's row order
(row numbers and times, about 12 bytes per row) once, in one small task.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import dask.array as da
import numpy as np
import xarray as xr

from daskcal.data._ms_tables import (
    MeasurementSetError,
    MeasurementSetNotFoundError,
    MSMetadata,
    check_ms,
    open_table,
    read_metadata,
    receptor_types,
    regular_chunks,
)
from daskcal.data.chunking import ChunkSpec, parse_chunk_spec, resolve_chunks
from daskcal.data.model import (
    add_data_group,
    baseline_antenna_pairs,
    make_antenna_xds,
    make_field_and_source_xds,
    make_observation,
    make_partition,
    make_visibility_xds,
    ms_time_to_unix,
)

__all__ = ["MeasurementSetError", "MeasurementSetNotFoundError", "read_ms"]

#: Further MS data columns read as data groups: column -> (variable, group name).
EXTRA_DATA_COLUMNS: dict[str, tuple[str, str]] = {
    "CORRECTED_DATA": ("VISIBILITY_CORRECTED", "corrected"),
    "MODEL_DATA": ("VISIBILITY_MODEL", "model"),
}


@dataclass
class _PartitionIndex:
    """What the index columns say about one (FIELD_ID, DATA_DESC_ID) partition."""

    field_id: int
    ddid: int
    times_mjd: np.ndarray  # (n_time,) sorted unique TIME, MJD s
    counts: np.ndarray  # (n_time,) rows at each time
    scans: np.ndarray  # (n_time,) SCAN_NUMBER (the smallest at each time)
    interval_s: float
    obs_id: int
    first_row: int
    ant_ids: np.ndarray  # sorted MS antenna ids present


def read_ms(
    path: str | Path,
    *,
    chunks: ChunkSpec = "64MB",
    data_column: str = "DATA",
    columns: Sequence[str] | None = None,
) -> xr.DataTree:
    """Open a Measurement Set lazily as a daskcal observation.

    Parameters
    ----------
    path : str or Path
        The Measurement Set directory.
    chunks : str, int, dict or None
        Chunk size per partition, by size (``"64MB"``, bytes of
        VISIBILITY+FLAG+WEIGHT) or counts (``{"time": 10, "frequency": 64}``);
        see :func:`~daskcal.data.chunking.resolve_chunks`. Chunks run along
        ``time`` and ``frequency``; ``baseline_id`` and ``polarization`` are whole.
    data_column : str
        MS column read as ``VISIBILITY`` (data group ``"base"``).
    columns : sequence of str, optional
        Further data columns to read as data groups, among ``CORRECTED_DATA``
        (-> ``VISIBILITY_CORRECTED``, group ``"corrected"``) and ``MODEL_DATA``
        (-> ``VISIBILITY_MODEL``, group ``"model"``). Default: those present
        (with defined values); ``[]`` reads none.

    Returns
    -------
    xarray.DataTree
        One partition ``<ms stem>_<k>`` per (FIELD_ID, DATA_DESC_ID), in that
        order, each with ``VISIBILITY`` complex64, ``FLAG`` bool (``FLAG`` OR
        ``FLAG_ROW``), ``WEIGHT`` float32 (``WEIGHT_SPECTRUM`` if present, else
        ``WEIGHT`` broadcast over channels), all (n_time, n_bl, n_chan, n_pol);
        ``UVW`` float64 (n_time, n_bl, 3), m; ``EFFECTIVE_INTEGRATION_TIME``
        (from ``EXPOSURE``, s) and ``TIME_CENTROID`` (unix s), (n_time, n_bl).
        Baselines are all pairs ``antenna1 <= antenna2`` of the antennas present
        in the partition (autocorrelations only if the MS has any). Grid cells
        with no MS row have ``FLAG=True``, ``WEIGHT=0``, ``VISIBILITY=0`` and NaN
        ``UVW``, ``TIME_CENTROID`` and ``EFFECTIVE_INTEGRATION_TIME`` (as xradio).
        If several rows fall in one cell (duplicated TIME/ANTENNA1/ANTENNA2) one
        of them is kept. ``attrs["partition_info"]`` records the MS path and the
        field, data description, spectral window, polarization, observation and
        antenna ids the partition came from.

    Raises
    ------
    MeasurementSetNotFoundError
        ``path`` does not exist.
    MeasurementSetError
        ``path`` is not a Measurement Set, has no ``data_column``, no rows,
        rows with ``ANTENNA1 > ANTENNA2`` or an unsupported correlation type.
    ChunkSpecError
        ``chunks`` makes no sense.

    Notes
    -----
    Only per-time aggregates of ``TIME``, ``ANTENNA1``, ``ANTENNA2``,
    ``FIELD_ID``, ``DATA_DESC_ID``, ``SCAN_NUMBER``, ``INTERVAL`` and
    ``OBSERVATION_ID`` and the subtables are read now (plain casacore, no dask
    compute); all other columns are read when the arrays are computed.
    """
    name = str(path)
    parse_chunk_spec(chunks)
    ms = check_ms(path, data_column)
    meta = read_metadata(ms, name)
    index, autos = _read_index(ms, name)
    extra = _extra_columns(ms, name, data_column, columns)
    partitions = {}
    for k, part in enumerate(index):
        partitions[f"{ms.stem}_{k}"] = _read_partition(
            ms, name, part, meta, autos, chunks, data_column, extra)
    return make_observation(partitions)


def _extra_columns(ms: Path, name: str, data_column: str,
                   columns: Sequence[str] | None) -> list[str]:
    with open_table(ms, name) as t:
        present = set(t.colnames())
    if columns is None:
        return [c for c in EXTRA_DATA_COLUMNS if c in present and c != data_column]
    out = []
    for c in columns:
        if c not in EXTRA_DATA_COLUMNS:
            raise MeasurementSetError(
                f"{name}: cannot read column {c!r} as a data group; "
                f"choose among {sorted(EXTRA_DATA_COLUMNS)}")
        if c not in present:
            raise MeasurementSetError(f"{name}: has no {c} column")
        if c != data_column:
            out.append(c)
    return out


def _read_index(ms: Path, name: str) -> tuple[list[_PartitionIndex], bool]:
    """Per-partition time/antenna index from TaQL aggregates (plain casacore)."""
    from casacore.tables import taql

    with open_table(ms, name) as t:
        if t.nrows() == 0:
            raise MeasurementSetError(f"{name}: has no rows")
        if t.query("ANTENNA1 > ANTENNA2", limit=1, columns="ANTENNA1").nrows():
            raise MeasurementSetError(
                f"{name}: has rows with ANTENNA1 > ANTENNA2, which are not supported")
        autos = bool(t.query("ANTENNA1 == ANTENNA2", limit=1, columns="ANTENNA1").nrows())
        cols = set(t.colnames())
        scan = "gmin(SCAN_NUMBER)" if "SCAN_NUMBER" in cols else "0"
        interval = "gmin(INTERVAL)" if "INTERVAL" in cols else "0."
        obs = "gmin(OBSERVATION_ID)" if "OBSERVATION_ID" in cols else "0"
        q = taql(
            "SELECT FIELD_ID AS fld, DATA_DESC_ID AS ddid, TIME AS tm, gcount() AS nrow, "
            f"{scan} AS scan, {interval} AS intv, {obs} AS obs, gmin(rowid()) AS first "
            "FROM $1 GROUPBY FIELD_ID, DATA_DESC_ID, TIME", tables=[t])
        agg = {c: q.getcol(c) for c in ("fld", "ddid", "tm", "nrow", "scan", "intv", "obs", "first")}
        q.close()
        t.lock(write=False)  # closing a TaQL result releases the lock of its table
        ants = []
        for col in ("ANTENNA1", "ANTENNA2"):
            q = taql(f"SELECT FIELD_ID AS fld, DATA_DESC_ID AS ddid, {col} AS ant FROM $1 "
                     f"GROUPBY FIELD_ID, DATA_DESC_ID, {col}", tables=[t])
            ants.append((q.getcol("fld"), q.getcol("ddid"), q.getcol("ant")))
            q.close()
            t.lock(write=False)
    order = np.lexsort((agg["tm"], agg["ddid"], agg["fld"]))
    agg = {k: np.asarray(v)[order] for k, v in agg.items()}
    keys = np.stack([agg["fld"], agg["ddid"]], axis=1)
    starts = np.flatnonzero(np.r_[True, np.any(keys[1:] != keys[:-1], axis=1)])
    stops = np.r_[starts[1:], len(order)]
    parts = []
    for a, b in zip(starts, stops, strict=True):
        f, d = int(agg["fld"][a]), int(agg["ddid"][a])
        present = np.unique(np.concatenate(
            [ant[(fl == f) & (dd == d)] for fl, dd, ant in ants]))
        intv = agg["intv"][a:b]
        parts.append(_PartitionIndex(
            field_id=f, ddid=d, times_mjd=agg["tm"][a:b].astype(np.float64),
            counts=agg["nrow"][a:b].astype(np.int64), scans=agg["scan"][a:b].astype(np.int64),
            interval_s=float(np.median(intv)) if intv.size else 0.0,
            obs_id=int(agg["obs"][a:b].min()), first_row=int(agg["first"][a:b].min()),
            ant_ids=present.astype(np.int64)))
    return parts, autos


def _read_partition(
    ms: Path, name: str, part: _PartitionIndex, meta: MSMetadata, autos: bool,
    chunks: ChunkSpec, data_column: str, extra: list[str],
) -> xr.DataTree:
    from daskms import xds_from_ms

    f, d = part.field_id, part.ddid
    if not 0 <= d < meta.ddid_spw.size or not 0 <= f < len(meta.field_names):
        raise MeasurementSetError(f"{name}: rows refer to a missing FIELD {f} or DATA_DESCRIPTION {d}")
    spw, pol = int(meta.ddid_spw[d]), int(meta.ddid_pol[d])
    if not (0 <= spw < len(meta.spw_freqs) and 0 <= pol < len(meta.pol_corr_types)
            and part.ant_ids.max() < len(meta.ant_names) and part.ant_ids.min() >= 0):
        raise MeasurementSetError(
            f"{name}: rows or DATA_DESCRIPTION {d} refer to a missing SPECTRAL_WINDOW, "
            "POLARIZATION or ANTENNA row")
    freqs = np.asarray(meta.spw_freqs[spw], dtype=np.float64)
    corr = meta.corr_names(pol, name)
    with open_table(ms, name) as t:
        present = set(t.colnames())
        defined = {c for c in {data_column, "WEIGHT_SPECTRUM", *extra}
                   if c in present and t.iscelldefined(c, part.first_row)}
    if data_column not in defined:
        raise MeasurementSetError(f"{name}: {data_column} has no values in DATA_DESC_ID {d}")
    n_ant = part.ant_ids.size
    a1, a2 = baseline_antenna_pairs(n_ant, autos)
    n_time, n_bl, n_chan, n_pol = part.times_mjd.size, a1.size, freqs.size, len(corr)
    ck = resolve_chunks(chunks, n_time, n_bl, n_chan, n_pol)
    tchunks, fchunks = regular_chunks(n_time, ck["time"]), regular_chunks(n_chan, ck["frequency"])
    bounds = np.cumsum((0,) + tchunks)
    rowchunks = tuple(int(part.counts[a:b].sum()) for a, b in zip(bounds[:-1], bounds[1:],
                                                                   strict=True))

    use_spectrum = "WEIGHT_SPECTRUM" in defined
    extra = [c for c in extra if c in defined]
    optional = [c for c in ("FLAG_ROW", "UVW", "EXPOSURE", "TIME_CENTROID") if c in present]
    wcol = "WEIGHT_SPECTRUM" if use_spectrum else "WEIGHT"
    cols = ["TIME", "ANTENNA1", "ANTENNA2", "FLAG", data_column, wcol, *optional, *extra]
    # Grouping (on the one group the TaQL selects) makes dask-ms take column shapes
    # from the partition's first row rather than from row 0 of the table.
    (ds,) = xds_from_ms(
        str(ms), columns=sorted(set(cols)), group_cols=["FIELD_ID", "DATA_DESC_ID"],
        index_cols=["TIME"], taql_where=f"FIELD_ID=={f} AND DATA_DESC_ID=={d}",
        chunks=[{"row": rowchunks, "chan": fchunks}])

    times = da.from_array(part.times_mjd, chunks=(tchunks,))
    ant_pos = np.full(int(part.ant_ids.max()) + 1, -1, dtype=np.int64)
    ant_pos[part.ant_ids] = np.arange(n_ant)
    cell = da.blockwise(
        _cell_index, "t", ds.TIME.data, "t", ds.ANTENNA1.data, "t", ds.ANTENNA2.data, "t",
        times, "t", align_arrays=False, adjust_chunks={"t": rowchunks}, dtype=np.int64,
        meta=np.empty(0, np.int64), ant_pos=ant_pos, n_ant=n_ant, autos=autos)
    grid = _Gridder(cell, times, tchunks, n_bl)

    vis = grid(ds[data_column].data, "fp", 0, np.complex64)
    flag_row = ds.FLAG_ROW.data if "FLAG_ROW" in ds else None
    flag = grid(ds.FLAG.data, "fp", True, np.bool_, flag_row=flag_row)
    if use_spectrum:
        weight = grid(ds.WEIGHT_SPECTRUM.data, "fp", 0, np.float32)
    else:
        weight = grid(ds.WEIGHT.data, "p", 0, np.float32,
                      freq=da.from_array(freqs, chunks=(fchunks,)))
    uvw = grid(ds.UVW.data, "u", np.nan, np.float64) if "UVW" in ds else None
    if uvw is None:
        uvw = da.full((n_time, n_bl, 3), np.nan, chunks=(tchunks, n_bl, 3))
    expo = grid(ds.EXPOSURE.data, "", np.nan, np.float64) if "EXPOSURE" in ds else None
    centroid = (grid(ds.TIME_CENTROID.data, "", np.nan, np.float64, offset=True)
                if "TIME_CENTROID" in ds else None)

    names = meta.unique_antenna_names()
    obs = part.obs_id if 0 <= part.obs_id < len(meta.obs_observer) else 0
    widths = meta.spw_widths[spw]
    xds = make_visibility_xds(
        time_s=ms_time_to_unix(part.times_mjd), frequency_hz=freqs, polarization=corr,
        antenna_names=[names[i] for i in part.ant_ids], antenna1=a1, antenna2=a2,
        visibility=vis, uvw_m=uvw, integration_time_s=part.interval_s,
        channel_width_hz=float(widths[0]) if np.size(widths) else 0.0,
        flag=flag, weight=weight, effective_integration_time_s=expo, time_centroid_s=centroid,
        field_name=meta.field_names[f], scan_name=[str(s) for s in part.scans],
        spectral_window_name=meta.spw_names[spw], frequency_frame=meta.spw_frames[spw],
        uvw_frame=meta.uvw_frame, observer=meta.obs_observer[obs],
        project=meta.obs_project[obs], description=f"{data_column} of {ms.name}")
    for col in extra:
        var, group = EXTRA_DATA_COLUMNS[col]
        xds = add_data_group(xds, group, var, data=grid(ds[col].data, "fp", 0, np.complex64),
                             description=f"{col} of {ms.name}")
    xds.attrs["partition_info"] = {
        "ms_path": str(ms), "field_id": f, "data_desc_id": d, "spectral_window_id": spw,
        "polarization_id": pol, "observation_id": obs,
        "antenna_ids": [int(i) for i in part.ant_ids],
        "field_name": [meta.field_names[f]], "spectral_window_name": meta.spw_names[spw],
        "scan_name": sorted({str(s) for s in part.scans}),
        "source_name": [meta.field_source_names[f]],
    }
    ant_xds = _antenna_xds(meta, part.ant_ids, names, corr, meta.obs_telescope[obs])
    field_xds = make_field_and_source_xds(
        [meta.field_names[f]], meta.field_phase_dirs[f][None, :],
        source_names=[meta.field_source_names[f]], frame=meta.field_frame)
    return make_partition(xds, ant_xds, field_xds)


def _antenna_xds(meta: MSMetadata, ids: np.ndarray, names: list[str], corr: list[str],
                 telescope: str) -> xr.Dataset:
    idx = [int(i) for i in ids]
    default_types = receptor_types(corr)
    types = np.array([meta.feed_pol_types.get(i, default_types) for i in idx], dtype=str)
    xds = make_antenna_xds(
        [names[i] for i in idx], meta.ant_positions[idx], meta.ant_diameters[idx],
        telescope_name=telescope, station_names=[meta.ant_stations[i] for i in idx],
        mount=meta.ant_mounts[idx[0]] if idx else "ALT-AZ", polarization_type=default_types)
    angles = np.array([meta.feed_angles.get(i, np.zeros(2)) for i in idx], dtype=np.float64)
    xds = xds.assign_coords(
        mount=("antenna_name", np.array([meta.ant_mounts[i] for i in idx], dtype=str)),
        polarization_type=(("antenna_name", "receptor_label"), types.reshape(len(idx), 2)))
    xds["ANTENNA_RECEPTOR_ANGLE"] = xds["ANTENNA_RECEPTOR_ANGLE"].copy(data=angles.reshape(-1, 2))
    return xds


# -- chunk kernels (numpy, one output chunk per call) ---------------------------------------


def _pair_index(i: np.ndarray, j: np.ndarray, n_ant: int, autos: bool) -> np.ndarray:
    """Position of baseline (i, j), ``i <= j``, in :func:`baseline_antenna_pairs` order."""
    if autos:
        return i * n_ant - (i * (i - 1)) // 2 + (j - i)
    return i * (n_ant - 1) - (i * (i - 1)) // 2 + (j - i - 1)


def _cell_index(time_rows, a1_rows, a2_rows, times_block, *, ant_pos, n_ant, autos):
    """Flat cell index ``t_local * n_bl + baseline`` of each row of one time chunk."""
    n_bl = n_ant * (n_ant + 1) // 2 if autos else n_ant * (n_ant - 1) // 2
    ti = np.searchsorted(times_block, time_rows)
    bi = _pair_index(ant_pos[a1_rows], ant_pos[a2_rows], n_ant, autos)
    return ti.astype(np.int64) * n_bl + bi


def _scatter(cell, values, times_block, *extra, n_bl, fill, out_dtype, flag_row=False,
             broadcast_freq=False, offset=False):
    """Scatter one chunk of rows onto its (n_t, n_bl, ...) grid chunk."""
    values = np.asarray(values)
    if flag_row:
        values = values | extra[0].reshape((-1,) + (1,) * (values.ndim - 1))
    if broadcast_freq:
        values = np.broadcast_to(values[:, None, :], (values.shape[0], extra[-1].size,
                                                      values.shape[1]))
    if offset:
        values = ms_time_to_unix(values)
    n_t = times_block.size
    out = np.full((n_t * n_bl,) + values.shape[1:], fill, dtype=out_dtype)
    out[cell] = values
    return out.reshape((n_t, n_bl) + values.shape[1:])


class _Gridder:
    """Builds the blockwise scatter of a row-chunked dask-ms column onto the grid."""

    def __init__(self, cell: da.Array, times: da.Array, tchunks: tuple[int, ...], n_bl: int):
        self.cell, self.times, self.tchunks, self.n_bl = cell, times, tchunks, n_bl

    def __call__(self, column: da.Array, dims: str, fill, dtype, *, flag_row=None, freq=None,
                 offset: bool = False) -> da.Array:
        """``dims``: the column's non-row indices ("fp" data, "p" weight, "u" uvw, "" scalar)."""
        args = [self.cell, "t", column, "t" + dims, self.times, "t"]
        if flag_row is not None:
            args += [flag_row, "t"]
        out = "tb" + dims
        if freq is not None:
            args += [freq, "f"]
            out = "tbfp"
        return da.blockwise(
            _scatter, out, *args, new_axes={"b": self.n_bl}, align_arrays=False,
            adjust_chunks={"t": self.tchunks}, dtype=dtype, meta=np.empty((0,) * len(out), dtype),
            concatenate=True, n_bl=self.n_bl, fill=fill, out_dtype=dtype,
            flag_row=flag_row is not None, broadcast_freq=freq is not None, offset=offset)

