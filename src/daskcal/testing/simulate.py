"""Simulated observations, generated lazily chunk by chunk, with their truth.

:func:`simulate_observation` turns a :class:`~daskcal.testing.config.SimulationConfig`
into a lazy observation (an xradio-style processing set with one partition) and a lazy
*truth* tree holding everything that went into it. Every heavy array is a Dask array
built with :func:`dask.array.blockwise` / ``map_blocks`` over (time, frequency) chunks,
and UVW are computed per time chunk inside the tasks. Each ``VISIBILITY`` chunk is made
by one task (prediction, gains, noise and RFI applied in place in one array), so a task
needs little more than its chunk: writing 1 or 3 GB (observation and truth, 64 MB
chunks, two threads) peaked at 0.6 GB of resident memory, of which 0.19 GB are the
imported libraries, whatever the total size. The truth arrays repeat the steps as
separate lazy arrays (the model is predicted again when the truth is written).

The data are::

    VISIBILITY = G_p [ sum_s E_ps B_s K_pq,s E_qs^H ] G_q^H + noise + RFI

with ``K`` the DFT phase and Gaussian shape (:mod:`daskcal.kernels.dft`), ``E`` the
direction-dependent beam x TEC-screen terms and ``G`` the antenna gains
(:mod:`daskcal.testing.corruptions`), noise from the SEFD and RFI from
:mod:`daskcal.testing.rfi`. All random parts are functions of absolute coordinates and
``seed``; the result does not depend on the chunking (the DFT's channel recurrence
restarts at each frequency chunk, which changes values at the level of float64
rounding only, i.e. below complex64 precision).

Truth tree (``xr.DataTree``)::

    /            attrs: config (JSON), conventions
    /sky         the sky model (SkyModel.to_dataset), dimension ``source``
    /model       VISIBILITY_MODEL (intrinsic sky, no corruption) and
                 VISIBILITY_CORRUPTED (all corruptions but noise and RFI)
    /gains       GAIN (time, frequency, antenna_name, receptor)          [if enabled]
    /screens     TEC (time, antenna_name, source), TECU                  [if enabled]
    /beam        BEAM (time, antenna_name, source, frequency), voltage    [if enabled]
    /noise       NOISE_SIGMA (baseline_id), SEFD (antenna_name)
    /rfi         RFI_MASK, RFI_AMPLITUDE (time, baseline_id, frequency, polarization)
                                                                         [if enabled]
    /directions  VISIBILITY_CORRUPTED (patch, time, baseline_id, frequency, polarization):
                 each patch's own contribution with all corruptions but noise and RFI
                 (a component without a patch is its own); they add up to
                 /model VISIBILITY_CORRUPTED        [if ``direction_truth=True``]
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import dask.array as da
import numpy as np
import xarray as xr

from daskcal import DaskcalError
from daskcal.data.chunking import BYTES_PER_SAMPLE, resolve_chunks
from daskcal.data.geometry import (
    baseline_uvw,
    celestial_to_terrestrial,
    radec_of_lm,
)
from daskcal.data.model import (
    VIS_DIMS,
    baseline_antenna_pairs,
    make_field_and_source_xds,
    make_observation,
    make_partition,
    make_visibility_xds,
)
from daskcal.kernels.dft import correlation_receptors, dft_predict, stokes_to_coherency
from daskcal.sky.ateam import ateam_sky_model
from daskcal.sky.model import SkyModel
from daskcal.stages.predict import dft_predict as dask_dft_predict
from daskcal.testing.arrays import ArrayLayout, make_layout
from daskcal.testing.config import SimulationConfig
from daskcal.testing.corruptions import (
    STREAM_SKY,
    GainModel,
    TecScreen,
    apply_gains,
    beam_voltage,
    direction_jones,
    noise_sigma,
    stream_rng,
    thermal_noise,
)
from daskcal.testing.rfi import RFIPlan

_ARCSEC = np.pi / (180.0 * 3600.0)
#: Largest direction-dependent Jones block built at once inside a task, bytes.
_JONES_BLOCK_BYTES = 16 * 2**20


class SimulationError(DaskcalError, ValueError):
    """A simulation configuration that cannot be realised."""


# ----------------------------------------------------------------------------- sky


def random_field(n_sources: int, ra0_rad: float, dec0_rad: float, radius_rad: float, *,
                 seed: int, ref_freq_hz: float, flux_min_jy: float = 0.05,
                 flux_max_jy: float = 5.0, gaussian_fraction: float = 0.2,
                 spectral_index_mean: float = -0.7, spectral_index_std: float = 0.2) -> SkyModel:
    """Random point and Gaussian sources, uniform in a disc around a direction.

    Fluxes follow ``dN/dS ~ S^-1.6`` between the limits; Gaussians have FWHM 5-60
    arcsec (log-uniform), axis ratio 0.3-1 and random position angle. Names are
    ``src0000...``, each its own patch.
    """
    if n_sources == 0:
        return SkyModel.empty()
    rng = stream_rng(seed, STREAM_SKY)
    r = np.sin(radius_rad) * np.sqrt(rng.uniform(0, 1, n_sources))
    phi = rng.uniform(0, 2 * np.pi, n_sources)
    ra, dec = radec_of_lm(r * np.sin(phi), r * np.cos(phi), ra0_rad, dec0_rad)
    g = 1.0 - 1.6
    u = rng.uniform(0, 1, n_sources)
    flux = (flux_min_jy**g + u * (flux_max_jy**g - flux_min_jy**g)) ** (1.0 / g)
    gauss = rng.uniform(0, 1, n_sources) < gaussian_fraction
    major = np.where(gauss, np.exp(rng.uniform(np.log(5.0), np.log(60.0), n_sources)), 0.0)
    minor = major * rng.uniform(0.3, 1.0, n_sources)
    names = [f"src{k:04d}" for k in range(n_sources)]
    return SkyModel.from_components(
        name=names, ra=ra, dec=dec, stokes_i=flux, ref_freq=ref_freq_hz,
        spectral_index=rng.normal(spectral_index_mean, spectral_index_std, (n_sources, 1)),
        major=major * _ARCSEC, minor=minor * _ARCSEC,
        position_angle=rng.uniform(0, np.pi, n_sources), patch=names)


def _decimal_year(unix_s: float) -> float:
    t = _dt.datetime.fromtimestamp(unix_s, _dt.UTC)
    start = _dt.datetime(t.year, 1, 1, tzinfo=_dt.UTC)
    end = _dt.datetime(t.year + 1, 1, 1, tzinfo=_dt.UTC)
    return t.year + (t - start) / (end - start)


def build_sky(cfg: SimulationConfig, freq_hz: np.ndarray, layout: ArrayLayout,
              t0_unix: float) -> SkyModel:
    """The sky model of a configuration (preset + explicit components + A-team)."""
    sc = cfg.sky
    ra0, dec0 = np.radians(cfg.ra_deg), np.radians(cfg.dec_deg)
    f_ref = float(np.mean(freq_hz))
    parts = []
    if sc.preset == "random-field":
        radius = (np.radians(sc.field_radius_deg) if sc.field_radius_deg
                  else 1.02 * 299_792_458.0 / (freq_hz.min() * layout.diameter_m.max()))
        parts.append(random_field(sc.n_sources, ra0, dec0, radius, seed=cfg.seed,
                                  ref_freq_hz=f_ref, flux_min_jy=sc.flux_min_jy,
                                  flux_max_jy=sc.flux_max_jy,
                                  gaussian_fraction=sc.gaussian_fraction,
                                  spectral_index_mean=sc.spectral_index_mean,
                                  spectral_index_std=sc.spectral_index_std))
    elif sc.preset == "point-at-centre":
        parts.append(SkyModel.from_components(name=["centre"], ra=[ra0], dec=[dec0],
                                              stokes_i=[1.0], ref_freq=f_ref))
    if sc.components:
        c = sc.components
        n_terms = max(len(x.spectral_index) for x in c)
        parts.append(SkyModel.from_components(
            name=[x.name for x in c], ra=np.radians([x.ra_deg for x in c]),
            dec=np.radians([x.dec_deg for x in c]), stokes_i=[x.flux_jy for x in c],
            stokes_q=[x.q_jy for x in c], stokes_u=[x.u_jy for x in c],
            stokes_v=[x.v_jy for x in c], ref_freq=[x.ref_freq_hz for x in c],
            spectral_index=[x.spectral_index + [0.0] * (n_terms - len(x.spectral_index))
                            for x in c],
            major=np.array([x.major_arcsec for x in c]) * _ARCSEC,
            minor=np.array([x.minor_arcsec for x in c]) * _ARCSEC,
            position_angle=np.radians([x.pa_deg for x in c]), patch=[x.patch for x in c]))
    if sc.ateam:
        parts.append(ateam_sky_model(epoch=_decimal_year(t0_unix)))
    return SkyModel.concatenate(parts)


# ----------------------------------------------------------------------------- plan


@dataclass(frozen=True, eq=False)
class _DirectionTerms:
    """What a task needs to build direction-dependent Jones terms."""

    screen: TecScreen | None
    antenna_en_m: np.ndarray
    lmn: np.ndarray
    beam: bool
    src_ra: np.ndarray
    src_dec: np.ndarray
    pointing_rad: np.ndarray
    diameter_m: np.ndarray
    site_itrf_m: np.ndarray
    sidelobe_level: float
    elevation_exponent: float
    aberration: bool

    def tec(self, times):
        return self.screen.tec(times, self.antenna_en_m, self.lmn) if self.screen else None

    def beam_gain(self, times, freqs):
        if not self.beam:
            return None
        return beam_voltage(times, freqs, self.src_ra, self.src_dec, self.pointing_rad,
                            self.diameter_m, self.site_itrf_m, sidelobe_level=self.sidelobe_level,
                            elevation_exponent=self.elevation_exponent, aberration=self.aberration)


def _unix(iso: str) -> float:
    t = _dt.datetime.fromisoformat(iso)
    if t.tzinfo is None:
        t = t.replace(tzinfo=_dt.UTC)
    return t.timestamp()


def _layout(cfg: SimulationConfig) -> ArrayLayout:
    if cfg.array == "lofar":
        layout = make_layout("lofar", seed=cfg.seed, **cfg.lofar.model_dump())
    else:
        layout = make_layout("vla", seed=cfg.seed, configuration=cfg.vla.configuration)
    if cfg.stations is not None:
        known = list(layout.names)
        unknown = sorted(set(cfg.stations) - set(known))
        if unknown:
            raise SimulationError(f"stations {unknown[:5]} are not in the {cfg.array} layout")
        layout = layout.select(np.isin(layout.names, cfg.stations))
        if layout.n_ant < 2:
            raise SimulationError("stations: at least two antennas are needed")
    sefd = cfg.noise.sefd_jy
    if sefd is not None:
        if isinstance(sefd, Mapping):
            unknown = sorted(set(sefd) - set(layout.names))
            if unknown:
                raise SimulationError(f"noise.sefd_jy names unknown antennas {unknown[:5]}")
            values = np.array([sefd.get(n, s) for n, s in zip(layout.names, layout.sefd_jy,
                                                               strict=True)], dtype=np.float64)
        else:
            values = np.full(layout.n_ant, float(sefd))
        if np.any(values <= 0):
            raise SimulationError("noise.sefd_jy must be positive")
        layout = ArrayLayout(layout.telescope_name, layout.names, layout.station_names,
                             layout.itrf_m, layout.diameter_m, values, layout.feed,
                             layout.reference_itrf_m)
    return layout


# ----------------------------------------------------------------------------- blocks


def _uvw_block(times, itrf, a1, a2, pc, aberration):
    return baseline_uvw(times, itrf, a1, a2, pc, aberration=aberration)


def _coherency_block(freqs, sky, pols):
    return stokes_to_coherency(sky.flux(freqs), pols)


@dataclass(frozen=True, eq=False)
class _Recipe:
    """Everything a task needs to make a block of (model or observed) visibilities."""

    lmn: np.ndarray
    shape: np.ndarray
    a1: np.ndarray
    a2: np.ndarray
    receptors: tuple[np.ndarray, np.ndarray]
    n_ant: int
    terms: _DirectionTerms | None
    gains: GainModel | None
    seed: int
    sigma: np.ndarray
    noise: bool
    rfi: RFIPlan | None

    def model(self, uvw, times, freqs, coh) -> np.ndarray:
        """Predicted visibilities with the direction-dependent terms (if any)."""
        if self.terms is None:
            return dft_predict(uvw, freqs, self.lmn, coh, self.shape, receptors=self.receptors)
        n_t, n_src = times.size, self.lmn.shape[0]
        step = max(1, _JONES_BLOCK_BYTES // max(1, self.n_ant * n_src * freqs.size * 2 * 16))
        out = np.empty((n_t, uvw.shape[1], freqs.size, coh.shape[2]), dtype=np.complex64)
        for i in range(0, n_t, step):  # bound the size of the Jones block
            sl = slice(i, min(i + step, n_t))
            jones = direction_jones(times[sl], freqs, n_ant=self.n_ant, n_src=n_src,
                                    screen_tec=self.terms.tec(times[sl]),
                                    beam=self.terms.beam_gain(times[sl], freqs))
            out[sl] = dft_predict(uvw[sl], freqs, self.lmn, coh, self.shape, jones, self.a1,
                                  self.a2, self.receptors)
        return out

    def data(self, uvw, times, freqs, tidx, cidx, coh) -> np.ndarray:
        """Observed visibilities: model, gains, noise and RFI, in place in one array."""
        vis = self.model(uvw, times, freqs, coh)
        if self.gains is not None:
            apply_gains(vis, self.gains.evaluate(times, freqs), self.a1, self.a2,
                        self.receptors, out=vis)
        if self.noise:
            thermal_noise(self.seed, tidx, cidx, self.sigma, vis.shape[3], out=vis)
        if self.rfi is not None:
            self.rfi.block(tidx, cidx, self.sigma, vis.shape[3], out=vis)
        return vis


def _model_block(uvw, times, freqs, coh, recipe):
    return recipe.model(uvw, times, freqs, coh)


def _data_block(uvw, times, freqs, tidx, cidx, coh, recipe):
    return recipe.data(uvw, times, freqs, tidx, cidx, coh)


def _gain_block(times, freqs, model):
    return model.evaluate(times, freqs)


def _apply_gains_block(vis, gains, a1, a2, ra, rb):
    return apply_gains(vis, gains, a1, a2, (ra, rb))


def _rfi_block(tidx, cidx, plan, sigma, n_pol):
    return plan.block(tidx, cidx, sigma, n_pol)


def _tec_block(times, terms):
    return terms.tec(times)


def _beam_block(times, freqs, terms):
    return terms.beam_gain(times, freqs)


# ----------------------------------------------------------------------------- main


def simulate_observation(
    config: SimulationConfig | Mapping[str, Any],
    *,
    direction_truth: bool = False,
) -> tuple[xr.DataTree, xr.DataTree]:
    """Build a lazy simulated observation and its lazy truth.

    Parameters
    ----------
    config : SimulationConfig or mapping
        Validated with :class:`SimulationConfig`.
    direction_truth : bool
        Add the ``/directions`` node (per-patch true visibilities; one more prediction
        per patch when computed).

    Returns
    -------
    obs : xarray.DataTree
        A processing set with one partition ``<name>_0`` whose ``VISIBILITY``,
        ``FLAG`` (all False), ``WEIGHT`` (``1 / sigma^2`` with noise, else 1), ``UVW``
        are Dask arrays chunked along time and frequency; passes
        :func:`daskcal.data.schema.check_observation`.
    truth : xarray.DataTree
        See the module notes.

    Raises
    ------
    SimulationError, pydantic.ValidationError
        For configurations that cannot be realised (both are ``ValueError``).
    """
    cfg = config if isinstance(config, SimulationConfig) else SimulationConfig.model_validate(config)
    layout = _layout(cfg)
    pols = cfg.feed_correlations()
    ra_idx, rb_idx = correlation_receptors(pols)
    a1, a2 = baseline_antenna_pairs(layout.n_ant, cfg.autocorrelations)
    n_ant, n_bl, n_pol = layout.n_ant, a1.size, len(pols)
    f0, df = cfg.frequency_setup()
    freqs = f0 + df * np.arange(cfg.n_chan)
    if cfg.target_size is not None:
        from dask.utils import parse_bytes

        n_time = max(1, round(parse_bytes(cfg.target_size)
                              / (n_bl * cfg.n_chan * n_pol * BYTES_PER_SAMPLE)))
    else:
        n_time = max(1, round(cfg.duration_s / cfg.integration_s))
    t_start = _unix(cfg.start_time)
    times = t_start + (np.arange(n_time) + 0.5) * cfg.integration_s
    celestial_to_terrestrial(times[[0, -1]])  # fail early outside the IERS tables
    chunks = resolve_chunks(cfg.chunks, n_time, n_bl, cfg.n_chan, n_pol)
    pc = np.radians([cfg.ra_deg, cfg.dec_deg])
    sky = build_sky(cfg, freqs, layout, t_start)
    lmn = sky.lmn(pc[0], pc[1])

    t_d = da.from_array(times, chunks=chunks["time"])
    ti_d = da.arange(n_time, chunks=chunks["time"])
    f_d = da.from_array(freqs, chunks=chunks["frequency"])
    fi_d = da.arange(cfg.n_chan, chunks=chunks["frequency"])
    uvw = t_d.map_blocks(_uvw_block, layout.itrf_m, a1, a2, pc, cfg.aberration,
                         new_axis=[1, 2], chunks=(t_d.chunks[0], (n_bl,), (3,)),
                         dtype=np.float64, meta=np.empty((0, 0, 0)))
    coh = f_d.map_blocks(_coherency_block, sky, pols, new_axis=[0, 2],
                         chunks=((sky.n_source,), f_d.chunks[0], (n_pol,)), dtype=np.complex128,
                         meta=np.empty((0, 0, 0), np.complex128))
    clean = dask_dft_predict(uvw, f_d, lmn, coh, sky.shape_params, receptors=(ra_idx, rb_idx))

    truth_nodes: dict[str, xr.Dataset] = {}
    vis_coords = {"time": times, "frequency": freqs, "polarization": np.array(pols),
                  "baseline_id": np.arange(n_bl), "antenna1": ("baseline_id", a1),
                  "antenna2": ("baseline_id", a2),
                  "baseline_antenna1_name": ("baseline_id", layout.names[a1]),
                  "baseline_antenna2_name": ("baseline_id", layout.names[a2])}
    dd_coords = {"time": times, "antenna_name": layout.names, "source": sky.name}
    c4 = np.empty((0, 0, 0, 0), np.complex64)
    terms = screen = gmodel = plan = None
    if (cfg.screens.enabled or cfg.beam.enabled) and sky.n_source:
        sc = cfg.screens
        screen = TecScreen.draw(seed=cfg.seed, t_ref_s=t_start, tec_rms_tecu=sc.tec_rms_tecu,
                                outer_scale_m=sc.outer_scale_km * 1e3,
                                inner_scale_m=sc.inner_scale_km * 1e3, speed_m_s=sc.speed_m_s,
                                height_m=sc.height_km * 1e3) if sc.enabled else None
        terms = _DirectionTerms(screen, layout.enu_m(), lmn, cfg.beam.enabled, sky.ra, sky.dec,
                                pc, layout.diameter_m, layout.reference_itrf_m,
                                cfg.beam.sidelobe_level, cfg.beam.elevation_exponent,
                                cfg.aberration)
        if screen is not None:
            tec = t_d.map_blocks(_tec_block, terms, new_axis=[1, 2],
                                 chunks=(t_d.chunks[0], (n_ant,), (sky.n_source,)),
                                 dtype=np.float64, meta=np.empty((0, 0, 0)))
            truth_nodes["screens"] = xr.Dataset(
                {"TEC": (("time", "antenna_name", "source"), tec, {"units": "TECU"})},
                coords=dd_coords, attrs={"phase": "TEC_PHASE_RAD_HZ * TEC / f",
                                         "TEC_PHASE_RAD_HZ": -8.4479745e9})
        if cfg.beam.enabled:
            beam = da.blockwise(_beam_block, "tasf", t_d, "t", f_d, "f", terms, None,
                                new_axes={"a": n_ant, "s": sky.n_source}, dtype=np.float32,
                                meta=np.empty((0, 0, 0, 0), np.float32))
            truth_nodes["beam"] = xr.Dataset(
                {"BEAM": (("time", "antenna_name", "source", "frequency"), beam,
                          {"units": "", "description": "voltage gain E_p; apparent flux "
                           "E_p E_q S"})},
                coords={**dd_coords, "frequency": freqs})
    if cfg.gains.enabled:
        gc = cfg.gains
        gmodel = GainModel.draw(n_ant, seed=cfg.seed, t_ref_s=t_start, f_ref_hz=float(freqs[0]),
                                amplitude_rms=gc.amplitude_rms,
                                phase_rms_rad=np.radians(gc.phase_rms_deg),
                                time_scale_s=gc.time_scale_s,
                                freq_scale_hz=gc.freq_scale_hz or max(df * cfg.n_chan, df),
                                delay_rms_s=gc.delay_rms_ns * 1e-9)
    sigma = noise_sigma(layout.sefd_jy, a1, a2, df, cfg.integration_s)
    if cfg.rfi.enabled:
        rc = cfg.rfi
        plan = RFIPlan.draw(seed=cfg.seed, n_time=n_time, n_bl=n_bl, n_chan=cfg.n_chan,
                            n_lines=rc.n_lines, line_width_chan=rc.line_width_chan,
                            line_strength=rc.line_strength, n_bursts=rc.n_bursts,
                            burst_steps=max(1, round(rc.burst_duration_s / cfg.integration_s)),
                            burst_band_fraction=rc.burst_band_fraction,
                            burst_strength=rc.burst_strength,
                            spike_probability=rc.spike_probability,
                            spike_strength=rc.spike_strength)
    recipe = _Recipe(lmn, sky.shape_params, a1, a2, (ra_idx, rb_idx), n_ant, terms, gmodel,
                     cfg.seed, sigma, cfg.noise.enabled, plan)
    # the observed data: one fused task per chunk (model, gains, noise, RFI in place)
    vis = da.blockwise(_data_block, "tbfc", uvw, "tbx", t_d, "t", f_d, "f", ti_d, "t", fi_d, "f",
                       coh, "sfc", recipe, None, concatenate=True, dtype=np.complex64, meta=c4)
    # the truth: the same steps as separate lazy arrays
    model = clean
    if terms is not None:
        model = da.blockwise(_model_block, "tbfc", uvw, "tbx", t_d, "t", f_d, "f", coh, "sfc",
                             recipe, None, concatenate=True, dtype=np.complex64, meta=c4)
    corrupted = model
    if gmodel is not None:
        gains = da.blockwise(_gain_block, "tfar", t_d, "t", f_d, "f", gmodel, None,
                             new_axes={"a": n_ant, "r": 2}, dtype=np.complex64, meta=c4)
        corrupted = da.blockwise(_apply_gains_block, "tbfc", model, "tbfc", gains, "tfar",
                                 a1, None, a2, None, ra_idx, None, rb_idx, None,
                                 concatenate=True, dtype=np.complex64, meta=c4)
        truth_nodes["gains"] = xr.Dataset(
            {"GAIN": (("time", "frequency", "antenna_name", "receptor"), gains)},
            coords={"time": times, "frequency": freqs, "antenna_name": layout.names,
                    "receptor": list(layout.polarization_type)},
            attrs={"application": "V_pq,ab -> g_pa V_pq,ab conj(g_qb)"})
    if plan is not None:
        rfi = da.blockwise(_rfi_block, "tbfc", ti_d, "t", fi_d, "f", plan, None, sigma, None,
                           n_pol, None, new_axes={"b": n_bl, "c": n_pol}, dtype=np.complex64,
                           meta=c4)
        truth_nodes["rfi"] = xr.Dataset(
            {"RFI_MASK": (VIS_DIMS, rfi != 0), "RFI_AMPLITUDE": (VIS_DIMS, abs(rfi),
                                                                 {"units": "Jy"})},
            coords=vis_coords)

    if direction_truth:
        truth_nodes["directions"] = _direction_truth(sky, recipe, lmn, uvw, t_d, f_d, ti_d, fi_d,
                                                     coh, vis_coords)

    shape = (n_time, n_bl, cfg.n_chan, n_pol)
    weight = (1.0 / sigma**2 if cfg.noise.enabled else np.ones(n_bl)).astype(np.float32)
    vis_xds = make_visibility_xds(
        time_s=times, frequency_hz=freqs, polarization=pols, antenna_names=layout.names,
        antenna1=a1, antenna2=a2, visibility=vis, uvw_m=uvw,
        integration_time_s=cfg.integration_s, channel_width_hz=df,
        flag=da.zeros(shape, dtype=bool, chunks=vis.chunks),
        weight=da.broadcast_to(da.from_array(weight[None, :, None, None]), shape,
                               chunks=vis.chunks),
        effective_integration_time_s=da.full((n_time, n_bl), cfg.integration_s,
                                             chunks=(chunks["time"], -1)),
        time_centroid_s=da.broadcast_to(t_d[:, None], (n_time, n_bl)),
        field_name=cfg.field_name, observer="daskcal simulator", project=cfg.name,
        description=f"simulated {layout.telescope_name} observation")
    field = make_field_and_source_xds([cfg.field_name], pc.reshape(1, 2))
    part = make_partition(vis_xds, layout.to_antenna_xds(), field)
    config_json = cfg.model_dump_json()
    obs = make_observation({f"{cfg.name}_0": part}, simulation_config=config_json)

    truth_nodes["sky"] = sky.to_dataset()
    truth_nodes["model"] = xr.Dataset(
        {"VISIBILITY_MODEL": (VIS_DIMS, clean, {"units": "Jy"}),
         "VISIBILITY_CORRUPTED": (VIS_DIMS, corrupted, {"units": "Jy"})},
        coords=vis_coords)
    truth_nodes["noise"] = xr.Dataset(
        {"NOISE_SIGMA": ("baseline_id", sigma, {"units": "Jy", "description":
                                                "per real and imaginary part"}),
         "SEFD": ("antenna_name", layout.sefd_jy, {"units": "Jy"})},
        coords={"baseline_id": np.arange(n_bl), "antenna_name": layout.names,
                "antenna1": ("baseline_id", a1), "antenna2": ("baseline_id", a2)},
        attrs={"enabled": bool(cfg.noise.enabled), "channel_width_hz": df,
               "integration_s": cfg.integration_s})
    truth = xr.DataTree(dataset=xr.Dataset(attrs={
        "type": "simulation_truth", "simulation_config": config_json,
        "partition": f"{cfg.name}_0",
        "uvw_convention": "J2000, X(antenna1) - X(antenna2)",
        "phase_convention": "exp(+2 pi i (u l + v m + w (n - 1)) f / c)"}))
    for key, node in truth_nodes.items():
        truth[key] = xr.DataTree(dataset=node)
    return obs, truth


def _direction_truth(sky, recipe, lmn, uvw, t_d, f_d, ti_d, fi_d, coh, vis_coords) -> xr.Dataset:
    """Per-patch corrupted visibilities (no noise, no RFI), stacked along ``patch``."""
    import dataclasses

    patch_of = np.where(sky.patch == "", sky.name, sky.patch)
    names = list(dict.fromkeys(patch_of.tolist()))
    parts = []
    for name in names:
        idx = np.flatnonzero(patch_of == name)
        terms = recipe.terms
        if terms is not None:
            terms = dataclasses.replace(terms, lmn=lmn[idx], src_ra=sky.ra[idx],
                                        src_dec=sky.dec[idx])
        sub = dataclasses.replace(recipe, lmn=lmn[idx], shape=sky.shape_params[idx], terms=terms,
                                  noise=False, rfi=None)
        parts.append(da.blockwise(_data_block, "tbfc", uvw, "tbx", t_d, "t", f_d, "f", ti_d, "t",
                                  fi_d, "f", coh[idx], "sfc", sub, None, concatenate=True,
                                  dtype=np.complex64, meta=np.empty((0, 0, 0, 0), np.complex64)))
    stacked = (da.stack(parts) if parts else
               da.zeros((0,) + tuple(len(vis_coords[k]) for k in ("time", "baseline_id",
                                                                  "frequency", "polarization")),
                        dtype=np.complex64))
    return xr.Dataset(
        {"VISIBILITY_CORRUPTED": (("patch",) + VIS_DIMS, stacked, {"units": "Jy"})},
        coords={**vis_coords, "patch": np.array(names, dtype=str)})


def write_simulation(
    config: SimulationConfig | Mapping[str, Any],
    path: str | Path,
    *,
    fmt: Literal["zarr", "ms"] = "zarr",
    overwrite: bool = False,
    progress: bool = False,
) -> tuple[Path, Path]:
    """Simulate and write an observation and its truth store.

    The observation goes to ``path`` (zarr via :func:`daskcal.data.zarr_store.write_zarr`
    or a Measurement Set via :func:`daskcal.data.ms_write.write_ms`), the truth to
    ``<path without suffix>.truth.zarr`` (zarr v3, consolidated). Everything is
    computed chunk by chunk; for zarr both stores are written by one Dask computation
    (UVW and the source coherencies are shared; the truth's model visibilities are
    predicted in their own tasks).

    Parameters
    ----------
    config : SimulationConfig or mapping
    path : str or Path
        Where to write the observation (e.g. ``"sim.zarr"`` or ``"sim.ms"``).
    fmt : {"zarr", "ms"}
    overwrite : bool
        Replace existing stores; otherwise an existing ``path`` or truth store is an
        error.
    progress : bool
        Show a progress bar (local schedulers).

    Returns
    -------
    (Path, Path)
        The observation and truth paths.
    """
    import dask

    if fmt not in ("zarr", "ms"):
        raise SimulationError(f"fmt {fmt!r} is not 'zarr' or 'ms'")
    path = Path(path)
    truth_path = path.with_suffix(".truth.zarr")
    if not overwrite:
        for p in (path, truth_path):
            if p.exists():
                raise SimulationError(f"{p} exists (pass overwrite=True to replace it)")
    obs, truth = simulate_observation(config)
    bar = contextlib.nullcontext()
    if progress:
        from dask.diagnostics import ProgressBar

        bar = ProgressBar()
    mode = "w" if overwrite else "w-"
    with bar, warnings.catch_warnings():
        # the two zarr-python extensions daskcal stores use on purpose (as write_zarr does):
        # consolidated metadata and numpy fixed-width strings
        warnings.filterwarnings("ignore", message=r"Consolidated metadata is currently not part")
        warnings.filterwarnings("ignore", message=r".*does not have a Zarr V3 specification")
        if fmt == "zarr":
            from daskcal.data.zarr_store import write_zarr

            obs_write = write_zarr(obs, path, overwrite=overwrite, compute=False)
            truth_write = truth.to_zarr(truth_path, mode=mode, zarr_format=3, consolidated=True,
                                        compute=False)
            out, _ = dask.compute(obs_write, truth_write)
        else:
            from daskcal.data.ms_write import write_ms

            out = write_ms(obs, path, overwrite=overwrite)
            truth.to_zarr(truth_path, mode=mode, zarr_format=3, consolidated=True)
    return Path(out), truth_path
