"""The ``solve`` stage: direction-independent antenna gains, lazily over (time, frequency) chunks.

Each task solves the solution cells of one chunk with
:func:`daskcal.kernels.solvers.solve_gains`, so a cell never straddles chunks: the
stage rechunks (lazily) ``time`` to a multiple of ``solint_time`` integrations and
``frequency`` to a multiple of ``solint_freq`` channels, close to the input chunk
sizes, with ``baseline_id`` and ``polarization`` whole. Memory per task is one chunk
of data, model, weight and flag plus the per-cell sums (a few hundred bytes per
baseline and cell; 1 kB in full Jones).

Gains dataset
-------------
Dimensions ``gain_time``, ``gain_frequency`` (solution cells), ``antenna_name``,
``receptor`` (``"X", "Y"`` or ``"R", "L"``: the row of the Jones matrix, i.e. the
antenna's feed) and, in full Jones only, ``receptor2`` (its column, the same labels).

=================  ==================================================  ==========
variable           dims                                                dtype
=================  ==================================================  ==========
``GAIN``           gain_time, gain_frequency, antenna_name, receptor   complex128
                   [, receptor2]
``GAIN_FLAG``      as ``GAIN``; True: no solution (``GAIN`` = 1)       bool
``CHI2``           gain_time, gain_frequency (reduced chi-squared)     float64
``N_ITER``         gain_time, gain_frequency                           int32
``CONVERGED``      gain_time, gain_frequency                           bool
``REF_ANTENNA``    gain_time, gain_frequency, receptor (index into     int32
                   ``antenna_name`` of the phase reference; -1: none)
=================  ==================================================  ==========

Coordinates: ``gain_time`` (mean unix time of the cell's integrations, s, UTC),
``gain_time_lower`` / ``gain_time_upper`` (the cell's edges: first integration minus
and last plus half an integration), ``gain_frequency`` (mean channel frequency, Hz)
with ``gain_frequency_lower`` / ``gain_frequency_upper``, ``antenna_name``,
``receptor`` (and ``receptor2``). Attributes: ``type = "gain"``, ``mode``,
``jones_convention = "V_pq = G_p M_pq G_q^H"``, ``solint_time``, ``solint_freq``,
``ref_antenna``, ``config`` (the :class:`SolveConfig` as a dict). Everything is plain
numbers and strings, so the dataset persists to zarr as is; H5parm export maps
``GAIN`` to amplitude/phase soltabs with a ``pol`` axis (XX, YY or XX, XY, YX, YY).
"""

from __future__ import annotations

from typing import Literal

import dask.array as da
import numpy as np
import xarray as xr
from pydantic import BaseModel, ConfigDict, Field

from daskcal import DaskcalError
from daskcal.data.chunking import aligned_chunk
from daskcal.data.model import VIS_DIMS, quantity_value
from daskcal.kernels.solvers import solve_gains

Mode = Literal["scalar_phase", "scalar_complex", "diagonal_phase", "diagonal_complex",
               "full_jones"]

_DEFAULT_VARS = {"base": "VISIBILITY", "model": "VISIBILITY_MODEL",
                 "corrected": "VISIBILITY_CORRECTED"}
#: Supported correlation layouts -> receptor labels.
_LAYOUTS = {
    ("XX", "XY", "YX", "YY"): ("X", "Y"), ("RR", "RL", "LR", "LL"): ("R", "L"),
    ("XX", "YY"): ("X", "Y"), ("RR", "LL"): ("R", "L"),
}


class SolveConfig(BaseModel):
    """Settings of the ``solve`` stage (DP3's ddecal/gaincal for one direction)."""

    model_config = ConfigDict(extra="forbid")

    mode: Mode = Field("diagonal_complex", description=(
        "Gain type: one phase (scalar_phase) or complex gain (scalar_complex) per antenna, "
        "one phase (diagonal_phase) or complex gain (diagonal_complex) per antenna and "
        "receptor, or a 2x2 matrix per antenna (full_jones, needs four correlations)."))
    solint_time: int = Field(1, ge=0, description="Solution interval in integrations "
                             "(0: the whole time axis).")
    solint_freq: int = Field(1, ge=0, description="Solution interval in channels "
                             "(0: the whole band).")
    max_iter: int = Field(50, ge=1, description="Iteration limit per solution.")
    tolerance: float = Field(1e-6, ge=0, description="Convergence threshold on the "
                             "relative change of the gains between iterations.")
    damping: float = Field(0.5, ge=0, lt=1, description="Weight of the previous iterate in "
                           "damped updates (StefCal: 0.5).")
    damping_every: int = Field(2, ge=1, description="Damp every this many iterations "
                               "(StefCal: 2, the even iterations).")
    ref_antenna: str | None = Field(None, description="Name of the phase reference antenna "
                                    "(default: the first antenna); the next unflagged one "
                                    "is used where it is flagged.")
    min_unflagged_fraction: float = Field(0.0, ge=0, le=1, description=(
        "Minimum fraction of an antenna's samples in a solution cell that must be "
        "unflagged for it to be solved; otherwise its gain is flagged."))
    data_group: str = Field("base", description="Data group holding the observed data, "
                            "flags and weights.")
    model_data_group: str = Field("model", description="Data group holding the model "
                                  "visibilities (when no model is passed).")


class SolveError(DaskcalError, ValueError):
    """Solver settings or inputs that do not fit the data."""


def group_variables(xds: xr.Dataset, group: str) -> tuple[str, str, str]:
    """``(correlated_data, flag, weight)`` variable names of a data group."""
    groups = xds.attrs.get("data_groups", {})
    if group in groups:
        g = groups[group]
        names = (g["correlated_data"], g.get("flag", "FLAG"), g.get("weight", "WEIGHT"))
    elif group in _DEFAULT_VARS:
        names = (_DEFAULT_VARS[group], "FLAG", "WEIGHT")
    else:
        raise SolveError(f"data group {group!r} is not in the dataset "
                         f"(data groups: {sorted(groups)})")
    missing = [n for n in names if n not in xds]
    if missing:
        raise SolveError(f"data group {group!r}: variables {missing} are not in the dataset")
    return names


def receptor_labels(xds: xr.Dataset) -> tuple[str, str]:
    """Receptor labels of a partition's correlations; raises for unsupported layouts."""
    pols = tuple(str(p) for p in xds["polarization"].values)
    if pols not in _LAYOUTS:
        raise SolveError(f"polarization {list(pols)} is not supported: use one of "
                         f"{[list(k) for k in _LAYOUTS]} in that order")
    return _LAYOUTS[pols]


def antenna_table(xds: xr.Dataset) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(antenna1, antenna2, names)``: integer baseline antennas and the name of each index."""
    names1 = [str(n) for n in xds["baseline_antenna1_name"].values] \
        if "baseline_antenna1_name" in xds.coords else None
    names2 = [str(n) for n in xds["baseline_antenna2_name"].values] \
        if "baseline_antenna2_name" in xds.coords else None
    if "antenna1" in xds.coords and "antenna2" in xds.coords:
        a1 = np.asarray(xds["antenna1"].values, dtype=np.int64)
        a2 = np.asarray(xds["antenna2"].values, dtype=np.int64)
        n_ant = int(max(a1.max(), a2.max())) + 1 if a1.size else 0
        names = [f"ANT{i}" for i in range(n_ant)]
        if names1 is not None and names2 is not None:
            for idx, nm in zip(np.concatenate([a1, a2]), names1 + names2, strict=True):
                names[idx] = nm
        return a1, a2, names
    if names1 is None or names2 is None:
        raise SolveError("the dataset has neither antenna1/antenna2 nor "
                         "baseline_antenna{1,2}_name coordinates")
    names = list(dict.fromkeys(names1 + names2))
    lookup = {n: i for i, n in enumerate(names)}
    return (np.array([lookup[n] for n in names1], np.int64),
            np.array([lookup[n] for n in names2], np.int64), names)


def _model_array(xds: xr.Dataset, model, config: SolveConfig) -> xr.DataArray:
    if model is None:
        return xds[group_variables(xds, config.model_data_group)[0]]
    if isinstance(model, str):
        if model not in xds:
            raise SolveError(f"model variable {model!r} is not in the dataset")
        return xds[model]
    if isinstance(model, xr.Dataset):
        return model[group_variables(model, config.model_data_group)[0]]
    if isinstance(model, xr.DataArray):
        return model
    raise SolveError(f"model must be a variable name, a DataArray or a Dataset, "
                     f"not {type(model).__name__}")


def cell_axis(values: np.ndarray, width: float | None, size: int):
    """Centres and edges of the cells of ``size`` consecutive samples along an axis."""
    n = values.size
    if width is None:
        width = float(np.median(np.abs(np.diff(values)))) if n > 1 else 0.0
    starts = np.arange(0, n, size)
    ends = np.minimum(starts + size, n)
    centre = np.array([values[s:e].mean() for s, e in zip(starts, ends, strict=True)])
    lo = np.minimum(values[starts], values[ends - 1]) - abs(width) / 2
    hi = np.maximum(values[starts], values[ends - 1]) + abs(width) / 2
    return centre, lo, hi


def _solve_block(vis, model, weight, flag, a1, a2, n_ant, t_int, f_int, opts, dtype):
    sol = solve_gains(vis, model, weight, flag, a1, a2, n_ant, t_int, f_int, **opts)
    out = np.empty(sol.gains.shape[:3], dtype)
    out["gain"] = sol.gains
    out["flag"] = sol.flags
    out["chi2"] = sol.chi2[:, :, None]
    out["n_iter"] = sol.n_iter[:, :, None]
    out["converged"] = sol.converged[:, :, None]
    out["ref"] = sol.ref_antenna[:, :, None, :]
    return out


def solve(xds: xr.Dataset, model=None, config: SolveConfig | None = None) -> xr.Dataset:
    """Solve for direction-independent antenna gains of one visibility partition, lazily.

    Parameters
    ----------
    xds : xarray.Dataset
        A visibility partition (dims time, baseline_id, frequency, polarization), numpy-
        or dask-backed, with the data group ``config.data_group``.
    model : str, xarray.DataArray or xarray.Dataset, optional
        Model visibilities (Jy, dims and shape of the data): a variable name of
        ``xds``, a DataArray, or a dataset holding the data group
        ``config.model_data_group``. Default: that data group of ``xds``.
    config : SolveConfig, optional

    Returns
    -------
    xarray.Dataset
        The gains (see the module documentation), backed by dask arrays. Nothing is
        computed.
    """
    config = config or SolveConfig()
    data_name, flag_name, weight_name = group_variables(xds, config.data_group)
    model_da = _model_array(xds, model, config)
    if model_da.dims != VIS_DIMS or model_da.shape != xds[data_name].shape:
        raise SolveError(f"model has dims {model_da.dims} and shape {model_da.shape}; the data "
                         f"have {xds[data_name].dims} and {xds[data_name].shape}")
    receptors = receptor_labels(xds)
    full = config.mode == "full_jones"
    if full and xds.sizes["polarization"] != 4:
        raise SolveError("full_jones needs the four correlations; the data have "
                         f"{list(map(str, xds['polarization'].values))}")
    a1, a2, names = antenna_table(xds)
    n_ant = len(names)
    ref = 0
    if config.ref_antenna is not None:
        if config.ref_antenna not in names:
            raise SolveError(f"reference antenna {config.ref_antenna!r} is not one of {names}")
        ref = names.index(config.ref_antenna)
    n_time, n_chan = xds.sizes["time"], xds.sizes["frequency"]
    t_int = min(config.solint_time or n_time, n_time)
    f_int = min(config.solint_freq or n_chan, n_chan)

    arrays = []
    for var in (xds[data_name], model_da, xds[weight_name], xds[flag_name]):
        arr = var.data if isinstance(var.data, da.Array) else da.from_array(var.data, chunks=-1)
        arrays.append(arr)
    tchunk = aligned_chunk(arrays[0].chunks[0], t_int)
    fchunk = aligned_chunk(arrays[0].chunks[2], f_int)
    arrays = [a.rechunk({0: tchunk, 1: -1, 2: fchunk, 3: -1}) for a in arrays]

    gshape = (2, 2) if full else (2,)
    dtype = np.dtype([("gain", np.complex128, gshape), ("flag", np.bool_, gshape),
                      ("chi2", np.float64), ("n_iter", np.int32), ("converged", np.bool_),
                      ("ref", np.int32, (2,))])
    opts = {"mode": config.mode, "max_iter": config.max_iter, "tolerance": config.tolerance,
            "damping": config.damping, "damping_every": config.damping_every,
            "ref_antenna": ref, "min_unflagged_fraction": config.min_unflagged_fraction}
    packed = da.blockwise(
        _solve_block, "TFa",
        arrays[0], "TbFc", arrays[1], "TbFc", arrays[2], "TbFc", arrays[3], "TbFc",
        a1, None, a2, None, n_ant, None, t_int, None, f_int, None, opts, None, dtype, None,
        new_axes={"a": n_ant},
        adjust_chunks={"T": lambda n: -(-n // t_int), "F": lambda n: -(-n // f_int)},
        concatenate=True, dtype=dtype, meta=np.empty((0, 0, 0), dtype))

    cell = ("gain_time", "gain_frequency")
    gdims = (*cell, "antenna_name", "receptor") + (("receptor2",) if full else ())
    t_c, t_lo, t_hi = cell_axis(xds["time"].values,
                                 quantity_value(xds["time"].attrs.get("integration_time")), t_int)
    f_c, f_lo, f_hi = cell_axis(xds["frequency"].values,
                                 quantity_value(xds["frequency"].attrs.get("channel_width")), f_int)
    time_attrs = {"type": "time", "units": "s", "scale": xds["time"].attrs.get("scale", "utc"),
                  "format": "unix"}
    freq_attrs = {"type": "spectral_coord", "units": "Hz"}
    coords = {
        "gain_time": ("gain_time", t_c, time_attrs),
        "gain_time_lower": ("gain_time", t_lo, time_attrs),
        "gain_time_upper": ("gain_time", t_hi, time_attrs),
        "gain_frequency": ("gain_frequency", f_c, freq_attrs),
        "gain_frequency_lower": ("gain_frequency", f_lo, freq_attrs),
        "gain_frequency_upper": ("gain_frequency", f_hi, freq_attrs),
        "antenna_name": ("antenna_name", np.asarray(names, dtype=str)),
        "receptor": ("receptor", np.asarray(receptors, dtype=str)),
    }
    if full:
        coords["receptor2"] = ("receptor2", np.asarray(receptors, dtype=str))
    data_vars = {
        "GAIN": (gdims, packed["gain"], {"type": "gain", "units": "unitless"}),
        "GAIN_FLAG": (gdims, packed["flag"], {"type": "flag"}),
        "CHI2": (cell, packed["chi2"][:, :, 0], {"description": "reduced chi-squared"}),
        "N_ITER": (cell, packed["n_iter"][:, :, 0]),
        "CONVERGED": (cell, packed["converged"][:, :, 0]),
        "REF_ANTENNA": ((*cell, "receptor"), packed["ref"][:, :, 0, :],
                        {"description": "index into antenna_name of the phase reference, "
                                        "-1: none"}),
    }
    attrs = {
        "type": "gain", "mode": config.mode, "jones_convention": "V_pq = G_p M_pq G_q^H",
        "solint_time": t_int, "solint_freq": f_int,
        "ref_antenna": config.ref_antenna if config.ref_antenna is not None else names[ref],
        "config": config.model_dump(mode="json"),
        "data": data_name, "model": str(model_da.name),
    }
    return xr.Dataset(data_vars=data_vars, coords=coords, attrs=attrs)


__all__ = ["SolveConfig", "SolveError", "antenna_table", "group_variables", "receptor_labels",
           "solve"]
