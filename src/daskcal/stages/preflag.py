"""Selection flagging (DP3's preflagger) and flag statistics, lazily over chunks.

Every selection is a boolean expression evaluated per chunk and OR-ed into
``FLAG``; nothing is computed while the graph is built. Selections within one
:class:`PreflagConfig` are OR-ed (each flags what it selects).
"""

from __future__ import annotations

import fnmatch

import dask.array as da
import numpy as np
import xarray as xr
from pydantic import BaseModel, ConfigDict, Field, field_validator

from daskcal import DaskcalError
from daskcal.data.model import VIS_DIMS

SPEED_OF_LIGHT_M_S = 299_792_458.0


class PreflagConfig(BaseModel):
    """What the preflagger flags. Unset selections flag nothing."""

    model_config = ConfigDict(extra="forbid")

    autocorrelations: bool = Field(True, description="flag autocorrelations (p == q)")
    baselines: list[str] = Field(
        default_factory=list,
        description="baselines to flag as 'PAT1&PAT2' (shell patterns on antenna names, order "
                    "free; 'PAT' alone matches any baseline with that antenna), e.g. "
                    "['CS013*&*', 'RS508HBA&RS509HBA']")
    uv_min_m: float | None = Field(None, ge=0, description="flag baselines shorter than this (m)")
    uv_max_m: float | None = Field(None, gt=0, description="flag baselines longer than this (m)")
    uv_min_lambda: float | None = Field(
        None, ge=0, description="flag samples with sqrt(u^2+v^2) below this (wavelengths)")
    uv_max_lambda: float | None = Field(
        None, gt=0, description="flag samples with sqrt(u^2+v^2) above this (wavelengths)")
    time_ranges_s: list[tuple[float, float]] = Field(
        default_factory=list,
        description="flag integrations with start <= time <= end (unix seconds, UTC)")
    freq_ranges_hz: list[tuple[float, float]] = Field(
        default_factory=list, description="flag channels with low <= frequency <= high (Hz)")
    band_edge_channels: int = Field(
        0, ge=0, description="flag this many channels at each edge of the band (subband)")
    channels_per_subband: int | None = Field(
        None, gt=0,
        description="subband width in channels (LOFAR: edges of each subband are flagged); "
                    "default: the whole band is one subband")
    amplitude_max: float | None = Field(
        None, gt=0, description="flag samples with |V| above this clip level (Jy)")
    elevation_min_deg: float | None = Field(
        None, ge=-90, le=90,
        description="flag baselines while the phase centre is below this elevation at either "
                    "antenna (degrees; needs antenna positions and the phase centre)")
    non_finite: bool = Field(True, description="flag NaN and Inf visibilities")

    @field_validator("time_ranges_s", "freq_ranges_hz")
    @classmethod
    def _ordered(cls, ranges):
        for lo, hi in ranges:
            if hi < lo:
                raise ValueError(f"range ({lo}, {hi}) has its end before its start")
        return ranges


def _baseline_mask(names1: np.ndarray, names2: np.ndarray, patterns: list[str]) -> np.ndarray:
    out = np.zeros(names1.shape, bool)
    for pat in patterns:
        left, sep, right = pat.partition("&")
        left = left.strip() or "*"
        right = right.strip() if sep else "*"
        for i, (a, b) in enumerate(zip(names1, names2, strict=True)):
            if (fnmatch.fnmatchcase(a, left) and fnmatch.fnmatchcase(b, right)) or \
               (fnmatch.fnmatchcase(b, left) and fnmatch.fnmatchcase(a, right)):
                out[i] = True
    return out


class PreflagError(DaskcalError, ValueError):
    """A selection that cannot be evaluated on this partition."""


def _low_elevation(xds: xr.Dataset, limit_deg: float, antenna_itrf_m, phase_centre_rad):
    """(n_time, n_bl) bool: the phase centre is below ``limit_deg`` at either antenna."""
    from daskcal.data.geometry import elevation_azimuth

    if antenna_itrf_m is None or phase_centre_rad is None:
        raise PreflagError("elevation_min_deg needs the antenna positions and the phase centre")
    pos = np.asarray(antenna_itrf_m, dtype=np.float64).reshape(-1, 3)
    a1 = np.asarray(xds["antenna1"].values) if "antenna1" in xds.coords else None
    a2 = np.asarray(xds["antenna2"].values) if "antenna2" in xds.coords else None
    if a1 is None or a2 is None:
        raise PreflagError("elevation_min_deg needs the antenna1/antenna2 coordinates")
    ra, dec = (float(v) for v in np.asarray(phase_centre_rad, dtype=np.float64).ravel()[:2])
    time = np.asarray(xds["time"].values, dtype=np.float64)
    low = np.zeros((time.size, pos.shape[0]), bool)
    for ant in np.unique(np.concatenate([a1, a2])):
        el, _ = elevation_azimuth(time, ra, dec, pos[ant])
        low[:, ant] = np.degrees(el[:, 0]) < limit_deg
    return low[:, a1] | low[:, a2]


def selection_mask(
    xds: xr.Dataset,
    config: PreflagConfig,
    *,
    antenna_itrf_m: np.ndarray | None = None,
    phase_centre_rad: np.ndarray | None = None,
) -> xr.DataArray:
    """The samples the selections pick, as a lazy boolean array with VISIBILITY's dims/chunks.

    Parameters
    ----------
    xds : xarray.Dataset
        A visibility partition.
    config : PreflagConfig
    antenna_itrf_m : ndarray, shape (n_ant, 3), optional
        ITRF antenna positions (metres), indexed by the ``antenna1``/``antenna2``
        coordinates; needed for ``elevation_min_deg``.
    phase_centre_rad : ndarray, shape (2,), optional
        J2000 (RA, Dec) of the phase centre, radians; needed for ``elevation_min_deg``.

    Returns
    -------
    xarray.DataArray of bool, dims (time, baseline_id, frequency, polarization)
    """
    vis = xds["VISIBILITY"]
    names1 = np.asarray(xds["baseline_antenna1_name"].values).astype(str)
    names2 = np.asarray(xds["baseline_antenna2_name"].values).astype(str)
    n_bl = names1.size
    freq = np.asarray(xds["frequency"].values, dtype=np.float64)
    time = np.asarray(xds["time"].values, dtype=np.float64)

    # per-baseline, per-channel and per-time selections: small numpy vectors
    bl_sel = np.zeros(n_bl, bool)
    if config.autocorrelations:
        bl_sel |= names1 == names2
    if config.baselines:
        bl_sel |= _baseline_mask(names1, names2, config.baselines)
    chan_sel = np.zeros(freq.size, bool)
    for lo, hi in config.freq_ranges_hz:
        chan_sel |= (freq >= lo) & (freq <= hi)
    if config.band_edge_channels:
        sub = config.channels_per_subband or freq.size
        pos = np.arange(freq.size) % sub
        chan_sel |= (pos < config.band_edge_channels) | (pos >= sub - config.band_edge_channels)
    time_sel = np.zeros(time.size, bool)
    for lo, hi in config.time_ranges_s:
        time_sel |= (time >= lo) & (time <= hi)

    lazy = isinstance(vis.data, da.Array)

    def vec(values, dims):
        # small selection vectors as dask arrays chunked like the data when the data are
        # dask, so that broadcasting them to the data's shape stays lazy and block by
        # block: one chunk each would OR them into a single (time, baseline, frequency)
        # block as large as the observation's samples (79 MiB for a 4 GB observation),
        # which every rechunked piece of the mask then keeps alive
        if not lazy:
            return xr.DataArray(values, dims=dims)
        dims = (dims,) if isinstance(dims, str) else tuple(dims)
        chunks = tuple(vis.chunksizes[d] for d in dims)
        return xr.DataArray(da.from_array(values, chunks=chunks), dims=dims)

    mask = vec(bl_sel, "baseline_id") | vec(chan_sel, "frequency") | vec(time_sel, "time")
    if config.elevation_min_deg is not None:
        low = _low_elevation(xds, config.elevation_min_deg, antenna_itrf_m, phase_centre_rad)
        mask = mask | vec(low, ("time", "baseline_id"))

    # uv-distance selections: per row (metres) or per row and channel (wavelengths)
    if any(v is not None for v in (config.uv_min_m, config.uv_max_m,
                                   config.uv_min_lambda, config.uv_max_lambda)):
        uvdist_m = np.hypot(xds["UVW"].isel(uvw_label=0), xds["UVW"].isel(uvw_label=1))
        if config.uv_min_m is not None:
            mask = mask | (uvdist_m < config.uv_min_m)
        if config.uv_max_m is not None:
            mask = mask | (uvdist_m > config.uv_max_m)
        if config.uv_min_lambda is not None or config.uv_max_lambda is not None:
            uv_lambda = uvdist_m * xr.DataArray(freq / SPEED_OF_LIGHT_M_S, dims="frequency")
            if config.uv_min_lambda is not None:
                mask = mask | (uv_lambda < config.uv_min_lambda)
            if config.uv_max_lambda is not None:
                mask = mask | (uv_lambda > config.uv_max_lambda)

    if config.non_finite:
        mask = mask | ~np.isfinite(vis)
    if config.amplitude_max is not None:
        mask = mask | (np.abs(vis) > config.amplitude_max)
    mask = mask.broadcast_like(vis).transpose(*VIS_DIMS)
    if isinstance(vis.data, da.Array) and not isinstance(mask.data, da.Array):
        mask = mask.chunk(vis.chunksizes)
    return mask


def preflag(
    xds: xr.Dataset,
    config: PreflagConfig,
    *,
    antenna_itrf_m: np.ndarray | None = None,
    phase_centre_rad: np.ndarray | None = None,
) -> xr.Dataset:
    """OR the selections of ``config`` into FLAG, lazily.

    ``antenna_itrf_m`` and ``phase_centre_rad`` are needed only for
    ``elevation_min_deg`` (see :func:`selection_mask`).

    Returns
    -------
    xarray.Dataset
        ``xds`` with the new FLAG; attrs record the stage in ``processing_history``.
    """
    mask = selection_mask(xds, config, antenna_itrf_m=antenna_itrf_m,
                          phase_centre_rad=phase_centre_rad)
    out = xds.copy()
    out["FLAG"] = (xds["FLAG"] | mask).assign_attrs(xds["FLAG"].attrs)
    history = list(out.attrs.get("processing_history", []))
    history.append({"stage": "preflag", "config": config.model_dump(mode="json")})
    out.attrs["processing_history"] = history
    return out


def flag_statistics(xds: xr.Dataset, antenna_names: np.ndarray | None = None) -> xr.Dataset:
    """Lazily computed flagged fractions per antenna, baseline, channel and time.

    Parameters
    ----------
    xds : xarray.Dataset
        A visibility partition.
    antenna_names : ndarray of str, optional
        Antenna order of the result; default: the names appearing in the baselines.

    Returns
    -------
    xarray.Dataset
        ``FLAGGED_FRACTION_BASELINE`` (baseline_id), ``FLAGGED_FRACTION_FREQUENCY``
        (frequency), ``FLAGGED_FRACTION_TIME`` (time), ``FLAGGED_FRACTION_ANTENNA``
        (antenna_name: over the baselines the antenna is in) and the scalar
        ``FLAGGED_FRACTION``, all dask-backed when FLAG is.
    """
    flag = xds["FLAG"]
    names1 = np.asarray(xds["baseline_antenna1_name"].values).astype(str)
    names2 = np.asarray(xds["baseline_antenna2_name"].values).astype(str)
    if antenna_names is None:
        antenna_names = np.array(sorted(set(names1) | set(names2)))
    per_bl = flag.mean(dim=("time", "frequency", "polarization"))
    # antenna fraction: mean of its baselines' fractions (baselines hold equal sample counts)
    incidence = np.array([(names1 == a) | (names2 == a) for a in antenna_names], dtype=np.float64)
    counts = incidence.sum(axis=1)
    counts[counts == 0] = np.nan
    inc = xr.DataArray(incidence / counts[:, None], dims=("antenna_name", "baseline_id"),
                       coords={"antenna_name": antenna_names})
    per_ant = (inc * per_bl).sum("baseline_id")
    return xr.Dataset({
        "FLAGGED_FRACTION": flag.mean(),
        "FLAGGED_FRACTION_BASELINE": per_bl,
        "FLAGGED_FRACTION_ANTENNA": per_ant,
        "FLAGGED_FRACTION_FREQUENCY": flag.mean(dim=("time", "baseline_id", "polarization")),
        "FLAGGED_FRACTION_TIME": flag.mean(dim=("baseline_id", "frequency", "polarization")),
    })
