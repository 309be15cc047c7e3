"""The ``apply`` stage: correct visibilities with gain solutions, lazily.

``VISIBILITY_CORRECTED = G_p^-1 V_pq G_q^-H`` (data group ``"corrected"``), with the
gains of the solution cell that contains each sample's time and frequency (the
nearest cell centre for samples outside every cell). Samples whose gains are
flagged, zero or singular are flagged (``FLAG`` is updated, as DP3's applycal
does, unless ``propagate_flags`` is off) and their corrected value is 0.
Interpolation between cells and transfer between observations are not done here.

Chunking: the visibilities keep their (time, frequency) chunks; ``baseline_id`` and
``polarization`` are made whole; every task receives the whole (small) gain table.
"""

from __future__ import annotations

import dask.array as da
import numpy as np
import xarray as xr
from pydantic import BaseModel, ConfigDict, Field

from daskcal.data.model import VIS_DIMS, add_data_group
from daskcal.kernels.solvers import correct_visibilities, propagate_gain_flags
from daskcal.stages.solve import SolveError, antenna_table, group_variables, receptor_labels


class ApplyConfig(BaseModel):
    """Settings of the ``apply`` stage."""

    model_config = ConfigDict(extra="forbid")

    data_group: str = Field("base", description="Data group to correct.")
    output: str = Field("VISIBILITY_CORRECTED", description="Name of the variable that "
                        "receives the corrected visibilities.")
    output_data_group: str = Field("corrected", description="Name of the data group added "
                                   "for the corrected visibilities.")
    propagate_flags: bool = Field(True, description="Flag (in the data group's flag "
                                  "variable) the samples whose gains are flagged.")


class ApplyError(SolveError):
    """Gains that do not fit the visibilities."""


def cell_index(values: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Index of the cell ``[lower, upper)`` holding each value; the nearest centre otherwise.

    Parameters
    ----------
    values : ndarray, shape (n,)
    lower, upper : ndarray, shape (n_cell,)
        Cell edges (cells must not overlap; any order).

    Returns
    -------
    ndarray of int64, shape (n,)
    """
    values = np.asarray(values, dtype=np.float64)
    lower = np.asarray(lower, dtype=np.float64)
    upper = np.asarray(upper, dtype=np.float64)
    order = np.argsort(lower)
    lo, hi = lower[order], upper[order]
    k = np.searchsorted(lo, values, side="right") - 1
    kc = np.clip(k, 0, lo.size - 1)
    inside = (k >= 0) & (values < hi[kc])
    centre = 0.5 * (lo + hi)
    j = np.searchsorted(centre, values)
    left = np.clip(j - 1, 0, lo.size - 1)
    right = np.clip(j, 0, lo.size - 1)
    nearest = np.where(np.abs(values - centre[left]) <= np.abs(values - centre[right]),
                       left, right)
    return order[np.where(inside, kc, nearest)].astype(np.int64)


def _correct_block(vis, t_idx, f_idx, gains, gflags, a1, a2, receptors):
    return correct_visibilities(vis, gains, gflags, a1, a2, t_idx, f_idx, receptors)


def _flag_block(flag, t_idx, f_idx, gains, gflags, a1, a2, receptors):
    return propagate_gain_flags(flag, gains, gflags, a1, a2, t_idx, f_idx, receptors)


def apply(xds: xr.Dataset, gains: xr.Dataset, config: ApplyConfig | None = None) -> xr.Dataset:
    """Correct a visibility partition with gain solutions, lazily.

    Parameters
    ----------
    xds : xarray.Dataset
        A visibility partition (dims time, baseline_id, frequency, polarization).
    gains : xarray.Dataset
        Gains as made by :func:`daskcal.stages.solve.solve` (or read back from zarr):
        ``GAIN``, ``GAIN_FLAG`` and the cell-edge coordinates.
    config : ApplyConfig, optional

    Returns
    -------
    xarray.Dataset
        ``xds`` with ``config.output`` in the data group ``config.output_data_group``
        (the flag and weight variables of the input group) and, if
        ``config.propagate_flags``, that flag variable updated. Nothing is computed.
    """
    config = config or ApplyConfig()
    data_name, flag_name, weight_name = group_variables(xds, config.data_group)
    receptors = receptor_labels(xds)
    full = "receptor2" in gains["GAIN"].dims
    gdims = ("gain_time", "gain_frequency", "antenna_name", "receptor") + \
        (("receptor2",) if full else ())
    if set(gains["GAIN"].dims) != set(gdims):
        raise ApplyError(f"GAIN has dims {gains['GAIN'].dims}; expected {gdims}")
    g_receptors = tuple(str(r) for r in gains["receptor"].values)
    if g_receptors != receptors:
        raise ApplyError(f"the gains are for receptors {g_receptors}, the data for {receptors}")
    if full and xds.sizes["polarization"] != 4:
        raise ApplyError("full-Jones gains need the four correlations")

    a1, a2, names = antenna_table(xds)
    g_names = [str(n) for n in gains["antenna_name"].values]
    lookup = {n: i for i, n in enumerate(g_names)}
    used = sorted(set(a1.tolist()) | set(a2.tolist()))
    missing = [names[i] for i in used if names[i] not in lookup]
    if missing:
        raise ApplyError(f"no gains for antennas {missing}")
    to_gain = np.array([lookup.get(n, 0) for n in names], np.int64)
    ga1, ga2 = to_gain[a1], to_gain[a2]

    t_idx = cell_index(xds["time"].values, gains["gain_time_lower"].values,
                       gains["gain_time_upper"].values)
    f_idx = cell_index(xds["frequency"].values, gains["gain_frequency_lower"].values,
                       gains["gain_frequency_upper"].values)
    pols = [str(p) for p in xds["polarization"].values]
    rmap = {lab: i for i, lab in enumerate(receptors)}
    corr_receptors = (np.array([rmap[p[0]] for p in pols]), np.array([rmap[p[1]] for p in pols]))

    gain_arr = gains["GAIN"].transpose(*gdims).data
    gflag_arr = gains["GAIN_FLAG"].transpose(*gdims).data
    gain_arr = da.asarray(gain_arr).rechunk(-1)
    gflag_arr = da.asarray(gflag_arr).rechunk(-1)
    gidx = "TFArs"[:gain_arr.ndim]

    def lazy(var):
        arr = var.data if isinstance(var.data, da.Array) else da.from_array(var.data, chunks=-1)
        return arr.rechunk({1: -1, 3: -1})

    vis = lazy(xds[data_name])
    t_d = da.from_array(t_idx, chunks=(vis.chunks[0],))
    f_d = da.from_array(f_idx, chunks=(vis.chunks[2],))
    common = (t_d, "t", f_d, "f", gain_arr, gidx, gflag_arr, gidx, ga1, None, ga2, None,
              corr_receptors, None)
    corrected = da.blockwise(_correct_block, "tbfc", vis, "tbfc", *common, concatenate=True,
                             dtype=vis.dtype, meta=np.empty((0, 0, 0, 0), vis.dtype))
    out = add_data_group(xds, config.output_data_group, config.output, data=corrected,
                         flag=flag_name, weight=weight_name,
                         description=f"{data_name} corrected with {gains.attrs.get('mode', '')} "
                                     "gains")
    if config.propagate_flags:
        flag = lazy(xds[flag_name]).rechunk(vis.chunks)
        new_flag = da.blockwise(_flag_block, "tbfc", flag, "tbfc", *common, concatenate=True,
                                dtype=bool, meta=np.empty((0, 0, 0, 0), bool))
        out[flag_name] = (VIS_DIMS, new_flag, xds[flag_name].attrs)
    return out


__all__ = ["ApplyConfig", "ApplyError", "apply", "cell_index"]
