"""Snapshot series: one image per time interval per subband, as one lazy Dask graph.

This is the solar pipeline's mode (e.g. 43 200 one-second images in 12 h, for every
subband). The data of a partition are rechunked so that one chunk is one (interval,
subband) block -- ``n_per`` integrations (``round(interval_s / integration)``, at least
one; the last interval may be shorter) x every baseline x ``chan_per_subband`` channels
(the last subband may be narrower) -- and :func:`dask.array.blockwise` maps one task
over each block. A task:

1. forms the product (Stokes I or one correlation, :func:`~daskcal.stages.imaging.select_product`);
2. weights it (:func:`daskcal.kernels.weighting.imaging_weights`; uniform and Briggs
   densities are those of the snapshot itself, as WSClean's ``-intervals-out``);
3. grids it with the numba gridder (:func:`daskcal.kernels.gridding.dirty_image`, one
   shared plan whose w range is bounded by the longest baseline at the highest
   frequency, so that planning reads no data) and divides by the sum of the imaging
   weights (the PSF peak), giving Jy/beam;
4. with ``niter > 0``: grids the snapshot's PSF (twice the size), runs a Hogbom minor
   cycle on the dirty image against it (image-plane only: no major cycle, no
   degridding), fits the restoring beam and restores.

Outputs are the slices of the blocks' stacked results: nothing is computed until the
caller computes them or writes the dataset (e.g. ``to_zarr``). Memory per task: the
block's data (``n_per x n_bl x chan_per_subband`` samples, ~40 bytes each with weights
and index), the plan's uv grids (``n_planes x nu x nv x 8`` bytes; four times that for
the PSF) and a few images. A block with no usable data gives NaN images.
"""

from __future__ import annotations

import math

import dask.array as da
import numpy as np
import xarray as xr

from daskcal.data.model import ANTENNA_NODE, field_xds_of, quantity_value
from daskcal.kernels import weighting as _w
from daskcal.kernels.deconvolution import fit_beam, hogbom_clean, restore
from daskcal.kernels.gridding import dirty_image, make_plan
from daskcal.stages.gridding import GRIDDER_UVW_SIGN
from daskcal.stages.imaging.config import SnapshotConfig
from daskcal.stages.imaging.masks import robust_rms
from daskcal.stages.imaging.stage import select_product

C_M_S = 299_792_458.0
#: Scalars of the metadata plane (row 0 of the last plane of each block's stack).
_META = ("BEAM_MAJOR", "BEAM_MINOR", "BEAM_PA", "SUM_WEIGHTS", "N_VIS", "N_ITER")


def snapshot_block(uvw, freq, vis, weight, flag, *, plan, plan_psf, cfg: SnapshotConfig):
    """Images of one (interval, subband) block (numpy in, numpy out).

    Parameters
    ----------
    uvw : ndarray, shape (n_t, n_bl, 3)
        Metres (data-model convention).
    freq : ndarray, shape (n_f,)
        Hz.
    vis : ndarray, complex, shape (n_t, n_bl, n_f)
    weight : ndarray, float, shape (n_t, n_bl, n_f)
        Visibility weights.
    flag : ndarray of bool, shape (n_t, n_bl, n_f)
    plan, plan_psf : GriddingPlan
        Image and PSF plans (``divide_by_n=False``); ``plan_psf`` may be None when
        ``cfg.niter == 0``.
    cfg : SnapshotConfig

    Returns
    -------
    ndarray, float64, shape (1, 1, n_products + 1, npix, npix)
        The products of ``cfg.products`` (Jy/beam; MODEL Jy/pixel), then a metadata
        plane whose row 0 starts with the values named in ``_META`` (beam in radians).
    """
    npix, cell = cfg.npix, cfg.cell_rad
    n_prod = len(cfg.products)
    out = np.full((1, 1, n_prod + 1, npix, npix), np.nan)
    meta = out[0, 0, n_prod, 0]
    nf = freq.shape[0]
    u = np.asarray(uvw, dtype=np.float64).reshape(-1, 3)
    v = np.asarray(vis).reshape(-1, nf)
    w = np.asarray(weight, dtype=np.float64).reshape(-1, nf)
    f = np.asarray(flag, dtype=bool).reshape(-1, nf)
    taper = math.radians(cfg.taper_arcsec / 3600.0) if cfg.taper_arcsec else None
    iw = _w.imaging_weights(u, freq, w, f, npix_x=npix, npix_y=npix, pixsize_x_rad=cell,
                            pixsize_y_rad=cell, weighting=cfg.weighting, robust=cfg.robust,
                            taper_fwhm_rad=taper)
    sw = float(iw.sum())
    meta[3], meta[4], meta[5] = sw, float(np.count_nonzero(iw)), 0.0
    if not sw > 0:
        return out
    uf = u * GRIDDER_UVW_SIGN
    vv = np.where(iw > 0, v, 0).astype(np.complex128)
    dirty = dirty_image(uf, freq, vv, iw, plan=plan) / sw
    out[0, 0, 0] = dirty
    if cfg.niter == 0:
        return out
    psf = dirty_image(uf, freq, np.ones_like(vv), iw, plan=plan_psf)
    psf /= psf[npix, npix]
    thr = max(cfg.threshold_jy, (cfg.auto_threshold or 0.0) * robust_rms(dirty))
    model, resid, n = hogbom_clean(dirty, psf, gain=cfg.gain, threshold=thr, niter=cfg.niter)
    out[0, 0, 1], out[0, 0, 2] = model, resid
    try:
        beam = fit_beam(psf, cell, cell)
    except ValueError:  # main lobe under 5 pixels: leave the beam and RESTORED NaN
        meta[5] = n
        return out
    out[0, 0, 3] = restore(model, resid, beam, cell, cell)
    meta[0], meta[1], meta[2], meta[5] = beam.bmaj_rad, beam.bmin_rad, beam.bpa_rad, n
    return out


def _runs(n: int, size: int) -> tuple[int, ...]:
    return (size,) * (n // size) + ((n % size,) if n % size else ())


def _max_baseline_m(node: xr.DataTree, vis_xds: xr.Dataset) -> float:
    if ANTENNA_NODE in node.children:
        pos = np.asarray(node[ANTENNA_NODE].to_dataset(inherit=False)["ANTENNA_POSITION"].values)
        d = pos[:, None, :] - pos[None, :, :]
        return float(np.sqrt((d * d).sum(-1)).max())
    return float(np.nanmax(np.abs(np.asarray(vis_xds["UVW"].values))))


def snapshot_images(node: xr.DataTree, config: SnapshotConfig | dict) -> xr.Dataset:
    """Lazy snapshot images of one partition: one per time interval per subband.

    Parameters
    ----------
    node : xarray.DataTree
        A partition node (visibilities and ``antenna_xds``; the longest baseline bounds
        ``|w|`` so that nothing is read while the graph is built).
    config : SnapshotConfig or dict

    Returns
    -------
    xarray.Dataset
        Dask-backed ``DIRTY`` (and with ``niter > 0`` ``MODEL``, ``RESIDUAL``,
        ``RESTORED``), dims ``(time, subband, l, m)``, one chunk per snapshot;
        ``BEAM_MAJOR, BEAM_MINOR, BEAM_PA`` (rad, NaN without CLEAN), ``SUM_WEIGHTS``,
        ``N_VIS``, ``N_ITER`` dims ``(time, subband)``. Coordinates ``time`` (interval
        centre, unix s), ``time_start``, ``time_end``, ``frequency`` (subband centre, Hz),
        ``frequency_start``, ``frequency_end`` (outer channel edges), ``l, m``.
    """
    cfg = config if isinstance(config, SnapshotConfig) else SnapshotConfig.model_validate(config)
    vis_xds = node.to_dataset(inherit=False)
    times = np.asarray(vis_xds["time"].values, dtype=np.float64)
    freq = np.asarray(vis_xds["frequency"].values, dtype=np.float64)
    dt = quantity_value(vis_xds["time"].attrs.get("integration_time"))
    if dt is None:
        dt = float(np.median(np.diff(times))) if times.size > 1 else cfg.interval_s
    n_per = max(1, round(cfg.interval_s / dt))
    n_sub_ch = cfg.chan_per_subband or freq.size
    tch, fch = _runs(times.size, n_per), _runs(freq.size, n_sub_ch)
    vis, wt, fl = select_product(vis_xds, cfg.data_group, cfg.correlation)
    chunks = (tch, -1, fch)
    vis, wt, fl = (da.asarray(x).rechunk(chunks) for x in (vis, wt, fl))
    uvw = da.asarray(vis_xds["UVW"].data).rechunk((tch, -1, -1))
    freq_d = da.from_array(freq, chunks=(fch,))
    npix, cell = cfg.npix, cfg.cell_rad
    w_max = _max_baseline_m(node, vis_xds) * float(freq.max()) / C_M_S
    kw = dict(w_min=0.0, w_max=w_max, n_vis=n_per * vis.shape[1] * n_sub_ch,
              method=cfg.method, divide_by_n=False)
    plan = make_plan(npix, npix, cell, cell, cfg.epsilon, **kw)
    # with the w term: the minor cycle is the only CLEAN here (no major cycle corrects it)
    plan_psf = (make_plan(2 * npix, 2 * npix, cell, cell, cfg.epsilon, **kw)
                if cfg.niter > 0 else None)
    prods = cfg.products
    stack = da.blockwise(
        snapshot_block, "tspxy", uvw, "tbc", freq_d, "s", vis, "tbs", wt, "tbs", fl, "tbs",
        new_axes={"p": len(prods) + 1, "x": npix, "y": npix}, adjust_chunks={"t": 1, "s": 1},
        concatenate=True, dtype=np.float64, meta=np.empty((0,) * 5), token="snapshot-image",
        plan=plan, plan_psf=plan_psf, cfg=cfg)
    dims = ("time", "subband", "l", "m")
    units = {"DIRTY": "Jy/beam", "MODEL": "Jy/pixel", "RESIDUAL": "Jy/beam",
             "RESTORED": "Jy/beam"}
    data = {k: (dims, stack[:, :, i].astype(cfg.dtype), {"units": units[k]})
            for i, k in enumerate(prods)}
    meta = stack[:, :, len(prods), 0, :len(_META)]
    for i, k in enumerate(_META):
        data[k] = (("time", "subband"), meta[:, :, i],
                   {"units": "rad" if k.startswith("BEAM") else "1"})
    edges = np.cumsum((0,) + tch)
    t0 = times[edges[:-1]] - 0.5 * dt
    t1 = times[edges[1:] - 1] + 0.5 * dt
    fe = np.cumsum((0,) + fch)
    cw = quantity_value(vis_xds["frequency"].attrs.get("channel_width"))
    if cw is None:
        cw = float(np.median(np.abs(np.diff(freq)))) if freq.size > 1 else 0.0
    f0 = np.minimum(freq[fe[:-1]], freq[fe[1:] - 1]) - 0.5 * cw
    f1 = np.maximum(freq[fe[:-1]], freq[fe[1:] - 1]) + 0.5 * cw
    lm = (np.arange(npix) - npix // 2) * cell
    coords = {"time": ("time", 0.5 * (t0 + t1), {"units": "s", "scale": "utc",
                                                 "format": "unix"}),
              "time_start": ("time", t0), "time_end": ("time", t1),
              "frequency": ("subband", np.array([freq[a:b].mean() for a, b in
                                                 zip(fe[:-1], fe[1:], strict=True)]),
                            {"units": "Hz"}),
              "frequency_start": ("subband", f0), "frequency_end": ("subband", f1),
              "subband": np.arange(len(fch)), "l": lm, "m": lm}
    pc = np.asarray(field_xds_of(node)["FIELD_PHASE_CENTER_DIRECTION"].values,
                    dtype=np.float64).reshape(-1, 2)[0]
    attrs = {"type": "snapshot_images", "cell_rad": cell, "phase_centre_rad": pc.tolist(),
             "interval_s": n_per * dt, "integrations_per_snapshot": n_per,
             "correlation": cfg.correlation, "grid_planes": int(plan.grid_shape[0]),
             "config": cfg.model_dump_json()}
    return xr.Dataset(data, coords=coords, attrs=attrs)


__all__ = ["SnapshotConfig", "snapshot_block", "snapshot_images"]
