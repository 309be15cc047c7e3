"""Spectral cubes: one image per output channel on a user-defined spectral axis, plus MFS.

The spectral axis
-----------------
Output channels are given by ``nchan``, ``start`` and ``width`` either in frequency (Hz)
or in velocity (km/s, radio ``v = c (f0 - f) / f0`` or optical ``v = c (f0 - f) / f``
convention, with the rest frequency ``f0``), in one of three frames: ``TOPO`` (the
telescope's, i.e. the data's own), ``LSRK`` (kinematic local standard of rest) or
``BARY`` (solar-system barycentre). Channel ``j`` is centred on ``start + j width`` and
covers ``start + (j -+ 1/2) width`` in the axis' own unit (so a velocity channel is a
velocity interval; with the optical convention its frequency width varies).

Frame conversion and channel assignment
---------------------------------------
A frame changes the observed frequencies by a Doppler factor that is the same for every
frequency: ``f_frame = k(t) f_topo``. ``k`` is computed with astropy
(:class:`~astropy.coordinates.SpectralCoord`, ``with_observer_stationary_relative_to``)
for an observer at the array's mean ITRF antenna position (from ``antenna_xds``, not a
site-name lookup) looking at the phase centre, at nodes at most ``node_spacing_s`` apart
across the observation, and interpolated linearly in time (the diurnal term is a
sinusoid of period one day: the interpolation error at 10-minute nodes is below 1 m/s).
IERS downloads are off; times outside astropy's bundled tables are an error.

With ``conversion="per_time"`` (the default) every input sample ``(t, k)`` goes to the
output channel whose interval contains ``k(t) f_k`` (nearest-neighbour assignment of
whole input channels by their centre, as CASA's ``interpolation="nearest"``); with
``"mid_time"`` one factor, that of the middle of the observation, serves all times.
Samples outside every output channel are dropped. An output channel without samples is
a NaN plane (its beam NaN), not an error.

Imaging
-------
Each output channel is imaged by :func:`daskcal.stages.imaging.image` on a view of the
partition restricted to the input channels that contribute to it, with the samples that
belong elsewhere flagged (so weighting, including Briggs' density, is per output
channel, CASA's ``perchanweightdensity=True``); channels are imaged one after the other,
so one output channel's gridding is in flight at a time. The continuum (MFS) image is
``image()`` of all the data.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import xarray as xr

from daskcal.data.model import ANTENNA_NODE, field_xds_of, quantity_value
from daskcal.stages.imaging.config import CubeConfig
from daskcal.stages.imaging.stage import image

#: Speed of light, km/s.
C_KM_S = 299_792.458
#: FITS ``SPECSYS`` values of the frames.
SPECSYS = {"TOPO": "TOPOCENT", "LSRK": "LSRK", "BARY": "BARYCENT"}
_IMAGE_VARS = ("DIRTY", "MODEL", "RESIDUAL", "RESTORED")


# ----------------------------------------------------------------------------- frames


def array_centre_itrf(node: xr.DataTree) -> np.ndarray:
    """Mean ITRF position of the antennas of a partition, metres, shape (3,)."""
    ant = node[ANTENNA_NODE].to_dataset(inherit=False)
    return np.asarray(ant["ANTENNA_POSITION"].values, dtype=np.float64).reshape(-1, 3).mean(0)


def doppler_factors(time_s, site_itrf_m, phase_centre_rad, frame: str, *,
                    node_spacing_s: float = 600.0) -> np.ndarray:
    """Factors ``k(t)`` with ``f_frame = k(t) f_topo`` for a source at the phase centre.

    Parameters
    ----------
    time_s : array, shape (n_time,)
        Unix seconds (UTC).
    site_itrf_m : array, shape (3,)
        Observer position, geocentric ITRF, metres.
    phase_centre_rad : (float, float)
        RA, Dec (J2000/ICRS), radians.
    frame : {"TOPO", "LSRK", "BARY"}
    node_spacing_s : float
        Largest spacing of the astropy evaluations (linear interpolation between them).

    Returns
    -------
    ndarray, float64, shape (n_time,)
    """
    t = np.atleast_1d(np.asarray(time_s, dtype=np.float64))
    if frame == "TOPO":
        return np.ones_like(t)
    if frame not in SPECSYS:
        raise ValueError(f"frame must be one of {sorted(SPECSYS)}, got {frame!r}")
    import astropy.units as u
    from astropy.coordinates import EarthLocation, SkyCoord, SpectralCoord
    from astropy.time import Time
    from astropy.utils import iers

    iers.conf.auto_download = False
    lo, hi = float(t.min()), float(t.max())
    n_node = max(2, math.ceil((hi - lo) / node_spacing_s) + 1) if hi > lo else 1
    nodes = np.linspace(lo, hi, n_node)
    xyz = np.asarray(site_itrf_m, dtype=np.float64)
    loc = EarthLocation.from_geocentric(xyz[0], xyz[1], xyz[2], unit=u.m)
    target = SkyCoord(ra=phase_centre_rad[0] * u.rad, dec=phase_centre_rad[1] * u.rad,
                      frame="icrs", distance=1e6 * u.kpc, pm_ra_cosdec=0 * u.mas / u.yr,
                      pm_dec=0 * u.mas / u.yr, radial_velocity=0 * u.km / u.s)
    to = {"LSRK": "lsrk", "BARY": "icrs"}[frame]
    k = np.empty(n_node)
    for i, tn in enumerate(nodes):
        obs = loc.get_gcrs(obstime=Time(tn, format="unix", scale="utc"))
        sc = SpectralCoord(1.0 * u.GHz, observer=obs, target=target)
        k[i] = sc.with_observer_stationary_relative_to(to).to_value(u.GHz)
    return np.interp(t, nodes, k) if n_node > 1 else np.full_like(t, k[0])


# ----------------------------------------------------------------------------- the axis


def _to_axis(freq_hz, cfg: CubeConfig) -> np.ndarray:
    """Frequencies (Hz) to the axis' unit (Hz or km/s)."""
    f = np.asarray(freq_hz, dtype=np.float64)
    if cfg.spectral_axis == "frequency":
        return f
    f0 = cfg.rest_freq_hz
    if cfg.velocity_convention == "radio":
        return C_KM_S * (f0 - f) / f0
    return C_KM_S * (f0 - f) / f


def _from_axis(x, cfg: CubeConfig) -> np.ndarray:
    """Axis values (Hz or km/s) to frequencies, Hz."""
    x = np.asarray(x, dtype=np.float64)
    if cfg.spectral_axis == "frequency":
        return x
    f0 = cfg.rest_freq_hz
    if cfg.velocity_convention == "radio":
        return f0 * (1.0 - x / C_KM_S)
    return f0 / (1.0 + x / C_KM_S)


def output_axis(cfg: CubeConfig, freq_in_frame_hz) -> tuple[np.ndarray, float, int]:
    """``(centres, width, nchan)`` of the output axis in its unit, defaults filled in.

    Parameters
    ----------
    cfg : CubeConfig
    freq_in_frame_hz : array, shape (n_chan_in,)
        Input channel centres converted to the output frame (at mid-time), Hz.
    """
    f = np.asarray(freq_in_frame_hz, dtype=np.float64)
    width = cfg.width
    if width is None:
        width = float(np.median(np.diff(f))) if f.size > 1 else 1.0
    start = float(f[0]) if cfg.start is None else cfg.start
    nchan = cfg.nchan
    if nchan is None:
        nchan = max(1, int(math.floor((f[-1] - start) / width + 0.5)) + 1)
    return start + width * np.arange(nchan), float(width), int(nchan)


def assign_channels(freq_topo_hz, factors, cfg: CubeConfig, start: float, width: float,
                    nchan: int) -> np.ndarray:
    """Output channel of every input sample ``(time, channel)``; -1 outside the axis.

    Parameters
    ----------
    freq_topo_hz : array, shape (n_chan_in,)
    factors : array, shape (n_time,)
        Doppler factors (:func:`doppler_factors`).
    cfg, start, width, nchan
        The axis (unit of ``cfg.spectral_axis``).

    Returns
    -------
    ndarray, int64, shape (n_time, n_chan_in)
    """
    x = _to_axis(np.asarray(factors)[:, None] * np.asarray(freq_topo_hz)[None, :], cfg)
    j = np.floor((x - (start - 0.5 * width)) / width).astype(np.int64)
    return np.where((j >= 0) & (j < nchan), j, -1)


# ----------------------------------------------------------------------------- imaging


def _channel_node(node: xr.DataTree, vis_xds: xr.Dataset, flag_var: str, sel: np.ndarray,
                  keep: np.ndarray | None) -> xr.DataTree:
    """A partition view with input channels ``sel`` and samples outside ``keep`` flagged."""
    sub = vis_xds.isel(frequency=sel)
    if keep is not None:
        m = xr.DataArray(keep[:, sel], dims=("time", "frequency"))
        sub[flag_var] = sub[flag_var] | ~m
    tree = {"/": sub}
    for name, child in node.children.items():
        tree[name] = child.to_dataset(inherit=False)
    return xr.DataTree.from_dict(tree)


def _phase_centre(node: xr.DataTree) -> tuple[float, float]:
    pc = np.asarray(field_xds_of(node)["FIELD_PHASE_CENTER_DIRECTION"].values, dtype=np.float64)
    return float(pc.reshape(-1, 2)[0, 0]), float(pc.reshape(-1, 2)[0, 1])


def _obs_start(vis_xds: xr.Dataset) -> float:
    t = np.asarray(vis_xds["time"].values, dtype=np.float64)
    dt = quantity_value(vis_xds["time"].attrs.get("integration_time"), 0.0)
    return float(t.min() - 0.5 * dt)


def image_cube(node: xr.DataTree, config: CubeConfig | dict, *,
               backend: Literal["dask", "numpy"] = "dask") -> xr.Dataset:
    """Image one partition as a spectral cube (Stokes I by default) and its continuum.

    Parameters
    ----------
    node : xarray.DataTree
        A partition node (visibilities, ``antenna_xds``, ``field_and_source_base_xds``).
    config : CubeConfig or dict
    backend : {"dask", "numpy"}
        Passed to :func:`~daskcal.stages.imaging.image` for every channel.

    Returns
    -------
    xarray.Dataset
        ``DIRTY, RESIDUAL, RESTORED`` (Jy/beam) and ``MODEL`` (Jy/pixel), dims
        ``(chan, l, m)`` (NaN planes for empty channels); ``MFS_DIRTY, MFS_RESIDUAL,
        MFS_RESTORED, MFS_MODEL`` dims ``(l, m)`` when ``config.continuum``;
        ``BEAM_MAJOR, BEAM_MINOR, BEAM_PA`` (rad), ``SUM_WEIGHTS``, ``N_SAMPLES`` (input
        (time, channel) cells assigned) and ``N_ITER`` along ``chan``. Coordinates
        ``frequency`` (Hz, output frame) and ``velocity`` (km/s, when a rest frequency is
        given), ``l, m``. Attrs: ``frame``, ``specsys``, ``spectral_axis``,
        ``velocity_convention``, ``rest_freq_hz``, ``channel_width`` (axis unit),
        ``phase_centre_rad``, ``cell_rad``, ``obs_start_unix_s``, ``bmaj_rad, bmin_rad,
        bpa_rad`` (the continuum's beam, or the median channel beam), ``config``.
    """
    cfg = config if isinstance(config, CubeConfig) else CubeConfig.model_validate(config)
    icfg = cfg.image_config()
    vis_xds = node.to_dataset(inherit=False)
    freq = np.asarray(vis_xds["frequency"].values, dtype=np.float64)
    times = np.asarray(vis_xds["time"].values, dtype=np.float64)
    pc = _phase_centre(node)
    fac = doppler_factors(times, array_centre_itrf(node), pc, cfg.frame,
                          node_spacing_s=cfg.node_spacing_s)
    mid = doppler_factors([0.5 * (times.min() + times.max())], array_centre_itrf(node), pc,
                          cfg.frame, node_spacing_s=cfg.node_spacing_s)[0]
    centres, width, nchan = output_axis(cfg, mid * freq)
    start = float(centres[0])
    use = fac if cfg.conversion == "per_time" else np.full_like(fac, mid)
    jj = assign_channels(freq, use, cfg, start, width, nchan)
    flag_var = vis_xds.attrs.get("data_groups", {}).get(cfg.data_group, {}).get("flag", "FLAG")
    npix = cfg.npix
    planes = {k: np.full((nchan, npix, npix), np.nan) for k in _IMAGE_VARS}
    beam = np.full((nchan, 3), np.nan)
    sumw = np.zeros(nchan)
    n_iter = np.zeros(nchan, dtype=np.int64)
    n_samp = np.array([(jj == j).sum() for j in range(nchan)], dtype=np.int64)
    for j in range(nchan):
        hit = jj == j
        if not hit.any():
            continue
        sel = np.flatnonzero(hit.any(axis=0))
        keep = None if np.all(hit[:, sel]) else hit
        try:
            out = image(_channel_node(node, vis_xds, flag_var, sel, keep), icfg,
                        backend=backend)
        except ValueError as exc:
            if "PSF peak is not positive" in str(exc):  # every sample flagged
                continue
            raise
        for k in _IMAGE_VARS:
            planes[k][j] = out[k].values
        beam[j] = out.attrs["bmaj_rad"], out.attrs["bmin_rad"], out.attrs["bpa_rad"]
        sumw[j] = out.attrs["sum_weights"]
        n_iter[j] = out.attrs["n_iter"]
    f_out = _from_axis(centres, cfg)
    lm = (np.arange(npix) - npix // 2) * cfg.cell_rad
    units = {"DIRTY": "Jy/beam", "MODEL": "Jy/pixel", "RESIDUAL": "Jy/beam",
             "RESTORED": "Jy/beam"}
    data = {k: (("chan", "l", "m"), planes[k], {"units": units[k]}) for k in _IMAGE_VARS}
    data.update({
        "BEAM_MAJOR": ("chan", beam[:, 0], {"units": "rad"}),
        "BEAM_MINOR": ("chan", beam[:, 1], {"units": "rad"}),
        "BEAM_PA": ("chan", beam[:, 2], {"units": "rad"}),
        "SUM_WEIGHTS": ("chan", sumw, {"units": "1"}),
        "N_SAMPLES": ("chan", n_samp, {"units": "1"}),
        "N_ITER": ("chan", n_iter, {"units": "1"})})
    coords = {"chan": np.arange(nchan), "l": lm, "m": lm,
              "frequency": ("chan", f_out, {"units": "Hz", "frame": cfg.frame})}
    if cfg.rest_freq_hz is not None:
        vel = C_KM_S * ((cfg.rest_freq_hz - f_out) / cfg.rest_freq_hz
                        if cfg.velocity_convention == "radio"
                        else (cfg.rest_freq_hz - f_out) / f_out)
        coords["velocity"] = ("chan", vel, {"units": "km/s", "frame": cfg.frame,
                                            "convention": cfg.velocity_convention})
    good = np.isfinite(beam[:, 0])
    med = np.median(beam[good], axis=0) if good.any() else np.full(3, np.nan)
    attrs = {"type": "image_cube", "frame": cfg.frame, "specsys": SPECSYS[cfg.frame],
             "spectral_axis": cfg.spectral_axis, "velocity_convention": cfg.velocity_convention,
             "rest_freq_hz": cfg.rest_freq_hz, "channel_width": width,
             "phase_centre_rad": list(pc), "cell_rad": cfg.cell_rad,
             "obs_start_unix_s": _obs_start(vis_xds), "correlation": cfg.correlation,
             "conversion": cfg.conversion, "doppler_factor_mid": float(mid),
             "bmaj_rad": float(med[0]), "bmin_rad": float(med[1]), "bpa_rad": float(med[2]),
             "config": cfg.model_dump_json()}
    if cfg.continuum:
        mfs = image(node, icfg, backend=backend)
        for k in _IMAGE_VARS:
            data[f"MFS_{k}"] = (("l", "m"), mfs[k].values, {"units": units[k]})
        attrs.update(bmaj_rad=mfs.attrs["bmaj_rad"], bmin_rad=mfs.attrs["bmin_rad"],
                     bpa_rad=mfs.attrs["bpa_rad"], mfs_ref_freq_hz=mfs.attrs["ref_freq_hz"],
                     mfs_bandwidth_hz=mfs.attrs["bandwidth_hz"])
    return xr.Dataset(data, coords=coords,
                      attrs={k: v for k, v in attrs.items() if v is not None})


__all__ = ["CubeConfig", "array_centre_itrf", "assign_channels", "doppler_factors",
           "image_cube", "output_axis"]
