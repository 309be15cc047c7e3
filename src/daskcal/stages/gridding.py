"""Gridding and degridding of visibility datasets, lazily, over chunks.

:func:`dirty_image` and :func:`predict_vis` are the Dask twins of
:func:`daskcal.kernels.gridding.dirty_image` / :func:`~daskcal.kernels.gridding.predict_vis`
(same names, same argument order, a shared :class:`~daskcal.kernels.gridding.GriddingPlan`):
each chunk of ``(time, baseline, frequency)`` samples (rows = time x baseline flattened per
chunk) becomes a partial result with :func:`dask.array.blockwise`; partial results are added
by a tree reduction (``sum(split_every=...)``) and the sum is finished in one task.
:func:`make_dirty_image` and :func:`predict_model` do the same for a visibility dataset.
Nothing is computed while the graph is built.

Two reductions (``reduce=``):

``"grid"`` (default)
    Each chunk gives its uv grids (:func:`~daskcal.kernels.gridding.grid_partial`: one per
    w plane for w-stacking, one per Taylor term for w-projection); the sum is transformed
    once (:func:`~daskcal.kernels.gridding.finish_dirty`). Fewest FFTs.
``"image"``
    Each chunk gives its own (corrected) dirty image; images are summed. Small partial
    results, but one set of plane FFTs per chunk: for big w-stacks with few, large chunks.

Memory bound per task (``B`` = bytes of a grid cell: 8 for complex64 grids, 16 when
``plan.double_accum``; ``nu x nv`` the uv grid, ``P = plan.grid_shape[0]`` (w planes or
Taylor terms), ``n`` the samples of a chunk, ``N = npix_x npix_y``):

- gridding, ``reduce="grid"``: ``P nu nv B`` (the partial grids, accumulated in place)
  ``+ 24..40 n`` (the sorted sample index) plus a few tens of kB of tile buffers;
  w-projection adds ``P`` padded work grids of the same size;
- a reduction task: ``(split_every + 1) P nu nv B``;
- the finishing task: ``P nu nv B + nu nv 8`` (FFT work grid) ``+ 8 N`` (image) ``+ 8 N``
  (quarter-image screens and corrections, complex128);
- gridding, ``reduce="image"``: ``nu nv 8`` (one plane) ``+ 16 N + 24..40 n``; reduction
  tasks ``(split_every + 1) 8 N``;
- degridding: ``16 N`` (model and corrected copy) ``+ 8 N`` (screens) ``+ nu nv 8`` (one
  plane; w-projection keeps ``P`` padded grids) ``+ 40 n`` and the chunk's output.

For a 4096^2 image on a 1.3 x oversampled grid with 18 w planes and complex64 grids a
partial stack is ~4 GB: use ``reduce="image"`` (or fewer, larger chunks) for such w-stacks;
w-projection stacks hold only 2-3 Taylor grids.
"""

from __future__ import annotations

from typing import Literal

import dask.array as da
import numpy as np
import xarray as xr
from pydantic import BaseModel, ConfigDict, Field

from daskcal.data.model import add_data_group
from daskcal.kernels import gridding as _k
from daskcal.kernels.gridding import GriddingPlan

#: Speed of light, m/s.
C_M_S = 299_792_458.0
_PARALLEL = {"XX": "YY", "RR": "LL"}


class GriddingConfig(BaseModel):
    """Settings of the gridding stage (image geometry, accuracy, method)."""

    model_config = ConfigDict(extra="forbid")

    npix_x: int = Field(..., ge=16, description="image size along l (even)")
    npix_y: int = Field(..., ge=16, description="image size along m (even)")
    pixsize_x_rad: float = Field(..., gt=0, description="pixel size along l, radians")
    pixsize_y_rad: float = Field(..., gt=0, description="pixel size along m, radians")
    epsilon: float = Field(1e-4, ge=1e-12, lt=0.1, description="requested accuracy")
    method: Literal["wstack", "wproject"] = Field("wstack", description="w handling")
    do_wgridding: bool = Field(True, description="apply the w term")
    divide_by_n: bool = Field(True, description="divide pixels by n (ducc0 convention)")
    double_accum: bool | None = Field(None, description="accumulate grids in complex128 "
                                      "(default: epsilon < 1e-4)")
    reduce: Literal["grid", "image"] = Field("grid", description="sum partial uv grids "
                                             "(one FFT set) or partial images")
    split_every: int = Field(4, ge=2, description="fan-in of the tree reduction")
    correlation: str = Field("I", description="'I' (mean of the parallel hands) or one "
                             "correlation name (e.g. 'XX')")
    data_var: str = Field("VISIBILITY", description="visibility variable to image")


def plan_gridding(config: GriddingConfig, freq_hz, max_w_m: float, n_vis: int) -> GriddingPlan:
    """The kernel plan shared by all chunks.

    Parameters
    ----------
    config : GriddingConfig
    freq_hz : array, shape (n_chan,)
        Channel frequencies, Hz.
    max_w_m : float
        Bound on ``|w|`` of the data, metres (e.g. the longest baseline, which bounds it).
    n_vis : int
        Number of samples (for the cost model).
    """
    f_max = float(np.max(freq_hz))
    w_max = float(max_w_m) * f_max / C_M_S if config.do_wgridding else 0.0
    return _k.make_plan(config.npix_x, config.npix_y, config.pixsize_x_rad,
                        config.pixsize_y_rad, config.epsilon, w_min=0.0, w_max=w_max,
                        n_vis=int(n_vis), method=config.method,
                        do_wgridding=config.do_wgridding, divide_by_n=config.divide_by_n,
                        double_accum=config.double_accum)


def max_baseline_m(antenna_xds: xr.Dataset) -> float:
    """The longest baseline of an array, metres (a bound on ``|w|``)."""
    pos = np.asarray(antenna_xds["ANTENNA_POSITION"].values, dtype=np.float64)
    d = pos[:, None, :] - pos[None, :, :]
    return float(np.sqrt((d * d).sum(-1)).max())


def _as_dask(x):
    return x if isinstance(x, da.Array) else da.from_array(np.asarray(x), chunks=-1)


def _rows(uvw, freq, *blocks):
    nf = freq.shape[0]
    flat = [None if b is None else b.reshape(-1, nf) for b in blocks]
    return (uvw.reshape(-1, 3), freq, *flat)


def _grid_block(uvw, freq, vis, weight, flag, plan, reduce):
    u, f, v, w, fl = _rows(uvw, freq, vis, weight, flag)
    if reduce == "grid":
        out = _k.grid_partial(u, f, v, w, fl, plan=plan)
    else:
        out = _k.dirty_image(u, f, v, w, fl, plan=plan)
    return out[None, None, None]


def _finish_block(grids, plan):
    return _k.finish_dirty(grids, plan=plan)


def _aligned(uvw, vis, weight, flag):
    vis = _as_dask(vis)
    uvw = _as_dask(uvw).rechunk((vis.chunks[0], vis.chunks[1], -1))
    extra = [None if x is None else _as_dask(x).rechunk(vis.chunks) for x in (weight, flag)]
    return uvw, vis, *extra


def dirty_image(uvw, freq, vis, weight=None, flag=None, *, plan: GriddingPlan,
                reduce: Literal["grid", "image"] = "grid", split_every: int = 4) -> da.Array:
    """Lazy dirty image of chunked visibilities (see :func:`daskcal.kernels.gridding.dirty_image`).

    Parameters
    ----------
    uvw : dask or numpy array, shape (n_time, n_bl, 3)
        Metres; rechunked to follow ``vis`` in time and baseline.
    freq : dask or numpy array, shape (n_chan,)
        Hz; its chunks must match those of ``vis`` along frequency (numpy: taken whole).
    vis : dask or numpy array, complex, shape (n_time, n_bl, n_chan)
    weight : array, float, shape (n_time, n_bl, n_chan), optional
        Imaging weights; rechunked to follow ``vis``.
    flag : array of bool, shape (n_time, n_bl, n_chan), optional
    plan : GriddingPlan
        Shared by all chunks (its w range must cover the data).
    reduce : {"grid", "image"}
        What the tree reduction adds (see module docs).
    split_every : int
        Fan-in of the reduction.

    Returns
    -------
    dask.array.Array, float64, shape (npix_x, npix_y), one chunk
    """
    if reduce not in ("grid", "image"):
        raise ValueError(f"reduce must be 'grid' or 'image', got {reduce!r}")
    uvw, vis, weight, flag = _aligned(uvw, vis, weight, flag)
    freq = _as_dask(freq).rechunk((vis.chunks[2],))
    if reduce == "grid":
        lead, dtype = plan.grid_shape, plan.grid_dtype
    else:
        lead, dtype = (plan.npix_x, plan.npix_y), np.dtype(np.float64)
    names = "puv"[: len(lead)] if reduce == "grid" else "lm"
    parts = da.blockwise(
        _grid_block, "tbf" + names,
        uvw, "tbx", freq, "f", vis, "tbf",
        weight, None if weight is None else "tbf",
        flag, None if flag is None else "tbf",
        plan=plan, reduce=reduce, new_axes=dict(zip(names, lead, strict=True)),
        adjust_chunks={"t": 1, "b": 1, "f": 1}, concatenate=True, dtype=dtype,
        meta=np.empty((0,) * (3 + len(lead)), dtype=dtype))
    total = parts.sum(axis=(0, 1, 2), split_every=split_every, dtype=dtype)
    if reduce == "image":
        return total
    return da.map_blocks(_finish_block, total, plan=plan, drop_axis=0,
                         chunks=((plan.npix_x,), (plan.npix_y,)), dtype=np.float64,
                         meta=np.empty((0, 0), dtype=np.float64))


def _predict_block(uvw, freq, weight, flag, image, plan):
    u, f, w, fl = _rows(uvw, freq, weight, flag)
    out = _k.predict_vis(image, u, f, weight=w, flag=fl, plan=plan)
    return out.reshape(uvw.shape[0], uvw.shape[1], freq.shape[0])


def predict_vis(image, uvw, freq, weight=None, flag=None, *, plan: GriddingPlan) -> da.Array:
    """Lazy visibilities of a model image (see :func:`daskcal.kernels.gridding.predict_vis`).

    Parameters
    ----------
    image : dask or numpy array, float, shape (npix_x, npix_y)
        Passed whole to every task.
    uvw : dask or numpy array, shape (n_time, n_bl, 3)
        Chunked along time (and baseline); metres.
    freq : dask or numpy array, shape (n_chan,)
        Chunked along frequency; Hz.
    weight : array, float, shape (n_time, n_bl, n_chan), optional
        Multiplied into the output.
    flag : array of bool, shape (n_time, n_bl, n_chan), optional
        Flagged samples are skipped (0).
    plan : GriddingPlan

    Returns
    -------
    dask.array.Array, ``plan.vis_dtype``, shape (n_time, n_bl, n_chan)
        Chunks: those of ``uvw`` in time and baseline, of ``freq`` in frequency.
    """
    uvw = _as_dask(uvw)
    uvw = uvw.rechunk({2: -1})
    freq = _as_dask(freq)
    chunks = (uvw.chunks[0], uvw.chunks[1], freq.chunks[0])
    extra = [None if x is None else _as_dask(x).rechunk(chunks) for x in (weight, flag)]
    img = _as_dask(image).rechunk(-1)
    return da.blockwise(
        _predict_block, "tbf", uvw, "tbx", freq, "f",
        extra[0], None if extra[0] is None else "tbf",
        extra[1], None if extra[1] is None else "tbf",
        img, "lm", plan=plan, concatenate=True, dtype=plan.vis_dtype,
        meta=np.empty((0, 0, 0), dtype=plan.vis_dtype))


def _selection(vis_xds: xr.Dataset, config: GriddingConfig, weight):
    """Visibilities, weights and flags of the imaged product, (time, baseline_id, frequency)."""
    pols = [str(p) for p in vis_xds["polarization"].values]
    data = vis_xds[config.data_var]
    flag = vis_xds["FLAG"]
    wt = vis_xds["WEIGHT"] if "WEIGHT" in vis_xds else xr.ones_like(flag, dtype=np.float32)
    if config.correlation == "I":
        first = next((p for p in _PARALLEL if p in pols and _PARALLEL[p] in pols), None)
        if first is None:
            raise ValueError(f"Stokes I needs XX and YY or RR and LL, have {pols}")
        a, b = first, _PARALLEL[first]
        vis = 0.5 * (data.sel(polarization=a) + data.sel(polarization=b))
        fl = flag.sel(polarization=a) | flag.sel(polarization=b)
        wa, wb = wt.sel(polarization=a), wt.sel(polarization=b)
        # the weight of (a + b) / 2 for independent noise: 4 wa wb / (wa + wb)
        w_i = xr.where((wa > 0) & (wb > 0), 4.0 * wa * wb / (wa + wb).where(wa + wb > 0, 1.0),
                       0.0)
    elif config.correlation in pols:
        vis = data.sel(polarization=config.correlation)
        fl = flag.sel(polarization=config.correlation)
        w_i = wt.sel(polarization=config.correlation)
    else:
        raise ValueError(f"correlation {config.correlation!r} is not one of {pols} or 'I'")
    if weight is not None:
        w_i = weight
    dims = ("time", "baseline_id", "frequency")
    return (vis.transpose(*dims).data, w_i.transpose(*dims).data.astype(np.float64),
            fl.transpose(*dims).data)


#: Signs turning the data model's UVW into the gridding kernels' (see :func:`_gridder_uvw`).
GRIDDER_UVW_SIGN = np.array([-1.0, -1.0, 1.0])


def psf_plan(npix: int, cell_rad: float, epsilon: float, *, n_vis: int,
             method: str = "wstack") -> GriddingPlan:
    """The gridding plan of a PSF image: ``(2 npix)^2`` pixels, no ``w`` term.

    For imaging with major cycles (:func:`daskcal.stages.imaging.image`): the PSF is the
    minor cycle's shift-invariant model of the instrument's response, and the major
    cycle predicts and grids with the exact ``w`` term. (A minor-cycle-only CLEAN, as
    the snapshot imager's, keeps the ``w``-corrected PSF: nothing corrects its
    model there.) Without the ``w``
    term it is ``sum_k w_k cos(2 pi (u_k l + v_k m))``: a convolution kernel with a
    non-negative spectrum (the weights), so Hogbom/Clark on it cannot diverge, and it
    costs one grid plane instead of the ``w`` planes of a field twice the image's
    size (at 1500^2 pixels and ``|w|`` ~ 1750 wavelengths: ~1 s instead of ~7-13 s).
    Its main lobe (the restoring-beam fit) and peak (the sum of weights) are those of
    the ``w``-corrected PSF of a source at the phase centre: ``w (n - 1)`` is a few
    1e-3 turns one beam away at LOFAR resolutions.

    Parameters
    ----------
    npix : int
        Image size; the PSF has ``2 npix`` pixels a side, peak at ``(npix, npix)``.
    cell_rad : float
        Pixel size, radians.
    epsilon : float
        Gridding accuracy.
    n_vis : int
        Visibilities per gridding call (the planner's cost model).
    method : {"wstack", "wproject"}

    Returns
    -------
    GriddingPlan
        With ``divide_by_n=False`` (pixel fluxes, as the image plans of the imager).
    """
    return _k.make_plan(2 * npix, 2 * npix, cell_rad, cell_rad, epsilon, n_vis=n_vis,
                        method=method, do_wgridding=False, divide_by_n=False)


def _gridder_uvw(uvw):
    """UVW of the data model in the kernels' (ducc0's) convention: u and v negated.

    The data model is the Measurement Set's, ``V = sum B exp(+2 pi i (u l + v m +
    w (n - 1)))`` with ``uvw = X(antenna1) - X(antenna2)`` (:mod:`daskcal.data.model`, the
    DFT kernel, the simulator; checked against CASA's own prediction); the gridding
    kernels compute ``sum I exp(-2 pi i (u l + v m - w (n - 1)))``, so ``(-u, -v, w)``
    goes in. Verified by imaging a DFT-predicted off-centre source with a large w term
    (tests/stages/test_gridding.py) and by WSClean and CASA imaging our Measurement Sets
    (bench/imaging.py).
    """
    return uvw * GRIDDER_UVW_SIGN if isinstance(uvw, da.Array) \
        else np.asarray(uvw) * GRIDDER_UVW_SIGN


def _w_bound(vis_xds: xr.Dataset, max_w_m):
    if max_w_m is not None:
        return float(max_w_m)
    uvw = vis_xds["UVW"].data
    if isinstance(uvw, da.Array):
        raise ValueError("UVW is lazy: pass max_w_m (e.g. max_baseline_m(antenna_xds)) so "
                         "that the plan needs no computation")
    w = np.abs(np.asarray(uvw)[..., 2])
    return float(np.nanmax(w)) if np.isfinite(w).any() else 0.0


def make_dirty_image(vis_xds: xr.Dataset, config: GriddingConfig, *, weight=None,
                     max_w_m: float | None = None) -> xr.DataArray:
    """Lazy dirty image of a visibility partition.

    Parameters
    ----------
    vis_xds : xarray.Dataset
        A visibility partition (``config.data_var``, ``FLAG``, ``WEIGHT``, ``UVW``).
    config : GriddingConfig
    weight : xarray.DataArray, dims (time, baseline_id, frequency), optional
        Imaging weights (natural weights from ``WEIGHT`` if omitted).
    max_w_m : float, optional
        Bound on ``|w|`` in metres; needed when ``UVW`` is dask-backed (the longest
        baseline, :func:`max_baseline_m`, is a bound).

    Returns
    -------
    xarray.DataArray, float64, dims (l, m)
        Coordinates ``l``, ``m`` (direction cosines); attrs give the method, the requested
        and estimated accuracy. Not normalised by the sum of weights.
    """
    vis, wt, fl = _selection(vis_xds, config, weight)
    freq = vis_xds["frequency"].values
    plan = plan_gridding(config, freq, _w_bound(vis_xds, max_w_m), int(np.prod(vis.shape)))
    fchunks = vis.chunks[2] if isinstance(vis, da.Array) else (freq.size,)
    freq_d = da.from_array(freq, chunks=(fchunks,))
    img = dirty_image(_gridder_uvw(vis_xds["UVW"].data), freq_d, vis, wt, fl, plan=plan,
                      reduce=config.reduce, split_every=config.split_every)
    l = (np.arange(plan.npix_x) - plan.npix_x // 2) * plan.pixsize_x
    m = (np.arange(plan.npix_y) - plan.npix_y // 2) * plan.pixsize_y
    return xr.DataArray(img, dims=("l", "m"), coords={"l": l, "m": m}, attrs={
        "method": plan.method, "epsilon": plan.epsilon,
        "accuracy_estimate": plan.accuracy_estimate, "grid_size": [plan.nu, plan.nv],
        "correlation": config.correlation, "units": "Jy (weighted sum, not normalised)"})


def predict_model(vis_xds: xr.Dataset, image, config: GriddingConfig, *,
                  max_w_m: float | None = None, output: str = "VISIBILITY_MODEL",
                  data_group: str = "model") -> xr.Dataset:
    """Add the visibilities of a model image to a partition, lazily.

    ``config.correlation == "I"`` writes the prediction to both parallel hands (cross
    hands 0); a correlation name writes it to that correlation only. Every sample with
    finite ``UVW`` is predicted (flags are not applied to models).

    Parameters
    ----------
    vis_xds : xarray.Dataset
    image : array or xarray.DataArray, shape (npix_x, npix_y)
        Model, Jy per pixel (axis 0 is ``l``).
    config : GriddingConfig
    max_w_m : float, optional
        As for :func:`make_dirty_image`.
    output, data_group : str
        Name of the model variable and of its data group.
    """
    pols = [str(p) for p in vis_xds["polarization"].values]
    targets = ([p for p in pols if p in _PARALLEL or p in _PARALLEL.values()]
               if config.correlation == "I" else [config.correlation])
    if not targets or any(t not in pols for t in targets):
        raise ValueError(f"cannot predict {config.correlation!r} into {pols}")
    freq = vis_xds["frequency"].values
    uvw = _gridder_uvw(vis_xds["UVW"].data)
    n_vis = int(np.prod(vis_xds["FLAG"].shape[:3]))
    plan = plan_gridding(config, freq, _w_bound(vis_xds, max_w_m), n_vis)
    data = vis_xds[config.data_var].data
    fchunks = data.chunks[2] if isinstance(data, da.Array) else (freq.size,)
    uvw_d = _as_dask(uvw)
    tchunks = data.chunks[:2] if isinstance(data, da.Array) else uvw_d.chunks[:2]
    uvw_d = uvw_d.rechunk((tchunks[0], tchunks[1], -1))
    missing = ~da.isfinite(uvw_d).all(axis=2)
    flag = da.broadcast_to(missing[:, :, None], missing.shape + (freq.size,),
                           chunks=(tchunks[0], tchunks[1], fchunks))
    pred = predict_vis(np.asarray(image, dtype=np.float64), uvw_d,
                       da.from_array(freq, chunks=(fchunks,)), None, flag, plan=plan)
    pred = pred.astype(np.complex64)
    zero = da.zeros_like(pred)
    model = da.stack([pred if p in targets else zero for p in pols], axis=3)
    return add_data_group(vis_xds, data_group, output, data=model,
                          description=f"gridded prediction ({plan.method}, "
                                      f"epsilon {plan.epsilon:g})")


__all__ = ["GriddingConfig", "dirty_image", "make_dirty_image", "max_baseline_m", "psf_plan",
           "plan_gridding", "predict_model", "predict_vis"]
