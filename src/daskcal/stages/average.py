"""The ``average`` stage: time and channel averaging, lazily over chunks.

Chunking: each output sample must come from one input chunk, so the stage
rechunks (lazily) ``time`` to multiples of the time factor and ``frequency``
to multiples of the channel factor, keeping chunk sizes close to the input's.
Memory per task is one input chunk of VISIBILITY/FLAG/WEIGHT plus its
(factor-smaller) output.

Partial bins: a time axis that the time factor does not divide ends in a
partial bin (fewer integrations; its ``time`` is the mean of its members and
its EFFECTIVE_INTEGRATION_TIME says how much data it holds). A channel factor
that does not divide the number of channels is refused: the data model carries
one channel width per spectral window, which a partial channel could not keep
true.
"""

from __future__ import annotations

import dask.array as da
import numpy as np
import xarray as xr
from pydantic import BaseModel, ConfigDict, Field, model_validator

from daskcal import DaskcalError
from daskcal.data.chunking import aligned_chunk, chunk_data_vars
from daskcal.data.model import VIS_DIMS, quantity_value
from daskcal.kernels.averaging import average_rows, average_visibilities, sum_effective_time


class AverageConfig(BaseModel):
    """Settings of the ``average`` stage (DP3's averager).

    Give either factors or target resolutions; a resolution is turned into the
    largest whole factor that does not exceed it.
    """

    model_config = ConfigDict(extra="forbid")

    time_factor: int = Field(1, ge=1, description="integrations averaged into one")
    freq_factor: int = Field(1, ge=1, description="channels averaged into one")
    time_interval_s: float | None = Field(
        None, gt=0, description="target integration time in seconds (overrides time_factor)")
    freq_resolution_hz: float | None = Field(
        None, gt=0, description="target channel width in Hz (overrides freq_factor)")

    @model_validator(mode="after")
    def _no_conflict(self):
        if self.time_interval_s is not None and self.time_factor != 1:
            raise ValueError("give time_factor or time_interval_s, not both")
        if self.freq_resolution_hz is not None and self.freq_factor != 1:
            raise ValueError("give freq_factor or freq_resolution_hz, not both")
        return self


class AveragingError(DaskcalError, ValueError):
    """Averaging settings that do not fit the data."""


def resolve_factors(xds: xr.Dataset, config: AverageConfig) -> tuple[int, int]:
    """The (time, channel) averaging factors for this partition."""
    ft, fc = config.time_factor, config.freq_factor
    if config.time_interval_s is not None:
        dt = quantity_value(xds["time"].attrs.get("integration_time"))
        if dt is None:
            dt = float(np.median(np.diff(xds["time"].values))) if xds.sizes["time"] > 1 else 1.0
        ft = max(1, int(np.floor(config.time_interval_s / dt + 1e-9)))
    if config.freq_resolution_hz is not None:
        dnu = quantity_value(xds["frequency"].attrs.get("channel_width"))
        if dnu is None:
            dnu = float(abs(np.diff(xds["frequency"].values)).mean()) if xds.sizes["frequency"] > 1 else 1.0
        fc = max(1, int(np.floor(config.freq_resolution_hz / abs(dnu) + 1e-9)))
    n_chan = xds.sizes["frequency"]
    if n_chan % fc:
        raise AveragingError(
            f"channel factor {fc} does not divide the {n_chan} channels; choose a divisor of "
            f"{n_chan}")
    return ft, fc


def _out_chunks(chunks: tuple[int, ...], factor: int) -> tuple[int, ...]:
    return tuple((c + factor - 1) // factor for c in chunks)


def _pack_block(vis, flag, weight, ft, fc):
    v, f, w = average_visibilities(vis, flag, weight, ft, fc)
    out = np.empty(v.shape + (4,), np.float64)
    out[..., 0] = v.real
    out[..., 1] = v.imag
    out[..., 2] = w
    out[..., 3] = f
    return out


def average(xds: xr.Dataset, config: AverageConfig) -> xr.Dataset:
    """Average a visibility partition in time and frequency, lazily.

    Parameters
    ----------
    xds : xarray.Dataset
        A visibility partition (dims time, baseline_id, frequency, polarization).
    config : AverageConfig

    Returns
    -------
    xarray.Dataset
        The averaged partition: every complex visibility variable of the data
        groups averaged with the partition's FLAG and WEIGHT; UVW and
        TIME_CENTROID weighted by row weight; EFFECTIVE_INTEGRATION_TIME summed;
        ``time``, ``frequency`` and their integration time and channel width
        updated. Nothing is computed.
    """
    ft, fc = resolve_factors(xds, config)
    if ft == 1 and fc == 1:
        return xds
    if not isinstance(xds["VISIBILITY"].data, da.Array):
        xds = chunk_data_vars(xds, {"time": -1, "frequency": -1})
    tchunks = xds["VISIBILITY"].chunksizes["time"]
    fchunks = xds["VISIBILITY"].chunksizes["frequency"]
    xds = chunk_data_vars(xds, {
        "time": aligned_chunk(tchunks, ft),
        "frequency": aligned_chunk(fchunks, fc),
        "baseline_id": -1, "polarization": -1,
    })
    vchunks = xds["VISIBILITY"].chunksizes
    tchunks, fchunks = vchunks["time"], vchunks["frequency"]
    bl_chunks, pol_chunks = vchunks["baseline_id"], vchunks["polarization"]
    out_t = _out_chunks(tchunks, ft)
    out_f = _out_chunks(fchunks, fc)

    flag = xds["FLAG"].data
    weight = xds["WEIGHT"].data
    vis_vars = [name for name, var in xds.data_vars.items()
                if var.dims == VIS_DIMS and np.iscomplexobj(var.dtype.type(0))]

    new_vars: dict[str, tuple] = {}
    flag_out = weight_out = None
    for name in vis_vars:
        packed = da.map_blocks(
            _pack_block, xds[name].data, flag, weight, ft, fc,
            chunks=(out_t, bl_chunks, out_f, pol_chunks, (4,)), new_axis=4, dtype=np.float64,
        )
        new_vars[name] = (VIS_DIMS, (packed[..., 0] + 1j * packed[..., 1]).astype(np.complex64),
                          xds[name].attrs)
        if flag_out is None:
            weight_out = packed[..., 2].astype(np.float32)
            flag_out = packed[..., 3] > 0.5
    new_vars["FLAG"] = (VIS_DIMS, flag_out, xds["FLAG"].attrs)
    new_vars["WEIGHT"] = (VIS_DIMS, weight_out, xds["WEIGHT"].attrs)

    # row weights: a tree reduction over frequency and polarization (bounded memory)
    row_weight = da.where(flag, np.float32(0), weight).astype(np.float64).sum(axis=(2, 3))
    row_used = (~flag).any(axis=(2, 3))
    rows_out = (out_t, bl_chunks)
    if "UVW" in xds:
        uvw = da.map_blocks(lambda v, w: average_rows(v, w[..., 0], ft), xds["UVW"].data,
                            row_weight[:, :, None], chunks=(out_t, bl_chunks, (3,)),
                            dtype=np.float64)
        new_vars["UVW"] = (xds["UVW"].dims, uvw, xds["UVW"].attrs)
    if "TIME_CENTROID" in xds:
        tc = da.map_blocks(lambda v, w: average_rows(v[..., None], w, ft)[..., 0],
                           xds["TIME_CENTROID"].data, row_weight, chunks=rows_out,
                           dtype=np.float64)
        new_vars["TIME_CENTROID"] = (("time", "baseline_id"), tc, xds["TIME_CENTROID"].attrs)
    if "EFFECTIVE_INTEGRATION_TIME" in xds:
        eit = da.map_blocks(lambda e, u: sum_effective_time(e, u, ft),
                            xds["EFFECTIVE_INTEGRATION_TIME"].data, row_used,
                            chunks=rows_out, dtype=np.float64)
        new_vars["EFFECTIVE_INTEGRATION_TIME"] = (("time", "baseline_id"), eit,
                                                  xds["EFFECTIVE_INTEGRATION_TIME"].attrs)

    # coordinates: bin means (partial last time bin included)
    n_t, n_f = xds.sizes["time"], xds.sizes["frequency"]
    t_idx = np.arange(n_t) // ft
    time = np.bincount(t_idx, weights=xds["time"].values) / np.bincount(t_idx)
    freq = xds["frequency"].values.reshape(n_f // fc, fc).mean(axis=1)
    time_attrs = _scaled_quantity(xds["time"].attrs, "integration_time", ft)
    freq_attrs = _scaled_quantity(xds["frequency"].attrs, "channel_width", fc)

    coords = {}
    for cname, coord in xds.coords.items():
        if cname in ("time", "frequency"):
            continue
        if "time" in coord.dims:
            if coord.dims == ("time",):  # e.g. field_name, scan_name: the bin's first value
                sub = coord.variable[::ft]
                if isinstance(sub.data, da.Array):
                    sub = sub.chunk({"time": out_t})
                coords[cname] = sub
            continue
        if "frequency" in coord.dims:
            continue
        coords[cname] = coord
    coords["time"] = ("time", time, time_attrs)
    coords["frequency"] = ("frequency", freq, freq_attrs)

    kept = {name: var for name, var in xds.data_vars.items()
            if name not in new_vars and "time" not in var.dims and "frequency" not in var.dims}
    out = xr.Dataset({**kept, **new_vars}, coords=coords, attrs=dict(xds.attrs))
    history = list(out.attrs.get("processing_history", []))
    history.append({"stage": "average", "time_factor": ft, "freq_factor": fc})
    out.attrs["processing_history"] = history
    return out


def _scaled_quantity(attrs: dict, key: str, factor: int) -> dict:
    attrs = dict(attrs)
    q = attrs.get(key)
    if isinstance(q, dict) and "data" in q:
        attrs[key] = {**q, "data": float(q["data"]) * factor}
    return attrs
