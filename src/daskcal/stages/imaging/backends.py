"""Dask backend of the major cycle: lazy weighting, gridding and degridding over chunks.

Gridding and degridding are those of :mod:`daskcal.stages.gridding` (a tree reduction of
partial uv grids, one FFT set; degridding per chunk). ``u`` and ``v`` are negated on the way in
(the gridder's convention, see :class:`~daskcal.stages.imaging.major.NumpyBackend`), and the
plan uses ``divide_by_n=False`` (model pixels in Jy/pixel). Imaging weights are lazy too:
the uv density is a sum of per-chunk densities; each chunk is then weighted with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import dask.array as da
import numpy as np

from daskcal.kernels import weighting as _w
from daskcal.kernels.gridding import make_plan
from daskcal.stages import gridding as _g
from daskcal.stages.gridding import GRIDDER_UVW_SIGN

C_M_S = 299_792_458.0


def _density_block(uvw, freq, weight, flag, npix, cell):
    nf = freq.shape[0]
    d = _w.uv_density(uvw.reshape(-1, 3), freq, weight.reshape(-1, nf), flag.reshape(-1, nf),
                      npix_x=npix, npix_y=npix, pixsize_x_rad=cell, pixsize_y_rad=cell)
    return d[None, None, None]


def _weight_block(uvw, freq, weight, flag, density, npix, cell, kw):
    nf = freq.shape[0]
    out = _w.imaging_weights(uvw.reshape(-1, 3), freq, weight.reshape(-1, nf),
                             flag.reshape(-1, nf), npix_x=npix, npix_y=npix,
                             pixsize_x_rad=cell, pixsize_y_rad=cell, density=density, **kw)
    return out.reshape(weight.shape)


def lazy_imaging_weights(uvw, freq, weight, flag, *, npix: int, cell_rad: float,
                         **kw) -> da.Array:
    """Imaging weights (time, baseline, frequency) of chunked data, lazily.

    Parameters
    ----------
    uvw : dask array, shape (n_time, n_bl, 3)
    freq : dask array, shape (n_chan,), chunked as ``weight`` along frequency
    weight, flag : dask arrays, shape (n_time, n_bl, n_chan)
    npix, cell_rad
        Image geometry (defines the uv cells).
    **kw
        ``weighting, robust, taper_fwhm_rad, taper_fwhm_lambda`` of
        :func:`daskcal.kernels.weighting.imaging_weights`.
    """
    uvw = uvw.rechunk((weight.chunks[0], weight.chunks[1], -1))
    dens = None
    if kw.get("weighting", "briggs") != "natural":
        parts = da.blockwise(_density_block, "tbfuv", uvw, "tbx", freq, "f", weight, "tbf",
                             flag, "tbf", npix=npix, cell=cell_rad,
                             new_axes={"u": npix, "v": npix},
                             adjust_chunks={"t": 1, "b": 1, "f": 1}, concatenate=True,
                             dtype=np.float64, meta=np.empty((0,) * 5))
        dens = parts.sum(axis=(0, 1, 2))
    return da.blockwise(_weight_block, "tbf", uvw, "tbx", freq, "f", weight, "tbf", flag, "tbf",
                        dens, None if dens is None else "uv", npix=npix, cell=cell_rad, kw=kw,
                        concatenate=True, dtype=np.float64, meta=np.empty((0, 0, 0)))


@dataclass
class DaskBackend:
    """Lazy ``dirty`` / ``predict`` over chunked data (arrays (time, baseline, frequency)).

    Parameters
    ----------
    uvw : dask array, shape (n_time, n_bl, 3)
        Metres (data-model convention).
    freq : dask array, shape (n_chan,)
        Hz, chunked as ``vis`` along frequency.
    vis : dask array, complex, shape (n_time, n_bl, n_chan)
    weight : dask array, float, shape (n_time, n_bl, n_chan)
        Imaging weights.
    npix, cell_rad, epsilon, method
        Image geometry and gridding accuracy.
    max_w_m : float
        Bound on ``|w|``, metres (e.g. the longest baseline), so that no data are read
        to plan.
    split_every : int
        Fan-in of the grid reduction.
    reduce : {"auto", "grid", "image"}
        What the tree reduction adds (:func:`daskcal.stages.gridding.dirty_image`): uv
        grids (one FFT set in all; best with many chunks) or per-chunk images (no
        ``n_planes x nu x nv`` grids to move and add; best with one or two chunks, the
        ``"auto"`` choice).
    """

    uvw: Any
    freq: Any
    vis: Any
    weight: Any
    npix: int
    cell_rad: float
    max_w_m: float
    epsilon: float = 1e-5
    method: str = "wstack"
    split_every: int = 4
    reduce: str = "auto"
    plan: Any = field(init=False, repr=False)
    plan_psf: Any = field(init=False, repr=False)

    def __post_init__(self):
        self.uvw = self.uvw * GRIDDER_UVW_SIGN
        f_max = float(np.max(np.asarray(self.freq)))
        kw = dict(w_min=0.0, w_max=self.max_w_m * f_max / C_M_S,
                  n_vis=int(np.prod(self.vis.shape)), method=self.method, divide_by_n=False)
        self.plan = make_plan(self.npix, self.npix, self.cell_rad, self.cell_rad, self.epsilon,
                              **kw)
        self.plan_psf = _g.psf_plan(self.npix, self.cell_rad, self.epsilon, n_vis=kw["n_vis"],
                                    method=self.method)
        self.used = (self.weight > 0).astype(np.float64)
        if self.reduce == "auto":
            self.reduce = "image" if self.vis.npartitions <= 2 else "grid"
        if self.reduce not in ("grid", "image"):
            raise ValueError(f"reduce must be 'auto', 'grid' or 'image', got {self.reduce!r}")

    @property
    def data(self):
        """The visibilities to deconvolve (lazy)."""
        return self.vis

    def dirty(self, vis) -> da.Array:
        """Lazy weighted dirty image (unnormalised), shape (npix, npix)."""
        return _g.dirty_image(self.uvw, self.freq, vis, self.weight, plan=self.plan,
                              reduce=self.reduce, split_every=self.split_every)

    def predict(self, model) -> da.Array:
        """Lazy visibilities of a model (Jy/pixel), shape (n_time, n_bl, n_chan)."""
        out = _g.predict_vis(np.asarray(model, dtype=np.float64), self.uvw, self.freq,
                             self.used, plan=self.plan)
        return out.rechunk(self.vis.chunks)

    def psf(self) -> da.Array:
        """Lazy unnormalised PSF, shape (2 npix, 2 npix)."""
        ones = da.ones_like(self.vis)
        return _g.dirty_image(self.uvw, self.freq, ones, self.weight, plan=self.plan_psf,
                              reduce=self.reduce, split_every=self.split_every)


__all__ = ["DaskBackend", "lazy_imaging_weights"]
