"""Facet calibration settings and calibrator selection (FACTOR/Rapthor's "calibrators").

Calibrator selection (:func:`plan_facets`)
------------------------------------------
1. Apparent flux: each component's Stokes I at ``freq_hz`` times a power-beam estimate
   (a callable ``beam(ra, dec) -> attenuation``, or a Gaussian of FWHM
   ``beam_fwhm_deg`` about the phase centre, or none).
2. Patches: a sky model without patches (every ``patch == ""``) is first grouped
   around its brightest components with :func:`daskcal.sky.catalogue.group_by_brightest`
   on the *apparent* fluxes (centres at least ``flux_threshold_jy / 2`` apparent,
   ``min_separation_deg`` apart, at most ``4 max_directions`` of them; components within
   ``blend_radius_deg`` of a brighter one blended into its source first, so that a
   source whose CLEAN flux is spread over a few pixels is a candidate with its whole
   flux and keeps its own patch); existing patches are kept.
3. Calibrators: the patches of total apparent flux ``>= flux_threshold_jy`` inside the
   field, by decreasing apparent flux, skipping a patch within ``min_separation_deg``
   of a brighter calibrator, at most ``max_directions``. Each direction is its patch's
   flux-weighted centre (:func:`daskcal.sky.catalogue.patch_summary`).
4. Facets: Voronoi cells of the calibrator directions over the image field
   (:func:`daskcal.sky.facets.make_facets`); every component of the sky model joins
   the facet that contains it (the model of a direction is its whole facet, as in
   Rapthor).

Solution intervals (Rapthor's flux scaling)
-------------------------------------------
A direction of apparent flux ``S`` gets the time interval ``solint_time * k`` of each
solve step with ``k = 2 ** round(log2((S_ref / S) ** 2))`` clipped to
``[1, max_solint_factor]``: the signal-to-noise ratio of a solution grows as
``S sqrt(interval)``, so fainter directions get longer intervals and every direction
about the same SNR. ``S_ref`` is ``solint_ref_flux_jy`` or the brightest calibrator's
apparent flux. Powers of two keep every interval a multiple of the shortest one, which
the joint solver needs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from daskcal import DaskcalError
from daskcal.data.geometry import angular_separation, lmn_of
from daskcal.sky.catalogue import group_by_brightest, patch_summary
from daskcal.sky.facets import Facets, make_facets
from daskcal.sky.model import SkyModel

DDMode = Literal["scalar_phase", "scalar_complex", "diagonal_phase", "diagonal_complex"]


class FacetError(DaskcalError, ValueError):
    """Facet-calibration settings or inputs that do not fit."""


class DDSolveStep(BaseModel):
    """One direction-dependent solve step (one DP3 DDECal run)."""

    model_config = ConfigDict(extra="forbid")

    mode: DDMode = Field("scalar_phase", description="Gain type per antenna and direction.")
    solint_time: int = Field(1, ge=1, description="Time interval of the brightest direction, "
                             "integrations (fainter ones: a power-of-two multiple).")
    solint_freq: int = Field(4, ge=1, description="Frequency interval, channels (all "
                             "directions).")
    max_iter: int = Field(50, ge=1, description="Outer iterations over the directions.")
    inner_iter: int = Field(2, ge=1, description="StefCal iterations per direction visit.")
    tolerance: float = Field(1e-5, ge=0, description="Convergence threshold on the relative "
                             "gain change.")
    damping: float = Field(0.5, ge=0, lt=1, description="StefCal damping weight.")
    damping_every: int = Field(2, ge=1, description="Damp every this many inner iterations.")
    min_unflagged_fraction: float = Field(0.0, ge=0, le=1, description="Minimum valid "
                                          "fraction for an antenna to be solved.")
    start: Literal["auto", "cold", "unit"] = Field(
        "auto", description="Starting gains: 'cold' the solver's cold start (directions "
        "entered one by one at a real amplitude scaled to the data), 'unit' all gains 1 "
        "(the data are DI-calibrated, so zero DD phase is close), 'auto' unit for the "
        "phase-only modes and cold for the others. A cold start's amplitude in a "
        "phase-only mode is one no phase step can undo.")


class FacetConfig(BaseModel):
    """Settings of the ``facets`` stage: calibrator selection, facets and DD solves."""

    model_config = ConfigDict(extra="forbid")

    flux_threshold_jy: float = Field(1.0, gt=0, description="Least apparent flux of a "
                                     "calibrator patch, Jy.")
    max_directions: int = Field(10, ge=1, description="Most calibrator directions.")
    min_separation_deg: float = Field(0.5, ge=0, description="Least separation of two "
                                      "calibrator directions, degrees.")
    blend_radius_deg: float = Field(0.0, ge=0, description="When grouping a sky model "
                                    "without patches: components within this of a brighter "
                                    "one count as one source (a CLEAN model spreads a source "
                                    "over neighbouring pixels), degrees; 0: each component "
                                    "on its own.")
    freq_hz: float | None = Field(None, gt=0, description="Frequency of the fluxes, Hz "
                                  "(default: the mean frequency of the data).")
    beam_fwhm_deg: float | None = Field(None, gt=0, description="FWHM of a Gaussian power "
                                        "beam about the phase centre for apparent fluxes, "
                                        "degrees (none: intrinsic fluxes).")
    field_size_deg: float = Field(5.0, gt=0, description="Side of the square image field "
                                  "tiled by the facets, degrees.")
    fast: DDSolveStep = Field(default_factory=DDSolveStep, description="The fast scalar-phase "
                              "solve.")
    slow: DDSolveStep | None = Field(
        default_factory=lambda: DDSolveStep(mode="diagonal_complex", solint_time=4,
                                            solint_freq=8),
        description="The slow solve on the model corrupted by the fast phases (none: skip).")
    scale_solint_with_flux: bool = Field(True, description="Longer intervals for fainter "
                                         "directions (module notes).")
    max_solint_factor: int = Field(4, ge=1, description="Largest interval scaling factor.")
    model_scale_iter: int = Field(0, ge=0, description="Alternations of a fit of one real "
                                  "flux scale per direction's model (per solve chunk) with "
                                  "the fast solve (0: none). A model fainter than the sky "
                                  "(a CLEAN model of a decorrelated image) otherwise has its "
                                  "missing flux absorbed by the other directions' gains and "
                                  "subtracted with them when imaging (flux suppression).")
    solint_ref_flux_jy: float | None = Field(None, gt=0, description="Apparent flux that gets "
                                             "the base interval (default: the brightest).")
    ref_antenna: str | None = Field(None, description="Phase reference antenna (default: the "
                                    "first).")
    data_group: str = Field("base", description="Data group to calibrate.")

    @model_validator(mode="after")
    def _nested_intervals(self):
        if self.slow is not None:
            if self.slow.solint_time % self.fast.solint_time:
                raise ValueError("slow.solint_time must be a multiple of fast.solint_time")
            if self.slow.solint_freq % self.fast.solint_freq:
                raise ValueError("slow.solint_freq must be a multiple of fast.solint_freq")
        return self


@dataclass(frozen=True, eq=False)
class FacetPlan:
    """Calibrator directions, their facets and the facet-assigned sky model.

    Attributes
    ----------
    name : ndarray of str, shape (n_dir,)
        Direction (= facet = patch) names.
    ra, dec : ndarray, shape (n_dir,)
        Directions (J2000), radians.
    flux_jy, apparent_flux_jy : ndarray, shape (n_dir,)
        Intrinsic and apparent Stokes I of each calibrator patch, Jy.
    solint_factor : ndarray of int, shape (n_dir,)
        Time-interval factor of each direction (module notes).
    facets : Facets
        The facet polygons.
    sky : SkyModel
        The sky model with every component's patch set to its facet's name.
    """

    name: np.ndarray
    ra: np.ndarray
    dec: np.ndarray
    flux_jy: np.ndarray
    apparent_flux_jy: np.ndarray
    solint_factor: np.ndarray
    facets: Facets
    sky: SkyModel

    @property
    def n_dir(self) -> int:
        """Number of directions."""
        return int(self.name.size)


def gaussian_beam(phase_centre_rad, fwhm_deg: float) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """A Gaussian power beam ``exp(-4 ln 2 (rho / fwhm)^2)`` about ``phase_centre_rad``."""
    pc = np.asarray(phase_centre_rad, dtype=np.float64).reshape(2)
    fwhm = np.radians(fwhm_deg)

    def beam(ra, dec):
        rho = angular_separation(pc[0], pc[1], np.asarray(ra), np.asarray(dec))
        return np.exp(-4 * np.log(2) * (rho / fwhm) ** 2)

    return beam


def solint_factors(apparent_flux_jy, *, ref_flux_jy: float | None = None,
                   max_factor: int = 4, enabled: bool = True) -> np.ndarray:
    """Power-of-two interval factors ``k`` per direction (module notes), int64 (n_dir,)."""
    s = np.asarray(apparent_flux_jy, dtype=np.float64)
    if not enabled or s.size == 0:
        return np.ones(s.size, np.int64)
    ref = float(ref_flux_jy) if ref_flux_jy is not None else float(s.max())
    ratio = (ref / np.maximum(s, 1e-30)) ** 2
    k = 2.0 ** np.round(np.log2(np.maximum(ratio, 1.0)))
    return np.clip(k, 1, max_factor).astype(np.int64)


def plan_facets(sky: SkyModel, phase_centre_rad, config: FacetConfig | None = None, *,
                freq_hz: float | None = None,
                beam: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None) -> FacetPlan:
    """Select calibrator directions and make their facets (see the module notes).

    Parameters
    ----------
    sky : SkyModel
        The sky model of the field (with or without patches).
    phase_centre_rad : array, shape (2,)
        (RA, Dec) of the phase and image centre, radians.
    config : FacetConfig, optional
    freq_hz : float, optional
        Frequency of the fluxes, Hz (overrides ``config.freq_hz``; default: each
        component's reference frequency).
    beam : callable, optional
        ``beam(ra, dec)`` (radians, arrays of shape (n,)) -> power attenuation (n,);
        overrides ``config.beam_fwhm_deg``.

    Returns
    -------
    FacetPlan

    Raises
    ------
    FacetError
        When no patch reaches the flux threshold.
    """
    import dataclasses

    config = config or FacetConfig()
    pc = np.asarray(phase_centre_rad, dtype=np.float64).reshape(2)
    freq = freq_hz if freq_hz is not None else config.freq_hz
    if beam is None and config.beam_fwhm_deg is not None:
        beam = gaussian_beam(pc, config.beam_fwhm_deg)
    atten = np.ones(sky.n_source) if beam is None else np.asarray(beam(sky.ra, sky.dec),
                                                                  dtype=np.float64)
    if atten.shape != (sky.n_source,) or np.any(~np.isfinite(atten)) or np.any(atten < 0):
        raise FacetError("beam must return a finite, non-negative attenuation per component")
    apparent = dataclasses.replace(sky, stokes=sky.stokes * atten[:, None])
    min_sep = np.radians(config.min_separation_deg)
    if sky.n_source and np.all(sky.patch == ""):
        apparent = group_by_brightest(apparent, min_flux_jy=0.5 * config.flux_threshold_jy,
                                      max_patches=4 * config.max_directions,
                                      min_separation_rad=min_sep, freq_hz=freq,
                                      blend_radius_rad=np.radians(config.blend_radius_deg))
    intrinsic = patch_summary(dataclasses.replace(apparent, stokes=sky.stokes), freq)
    summary = patch_summary(apparent, freq)
    half = 0.5 * np.radians(config.field_size_deg)
    lmn = lmn_of(summary.ra, summary.dec, *pc) if summary.name.size else np.zeros((0, 3))
    in_field = (lmn[:, 2] > 0) & (np.abs(lmn[:, 0]) <= half) & (np.abs(lmn[:, 1]) <= half)
    cand = np.flatnonzero(in_field & (summary.flux_jy >= config.flux_threshold_jy))
    cand = cand[np.lexsort((summary.name[cand], -summary.flux_jy[cand]))]
    chosen: list[int] = []
    for k in cand:
        if len(chosen) >= config.max_directions:
            break
        if chosen and min_sep > 0 and np.any(angular_separation(
                summary.ra[chosen], summary.dec[chosen], summary.ra[k], summary.dec[k]) < min_sep):
            continue
        chosen.append(int(k))
    if not chosen:
        raise FacetError(f"no patch inside the {config.field_size_deg} deg field reaches the "
                         f"apparent flux threshold {config.flux_threshold_jy} Jy")
    idx = np.array(chosen)
    facets = make_facets(summary.name[idx], summary.ra[idx], summary.dec[idx], pc,
                         np.radians(config.field_size_deg))
    app = summary.flux_jy[idx]
    factors = solint_factors(app, ref_flux_jy=config.solint_ref_flux_jy,
                             max_factor=config.max_solint_factor,
                             enabled=config.scale_solint_with_flux)
    return FacetPlan(name=summary.name[idx], ra=summary.ra[idx], dec=summary.dec[idx],
                     flux_jy=intrinsic.flux_jy[idx], apparent_flux_jy=app,
                     solint_factor=factors, facets=facets, sky=facets.assign(sky))


__all__ = ["DDSolveStep", "FacetConfig", "FacetError", "FacetPlan", "gaussian_beam",
           "plan_facets", "solint_factors"]
