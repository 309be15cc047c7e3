"""Any visibility format pyuvdata reads (Miriad, UVH5, UVFITS, MS, MWA, ...) into the data model.

This path is **in memory**: pyuvdata loads the whole file, and the arrays are
then wrapped as dask arrays chunked per :func:`daskcal.data.chunking.resolve_chunks`.
It is meant for small files and for formats daskcal has no lazy reader of
its own (use :func:`daskcal.data.uvfits.read_uvfits` for UVFITS).

pyuvdata (an optional dependency: ``pip install daskcal[uvdata]``) is
imported only when a function here is called.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from daskcal import DaskcalError
from daskcal.data._rowgrid import (
    baseline_axis,
    grid_rows,
    lookup_ids,
    scan_numbers,
    scans_of,
    time_axis,
)
from daskcal.data._uvfits_tables import SWAPPED_POL, dates_to_unix, stokes_axis
from daskcal.data.chunking import ChunkSpec, resolve_chunks
from daskcal.data.model import (
    make_antenna_xds,
    make_field_and_source_xds,
    make_observation,
    make_partition,
    make_visibility_xds,
)

__all__ = ["UVDataImportError", "astropy_sites_offline", "read_with_pyuvdata"]

#: Name of the placeholder site that keeps astropy's site registry from downloading.
OFFLINE_SITE_NAME = "daskcal-offline-placeholder"


class UVDataImportError(DaskcalError, ValueError):
    """pyuvdata could not read a file, or its content does not fit the data model."""


@contextlib.contextmanager
def astropy_sites_offline() -> Iterator[None]:
    """Keep astropy from downloading its observatory list while the block runs.

    pyuvdata looks telescopes up with ``EarthLocation.get_site_names()``; since
    astropy 7 the first call downloads ``sites.json`` (astropy 8 ships no
    built-in list: ``get_builtin_sites`` is gone), which fails offline. An
    *empty* registry does not help (astropy treats it as not loaded), so if
    none is loaded yet this installs a registry holding one placeholder site
    (``OFFLINE_SITE_NAME``, at the geocentre) and restores the previous state
    afterwards. pyuvdata then falls back to its own telescope list and to the
    positions in the file. A registry that is already loaded (downloaded or
    cached earlier) is left alone.
    """
    from astropy.coordinates import EarthLocation
    from astropy.coordinates.sites import SiteRegistry

    previous = EarthLocation._site_registry
    if previous:
        yield
        return
    registry = SiteRegistry()
    registry.add_site([OFFLINE_SITE_NAME], EarthLocation.from_geocentric(0.0, 0.0, 0.0, unit="m"))
    EarthLocation._site_registry = registry
    try:
        yield
    finally:
        EarthLocation._site_registry = previous


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _load(path_or_uvdata: Any, file_type: str | None, read_kwargs: dict) -> tuple[Any, str]:
    """The UVData object and a name for messages."""
    from pyuvdata import UVData

    if isinstance(path_or_uvdata, UVData):
        return path_or_uvdata, "UVData"
    if isinstance(path_or_uvdata, str | os.PathLike):
        path = Path(path_or_uvdata)
        name = path.name
        if not path.exists():
            raise UVDataImportError(f"{name}: no such file or directory")
        if file_type is None and path.suffix.lower() in (".fits", ".fit"):
            file_type = "uvfits"  # pyuvdata only guesses UVFITS from a .uvfits suffix
        with astropy_sites_offline():
            try:
                uvd = UVData.from_file(str(path), file_type=file_type, **read_kwargs)
            except (ValueError, OSError, KeyError, IndexError, TypeError, RuntimeError) as exc:
                raise UVDataImportError(
                    f"{name}: pyuvdata could not read it ({_first_line(exc)})") from None
        return uvd, name
    raise UVDataImportError(
        f"read_with_pyuvdata: expected a path or a pyuvdata.UVData, got {type(path_or_uvdata)}")


def _antennas(uvd, name: str) -> dict[str, Any]:
    tel = uvd.telescope
    loc = tel.location
    if not hasattr(loc, "itrs"):
        raise UVDataImportError(f"{name}: telescope location is not on the Earth ({type(loc)})")
    centre = np.array([loc.x.to_value("m"), loc.y.to_value("m"), loc.z.to_value("m")])
    names = np.asarray([str(n) for n in tel.antenna_names])
    n_ant = names.size
    diam = tel.antenna_diameters
    diam = np.full(n_ant, np.nan) if diam is None else np.asarray(diam, np.float64)
    mount = "ALT-AZ"
    mounts = getattr(tel, "mount_type", None)
    if mounts is not None and len(mounts):
        kinds, counts = np.unique(np.asarray(mounts, dtype=str), return_counts=True)
        mount = str(kinds[np.argmax(counts)]).upper()
    return {
        "names": names, "numbers": np.asarray(tel.antenna_numbers, dtype=np.int64),
        "positions": np.asarray(tel.antenna_positions, np.float64).reshape(n_ant, 3) + centre,
        "diameters": diam, "mount": mount, "telescope": str(tel.name or "unknown"),
    }


def _phase_centre(uvd, cat_id: int, rows: np.ndarray, name: str) -> tuple[str, float, float, str]:
    """(name, RA, Dec, frame) of a phase centre; RA/Dec in radians."""
    entry = uvd.phase_center_catalog[cat_id]
    cat_name = str(entry.get("cat_name", f"field_{cat_id}"))
    if entry.get("cat_type") == "sidereal":
        frame = str(entry.get("cat_frame") or "icrs").lower()
        ra, dec = float(entry["cat_lon"]), float(entry["cat_lat"])
        if frame == "fk4":
            import astropy.units as u
            from astropy.coordinates import FK4, FK5, SkyCoord

            epoch = float(entry.get("cat_epoch") or 1950.0)
            sky = SkyCoord(ra * u.rad, dec * u.rad, frame=FK4(equinox=f"B{epoch}"))
            sky = sky.transform_to(FK5(equinox="J2000"))
            ra, dec, frame = sky.ra.rad, sky.dec.rad, "fk5"
        return cat_name, ra % (2 * np.pi), dec, "icrs" if frame == "icrs" else "fk5"
    # unprojected, driftscan, ephemeris, near-field: the ICRS direction at the middle row
    from pyuvdata.utils.phasing import transform_app_to_icrs

    mid = rows[rows.size // 2]
    ra, dec = transform_app_to_icrs(
        time_array=np.atleast_1d(uvd.time_array[mid]),
        app_ra=np.atleast_1d(uvd.phase_center_app_ra[mid]),
        app_dec=np.atleast_1d(uvd.phase_center_app_dec[mid]),
        telescope_loc=uvd.telescope.location)
    return cat_name, float(np.ravel(ra)[0]) % (2 * np.pi), float(np.ravel(dec)[0]), "icrs"


def read_with_pyuvdata(
    path_or_uvdata: str | os.PathLike | Any,
    *,
    chunks: ChunkSpec = "64MB",
    file_type: str | None = None,
    **read_kwargs: Any,
) -> xr.DataTree:
    """Read any file pyuvdata understands (or convert a UVData) into a daskcal observation.

    In-memory path: pyuvdata loads the whole file; meant for small files and
    formats without a lazy daskcal reader. The astropy site registry is kept
    offline during the read (:func:`astropy_sites_offline`).

    Parameters
    ----------
    path_or_uvdata : str, path-like or pyuvdata.UVData
        A Miriad directory, UVH5, UVFITS, Measurement Set, MWA files, ... or
        an already loaded ``UVData`` (not modified).
    chunks : ChunkSpec
        Dask chunking along ``time`` and ``frequency`` (see
        :func:`daskcal.data.chunking.resolve_chunks`).
    file_type : str, optional
        pyuvdata's ``file_type`` when it cannot tell from the name (files
        ending in ``.fits`` are taken as ``"uvfits"``).
    **read_kwargs
        Passed on to ``UVData.from_file``.

    Returns
    -------
    xarray.DataTree
        A processing set with one partition per (phase centre, spectral
        window). pyuvdata's conventions are converted to the Measurement
        Set's: visibilities conjugated and uvw (m) negated; rows with
        ``antenna1 > antenna2`` are stored on the ``antenna1 <= antenna2``
        baseline (conjugated, cross hands exchanged). ``WEIGHT`` is pyuvdata's
        ``nsample_array``, ``FLAG`` its ``flag_array``; times are pyuvdata's
        (UTC) in unix seconds.

    Raises
    ------
    UVDataImportError
        (a :class:`daskcal.DaskcalError`) with a one-line message naming the
        file, if it is missing, pyuvdata cannot read it, or it holds no data.
    """
    uvd, name = _load(path_or_uvdata, file_type, read_kwargs)
    if uvd.data_array is None or uvd.Nblts == 0:
        raise UVDataImportError(f"{name}: holds no visibilities (metadata only?)")
    if uvd.telescope.antenna_numbers is None:
        raise UVDataImportError(f"{name}: no antenna table")
    ant = _antennas(uvd, name)
    i1 = lookup_ids(np.asarray(uvd.ant_1_array), ant["numbers"], name, "antenna numbers",
                    UVDataImportError)
    i2 = lookup_ids(np.asarray(uvd.ant_2_array), ant["numbers"], name, "antenna numbers",
                    UVDataImportError)
    try:
        pols, pol_order, pol_swap = stokes_axis(np.asarray(uvd.polarization_array), name)
    except DaskcalError as exc:
        raise UVDataImportError(str(exc)) from None
    t = dates_to_unix([np.asarray(uvd.time_array, np.float64)], "UTC", name)
    cat_ids = np.asarray(uvd.phase_center_id_array)
    src_ids = np.unique(cat_ids)
    src = np.searchsorted(src_ids, cat_ids)

    bls = baseline_axis(i1, i2, ant["names"].size)
    inttim = np.asarray(uvd.integration_time, np.float64)
    cluster, cluster_t, int_time = time_axis(t, bls.row_baseline + bls.size * src, inttim, 1e-3)
    pairs, scan = scan_numbers(cluster, src)
    # to the MS convention: pyuvdata's uvw are antenna2 - antenna1 and its visibilities the
    # conjugate; a row stored as (q, p) with q > p is already the (p, q) sample in MS terms.
    flip = ~bls.row_conjugate
    uvw = np.where(flip[:, None], -1.0, 1.0) * np.asarray(uvd.uvw_array, np.float64)

    pol_types = ("R", "L") if {c for p in pols for c in p} & {"R", "L"} else ("X", "Y")
    antenna_xds = make_antenna_xds(
        ant["names"], ant["positions"], ant["diameters"], telescope_name=ant["telescope"],
        mount=ant["mount"], polarization_type=pol_types)
    spw_ids = np.asarray(uvd.spw_array)
    flex = np.asarray(uvd.flex_spw_id_array)
    freq_all = np.asarray(uvd.freq_array, np.float64).reshape(-1)
    width_all = np.abs(np.asarray(uvd.channel_width, np.float64).reshape(-1))
    swap_cross = np.asarray([pols.index(SWAPPED_POL.get(p, p)) if SWAPPED_POL.get(p, p) in pols
                             else i for i, p in enumerate(pols)])
    stem = Path(name).stem if name != "UVData" else "uvdata"
    partitions: dict[str, xr.DataTree] = {}
    for s, cat_id in enumerate(src_ids.tolist()):
        rows = np.flatnonzero(src == s)
        grid = grid_rows(rows, cluster, bls.row_baseline, bls.size, name)
        field, ra, dec, frame = _phase_centre(uvd, cat_id, rows, name)
        field_xds = make_field_and_source_xds([field], np.array([[ra, dec]]), frame=frame)
        scans = scans_of(pairs, scan, grid.clusters, s)
        present = grid.present
        src_rows = grid.rowmap[present]
        meta = {"uvw_m": grid.scatter(uvw, np.nan), "time_centroid_s": grid.scatter(t, np.nan),
                "effective_integration_time_s": grid.scatter(inttim, np.nan)}
        for k, spw_id in enumerate(spw_ids.tolist()):
            chan = np.flatnonzero(flex == spw_id)
            if chan.size == 0:
                continue
            sizes = resolve_chunks(chunks, grid.clusters.size, bls.size, chan.size, len(pols))
            vis, flag, weight = _gridded(uvd, grid.rowmap.shape, present, src_rows, chan,
                                         pol_order, swap_cross, flip)
            xds = make_visibility_xds(
                time_s=cluster_t[grid.clusters], frequency_hz=freq_all[chan],
                polarization=pols, antenna_names=ant["names"],
                antenna1=bls.antenna1, antenna2=bls.antenna2,
                visibility=_dask(vis, sizes), flag=_dask(flag, sizes),
                weight=_dask(weight, sizes),
                **{key: _dask(val, sizes) for key, val in meta.items()},
                integration_time_s=int_time, channel_width_hz=float(np.median(width_all[chan])),
                field_name=field, scan_name=scans, spectral_window_name=f"spw_{k}",
                frequency_frame=_frequency_frame(uvd), observer="",
                description=f"observed data read with pyuvdata (vis_units={uvd.vis_units!r})")
            xds.attrs["partition_info"] = {
                "spectral_window_name": f"spw_{k}", "field_name": [field],
                "source_name": [field], "scan_name": sorted(set(scans), key=int),
                "polarization_setup": list(pols), "intents": [],
            }
            partitions[f"{stem}_{len(partitions)}"] = make_partition(xds, antenna_xds, field_xds)
    return make_observation(partitions, source_file=name, source_format="pyuvdata")


def _frequency_frame(uvd) -> str:
    frame = str(getattr(uvd, "freq_frame", None) or "topo").upper()
    return {"TOPO": "TOPO", "LSRK": "LSRK", "BARY": "BARY", "ICRS": "BARY", "GEO": "GEO"}.get(
        frame, frame)


def _gridded(uvd, shape: tuple[int, int], present: np.ndarray, src_rows: np.ndarray,
             chan: np.ndarray, pol_order: np.ndarray, swap_cross: np.ndarray,
             flip: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Visibilities, flags and weights of one spectral window on the grid (numpy)."""
    n_pol = pol_order.size
    full = shape + (chan.size, n_pol)
    vis = np.zeros(full, dtype=np.complex64)
    flag = np.ones(full, dtype=bool)
    weight = np.zeros(full, dtype=np.float32)
    sel = np.ix_(src_rows, chan, pol_order)
    d = np.asarray(uvd.data_array[sel], dtype=np.complex64)
    f = np.asarray(uvd.flag_array[sel], dtype=bool)
    w = np.asarray(uvd.nsample_array[sel], dtype=np.float32)
    conj = flip[src_rows]
    d[conj] = np.conj(d[conj])
    swapped = ~conj
    if np.any(swapped):
        d[swapped] = d[swapped][:, :, swap_cross]
        f[swapped] = f[swapped][:, :, swap_cross]
        w[swapped] = w[swapped][:, :, swap_cross]
    vis[present], flag[present], weight[present] = d, f, w
    return vis, flag, weight


def _dask(values: np.ndarray, sizes: dict[str, int]):
    import dask.array as da

    chunks = [sizes["time"]] + [-1] * (values.ndim - 1)
    if values.ndim == 4:
        chunks[2] = sizes["frequency"]
    return da.from_array(values, chunks=tuple(chunks))
