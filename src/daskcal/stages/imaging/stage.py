"""The ``image`` stage: weights, PSF, restoring beam, CLEAN major/minor cycles, products.

:func:`image` is an **iterative driver**: unlike other stages it computes, once per major
cycle (each cycle's residual image, and the PSF once), because CLEAN needs the residual
in memory to choose the next components. Everything else (selection, weights, gridding
and degridding graphs) is lazy, and the returned products are in-memory images.
"""

from __future__ import annotations

import math
from typing import Literal

import dask
import dask.array as da
import numpy as np
import xarray as xr

from daskcal._compute import compute
from daskcal.data.model import FIELD_NODE
from daskcal.kernels import weighting as _w
from daskcal.kernels.deconvolution import fit_beam, restore
from daskcal.stages.imaging.backends import DaskBackend, lazy_imaging_weights
from daskcal.stages.imaging.config import ImageConfig
from daskcal.stages.imaging.major import NumpyBackend, deconvolve, materialise
from daskcal.stages.imaging.masks import region_mask

_PARALLEL = {"XX": "YY", "RR": "LL"}


def select_product(vis_xds: xr.Dataset, data_group: str = "base", correlation: str = "I"):
    """Visibilities, weights and flags of one product, dims (time, baseline_id, frequency).

    Stokes I is ``(pp + qq) / 2`` with weight ``4 w_p w_q / (w_p + w_q)``, flagged where
    either hand is.
    """
    groups = vis_xds.attrs.get("data_groups", {})
    if data_group not in groups:
        raise ValueError(f"data group {data_group!r} not in {sorted(groups)}")
    g = groups[data_group]
    data = vis_xds[g.get("correlated_data", "VISIBILITY")]
    flag = vis_xds[g.get("flag", "FLAG")]
    wt = vis_xds[g.get("weight", "WEIGHT")].astype(np.float64)
    pols = [str(p) for p in vis_xds["polarization"].values]
    if correlation == "I":
        a = next((p for p in _PARALLEL if p in pols and _PARALLEL[p] in pols), None)
        if a is None:
            raise ValueError(f"Stokes I needs XX and YY or RR and LL, have {pols}")
        b = _PARALLEL[a]
        vis = 0.5 * (data.sel(polarization=a) + data.sel(polarization=b))
        fl = flag.sel(polarization=a) | flag.sel(polarization=b)
        wa, wb = wt.sel(polarization=a), wt.sel(polarization=b)
        w = xr.where((wa > 0) & (wb > 0), 4.0 * wa * wb / (wa + wb).where(wa + wb > 0, 1.0), 0.0)
    elif correlation in pols:
        vis, fl, w = (x.sel(polarization=correlation) for x in (data, flag, wt))
    else:
        raise ValueError(f"correlation {correlation!r} is not 'I' or one of {pols}")
    dims = ("time", "baseline_id", "frequency")
    return tuple(x.transpose(*dims).data for x in (vis, w, fl))


def _weight_kw(cfg: ImageConfig) -> dict:
    return dict(weighting=cfg.weighting, robust=cfg.robust,
                taper_fwhm_rad=(math.radians(cfg.taper_arcsec / 3600.0)
                                if cfg.taper_arcsec else None),
                taper_fwhm_lambda=cfg.taper_lambda)


def _autocorrelations(vis_xds: xr.Dataset) -> np.ndarray:
    """Boolean (n_baseline,): ``True`` for autocorrelation baselines."""
    for a, b in (("baseline_antenna1_name", "baseline_antenna2_name"),
                 ("antenna1", "antenna2")):
        if a in vis_xds.coords and b in vis_xds.coords:
            return np.asarray(vis_xds[a].values == vis_xds[b].values, dtype=bool)
    return np.zeros(vis_xds.sizes["baseline_id"], dtype=bool)


def _noise_sums(iw, w):
    """``(sum iw, sum iw^2 / w, n used)`` over used samples (numpy or lazy Dask)."""
    used = (iw > 0) & (w > 0)
    mod = da if isinstance(iw, da.Array) else np
    q = mod.where(used, iw * iw / mod.where(used, w, 1.0), 0.0)
    return (mod.where(used, iw, 0.0).sum(), q.sum(), used.sum())


def _theoretical_noise(sum_iw, sum_q, n_used) -> float:
    """Image noise (Jy/beam) of ``sum iw V / sum iw`` for ``var(Re V) = 1 / w``: the
    thermal noise when ``WEIGHT = 1 / sigma^2`` (sigma per real part, Jy); NaN if unused.
    """
    return float(np.sqrt(sum_q) / sum_iw) if n_used and sum_iw > 0 else float("nan")


def _phase_centre(node) -> tuple[float, float]:
    fx = node[FIELD_NODE].to_dataset(inherit=False)
    pc = np.asarray(fx["FIELD_PHASE_CENTER_DIRECTION"].values, dtype=np.float64).reshape(-1, 2)
    return float(pc[0, 0]), float(pc[0, 1])


def _max_w(node, vis_xds) -> float:
    if isinstance(node, xr.DataTree) and "antenna_xds" in node.children:
        pos = np.asarray(node["antenna_xds"].to_dataset(inherit=False)["ANTENNA_POSITION"].values)
        d = pos[:, None, :] - pos[None, :, :]
        return float(np.sqrt((d * d).sum(-1)).max())
    return float(np.nanmax(np.abs(np.asarray(vis_xds["UVW"].values))))


def image(node: xr.DataTree, config: ImageConfig | dict, *, mask: np.ndarray | None = None,
          backend: Literal["dask", "numpy"] = "dask") -> xr.Dataset:
    """Image and deconvolve one partition (MFS Stokes I by default).

    Parameters
    ----------
    node : xarray.DataTree
        A partition node (visibility dataset with ``antenna_xds`` and
        ``field_and_source_base_xds`` children).
    config : ImageConfig or dict
    mask : ndarray of bool, shape (npix, npix), optional
        User mask (axis 0 ``l``), combined (``and``) with ``config.mask`` regions.
    backend : {"dask", "numpy"}
        ``numpy`` loads the data and grids in memory (small data); ``dask`` grids
        lazily per chunk and computes one residual per major cycle.

    Returns
    -------
    xarray.Dataset
        ``DIRTY, RESIDUAL, RESTORED`` (Jy/beam), ``MODEL`` (Jy/pixel), dims ``(l, m)``
        (axis 0 ``l`` east, axis 1 ``m`` north), ``PSF`` (peak 1, dims ``(l_psf, m_psf)``,
        twice the size); attrs ``bmaj_rad, bmin_rad, bpa_rad`` (fitted restoring beam),
        ``phase_centre_rad``, ``cell_rad``, ``ref_freq_hz``, ``n_iter``, ``n_major``,
        ``threshold_jy``, ``history``, ``stop_reason`` (why CLEAN stopped), ``sum_weights``
        (the PSF peak),
        ``theoretical_noise_jy`` (``sqrt(sum w_img^2 / w) / sum w_img``, Jy/beam: the thermal
        noise of the dirty and residual images when ``WEIGHT = 1 / sigma^2``) and ``n_vis``
        (samples imaged).
    """
    cfg = config if isinstance(config, ImageConfig) else ImageConfig.model_validate(config)
    vis_xds = node.to_dataset(inherit=False)
    npix, cell = cfg.npix, cfg.cell_rad
    pc = _phase_centre(node)
    vis, wt, fl = select_product(vis_xds, cfg.data_group, cfg.correlation)
    auto = _autocorrelations(vis_xds)
    if auto.any():  # zero spacings of total power: never imaged (as WSClean and CASA)
        fl = fl | auto[None, :, None]
    freq = vis_xds["frequency"].values
    uvw = vis_xds["UVW"].data
    if backend == "numpy":
        # one computation: the columns share their reads
        uvw_n, v, w, f = compute(uvw, vis, wt, fl)
        uvw_n = np.asarray(uvw_n).reshape(-1, 3)
        v, w, f = (np.asarray(x).reshape(-1, freq.size) for x in (v, w, f))
        iw = _w.imaging_weights(uvw_n, freq, w, f, npix_x=npix, npix_y=npix,
                                pixsize_x_rad=cell, pixsize_y_rad=cell, **_weight_kw(cfg))
        be = NumpyBackend(uvw_n, freq, np.where(iw > 0, v, 0), iw, npix, cell, cfg.epsilon,
                          cfg.method)
        stats = _noise_sums(iw, w)
    elif backend == "dask":
        vis_d = vis if isinstance(vis, da.Array) else da.from_array(vis)
        fch = (vis_d.chunks[2],)
        wt_d = da.asarray(wt).rechunk(vis_d.chunks)
        fl_d = da.asarray(fl).rechunk(vis_d.chunks)
        uvw_d = da.asarray(uvw)
        freq_d = da.from_array(freq, chunks=fch)
        iw = lazy_imaging_weights(uvw_d, freq_d, wt_d, fl_d, npix=npix, cell_rad=cell,
                                  **_weight_kw(cfg))
        vis_d = da.where(iw > 0, vis_d, 0).astype(np.complex128)
        nbytes = vis_d.nbytes + iw.nbytes + wt_d.nbytes + uvw_d.nbytes
        max_w = None
        if nbytes <= cfg.persist_mb * 1e6:  # read and weight once, not once per major cycle
            vis_d, iw, wt_d, uvw_d = dask.persist(vis_d, iw, wt_d, uvw_d)
            # the data's own |w| bound (fewer w planes than the longest baseline's)
            max_w = float(da.nanmax(da.where((iw > 0).any(axis=2), abs(uvw_d[..., 2]),
                                             0.0)).compute())
        be = DaskBackend(uvw_d, freq_d, vis_d, iw, npix, cell,
                         _max_w(node, vis_xds) if max_w is None else max_w,
                         cfg.epsilon, cfg.method)
        stats = _noise_sums(iw, wt_d)
    else:
        raise ValueError(f"backend must be 'dask' or 'numpy', got {backend!r}")
    psf, stats = compute(be.psf(), stats)
    psf = materialise(psf)
    noise = _theoretical_noise(*stats)
    norm = psf[npix, npix]
    user = np.ones((npix, npix), dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    if cfg.mask:
        user = user & region_mask(cfg.mask, npix, cell, pc)
    dirty0 = materialise(be.dirty(be.data))
    res = deconvolve(be.dirty, be.predict, be.data, psf, cfg,
                     mask=None if (mask is None and not cfg.mask) else user,
                     dirty_image0=dirty0, noise_jy=noise,
                     residual_of=getattr(be, "residual", None))
    psf_n = psf / norm
    beam = fit_beam(psf_n, cell, cell)
    restored = restore(res.model, res.residual, beam, cell, cell)
    lm = (np.arange(npix) - npix // 2) * cell
    lm2 = (np.arange(2 * npix) - npix) * cell
    return xr.Dataset(
        {"DIRTY": (("l", "m"), dirty0 / norm, {"units": "Jy/beam"}),
         "MODEL": (("l", "m"), res.model, {"units": "Jy/pixel"}),
         "RESIDUAL": (("l", "m"), res.residual, {"units": "Jy/beam"}),
         "RESTORED": (("l", "m"), restored, {"units": "Jy/beam"}),
         "PSF": (("l_psf", "m_psf"), psf_n, {"units": "1"})},
        coords={"l": lm, "m": lm, "l_psf": lm2, "m_psf": lm2},
        attrs={"type": "image", "bmaj_rad": beam.bmaj_rad, "bmin_rad": beam.bmin_rad,
               "bpa_rad": beam.bpa_rad, "phase_centre_rad": list(pc), "cell_rad": cell,
               "ref_freq_hz": float(np.mean(freq)), "bandwidth_hz": float(np.ptp(freq)) or 0.0,
               "n_iter": res.n_iter, "n_major": res.n_major, "threshold_jy": res.threshold,
               "sum_weights": float(norm), "correlation": cfg.correlation,
               "theoretical_noise_jy": noise, "n_vis": int(stats[2]),
               "history": res.history, "stop_reason": res.stop,
               "config": cfg.model_dump_json()})


__all__ = ["image", "select_product"]
