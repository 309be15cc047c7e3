"""The ``flag`` stage: selections, SumThreshold RFI detection and MAD outliers, lazily.

Order: the selections of :mod:`daskcal.stages.preflag` first (so that what they
flag takes no part in the statistics), then RFI detection
(:func:`daskcal.kernels.flagging.rfi_flag`, AOFlagger-style SumThreshold with a
masked background fit and the SIR operator), then the optional MAD outlier
flagger per baseline and polarisation.

Chunking: RFI detection needs time x frequency planes per baseline. The stage
rechunks (lazily) to whole ``frequency`` and ``polarization``, windows of
``time_window`` integrations overlapped by ``time_overlap`` on each side
(``dask.array.map_overlap``; observations shorter than one window are processed
whole), and groups of baselines sized so that one task stays within
``memory_per_task``. Memory per task is about
``(time_window + 2 time_overlap) x n_chan x (15 n_pol + 30) x n_baselines_per_task``
bytes (inputs, output flags and the kernel's work arrays; ``23 n_pol + 30`` with the
complex representation). In a window the noise level is estimated from that window
only; with the default overlap a window boundary changes well under 0.1 % of the
decisions (tested).

Fields that must never be flagged for their own emission (the Sun's bursts are
the signal; ``skip_fields``) get the selections that do not look at the data
(autocorrelations, baselines, uv ranges, time and frequency ranges, band
edges, NaN/Inf) but no amplitude clip, RFI detection or MAD flagging.
"""

from __future__ import annotations

import fnmatch
from functools import partial
from typing import Literal

import dask.array as da
import numpy as np
import xarray as xr
from dask.utils import parse_bytes
from pydantic import BaseModel, ConfigDict, Field, field_validator

from daskcal.data.chunking import chunk_data_vars
from daskcal.data.model import VIS_DIMS
from daskcal.kernels.flagging import mad_flag, rfi_flag
from daskcal.stages.preflag import PreflagConfig, flag_statistics, preflag

#: Baselines are split into at least this many tasks per time window (parallelism).
MIN_BASELINE_GROUPS = 8


class RFIConfig(BaseModel):
    """SumThreshold RFI detection (AOFlagger's method)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="run SumThreshold RFI detection")
    base_threshold: float = Field(7.0, gt=0, description="threshold of a single sample, in "
                                  "noise sigmas, at the last sensitivity step")
    rho: float = Field(1.5, gt=1, description="threshold falls as rho^log2(window)")
    max_window: int = Field(64, ge=1, le=4096,
                            description="longest SumThreshold window (powers of 2 up to it)")
    sensitivity_steps: list[float] = Field(
        default_factory=lambda: [4.0, 2.0, 1.0],
        description="threshold multipliers of the successive iterations (last one 1)")
    smoothing_sigma: tuple[float, float] = Field(
        (6.0, 2.5), description="width of the background fit (time, frequency), samples; "
        "a wider frequency fit cannot follow the fringes of bright sources on long baselines, "
        "a narrower time fit absorbs short broadband bursts")
    fit_order: Literal[0, 1] = Field(1, description="0: masked smoothing; 1: local plane fit")
    representation: Literal["complex", "amplitude"] = Field(
        "amplitude", description="detect on |V| (AOFlagger's default) or on "
        "|V - complex background| (finds weak RFI of any phase on a bright source; slower, "
        "and a few per cent false positives remain in the channel next to a flagged "
        "band edge)")
    sir_eta: float = Field(0.2, ge=0, lt=1, description="SIR operator aggressiveness")
    pol_groups: Literal["each", "stokes", "all"] = Field(
        "each", description="each polarisation alone (ORed), parallel/cross hands, or all")
    time_window: int = Field(2048, ge=64, description="integrations per task (windowed)")
    time_overlap: int = Field(128, ge=0, description="overlap of the windows, integrations")
    memory_per_task: str = Field("512MB", description="memory budget of one task")

    @field_validator("sensitivity_steps")
    @classmethod
    def _steps(cls, steps):
        if not steps or any(s <= 0 for s in steps):
            raise ValueError("sensitivity_steps must be positive and not empty")
        return steps

    @field_validator("memory_per_task")
    @classmethod
    def _mem(cls, value):
        try:
            if parse_bytes(value) <= 0:
                raise ValueError
        except (ValueError, TypeError):
            raise ValueError(f"memory_per_task {value!r} is not a size such as '512MB'") from None
        return value

    def strategy(self) -> dict:
        """Keyword arguments of :func:`daskcal.kernels.flagging.rfi_flag`."""
        windows = tuple(2 ** k for k in range(int(np.log2(self.max_window)) + 1))
        return {"base_threshold": self.base_threshold, "rho": self.rho, "windows": windows,
                "sensitivity_steps": tuple(self.sensitivity_steps),
                "smoothing_sigma": tuple(self.smoothing_sigma), "fit_order": self.fit_order,
                "representation": self.representation, "sir_eta": self.sir_eta}


class MADConfig(BaseModel):
    """Robust outlier flagging on amplitudes."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(False, description="run the MAD outlier flagger")
    threshold: float = Field(6.0, gt=0, description="clip at this many robust sigmas")
    per: Literal["baseline", "channel"] = Field(
        "baseline", description="one median/MAD per baseline and polarisation, or per "
                                "baseline, polarisation and channel (over time)")


class FlagConfig(BaseModel):
    """Settings of the ``flag`` stage."""

    model_config = ConfigDict(extra="forbid")

    preflag: PreflagConfig = Field(default_factory=PreflagConfig,
                                   description="selections (DP3's preflagger)")
    rfi: RFIConfig = Field(default_factory=RFIConfig, description="SumThreshold RFI detection")
    mad: MADConfig = Field(default_factory=MADConfig, description="MAD outlier flagging")
    skip_fields: list[str] = Field(
        default_factory=list,
        description="field name patterns never flagged for their own emission (e.g. the Sun)")


def _pol_index_groups(names: list[str], how: str) -> str | list[list[int]]:
    if how != "stokes":
        return how
    parallel = [i for i, p in enumerate(names) if len(p) == 2 and p[0] == p[1]]
    cross = [i for i, p in enumerate(names) if len(p) == 2 and p[0] != p[1]]
    groups = [g for g in (parallel, cross) if g]
    other = [i for i in range(len(names)) if i not in parallel + cross]
    return groups + [[i] for i in other]


def _rfi_block(vis, flag, groups, strategy):
    return rfi_flag(vis, flag, pol_groups=groups, **strategy)


def _mad_block(vis, flag, threshold, axis):
    return mad_flag(vis, flag, threshold=threshold, axis=axis)


def rfi_flags(xds: xr.Dataset, config: RFIConfig) -> da.Array:
    """Lazy FLAG after RFI detection (input flags kept), with the stage's chunking.

    Returns
    -------
    dask.array.Array of bool, shape (n_time, n_bl, n_chan, n_pol)
    """
    n_time, n_bl, n_chan, n_pol = (xds.sizes[d] for d in VIS_DIMS)
    window = n_time if n_time <= config.time_window else config.time_window
    overlap = 0 if window == n_time else min(config.time_overlap, window)
    per_pol = 23 if config.representation == "complex" else 15
    per_bl = (window + 2 * overlap) * n_chan * (per_pol * n_pol + 30)
    k = int(max(1, min(n_bl, parse_bytes(config.memory_per_task) // max(per_bl, 1))))
    # at least MIN_BASELINE_GROUPS tasks per time window, so that every worker thread has work
    k = max(1, min(k, -(-n_bl // MIN_BASELINE_GROUPS)))
    xds = chunk_data_vars(xds[["VISIBILITY", "FLAG"]],
                          {"time": window, "baseline_id": k, "frequency": -1, "polarization": -1})
    groups = _pol_index_groups([str(p) for p in xds["polarization"].values], config.pol_groups)
    vis, flag = xds["VISIBILITY"].data, xds["FLAG"].data
    fn = partial(_rfi_block, groups=groups, strategy=config.strategy())
    if overlap == 0:
        return da.map_blocks(fn, vis, flag, dtype=bool)
    return da.map_overlap(fn, vis, flag, depth={0: overlap, 1: 0, 2: 0, 3: 0},
                          boundary="none", trim=True, align_arrays=False, dtype=bool)


def mad_flags(xds: xr.Dataset, config: MADConfig) -> da.Array:
    """Lazy FLAG after MAD outlier flagging per baseline (whole time/frequency per task)."""
    axis = (0, 2) if config.per == "baseline" else 0
    xds = chunk_data_vars(xds[["VISIBILITY", "FLAG"]],
                          {"time": -1, "baseline_id": 1, "frequency": -1, "polarization": -1})
    fn = partial(_mad_block, threshold=config.threshold, axis=axis)
    return da.map_blocks(fn, xds["VISIBILITY"].data, xds["FLAG"].data, dtype=bool)


def _skipped_times(xds: xr.Dataset, patterns: list[str]) -> np.ndarray | None:
    if not patterns or "field_name" not in xds.coords:
        return None
    names = np.asarray(xds["field_name"].values).astype(str)
    skip = np.array([any(fnmatch.fnmatchcase(n, p) for p in patterns) for n in names])
    return skip if skip.any() else None


def flag(
    xds: xr.Dataset,
    config: FlagConfig | None = None,
    *,
    antenna_itrf_m: np.ndarray | None = None,
    phase_centre_rad: np.ndarray | None = None,
) -> xr.Dataset:
    """Flag a visibility partition, lazily.

    Parameters
    ----------
    xds : xarray.Dataset
        A visibility partition (dask- or numpy-backed).
    config : FlagConfig, optional
    antenna_itrf_m, phase_centre_rad : ndarray, optional
        ITRF antenna positions (n_ant, 3) in metres and the J2000 phase centre (RA, Dec) in
        radians; needed only for the ``preflag.elevation_min_deg`` selection.

    Returns
    -------
    xarray.Dataset
        ``xds`` with the new ``FLAG`` (chunked like the input's VISIBILITY);
        ``processing_history`` records the stage. Nothing is computed.
    """
    config = config or FlagConfig()
    chunks = xds["VISIBILITY"].chunksizes if xds["VISIBILITY"].chunks else None
    skip = _skipped_times(xds, config.skip_fields)
    data_pre = config.preflag.model_copy(update={"amplitude_max": None})
    out = preflag(xds, config.preflag if skip is None else data_pre,
                  antenna_itrf_m=antenna_itrf_m, phase_centre_rad=phase_centre_rad)
    if skip is not None and config.preflag.amplitude_max is not None:
        clip = (np.abs(xds["VISIBILITY"]) > config.preflag.amplitude_max) & \
            xr.DataArray(~skip, dims="time")
        out["FLAG"] = (out["FLAG"] | clip).assign_attrs(xds["FLAG"].attrs)
    data_flags = out["FLAG"].data
    if config.rfi.enabled:
        data_flags = rfi_flags(out.assign(FLAG=(VIS_DIMS, data_flags)), config.rfi)
    if config.mad.enabled:
        data_flags = mad_flags(out.assign(FLAG=(VIS_DIMS, data_flags)), config.mad)
    if skip is not None:
        before = out["FLAG"].data
        keep = da.from_array(skip[:, None, None, None])
        data_flags = da.where(keep, before, data_flags)
    new_flag = xr.DataArray(data_flags, dims=VIS_DIMS, attrs=xds["FLAG"].attrs)
    if chunks is not None:
        new_flag = new_flag.chunk(chunks)
    out["FLAG"] = new_flag
    history = list(xds.attrs.get("processing_history", []))
    history.append({"stage": "flag", "config": config.model_dump(mode="json")})
    out.attrs["processing_history"] = history
    return out


def flag_summary(before: xr.Dataset, after: xr.Dataset) -> xr.Dataset:
    """Flagged fractions per antenna, baseline, channel and time, before and after (lazy).

    Returns
    -------
    xarray.Dataset
        The variables of :func:`daskcal.stages.preflag.flag_statistics` with a
        leading ``state`` dimension (``"before"``, ``"after"``).
    """
    return xr.concat([flag_statistics(before), flag_statistics(after)],
                     dim=xr.DataArray(["before", "after"], dims="state"))
