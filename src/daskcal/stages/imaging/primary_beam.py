"""Primary beams on image grids and primary-beam correction.

:func:`beam_image` evaluates a power beam (:mod:`daskcal.kernels.beams`) at every pixel
of a daskcal image: pixel ``(i, j)`` has direction cosines ``l = (i - n_l // 2) cell``,
``m = (j - n_m // 2) cell`` about the image's phase centre (SIN projection), hence a
J2000 direction, hence a distance from the pointing (dishes) or a local (east, north,
up) direction at each time (LOFAR HBA stations). Pixels with ``l^2 + m^2 > 1`` are NaN.

Beams that move on the sky (a phased array tracking a source: the shape of its beam
changes with elevation and parallactic rotation) are averaged in **power** over
``n_times`` instants spread evenly over the observation (the centres of ``n_times``
equal sub-intervals of ``[t_first, t_last]``), and over the given frequencies (an MFS
image is the mean of its channels). Dish beams are fixed on the sky.

For several LOFAR stations the beam of the array is that of the cross-correlations,
``<V_p conj(V_q)>`` averaged over station pairs ``p != q``, i.e.
``(|sum_p V_p|^2 - sum_p |V_p|^2) / (N (N - 1))`` (real part).

:func:`pbcor` divides images by the beam where it is at least ``cutoff`` (NaN
elsewhere); :func:`primary_beam` does both, taking times, site, diameters and pointing
from a partition node.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import xarray as xr
from pydantic import BaseModel, ConfigDict, Field

from daskcal import DaskcalError
from daskcal.data.geometry import (
    angular_separation,
    celestial_to_terrestrial,
    enu_matrix,
    itrf_to_geodetic,
    radec_of_lm,
    radec_to_unit,
    uvw_axes,
)
from daskcal.kernels import beams as _beams

log = logging.getLogger(__name__)

BeamModel = Literal["gaussian", "airy", "lofar_hba"]


class PrimaryBeamError(DaskcalError, ValueError):
    """Primary-beam inputs that make no sense (missing times or site, bad shapes)."""


class PrimaryBeamConfig(BaseModel):
    """Primary-beam model and correction settings (the ``pbcor`` step of imaging)."""

    model_config = ConfigDict(extra="forbid")

    model: BeamModel = Field("gaussian", description="Beam model: gaussian (FWHM = "
                             "fwhm_factor c / (f D), as the simulator), airy (uniformly "
                             "illuminated dish) or lofar_hba (analytic HBA station: dipole x "
                             "tile x station array factor, tracked and time-averaged).")
    diameter_m: float | None = Field(None, gt=0, description="Dish or station diameter, m "
                                     "(gaussian/airy; default: the median diameter in the "
                                     "antenna table).")
    fwhm_factor: float = Field(1.02, gt=0, description="k in FWHM = k c / (f D) of the "
                               "gaussian model.")
    cutoff: float = Field(0.2, gt=0, le=1, description="Primary-beam corrected images are "
                          "blanked (NaN) where the power beam is below this value.")
    n_times: int = Field(5, ge=1, le=100, description="Number of instants over the "
                         "observation at which a moving beam (lofar_hba) is evaluated and "
                         "averaged.")
    n_freqs: int = Field(4, ge=1, le=64, description="Number of frequencies across the band "
                         "over which the beam is averaged.")
    station: list[str] | None = Field(None, description="LOFAR HBA fields whose real tile "
                                      "layouts are used (e.g. [CS002HBA0, RS106HBA]; needs the "
                                      "optional lofarantpos package); default: one generated "
                                      "layout of n_tiles tiles.")
    n_tiles: int = Field(24, ge=1, description="Tiles of the generated HBA layout (24: a core "
                         "station field, 48: a remote station).")
    element_height_m: float = Field(_beams.HBA_ELEMENT_HEIGHT_M, gt=0, description="Height of "
                                    "the model HBA dipoles above their ground plane, m.")


# ----------------------------------------------------------------------------- geometry


def pixel_directions(image_xds: xr.Dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """J2000 directions of the pixels of an image.

    Parameters
    ----------
    image_xds : xarray.Dataset
        A daskcal image (coords ``l``, ``m`` in radians, attr ``phase_centre_rad``).

    Returns
    -------
    ra, dec : ndarray, shape (n_l, n_m), radians
    valid : ndarray of bool, shape (n_l, n_m)
        ``l^2 + m^2 <= 1`` (the pixel is on the sky).
    """
    l, m = _lm(image_xds)
    ra0, dec0 = _phase_centre(image_xds)
    ll, mm = np.meshgrid(l, m, indexing="ij")
    ra, dec = radec_of_lm(ll, mm, ra0, dec0)
    return ra, dec, ll * ll + mm * mm <= 1.0


def _lm(image_xds) -> tuple[np.ndarray, np.ndarray]:
    if "l" in image_xds.coords and "m" in image_xds.coords:
        return (np.asarray(image_xds["l"].values, np.float64),
                np.asarray(image_xds["m"].values, np.float64))
    cell = float(image_xds.attrs["cell_rad"])
    nl, nm = image_xds.sizes["l"], image_xds.sizes["m"]
    return (np.arange(nl) - nl // 2) * cell, (np.arange(nm) - nm // 2) * cell


def _phase_centre(image_xds) -> tuple[float, float]:
    pc = image_xds.attrs.get("phase_centre_rad")
    if pc is None or np.size(pc) != 2:
        raise PrimaryBeamError("the image has no phase_centre_rad attribute (ra, dec)")
    return float(np.ravel(pc)[0]), float(np.ravel(pc)[1])


def sample_times(time_s, n_times: int) -> np.ndarray:
    """``n_times`` instants spread over ``[min(time_s), max(time_s)]`` (sub-interval centres).

    All distinct times are returned when there are no more than ``n_times`` of them.
    """
    t = np.unique(np.asarray(time_s, dtype=np.float64).ravel())
    if t.size == 0 or not np.all(np.isfinite(t)):
        raise PrimaryBeamError("time_s is empty or not finite")
    if t.size <= n_times:
        return t
    return t[0] + (np.arange(n_times) + 0.5) / n_times * (t[-1] - t[0])


def j2000_to_enu(time_s, site_itrf_m) -> np.ndarray:
    """Rotations from J2000 unit vectors to local (east, north, up) at a site.

    No aberration or refraction (an arcminute at most: irrelevant for beams).

    Returns
    -------
    ndarray, shape (n_time, 3, 3): ``enu = R[t] @ x_j2000``.
    """
    site = np.asarray(site_itrf_m, dtype=np.float64).reshape(3)
    lon, lat, _ = itrf_to_geodetic(site)
    enu = enu_matrix(math.radians(float(lon)), math.radians(float(lat)))
    return np.einsum("ij,tjk->tik", enu, celestial_to_terrestrial(np.atleast_1d(time_s)))


# ----------------------------------------------------------------------------- beams


def _layouts(station, tile_positions_m, element_offsets_m, n_tiles: int) -> list[tuple]:
    """[(tiles (n_tile, 3), offsets (n_elem, 3) or (n_tile, n_elem, 3) or None), ...]."""
    if tile_positions_m is not None:
        several = isinstance(tile_positions_m, list | tuple) and np.ndim(tile_positions_m[0]) == 2
        tiles = list(tile_positions_m) if several else [tile_positions_m]
        offs = element_offsets_m if isinstance(element_offsets_m, list | tuple) else \
            [element_offsets_m] * len(tiles)
        if len(offs) != len(tiles):
            raise PrimaryBeamError("give one element_offsets_m per tile layout")
        return [(np.asarray(t, np.float64), o) for t, o in zip(tiles, offs, strict=True)]
    if station:
        names = [station] if isinstance(station, str) else list(station)
        out = []
        for name in names:
            try:
                out.append(_beams.lofar_station_layout(name))
            except ImportError:
                n = 24 if name.upper().startswith("CS") and name.upper()[-1] in "01" else 48
                log.warning("lofarantpos is not installed: using a generated %d-tile layout "
                            "for %s (pip install 'daskcal[lofar]')", n, name)
                out.append((_beams.generated_hba_layout(n), None))
            except KeyError as err:
                raise PrimaryBeamError(str(err).strip("'\"")) from None
        return out
    return [(_beams.generated_hba_layout(n_tiles), None)]


def _lofar_power(vec_j2000, pointing_rad, freqs, times, site_itrf_m, layouts,
                 element_height_m: float) -> np.ndarray:
    """Time- and frequency-averaged array power beam at J2000 unit vectors (n, 3)."""
    rot = j2000_to_enu(times, site_itrf_m)
    p_vec = radec_to_unit(pointing_rad[0], pointing_rad[1])
    acc = np.zeros(vec_j2000.shape[0])
    used = 0
    for r in rot:
        p_enu = r @ p_vec
        if p_enu[2] <= 0:
            continue
        dirs = vec_j2000 @ r.T
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        volts = [_beams.hba_station_voltage(dirs, p_enu, freqs, t, o,
                                            element_height_m=element_height_m)
                 for t, o in layouts]
        n = len(volts)
        if n == 1:
            power = np.abs(volts[0]) ** 2
        else:
            total = np.sum(volts, axis=0)
            power = (np.abs(total) ** 2 - np.sum(np.abs(volts) ** 2, axis=0)) / (n * (n - 1))
        acc += power.mean(axis=1)
        used += 1
    if used == 0:
        raise PrimaryBeamError("the pointing is below the horizon at every sampled time")
    if used < len(rot):
        log.warning("the pointing is below the horizon at %d of %d sampled times",
                    len(rot) - used, len(rot))
    return acc / used


def _interp_grid(values_coarse, lc, mc, l, m) -> np.ndarray:
    from scipy.ndimage import map_coordinates

    x = (l - lc[0]) / (lc[1] - lc[0])
    y = (m - mc[0]) / (mc[1] - mc[0])
    xx, yy = np.meshgrid(x, y, indexing="ij")
    return map_coordinates(values_coarse, [xx, yy], order=3, mode="nearest")


def beam_image(image_xds: xr.Dataset, *, model: BeamModel = "gaussian",
               diameter_m: float | None = None, fwhm_factor: float = 1.02,
               freq_hz=None, pointing_rad=None, time_s=None, site_itrf_m=None,
               station: str | Sequence[str] | None = None, tile_positions_m=None,
               element_offsets_m=None, n_tiles: int = 24, n_times: int = 5,
               element_height_m: float = _beams.HBA_ELEMENT_HEIGHT_M,
               max_grid: int = 256) -> xr.DataArray:
    """The power primary beam on the pixel grid of an image (see the module notes).

    Parameters
    ----------
    image_xds : xarray.Dataset
        A daskcal image: dims ``(l, m)``, attrs ``phase_centre_rad``, ``cell_rad``,
        ``ref_freq_hz``.
    model : {"gaussian", "airy", "lofar_hba"}
    diameter_m : float
        Dish/station diameter, metres (gaussian, airy).
    fwhm_factor : float
        ``k`` of the Gaussian FWHM ``k c / (f D)``.
    freq_hz : float or array, shape (n_freq,), optional
        Frequencies over which the power is averaged (default the image's
        ``ref_freq_hz``).
    pointing_rad : (float, float), optional
        J2000 (RA, Dec) of the pointing, radians (default the image's phase centre; give
        the observation's pointing for facet images, whose centres are elsewhere).
    time_s : array, optional
        Times of the observation, unix seconds UTC (lofar_hba: required).
    site_itrf_m : array, shape (3,), optional
        Where the local frame is taken (the array centre), ITRF metres (lofar_hba:
        required).
    station : str or sequence of str, optional
        LOFAR HBA field names whose real layouts are used (lofarantpos; a generated
        layout stands in, with a logged warning, when it is not installed).
    tile_positions_m : array (n_tile, 3) or list of such, optional
        Explicit tile layouts (east, north, up), metres; override ``station``.
    element_offsets_m : array (n_elem, 3) or (n_tile, n_elem, 3), or list, optional
        Dipole offsets of each layout (default: an unrotated 4 x 4 tile).
    n_tiles : int
        Tiles of the generated layout when neither ``station`` nor ``tile_positions_m``
        is given.
    n_times : int
        Instants over the observation at which the LOFAR beam is averaged.
    element_height_m : float
        Height of the model dipoles above the ground plane, metres.
    max_grid : int
        The LOFAR beam is evaluated exactly on at most ``max_grid`` points per axis and
        interpolated (bicubic) onto larger images; it is smooth on that scale.

    Returns
    -------
    xarray.DataArray, dims (l, m), float64
        Power beam (1 at the pointing), NaN off the sky; attrs ``model`` and the
        parameters used.
    """
    l, m = _lm(image_xds)
    ra0, dec0 = _phase_centre(image_xds)
    pointing = np.asarray((ra0, dec0) if pointing_rad is None else pointing_rad,
                          dtype=np.float64).reshape(-1)
    if pointing.size != 2:
        raise PrimaryBeamError("pointing_rad must be (ra, dec)")
    if freq_hz is None:
        if "ref_freq_hz" not in image_xds.attrs:
            raise PrimaryBeamError("give freq_hz: the image has no ref_freq_hz attribute")
        freq_hz = image_xds.attrs["ref_freq_hz"]
    freqs = np.atleast_1d(np.asarray(freq_hz, dtype=np.float64))
    if freqs.size == 0 or np.any(~(freqs > 0)):
        raise PrimaryBeamError("frequencies must be positive")
    attrs: dict = {"model": model, "freq_hz": freqs.tolist(),
                   "pointing_rad": pointing.tolist(), "units": "1"}
    ll, mm = np.meshgrid(l, m, indexing="ij")
    valid = ll * ll + mm * mm <= 1.0
    if model in ("gaussian", "airy"):
        if diameter_m is None or not diameter_m > 0:
            raise PrimaryBeamError(f"the {model} beam needs a positive diameter_m")
        ra, dec = radec_of_lm(ll, mm, ra0, dec0)
        rho = angular_separation(pointing[0], pointing[1], ra, dec)[..., None]
        if model == "gaussian":
            p = _beams.gaussian_power(rho, freqs, diameter_m, fwhm_factor=fwhm_factor)
            attrs["fwhm_factor"] = fwhm_factor
        else:
            p = _beams.airy_power(rho, freqs, diameter_m)
        power = p.mean(axis=-1)
        attrs["diameter_m"] = float(diameter_m)
    elif model == "lofar_hba":
        if time_s is None or site_itrf_m is None:
            raise PrimaryBeamError("the lofar_hba beam needs time_s and site_itrf_m")
        times = sample_times(time_s, n_times)
        layouts = _layouts(station, tile_positions_m, element_offsets_m, n_tiles)
        coarse = len(l) > max_grid or len(m) > max_grid
        lc = np.linspace(l[0], l[-1], max_grid) if coarse else l
        mc = np.linspace(m[0], m[-1], max_grid) if coarse else m
        lg, mg = np.meshgrid(lc, mc, indexing="ij")
        ng = np.sqrt(np.clip(1.0 - lg * lg - mg * mg, 0.0, None))
        vec = np.stack([lg, mg, ng], axis=-1).reshape(-1, 3) @ uvw_axes(ra0, dec0)
        p = _lofar_power(vec, pointing, freqs, times, site_itrf_m, layouts,
                         element_height_m).reshape(lg.shape)
        power = _interp_grid(p, lc, mc, l, m) if coarse else p
        attrs.update(time_s=times.tolist(), n_layouts=len(layouts),
                     element_height_m=element_height_m)
    else:
        raise PrimaryBeamError(f"unknown beam model {model!r}: expected gaussian, airy or "
                               "lofar_hba")
    power = np.where(valid, power, np.nan)
    return xr.DataArray(power, dims=("l", "m"), coords={"l": l, "m": m}, name="PB", attrs=attrs)


# ----------------------------------------------------------------------------- correction


def pbcor(image_xds: xr.Dataset, beam, *, cutoff: float = 0.2,
          variables: Sequence[str] = ("RESTORED", "MODEL")) -> xr.Dataset:
    """Primary-beam corrected images: ``X_PBCOR = X / PB`` where ``PB >= cutoff``, else NaN.

    Parameters
    ----------
    image_xds : xarray.Dataset
        A daskcal image.
    beam : xarray.DataArray or ndarray, shape (n_l, n_m)
        Power beam on the image's grid (:func:`beam_image`).
    cutoff : float
        Lowest beam value kept, in (0, 1].
    variables : sequence of str
        Images to correct (those missing from ``image_xds`` are skipped).

    Returns
    -------
    xarray.Dataset
        ``image_xds`` plus ``PB`` and ``{name}_PBCOR`` for each corrected image (same
        units); attr ``pb_cutoff``.
    """
    if not 0 < cutoff <= 1:
        raise PrimaryBeamError(f"cutoff must be in (0, 1], got {cutoff}")
    shape = (image_xds.sizes["l"], image_xds.sizes["m"])
    pb = np.asarray(beam.values if isinstance(beam, xr.DataArray) else beam, dtype=np.float64)
    if pb.shape != shape:
        raise PrimaryBeamError(f"beam has shape {pb.shape}, the image {shape}")
    keep = np.isfinite(pb) & (pb >= cutoff)
    safe = np.where(keep, pb, 1.0)
    out = image_xds.copy()
    battrs = dict(beam.attrs) if isinstance(beam, xr.DataArray) else {}
    out["PB"] = (("l", "m"), pb, {**battrs, "units": "1"})
    for name in variables:
        if name not in image_xds:
            continue
        x = np.asarray(image_xds[name].values, dtype=np.float64)
        out[f"{name}_PBCOR"] = (("l", "m"), np.where(keep, x / safe, np.nan),
                                dict(image_xds[name].attrs))
    out.attrs["pb_cutoff"] = float(cutoff)
    return out


def primary_beam(image_xds: xr.Dataset, node: xr.DataTree,
                 config: PrimaryBeamConfig | dict | None = None) -> xr.Dataset:
    """Beam and primary-beam correction of an image of one partition.

    Times, frequencies (``config.n_freqs`` spread over the band), the site (mean antenna
    position), the default diameter (median ``ANTENNA_DISH_DIAMETER``) and the pointing
    (the field's phase centre) are read from the partition ``node``.

    Returns
    -------
    xarray.Dataset
        :func:`pbcor` of ``image_xds`` with the beam of ``config``.
    """
    from daskcal.data.model import ANTENNA_NODE, FIELD_NODE

    cfg = config if isinstance(config, PrimaryBeamConfig) else \
        PrimaryBeamConfig.model_validate(config or {})
    vis_xds = node.to_dataset(inherit=False)
    ant = node[ANTENNA_NODE].to_dataset(inherit=False)
    pos = np.asarray(ant["ANTENNA_POSITION"].values, dtype=np.float64)
    diameter = cfg.diameter_m
    if diameter is None and "ANTENNA_DISH_DIAMETER" in ant:
        diameter = float(np.median(ant["ANTENNA_DISH_DIAMETER"].values))
    freq = np.asarray(vis_xds["frequency"].values, dtype=np.float64)
    idx = np.unique(np.round(np.linspace(0, freq.size - 1, min(cfg.n_freqs, freq.size))))
    fx = node[FIELD_NODE].to_dataset(inherit=False)
    pc = np.asarray(fx["FIELD_PHASE_CENTER_DIRECTION"].values, np.float64).reshape(-1, 2)[0]
    beam = beam_image(image_xds, model=cfg.model, diameter_m=diameter,
                      fwhm_factor=cfg.fwhm_factor, freq_hz=freq[idx.astype(int)],
                      pointing_rad=pc, time_s=vis_xds["time"].values,
                      site_itrf_m=pos.mean(axis=0), station=cfg.station, n_tiles=cfg.n_tiles,
                      n_times=cfg.n_times, element_height_m=cfg.element_height_m)
    return pbcor(image_xds, beam, cutoff=cfg.cutoff)


__all__ = ["PrimaryBeamConfig", "PrimaryBeamError", "beam_image", "j2000_to_enu", "pbcor",
           "pixel_directions", "primary_beam", "sample_times"]
