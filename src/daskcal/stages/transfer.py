"""The ``transfer`` stage: calibrator solutions onto a target observation's grid, lazily.

LOFAR's calibrator -> target step (LINC's ``cal_transfer``, DP3 applycal with
interpolation): gains solved on a calibrator are interpolated in frequency and time
onto every (integration, channel) of the target, giving a gains dataset whose cells
are the target's samples, which :func:`daskcal.stages.apply.apply` applies directly.

Algorithm (per antenna and receptor, or Jones element in full Jones):

1. Phases are made relative to a reference antenna (``G <- G conj(G_ref) / |G_ref|``
   per receptor; by the ``[0, 0]`` element in full Jones); cells where it is flagged
   count as flagged. The absolute phase per receptor is not physical (solve references
   the same way), so only relative phases can be interpolated between cells.
2. Frequency: amplitude and phase (unwrapped along frequency over the unflagged cells)
   are interpolated linearly between the calibrator's cell centres (``freq_mode =
   "linear"``; ``"nearest"``: the nearest unflagged cell), constant beyond the first and
   last unflagged cells.
3. Time: likewise between cell centres, the phase unwrapped along time
   (``time_mode = "interpolate"``; constant, i.e. the nearest solution, outside the
   calibrator's time range, the usual case for a target observed after its
   calibrator), or the nearest cell (``"nearest"``), or one bandpass for all target
   times (``"mean"``: mean amplitude and circular-mean phase over the calibrator's
   unflagged times).
4. Flags: a target sample is flagged where the calibrator cell it falls into (the
   nearest cell centre, in time and in frequency) is flagged, or where a spectrum has
   no unflagged cell at all (gain 1). ``fill_flagged`` keeps the interpolated values
   of flagged calibrator cells unflagged instead.

The output has ``GAIN``, ``GAIN_FLAG`` (gain_time = target time, gain_frequency =
target frequency, antenna_name, receptor [, receptor2]) with cell edges half an
integration / channel either side. Chunking: the target's (time, frequency) chunks
of its visibilities; every task holds the whole calibrator table, and interpolates the
solutions around its times only.
"""

from __future__ import annotations

from typing import Literal

import dask.array as da
import numpy as np
import xarray as xr
from pydantic import BaseModel, ConfigDict, Field

from daskcal.data.model import VIS_DIMS, quantity_value
from daskcal.stages.smooth import (
    SmoothError,
    gain_dims,
    ref_index,
    reference,
    referenced_valid,
    unwrap_valid,
)
from daskcal.stages.solve import receptor_labels

_TIME_ATTRS = {"type": "time", "units": "s", "scale": "utc", "format": "unix"}
_FREQ_ATTRS = {"type": "spectral_coord", "units": "Hz"}


class TransferConfig(BaseModel):
    """Settings of the ``transfer`` stage."""

    model_config = ConfigDict(extra="forbid")

    time_mode: Literal["interpolate", "nearest", "mean"] = Field("interpolate", description=(
        "Time: linear between calibrator solutions (nearest outside their range), the "
        "nearest solution, or one mean bandpass for all times."))
    freq_mode: Literal["linear", "nearest"] = Field("linear", description=(
        "Frequency: linear in amplitude and unwrapped phase, or the nearest solution."))
    ref_antenna: str | None = Field(None, description="Phase reference antenna (default: the "
                                    "gains' ref_antenna attribute, else the first).")
    fill_flagged: bool = Field(False, description="Interpolate across flagged calibrator "
                               "solutions and leave the target samples there unflagged.")


class TransferError(SmoothError):
    """Gains that cannot be transferred to the target."""


def _interp_rows(x: np.ndarray, y: np.ndarray, valid: np.ndarray, x_new: np.ndarray,
                 nearest: bool) -> np.ndarray:
    """``np.interp`` of every row of ``y`` (n_rows, n) over its valid samples.

    ``x`` increasing. Rows without valid samples give NaN. All-valid rows are done
    together (one search); the others one by one.
    """
    out = np.full((y.shape[0], x_new.size), np.nan)
    all_valid = valid.all(axis=1)
    if all_valid.any():
        if x.size == 1:
            out[all_valid] = y[all_valid, :1]
        elif nearest:
            j = _nearest_index(x, x_new)
            out[all_valid] = y[all_valid][:, j]
        else:
            j = np.clip(np.searchsorted(x, x_new, side="right") - 1, 0, x.size - 2)
            t = np.clip((x_new - x[j]) / (x[j + 1] - x[j]), 0.0, 1.0)
            ya = y[all_valid]
            out[all_valid] = ya[:, j] * (1 - t) + ya[:, j + 1] * t
    for r in np.flatnonzero(~all_valid & valid.any(axis=1)):
        ok = valid[r]
        if nearest:
            out[r] = y[r, ok][_nearest_index(x[ok], x_new)]
        else:
            out[r] = np.interp(x_new, x[ok], y[r, ok])
    return out


def _nearest_index(x: np.ndarray, x_new: np.ndarray) -> np.ndarray:
    j = np.clip(np.searchsorted(x, x_new), 1, max(x.size - 1, 1))
    if x.size == 1:
        return np.zeros(x_new.size, np.int64)
    return np.where(np.abs(x_new - x[j - 1]) <= np.abs(x_new - x[j]), j - 1, j)


def interpolate_gains(g: np.ndarray, flag: np.ndarray, time_s: np.ndarray,
                      freq_hz: np.ndarray, new_time_s: np.ndarray, new_freq_hz: np.ndarray,
                      ref: int = 0, config: TransferConfig | None = None,
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Interpolate gains onto a new (time, frequency) grid (numpy; see the module notes).

    Parameters
    ----------
    g : ndarray, shape (n_time, n_freq, n_ant, 2[, 2]), complex
        Gains at the cell centres ``time_s`` (s) x ``freq_hz`` (Hz).
    flag : ndarray of bool, same shape
    time_s, freq_hz : ndarray, shapes (n_time,), (n_freq,)
    new_time_s, new_freq_hz : ndarray, shapes (n_new_time,), (n_new_freq,)
    ref : int
        Reference antenna index.
    config : TransferConfig, optional

    Returns
    -------
    (gains, flags)
        Shapes (n_new_time, n_new_freq, n_ant, 2[, 2]); gains complex128, referenced.
    """
    cfg = config or TransferConfig()
    t_order, f_order = np.argsort(time_s), np.argsort(freq_hz)
    t, f = np.asarray(time_s, np.float64)[t_order], np.asarray(freq_hz, np.float64)[f_order]
    g = np.asarray(g)[t_order][:, f_order]
    flag = np.asarray(flag, bool)[t_order][:, f_order]
    new_t = np.asarray(new_time_s, np.float64)
    new_f = np.asarray(new_freq_hz, np.float64)
    n_t = t.size
    if cfg.time_mode == "mean" or new_t.size == 0 or n_t < 2:
        return _interpolate(g, flag, t, f, new_t, new_f, ref, cfg)
    # Only the solutions around the new times count: per row (after the interpolation in
    # frequency), the last valid one at or before the first new time and the first at or
    # after the last, and the ones between. Finding them takes the flags alone, a cheap
    # pass over the table; interpolating the whole table for every block of new times
    # made the stage's work grow as (observation length)^2.
    have = np.moveaxis(_valid_after_frequency(g, flag, f, new_f, ref, cfg), 0, -1)
    have = have.reshape(-1, n_t)
    i0 = int(np.clip(np.searchsorted(t, new_t.min(), side="right") - 1, 0, n_t - 1))
    i1 = int(np.clip(np.searchsorted(t, new_t.max(), side="left"), 0, n_t - 1))
    before, after = have[:, :i0 + 1], have[:, i1:]
    rows_b, rows_a = before.any(axis=1), after.any(axis=1)
    lo = i0 - int(np.argmax(before[rows_b, ::-1], axis=1).max()) if rows_b.any() else i0
    hi = i1 + int(np.argmax(after[rows_a], axis=1).max()) if rows_a.any() else i1
    return _interpolate(g[lo:hi + 1], flag[lo:hi + 1], t[lo:hi + 1], f, new_t, new_f, ref, cfg)


def _valid_after_frequency(g: np.ndarray, flag: np.ndarray, f: np.ndarray,
                           new_f: np.ndarray, ref: int, cfg: TransferConfig) -> np.ndarray:
    """Which solutions interpolated to ``new_f`` are valid.

    Parameters
    ----------
    g, flag : ndarray, shape (n_time, n_freq, n_ant, 2[, 2])
        Solutions sorted in time and frequency, and their flags.
    f, new_f : ndarray, shapes (n_freq,), (n_new_freq,), Hz

    Returns
    -------
    ndarray of bool, shape (n_time, n_new_freq, n_ant, 2[, 2])
        Valid where the solution's frequency row has a valid (unflagged, finite,
        referenced) solution, and, unless ``fill_flagged``, the nearest is valid.
    """
    valid = referenced_valid(np.where(np.isfinite(g), g, 1.0), ~flag & np.isfinite(g), ref)
    have = np.repeat(valid.any(axis=1, keepdims=True), new_f.size, axis=1)
    if not cfg.fill_flagged:
        have &= valid[:, _nearest_index(f, new_f)]
    return have


def _interpolate(g: np.ndarray, flag: np.ndarray, t: np.ndarray, f: np.ndarray,
                 new_t: np.ndarray, new_f: np.ndarray, ref: int, cfg: TransferConfig
                 ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`interpolate_gains` on solutions ``g`` sorted in time ``t`` and frequency ``f``."""
    valid = ~flag & np.isfinite(g)
    gr, valid = reference(np.where(np.isfinite(g), g, 1.0).astype(np.complex128), valid, ref)
    rest = g.shape[2:]
    n_t, n_f = g.shape[:2]

    # frequency: rows (time, rest...) along frequency
    rows = np.moveaxis(gr, 1, -1).reshape(-1, n_f)
    vrows = np.moveaxis(valid, 1, -1).reshape(-1, n_f)
    near_f = cfg.freq_mode == "nearest"
    amp = _interp_rows(f, np.abs(rows), vrows, new_f, near_f)
    phase = _interp_rows(f, np.nan_to_num(unwrap_valid(np.angle(rows), vrows)), vrows, new_f,
                         near_f)
    # back to (time, new_freq, rest) then rows (new_freq, rest...) along time
    shape_f = (n_t, *rest, new_f.size)
    amp, phase = (np.moveaxis(a.reshape(shape_f), -1, 1) for a in (amp, phase))
    have = _valid_after_frequency(g, flag, f, new_f, ref, cfg)
    amp_r = np.moveaxis(amp, 0, -1).reshape(-1, n_t)
    ph_r = np.moveaxis(phase, 0, -1).reshape(-1, n_t)
    have_r = np.moveaxis(have, 0, -1).reshape(-1, n_t)
    if cfg.time_mode == "mean":
        cnt = have_r.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            a_m = np.where(have_r, amp_r, 0.0).sum(axis=1) / cnt
            p_m = np.angle(np.where(have_r, np.exp(1j * ph_r), 0.0).sum(axis=1))
        a_m, p_m = np.where(cnt > 0, a_m, np.nan), np.where(cnt > 0, p_m, np.nan)
        amp_t = np.repeat(a_m[:, None], new_t.size, axis=1)
        ph_t = np.repeat(p_m[:, None], new_t.size, axis=1)
        have_t = np.repeat((cnt > 0)[:, None], new_t.size, axis=1)
    else:
        near_t = cfg.time_mode == "nearest"
        ph_u = np.nan_to_num(unwrap_valid(np.where(have_r, ph_r, 0.0), have_r))
        amp_t = _interp_rows(t, np.where(have_r, amp_r, 0.0), have_r, new_t, near_t)
        ph_t = _interp_rows(t, ph_u, have_r, new_t, near_t)
        have_t = np.isfinite(amp_t)
        if not cfg.fill_flagged:
            have_t &= have_r[:, _nearest_index(t, new_t)]
    out = amp_t * np.exp(1j * ph_t)
    ok = have_t & np.isfinite(out)
    out = np.where(ok, out, 1.0 + 0j)
    shape_t = (new_f.size, *rest, new_t.size)
    out = np.moveaxis(out.reshape(shape_t), -1, 0)
    ok = np.moveaxis(ok.reshape(shape_t), -1, 0)
    return out, ~ok


def _transfer_block(t_new, f_new, g, flag, t_cal, f_cal, ref, cfg, dtype):
    gains, flags = interpolate_gains(g, flag, t_cal, f_cal, t_new, f_new, ref, cfg)
    out = np.empty(gains.shape[:3], dtype)
    out["gain"], out["flag"] = gains, flags
    return out


def _edges(values: np.ndarray, width: float) -> tuple[np.ndarray, np.ndarray]:
    return values - abs(width) / 2, values + abs(width) / 2


def transfer(gains: xr.Dataset, target: xr.Dataset,
             config: TransferConfig | None = None) -> xr.Dataset:
    """Interpolate calibrator gains onto a target partition's (time, frequency) grid, lazily.

    Parameters
    ----------
    gains : xarray.Dataset
        Calibrator gains (:func:`daskcal.stages.solve.solve`, :func:`daskcal.stages.smooth.
        smooth`, or read from zarr / H5parm).
    target : xarray.Dataset
        The target visibility partition (dims time, baseline_id, frequency,
        polarization); only its coordinates and chunks are used.
    config : TransferConfig, optional

    Returns
    -------
    xarray.Dataset
        Gains with one cell per target integration and channel (see the module
        notes), dask-backed, chunked like the target's visibilities. Nothing is computed.

    Raises
    ------
    TransferError
        For gains without GAIN/GAIN_FLAG, receptors that differ from the target's,
        missing antennas or an unknown reference antenna.
    """
    config = config or TransferConfig()
    try:
        dims = gain_dims(gains)
    except SmoothError as err:
        raise TransferError(str(err)) from None
    g_rec = tuple(str(r) for r in gains["receptor"].values)
    if g_rec != receptor_labels(target):
        raise TransferError(f"the gains are for receptors {g_rec}, the target's data for "
                            f"{receptor_labels(target)}")
    names = {str(n) for n in gains["antenna_name"].values}
    wanted = set()
    for c in ("baseline_antenna1_name", "baseline_antenna2_name"):
        if c in target.coords:
            wanted |= {str(n) for n in target[c].values}
    if wanted - names:
        raise TransferError(f"no calibrator gains for target antennas {sorted(wanted - names)}")
    try:
        ref = ref_index(gains, config.ref_antenna)
    except SmoothError as err:
        raise TransferError(str(err)) from None

    t_new = np.asarray(target["time"].values, np.float64)
    f_new = np.asarray(target["frequency"].values, np.float64)
    vis = next((target[v] for v in target.data_vars if target[v].dims == VIS_DIMS), None)
    t_chunks, f_chunks = (t_new.size,), (f_new.size,)
    if vis is not None and vis.chunks is not None:
        t_chunks, f_chunks = vis.chunks[0], vis.chunks[2]
    t_d = da.from_array(t_new, chunks=(t_chunks,))
    f_d = da.from_array(f_new, chunks=(f_chunks,))
    g_arr, fl_arr = (da.asarray(gains[v].transpose(*dims).data).rechunk(-1)
                     for v in ("GAIN", "GAIN_FLAG"))
    full = len(dims) == 5
    gshape = (2, 2) if full else (2,)
    dtype = np.dtype([("gain", np.complex128, gshape), ("flag", np.bool_, gshape)])
    gidx = "TFArs"[:len(dims)]
    packed = da.blockwise(
        _transfer_block, "tfa", t_d, "t", f_d, "f", g_arr, gidx, fl_arr, gidx,
        np.asarray(gains["gain_time"].values, np.float64), None,
        np.asarray(gains["gain_frequency"].values, np.float64), None, ref, None, config, None,
        dtype, None, new_axes={"a": gains.sizes["antenna_name"]}, concatenate=True,
        dtype=dtype, meta=np.empty((0, 0, 0), dtype))
    dt = quantity_value(target["time"].attrs.get("integration_time"),
                      float(np.median(np.diff(t_new))) if t_new.size > 1 else 0.0)
    df = quantity_value(target["frequency"].attrs.get("channel_width"),
                      float(np.median(np.diff(f_new))) if f_new.size > 1 else 0.0)
    t_lo, t_hi = _edges(t_new, dt)
    f_lo, f_hi = _edges(f_new, df)
    coords = {
        "gain_time": ("gain_time", t_new, _TIME_ATTRS),
        "gain_time_lower": ("gain_time", t_lo, _TIME_ATTRS),
        "gain_time_upper": ("gain_time", t_hi, _TIME_ATTRS),
        "gain_frequency": ("gain_frequency", f_new, _FREQ_ATTRS),
        "gain_frequency_lower": ("gain_frequency", f_lo, _FREQ_ATTRS),
        "gain_frequency_upper": ("gain_frequency", f_hi, _FREQ_ATTRS),
        "antenna_name": ("antenna_name", gains["antenna_name"].values),
        "receptor": ("receptor", gains["receptor"].values),
    }
    if full:
        coords["receptor2"] = ("receptor2", gains["receptor2"].values)
    ref_name = str(gains["antenna_name"].values[ref])
    return xr.Dataset(
        {"GAIN": (dims, packed["gain"], {"type": "gain", "units": "unitless"}),
         "GAIN_FLAG": (dims, packed["flag"], {"type": "flag"})},
        coords=coords,
        attrs={"type": "gain", "mode": gains.attrs.get("mode", "diagonal_complex"),
               "jones_convention": "V_pq = G_p M_pq G_q^H", "ref_antenna": ref_name,
               "transfer": config.model_dump(mode="json"),
               "transferred_from": str(gains.attrs.get("source", "calibrator gains"))})


__all__ = ["TransferConfig", "TransferError", "interpolate_gains", "transfer"]
