"""Persist direction-dependent gains: zarr (the DataTree of :func:`solve_facets`) and H5parm.

H5parm: one solution set whose soltabs have a ``dir`` axis with one entry per direction
(``AXES = "time,freq,ant,dir[,pol]"``) and a ``source`` table with each direction's name
and (RA, Dec) in radians, as DP3's DDECal writes. Each direction is first written with
:func:`daskcal.data.h5parm.write_h5parm` (so that names, strings, attributes and the
amplitude/phase split are exactly those of the single-direction export) into a
temporary file; the directions are then joined along ``dir``. A direction reads back
with ``daskcal.data.h5parm.read_h5parm(path, direction=name)``.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import xarray as xr

from daskcal.data.h5parm import H5parmError, write_h5parm


def write_dd_gains(tree: xr.DataTree, path: str | os.PathLike, *, overwrite: bool = False,
                   compute: bool = True):
    """Write the gains tree of :func:`~daskcal.stages.facets.solve_facets` to a zarr v3 store.

    Parameters
    ----------
    tree : xarray.DataTree
    path : path-like
    overwrite : bool
        Replace an existing store (else it is an error).
    compute : bool
        Write now, or return the delayed write (``compute=False``) for the caller to run.

    Returns
    -------
    The store path, or a ``dask.delayed`` object with ``compute=False``.
    """
    with warnings.catch_warnings():
        # the zarr-python extensions daskcal stores use on purpose (see write_zarr)
        warnings.filterwarnings("ignore", message=r"Consolidated metadata is currently not part")
        warnings.filterwarnings("ignore", message=r".*does not have a Zarr V3 specification")
        out = tree.to_zarr(path, mode="w" if overwrite else "w-", zarr_format=3,
                           consolidated=True, compute=compute)
    return Path(path) if compute else out


def read_dd_gains(path: str | os.PathLike) -> xr.DataTree:
    """Open a gains tree written by :func:`write_dd_gains` (lazily, dask-backed)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Consolidated metadata is currently not part")
        return xr.open_datatree(path, engine="zarr", chunks={})


def write_dd_h5parm(gains: xr.Dataset, path: str | os.PathLike, *, solset: str = "sol000",
                    antenna_xds: xr.Dataset | None = None, overwrite: bool = False) -> Path:
    """Write direction-dependent gains as one H5parm solution set with a ``dir`` axis.

    Parameters
    ----------
    gains : xarray.Dataset
        ``GAIN``, ``GAIN_FLAG`` (gain_time, gain_frequency, antenna_name, direction,
        receptor) with ``direction_ra`` / ``direction_dec`` coordinates (radians), as in
        a node of :func:`~daskcal.stages.facets.solve_facets`; dask-backed gains are
        computed.
    path : path-like
        The H5parm file (created, or a solution set appended).
    solset : str
    antenna_xds : xarray.Dataset, optional
        Antenna positions for the ``antenna`` table.
    overwrite : bool
        Replace an existing solution set of that name.

    Returns
    -------
    pathlib.Path
    """
    import h5py

    if "direction" not in gains["GAIN"].dims:
        raise H5parmError("the gains have no direction dimension; use write_h5parm")
    path = Path(path)
    names = [str(d) for d in gains["direction"].values]
    ra = np.asarray(gains["direction_ra"].values, np.float64) if "direction_ra" in gains.coords \
        else np.zeros(len(names))
    dec = np.asarray(gains["direction_dec"].values, np.float64) \
        if "direction_dec" in gains.coords else np.zeros(len(names))
    keep = ["GAIN", "GAIN_FLAG"]
    gains = gains[keep].compute()
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        tmp_path = Path(tmp) / "dirs.h5"
        for k, name in enumerate(names):
            one = gains.isel(direction=k).drop_vars(
                [c for c in ("direction", "direction_ra", "direction_dec") if c in gains.coords])
            write_h5parm(one, tmp_path, solset=f"d{k}", antenna_xds=antenna_xds,
                         direction_rad=(ra[k], dec[k]), direction_name=name)
        with h5py.File(tmp_path, "r") as src, h5py.File(path, "a") as dst:
            if solset in dst:
                if not overwrite:
                    raise H5parmError(f"{path}: solution set {solset!r} exists (use overwrite)")
                del dst[solset]
            src.copy(src["d0"], dst, name=solset)
            ss = dst[solset]
            table = np.concatenate([src[f"d{k}"]["source"][()] for k in range(len(names))])
            attrs = dict(ss["source"].attrs)
            del ss["source"]
            dset = ss.create_dataset("source", data=table, maxshape=(None,), chunks=True)
            for key, val in attrs.items():
                dset.attrs[key] = val
            dset.attrs["NROWS"] = np.int64(table.size)
            for tab in [t for t in ss if isinstance(ss[t], h5py.Group)]:
                axes = ss[tab]["val"].attrs["AXES"]
                axes = axes.decode() if isinstance(axes, bytes) else str(axes)
                i = axes.split(",").index("dir")
                for leaf in ("val", "weight", "dir"):
                    parts = [src[f"d{k}"][tab][leaf][()] for k in range(len(names))]
                    data = np.concatenate(parts, axis=i if leaf != "dir" else 0)
                    if leaf == "dir":
                        width = max(p.dtype.itemsize for p in parts)
                        data = np.array([p.tobytes().rstrip(b"\0") for p in parts],
                                        dtype=f"S{width}")
                    attrs = dict(ss[tab][leaf].attrs)
                    del ss[tab][leaf]
                    dset = ss[tab].create_dataset(leaf, data=data)
                    for key, val in attrs.items():
                        dset.attrs[key] = val
    return path


__all__ = ["read_dd_gains", "write_dd_gains", "write_dd_h5parm"]
