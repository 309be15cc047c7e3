"""Read UVFITS files (AIPS random groups, AIPS Memo 117) lazily into the daskcal data model.

The group parameters (baselines, times, uvw, sources, ...) are small and read
eagerly; the visibilities stay in the file and are read per (time, frequency)
chunk from a memory map by dask tasks, so a task holds about one chunk.

Conventions of the result, beyond :mod:`daskcal.data.model`:

- one partition per (source, frequency setup, IF), named ``<file stem>_<n>``;
- ``UU/VV/WW`` (light seconds) become metres; the UVFITS sign conventions of
  uvw and visibilities are those of the Measurement Set (casacore copies both
  unchanged between the two), so neither is changed: uvw is the projection of
  position(antenna1) - position(antenna2), as the NGC5921 file's uvw confirm
  against its antenna positions to 2 cm;
- baselines are all pairs ``antenna1 <= antenna2`` of the antennas that occur
  in the data (with autocorrelations if the file has any); rows stored as
  ``antenna1 > antenna2`` are conjugated, their uvw negated and their cross
  hands exchanged;
- ``FLAG`` is ``weight <= 0``, ``WEIGHT`` is ``|weight|``; grid cells with no
  row in the file have ``VISIBILITY = 0``, ``FLAG = True``, ``WEIGHT = 0`` and
  NaN ``UVW``, ``TIME_CENTROID`` and ``EFFECTIVE_INTEGRATION_TIME`` (as xradio);
- ``TIME_CENTROID`` is each row's own ``DATE``; the ``time`` coordinate is the
  median of the rows of each integration (rows within half an integration of
  the first are one integration: writers such as casacore store per-baseline
  centroids);
- times in ``IAT``/``TAI`` (``TIMSYS`` of the AN table) are converted to UTC.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from daskcal.data._rowgrid import (
    baseline_axis,
    grid_rows,
    lookup_ids,
    scan_numbers,
    scans_of,
    time_axis,
)
from daskcal.data._uvfits_tables import (
    C_M_PER_S,
    SPECSYS_FRAMES,
    UVFITSError,
    clean_string,
    dates_to_unix,
    read_antenna_table,
    read_frequency_table,
    read_source_table,
    stokes_axis,
)
from daskcal.data.chunking import ChunkSpec, resolve_chunks
from daskcal.data.model import (
    make_antenna_xds,
    make_field_and_source_xds,
    make_observation,
    make_partition,
    make_visibility_xds,
)

__all__ = ["UVFITSError", "read_uvfits"]

_BITPIX: dict[int, str] = {8: "u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}
_UVW_SUFFIXES = ("", "--", "---SIN")


@dataclass(frozen=True)
class GroupLayout:
    """Where and how the random groups lie in the file.

    ``shape`` and ``axes`` describe one group's data array in numpy (C) order,
    i.e. the FITS axes reversed (``COMPLEX`` last).
    """

    path: str
    offset: int
    gcount: int
    pcount: int
    base: str
    shape: tuple[int, ...]
    axes: tuple[str, ...]
    bscale: float
    bzero: float

    @property
    def dtype(self) -> np.dtype:
        return np.dtype([("par", self.base, (self.pcount,)), ("data", self.base, self.shape)])

    def memmap(self) -> np.memmap:
        return np.memmap(self.path, dtype=self.dtype, mode="r", offset=self.offset,
                         shape=(self.gcount,))

    def data_view(self, mm: np.ndarray, if_index: int, c0: int, c1: int) -> np.ndarray:
        """A view of all groups' data, shape (n_group, c1 - c0, n_stokes, n_complex)."""
        index: list = [slice(None)]
        kept = []
        for ax in self.axes:
            if ax in ("COMPLEX", "STOKES"):
                index.append(slice(None))
                kept.append(ax)
            elif ax == "FREQ":
                index.append(slice(c0, c1))
                kept.append(ax)
            elif ax == "IF":
                index.append(if_index)
            else:
                index.append(0)
        view = mm["data"][tuple(index)]
        perm = [0] + [1 + kept.index(ax) for ax in ("FREQ", "STOKES", "COMPLEX")]
        return view.transpose(perm)


def _read_block(rowmap: np.ndarray, conj: np.ndarray, chans: np.ndarray, *, layout: GroupLayout,
                if_index: int, pol_order: np.ndarray, pol_swap: np.ndarray) -> np.ndarray:
    """Read one (time, baseline, frequency) block: float32 (t, b, f, p, 3) of (re, im, weight).

    Peak memory is the output plus the rows as stored (about twice the block).
    """
    n_t, n_b = rowmap.shape
    c0, c1 = int(chans[0]), int(chans[-1]) + 1
    out = np.zeros((n_t * n_b, c1 - c0, pol_order.size, 3), dtype=np.float32)
    cells = np.flatnonzero(rowmap.reshape(-1) >= 0)
    if cells.size:
        rows = rowmap.reshape(-1)[cells]
        order = np.argsort(rows, kind="stable")  # read the file front to back
        cells, rows = cells[order], rows[order]
        mm = layout.memmap()
        try:
            got = layout.data_view(mm, if_index, c0, c1)[rows]  # (n_row, f, p_file, k)
        finally:
            del mm
        if layout.bscale != 1 or layout.bzero != 0:
            got = got * layout.bscale + layout.bzero
        k = got.shape[3]
        for p_out, p_file in enumerate(pol_order):
            out[cells, :, p_out, :k] = got[:, :, p_file, :]
        del got
        if k == 2:  # no weights in the file: every sample counts once
            out[cells, :, :, 2] = 1.0
        swapped = cells[conj.reshape(-1)[cells]]
        if swapped.size:
            out[swapped] = out[swapped][:, :, pol_swap, :]
            out[swapped, :, :, 1] *= -1.0
    return out.reshape(n_t, n_b, c1 - c0, pol_order.size, 3)


def _vis_of(raw: np.ndarray) -> np.ndarray:
    vis = np.empty(raw.shape[:4], dtype=np.complex64)
    vis.real = raw[..., 0]
    vis.imag = raw[..., 1]
    return vis


def _weight_of(raw: np.ndarray) -> np.ndarray:
    return np.abs(raw[..., 2])


def _flag_of(raw: np.ndarray) -> np.ndarray:
    return ~(raw[..., 2] > 0)


def _open_error(name: str, exc: Exception) -> UVFITSError:
    text = str(exc).strip().splitlines()
    detail = text[0] if text else type(exc).__name__
    if isinstance(exc, PermissionError):
        return UVFITSError(f"{name}: cannot be opened ({detail})")
    return UVFITSError(f"{name}: not a FITS file ({detail})")


def _axis_values(hdr, naxis: int) -> dict[str, tuple[int, float, float, float]]:
    """CTYPE (prefix) -> (length, CRVAL, CDELT, CRPIX) for the data axes."""
    out = {}
    for k in range(2, naxis + 1):
        ctype = str(hdr.get(f"CTYPE{k}", "")).strip().upper().split("-")[0]
        out[ctype] = (int(hdr[f"NAXIS{k}"]), float(hdr.get(f"CRVAL{k}", 0.0)),
                      float(hdr.get(f"CDELT{k}", 1.0)), float(hdr.get(f"CRPIX{k}", 1.0)))
    return out


def _layout(path: Path, hdul) -> GroupLayout:
    name = path.name
    hdr = hdul[0].header
    naxis = int(hdr.get("NAXIS", 0))
    if not (hdr.get("GROUPS") is True and naxis >= 2 and int(hdr.get("NAXIS1", -1)) == 0):
        raise UVFITSError(f"{name}: not a random-groups UVFITS file")
    bitpix = int(hdr.get("BITPIX", 0))
    if bitpix not in _BITPIX:
        raise UVFITSError(f"{name}: BITPIX = {bitpix} is not a FITS data type")
    fits_axes = []
    for k in range(2, naxis + 1):
        ctype = str(hdr.get(f"CTYPE{k}", "")).strip().upper().split("-")[0]
        fits_axes.append((ctype, int(hdr.get(f"NAXIS{k}", 0))))
    ctypes = [c for c, _ in fits_axes]
    for required in ("COMPLEX", "STOKES", "FREQ"):
        if required not in ctypes:
            raise UVFITSError(f"{name}: random groups have no {required} axis")
    for ctype, n in fits_axes:
        if ctype not in ("COMPLEX", "STOKES", "FREQ", "IF") and n != 1:
            raise UVFITSError(f"{name}: axis {ctype or '?'} has length {n}, expected 1")
    n_complex = dict(fits_axes)["COMPLEX"]
    if n_complex not in (2, 3):
        raise UVFITSError(f"{name}: COMPLEX axis has length {n_complex}, expected 2 or 3")
    pcount, gcount = int(hdr.get("PCOUNT", 0)), int(hdr.get("GCOUNT", 0))
    base = _BITPIX[bitpix]
    shape = tuple(n for _, n in reversed(fits_axes))
    expected = gcount * (pcount + int(np.prod(shape))) * np.dtype(base).itemsize
    offset = int(hdul.fileinfo(0)["datLoc"])
    found = max(path.stat().st_size - offset, 0)
    if found < expected:
        raise UVFITSError(f"{name}: truncated (expected {expected} bytes of data, found {found})")
    return GroupLayout(
        path=str(path), offset=offset, gcount=gcount, pcount=pcount, base=base, shape=shape,
        axes=tuple(c for c, _ in reversed(fits_axes)),
        bscale=float(hdr.get("BSCALE", 1.0)), bzero=float(hdr.get("BZERO", 0.0)))


@dataclass
class _Params:
    """The group parameters, scaled (``PZERO + PSCAL * raw``), float64."""

    names: list[str]
    raw: np.ndarray
    pscal: np.ndarray
    pzero: np.ndarray

    def index(self, name: str) -> list[int]:
        return [i for i, p in enumerate(self.names) if p == name]

    def get(self, name: str) -> np.ndarray | None:
        idx = self.index(name)
        if not idx:
            return None
        return sum(self.pzero[i] + self.pscal[i] * self.raw[:, i] for i in idx)


def _read_params(layout: GroupLayout, hdr) -> _Params:
    names = [str(hdr.get(f"PTYPE{i}", "")).strip().upper() for i in range(1, layout.pcount + 1)]
    pscal = np.array([float(hdr.get(f"PSCAL{i}", 1.0)) for i in range(1, layout.pcount + 1)])
    pzero = np.array([float(hdr.get(f"PZERO{i}", 0.0)) for i in range(1, layout.pcount + 1)])
    raw = np.empty((layout.gcount, layout.pcount), dtype=np.float64)
    if layout.gcount and layout.pcount:
        mm = layout.memmap()
        step = max(1, (64 << 20) // layout.dtype.itemsize)
        for i in range(0, layout.gcount, step):
            raw[i:i + step] = mm["par"][i:i + step]
        del mm
    return _Params(names, raw, pscal, pzero)


def _uvw_m(params: _Params, name: str) -> np.ndarray:
    for suffix in _UVW_SUFFIXES:
        cols = [params.get(f"{c}{suffix}") for c in ("UU", "VV", "WW")]
        if all(c is not None for c in cols):
            return np.stack(cols, axis=1) * C_M_PER_S
    if any(p.startswith("UU-") for p in params.names):
        found = next(p for p in params.names if p.startswith("UU-"))
        raise UVFITSError(f"{name}: baseline coordinates {found!r} are not supported")
    raise UVFITSError(f"{name}: no UU, VV, WW group parameters")


def _antenna_numbers(params: _Params, name: str) -> tuple[np.ndarray, np.ndarray]:
    a1, a2 = params.get("ANTENNA1"), params.get("ANTENNA2")
    if a1 is not None and a2 is not None:
        n1, n2 = np.rint(a1).astype(np.int64), np.rint(a2).astype(np.int64)
        sub = params.get("SUBARRAY")
        sub = np.ones_like(n1) if sub is None else np.rint(sub).astype(np.int64)
    else:
        bl = params.get("BASELINE")
        if bl is None:
            raise UVFITSError(f"{name}: no BASELINE or ANTENNA1/ANTENNA2 group parameters")
        whole = np.floor(bl + 1e-3)
        sub = np.rint((bl - whole) * 100.0).astype(np.int64) + 1
        ib = whole.astype(np.int64)
        big = ib > 65535  # the a1 * 2048 + a2 + 65536 form, for more than 255 antennas
        n1 = np.where(big, (ib - 65536) // 2048, ib // 256)
        n2 = np.where(big, (ib - 65536) % 2048, ib % 256)
    if np.unique(sub).size > 1:
        raise UVFITSError(f"{name}: {np.unique(sub).size} subarrays; only one is supported")
    return n1, n2


def _date_quantum_s(params: _Params, layout: GroupLayout) -> float:
    """Resolution of the stored DATE parameters, s (float32 day fractions: ~10 ms).

    Parameters holding whole days only (the first of a two-part date) add nothing.
    """
    q = 0.0
    for i in params.index("DATE") + params.index("_DATE"):
        raw = params.raw[:, i]
        if layout.base[-2] != "f" or raw.size == 0 or np.all(raw == np.floor(raw)):
            continue
        spacing = np.spacing(np.dtype(layout.base).type(np.max(np.abs(raw))))
        q += abs(params.pscal[i]) * float(spacing) * 86400.0
    return q


def read_uvfits(path: str | os.PathLike, *, chunks: ChunkSpec = "64MB") -> xr.DataTree:
    """Open a UVFITS file as a daskcal observation, reading the visibilities lazily.

    Parameters
    ----------
    path : str or path-like
        A random-groups UVFITS file (AIPS Memo 117 conventions: AN, SU and FQ
        tables; ``BASELINE`` or ``ANTENNA1``/``ANTENNA2``, one or two ``DATE``
        parameters with ``PZERO``/``PSCAL``, ``SOURCE``, ``FREQSEL``, ``INTTIM``).
    chunks : ChunkSpec
        Chunking along ``time`` and ``frequency`` (see
        :func:`daskcal.data.chunking.resolve_chunks`); ``"64MB"`` by default.

    Returns
    -------
    xarray.DataTree
        A processing set with one partition per (source, frequency setup, IF);
        each partition has ``VISIBILITY`` complex64 and ``FLAG``/``WEIGHT``
        of shape (n_time, n_bl, n_chan, n_pol) as dask arrays, ``UVW`` (m)
        of shape (n_time, n_bl, 3), times in unix seconds (UTC), frequencies
        in Hz, correlations ordered RR, RL, LR, LL (or XX, XY, YX, YY).

    Raises
    ------
    UVFITSError
        (a :class:`daskcal.DaskcalError`) with a one-line message naming the
        file, for a missing, non-FITS, non-random-groups, truncated or
        inconsistent file.
    """
    path = Path(path)
    name = path.name
    if not path.exists():
        raise UVFITSError(f"{name}: no such file")
    if path.is_dir():
        raise UVFITSError(f"{name}: is a directory, not a UVFITS file")
    from astropy.io import fits

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "File may have been truncated")  # we say so ourselves
        warnings.simplefilter("ignore", fits.verify.VerifyWarning)
        try:
            hdul = fits.open(path, memmap=True, lazy_load_hdus=True)
        except (OSError, ValueError, TypeError) as exc:
            raise _open_error(name, exc) from None
    with hdul, warnings.catch_warnings():
        warnings.filterwarnings("ignore", "File may have been truncated")
        warnings.simplefilter("ignore", fits.verify.VerifyWarning)
        try:
            hdr = hdul[0].header.copy()
        except (OSError, ValueError, IndexError) as exc:
            raise _open_error(name, exc) from None
        layout = _layout(path, hdul)
        axes = _axis_values(hdr, int(hdr["NAXIS"]))
        n_stk, crval_s, cdelt_s, crpix_s = axes["STOKES"]
        codes = crval_s + (np.arange(n_stk) + 1 - crpix_s) * cdelt_s
        pols, pol_order, pol_swap = stokes_axis(codes, name)
        n_chan, crval_f, cdelt_f, crpix_f = axes["FREQ"]
        n_if = axes.get("IF", (1,))[0]
        telescope = clean_string(hdr.get("TELESCOP", ""))
        try:
            ant = read_antenna_table(hdul, name, telescope, pols)
            sources = read_source_table(hdul, name, hdr)
            freqs = read_frequency_table(hdul, name, n_if, cdelt_f)
        except (OSError, KeyError, IndexError, TypeError) as exc:
            raise UVFITSError(f"{name}: unreadable AIPS table ({exc})") from None
    if layout.gcount == 0:
        raise UVFITSError(f"{name}: holds no visibilities (GCOUNT = 0)")

    params = _read_params(layout, hdr)
    uvw = _uvw_m(params, name)
    date_idx = params.index("DATE") + params.index("_DATE")
    if not date_idx:
        raise UVFITSError(f"{name}: no DATE group parameter")
    parts = [p for i in date_idx for p in (params.pzero[i], params.pscal[i] * params.raw[:, i])]
    t = dates_to_unix(parts, ant.time_system, name)
    n1, n2 = _antenna_numbers(params, name)
    i1 = lookup_ids(n1, ant.numbers, name, "antenna numbers", UVFITSError)
    i2 = lookup_ids(n2, ant.numbers, name, "antenna numbers", UVFITSError)
    src_par = params.get("SOURCE")
    src_ids = np.full(t.size, sources.ids[0]) if src_par is None else np.rint(src_par).astype(int)
    src = lookup_ids(src_ids, sources.ids, name, "source ids", UVFITSError)
    fq_par = params.get("FREQSEL")
    fq_ids = np.full(t.size, freqs.freqsel[0]) if fq_par is None else np.rint(fq_par).astype(int)
    fq = lookup_ids(fq_ids, freqs.freqsel, name, "FREQSEL ids", UVFITSError)
    inttim = params.get("INTTIM")

    bls = baseline_axis(i1, i2, ant.names.size)
    uvw[bls.row_conjugate] *= -1.0
    quantum = max(3.0 * _date_quantum_s(params, layout), 1e-3)
    cluster, cluster_t, int_time = time_axis(t, bls.row_baseline + bls.size * src, inttim,
                                             quantum)
    pairs, scan = scan_numbers(cluster, src)
    eff_time = np.full(t.size, int_time) if inttim is None else inttim

    antenna_xds = make_antenna_xds(
        ant.names, ant.positions_itrf_m, ant.diameters_m, telescope_name=ant.telescope_name,
        mount=ant.mount, polarization_type=ant.polarization_type)
    freq_frame = SPECSYS_FRAMES.get(str(hdr.get("SPECSYS", "TOPOCENT")).strip().upper(), "TOPO")
    bunit = clean_string(hdr.get("BUNIT", "")) or "unknown"
    stat = path.stat()
    partitions: dict[str, xr.DataTree] = {}
    for s in range(sources.ids.size):
        for f in range(freqs.freqsel.size):
            rows = np.flatnonzero((src == s) & (fq == f))
            if rows.size == 0:
                continue
            grid = grid_rows(rows, cluster, bls.row_baseline, bls.size, name)
            scans = scans_of(pairs, scan, grid.clusters, s)
            field = sources.names[s]
            field_xds = make_field_and_source_xds(
                [field], np.array([[sources.ra_rad[s], sources.dec_rad[s]]]), frame=sources.frame)
            sizes = resolve_chunks(chunks, grid.clusters.size, bls.size, n_chan, len(pols))
            meta = {"uvw_m": grid.scatter(uvw, np.nan),
                    "time_centroid_s": grid.scatter(t, np.nan),
                    "effective_integration_time_s": grid.scatter(eff_time, np.nan)}
            meta = {k: _time_chunked(v, sizes["time"]) for k, v in meta.items()}
            conj = grid.scatter(bls.row_conjugate, False)
            for i in range(n_if):
                width = freqs.ch_width_hz[f, i]
                freq_hz = (crval_f + freqs.if_freq_hz[f, i]
                           + (np.arange(n_chan) + 1 - crpix_f) * width)
                spw = f"spw_{f * n_if + i}"
                vis, flag, weight = _lazy_data(
                    layout, grid.rowmap, conj, i, pol_order, pol_swap, sizes, n_chan,
                    len(pols), (stat.st_size, stat.st_mtime_ns))
                xds = make_visibility_xds(
                    time_s=cluster_t[grid.clusters], frequency_hz=freq_hz, polarization=pols,
                    antenna_names=ant.names, antenna1=bls.antenna1, antenna2=bls.antenna2,
                    visibility=vis, flag=flag, weight=weight, **meta,
                    integration_time_s=int_time, channel_width_hz=abs(float(width)),
                    field_name=field, scan_name=scans, spectral_window_name=spw,
                    frequency_frame=freq_frame,
                    observer=clean_string(hdr.get("OBSERVER", "")),
                    description=f"observed data from UVFITS (BUNIT={bunit!r})")
                xds.attrs["partition_info"] = {
                    "spectral_window_name": spw, "field_name": [field], "source_name": [field],
                    "scan_name": sorted(set(scans), key=int),
                    "polarization_setup": list(pols), "intents": [],
                }
                partitions[f"{path.stem}_{len(partitions)}"] = make_partition(
                    xds, antenna_xds, field_xds)
    return make_observation(partitions, source_file=str(path), source_format="UVFITS")


def _time_chunked(values: np.ndarray, t_chunk: int):
    import dask.array as da

    return da.from_array(values, chunks=(t_chunk,) + values.shape[1:])


def _lazy_data(layout: GroupLayout, rowmap_np: np.ndarray, conj_np: np.ndarray, if_index: int,
               pol_order: np.ndarray, pol_swap: np.ndarray, sizes: dict[str, int], n_chan: int,
               n_pol: int, file_state: tuple[int, int]):
    """Dask arrays (VISIBILITY, FLAG, WEIGHT) reading one IF of a partition's grid."""
    import dask.array as da
    from dask.base import tokenize

    n_bl = rowmap_np.shape[1]
    rowmap = da.from_array(rowmap_np, chunks=(sizes["time"], n_bl))
    conj = da.from_array(conj_np, chunks=(sizes["time"], n_bl))
    chans = da.arange(n_chan, chunks=sizes["frequency"])
    token = tokenize(layout, file_state, if_index, rowmap.name, conj.name, chans.name,
                     pol_order, pol_swap)
    raw = da.blockwise(
        _read_block, "tbfpk", rowmap, "tb", conj, "tb", chans, "f",
        new_axes={"p": n_pol, "k": 3}, dtype=np.float32,
        meta=np.empty((0, 0, 0, 0, 0), dtype=np.float32), name=f"read-uvfits-{token}",
        layout=layout, if_index=if_index, pol_order=pol_order, pol_swap=pol_swap)
    vis = raw.map_blocks(_vis_of, drop_axis=4, dtype=np.complex64,
                         meta=np.empty((0, 0, 0, 0), np.complex64))
    flag = raw.map_blocks(_flag_of, drop_axis=4, dtype=bool,
                          meta=np.empty((0, 0, 0, 0), bool))
    weight = raw.map_blocks(_weight_of, drop_axis=4, dtype=np.float32,
                            meta=np.empty((0, 0, 0, 0), np.float32))
    return vis, flag, weight
