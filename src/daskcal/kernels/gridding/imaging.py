"""Public gridding API: dirty images from visibilities and visibilities from images.

Convention (identical to ``ducc0.wgridder.vis2dirty`` / ``dirty2vis`` with
``do_wgridding=True``, ``divide_by_n=True``, no flips, no centre shift)::

    dirty[i, j] = sum_{row, chan} weight * Re[ V exp(+2 pi i f/c (u l + v m - w (n - 1))) ] / n
    V_pred[row, chan] = weight * sum_{i, j} dirty[i, j] / n exp(-2 pi i f/c (u l + v m - w (n - 1)))

with ``l = (i - npix_x/2) pixsize_x`` (axis 0), ``m = (j - npix_y/2) pixsize_y`` (axis 1),
``n = sqrt(1 - l^2 - m^2)``, ``u, v, w`` in metres and ``f`` in Hz. The sums are not
normalised by the sum of weights. ``predict_vis`` is the exact adjoint of ``dirty_image``
for the same plan (``<A x, y> = <x, A^H y>`` to rounding).

Flagged samples and samples with zero weight are skipped (their uvw is never read, so the
NaN uvw of missing rows is harmless); their predicted visibilities are 0.
"""

from __future__ import annotations

import numpy as np

from daskcal.kernels.gridding import wproject, wstack
from daskcal.kernels.gridding.index import build_index
from daskcal.kernels.gridding.plan import SPEED_OF_LIGHT, GriddingPlan, check_geometry, make_plan


def _validate_vis(uvw_m, freq_hz, vis, weight, flag, *, need_vis: bool):
    uvw = np.asarray(uvw_m)
    freq = np.asarray(freq_hz)
    if uvw.ndim != 2 or uvw.shape[1] != 3 or uvw.dtype.kind != "f":
        raise ValueError(f"uvw_m must be float (n_row, 3), got {uvw.dtype} {uvw.shape}")
    if freq.ndim != 1 or freq.dtype.kind != "f" or not np.all(np.isfinite(freq) & (freq > 0)):
        raise ValueError(f"freq_hz must be positive finite floats (n_chan,), got {freq.shape}")
    shape = (uvw.shape[0], freq.size)
    if need_vis:
        vis = np.asarray(vis)
        if vis.shape != shape or vis.dtype.kind != "c":
            raise ValueError(f"vis must be complex {shape}, got {vis.dtype} {vis.shape}")
        vis = np.ascontiguousarray(vis)
    if weight is not None:
        weight = np.asarray(weight)
        if weight.shape != shape or weight.dtype.kind != "f":
            raise ValueError(f"weight must be float {shape}, got {weight.dtype} {weight.shape}")
        weight = np.ascontiguousarray(weight)
    if flag is not None:
        flag = np.asarray(flag)
        if flag.shape != shape or flag.dtype != np.bool_:
            raise ValueError(f"flag must be bool {shape}, got {flag.dtype} {flag.shape}")
        flag = np.ascontiguousarray(flag)
    return (np.ascontiguousarray(uvw, dtype=np.float64),
            np.ascontiguousarray(freq, dtype=np.float64), vis, weight, flag)


def w_range(uvw_m, freq_hz, flag=None, weight=None) -> tuple[float, float]:
    """Range of ``|w| f / c`` (wavelengths) over the used samples; ``(0, 0)`` if none.

    The gridder mirrors samples with ``w < 0`` (Hermitian symmetry), so a plan needs to
    cover ``|w|`` only.

    Parameters
    ----------
    uvw_m : ndarray, shape (n_row, 3)
    freq_hz : ndarray, shape (n_chan,)
    flag : ndarray of bool, shape (n_row, n_chan), optional
    weight : ndarray, shape (n_row, n_chan), optional
    """
    uvw, freq, _, weight, flag = _validate_vis(uvw_m, freq_hz, None, weight, flag,
                                               need_vis=False)
    used = np.ones((uvw.shape[0], freq.size), dtype=bool)
    if flag is not None:
        used &= ~flag
    if weight is not None:
        used &= weight != 0
    rows = used.any(axis=1)
    if not rows.any():
        return 0.0, 0.0
    w = np.abs(uvw[rows, 2])
    if not np.all(np.isfinite(w)):
        raise ValueError("unflagged samples with non-zero weight have non-finite uvw")
    lo = np.where(used[rows], w[:, None] * freq[None, :], np.inf).min()
    hi = np.where(used[rows], w[:, None] * freq[None, :], -np.inf).max()
    return float(lo / SPEED_OF_LIGHT), float(hi / SPEED_OF_LIGHT)


def _plan_for(plan, uvw, freq, weight, flag, npix_x, npix_y, pixsize_x, pixsize_y, epsilon,
              method, do_wgridding, double_accum, divide_by_n):
    if plan is not None:
        if not isinstance(plan, GriddingPlan):
            raise ValueError("plan must be a GriddingPlan (see make_plan)")
        return plan
    if npix_x is None or pixsize_x is None or epsilon is None:
        raise ValueError("pass either a plan or npix_x/npix_y, pixsize_x/pixsize_y, epsilon")
    check_geometry(npix_x, npix_y, pixsize_x, pixsize_y, epsilon, method)
    w_lo, w_hi = w_range(uvw, freq, flag, weight) if do_wgridding else (0.0, 0.0)
    return make_plan(npix_x, npix_y, pixsize_x, pixsize_y, epsilon, w_min=w_lo, w_max=w_hi,
                     n_vis=uvw.shape[0] * freq.size, method=method, do_wgridding=do_wgridding,
                     divide_by_n=divide_by_n, double_accum=double_accum)


def _index(plan: GriddingPlan, uvw, freq, vis, flag, weight, *, conjugate: bool):
    tap = np.float32 if plan.single else np.float64
    if plan.method == "wproject" and plan.do_wgridding:
        return build_index(uvw, freq, vis, flag, weight, nu=plan.nu, nv=plan.nv,
                           pixsize_x=plan.pixsize_x, pixsize_y=plan.pixsize_y,
                           support=plan.wp_u.support0, phase_shift=plan.r0,
                           conjugate=conjugate, keep_w=True, real_dtype=tap)
    support_w = plan.kernel_w.support if (plan.do_wgridding and plan.kernel_w) else 0
    n_planes = plan.n_planes if plan.do_wgridding else 1
    return build_index(uvw, freq, vis, flag, weight, nu=plan.nu, nv=plan.nv,
                       pixsize_x=plan.pixsize_x, pixsize_y=plan.pixsize_y,
                       support=plan.kernel.support, support_w=support_w, w0=plan.w0,
                       dw=plan.dw, n_planes=n_planes,
                       phase_shift=plan.nshift if plan.do_wgridding else 0.0,
                       conjugate=conjugate, real_dtype=tap, do_wgridding=plan.do_wgridding)


def _engine(plan: GriddingPlan):
    return wproject if (plan.method == "wproject" and plan.do_wgridding) else wstack


def dirty_image(uvw_m, freq_hz, vis, weight=None, flag=None, npix_x=None, npix_y=None,
                pixsize_x_rad=None, pixsize_y_rad=None, epsilon=None, *, method="wstack",
                do_wgridding=True, double_accum=None, divide_by_n=True,
                plan: GriddingPlan | None = None) -> np.ndarray:
    """Dirty image of visibilities (w-stacking or w-projection gridding).

    Parameters
    ----------
    uvw_m : ndarray, float, shape (n_row, 3)
        Baseline coordinates, metres; rows whose samples are all flagged may be NaN.
    freq_hz : ndarray, float, shape (n_chan,)
        Channel frequencies, Hz; each channel is gridded at its own ``uvw f / c``.
    vis : ndarray, complex, shape (n_row, n_chan)
        Visibilities (one correlation or Stokes product), Jy.
    weight : ndarray, float, shape (n_row, n_chan), optional
        Imaging weights multiplied into the visibilities; 0 skips a sample.
    flag : ndarray of bool, shape (n_row, n_chan), optional
        ``True`` skips a sample.
    npix_x, npix_y : int
        Image size (even, >= 16); axis 0 is ``l``.
    pixsize_x_rad, pixsize_y_rad : float
        Pixel sizes, radians.
    epsilon : float
        Requested accuracy, ``[1e-12, 0.1)`` (see :mod:`.plan`).
    method : {"wstack", "wproject"}
    do_wgridding : bool
        Apply the w term; if false, ``w`` is taken as 0 (ducc0's convention).
    double_accum : bool, optional
        Accumulate the grid in complex128 (default: ``epsilon < 1e-4``).
    divide_by_n : bool
        Divide pixels by ``n`` (default, as ducc0).
    plan : GriddingPlan, optional
        A plan from :func:`make_plan` (replaces the geometry and accuracy arguments); the
        w range of the data must lie inside the plan's.

    Returns
    -------
    ndarray, float64, shape (npix_x, npix_y)
        The dirty image (see module docs), not normalised by the sum of weights.
        The plan's accuracy estimate is ``plan.accuracy_estimate`` (pass a plan, or call
        :func:`make_plan` with the same arguments, to read it).
    """
    uvw, freq, vis, weight, flag = _validate_vis(uvw_m, freq_hz, vis, weight, flag,
                                                 need_vis=True)
    plan = _plan_for(plan, uvw, freq, weight, flag, npix_x, npix_y, pixsize_x_rad,
                     pixsize_y_rad, epsilon, method, do_wgridding, double_accum, divide_by_n)
    index = _index(plan, uvw, freq, vis, flag, weight, conjugate=False)
    return _engine(plan).dirty(plan, index)


def predict_vis(image, uvw_m, freq_hz, pixsize_x_rad=None, pixsize_y_rad=None, epsilon=None,
                weight=None, flag=None, *, method="wstack", do_wgridding=True,
                divide_by_n=True, plan: GriddingPlan | None = None) -> np.ndarray:
    """Visibilities of a model image: the exact adjoint of :func:`dirty_image`.

    Parameters
    ----------
    image : ndarray, float, shape (npix_x, npix_y)
        Model image (Jy per pixel), axis 0 is ``l``.
    uvw_m : ndarray, float, shape (n_row, 3)
        Metres.
    freq_hz : ndarray, float, shape (n_chan,)
    pixsize_x_rad, pixsize_y_rad : float
        Radians.
    epsilon : float
        Requested accuracy per visibility (see :mod:`.plan`).
    weight : ndarray, float, shape (n_row, n_chan), optional
        Multiplied into the output; zero-weight samples are skipped (output 0).
    flag : ndarray of bool, shape (n_row, n_chan), optional
        Flagged samples are skipped (output 0).
    method, do_wgridding, divide_by_n, plan
        As for :func:`dirty_image`.

    Returns
    -------
    ndarray, shape (n_row, n_chan)
        complex64 when ``epsilon >= 1e-5``, else complex128 (``plan.vis_dtype``).
    """
    img = np.asarray(image)
    if img.ndim != 2 or img.dtype.kind != "f":
        raise ValueError(f"image must be a real 2-d array, got {img.dtype} {img.shape}")
    uvw, freq, _, weight, flag = _validate_vis(uvw_m, freq_hz, None, weight, flag,
                                               need_vis=False)
    plan = _plan_for(plan, uvw, freq, weight, flag, img.shape[0], img.shape[1], pixsize_x_rad,
                     pixsize_y_rad, epsilon, method, do_wgridding, None, divide_by_n)
    if img.shape != (plan.npix_x, plan.npix_y):
        raise ValueError(f"image shape {img.shape} != plan ({plan.npix_x}, {plan.npix_y})")
    index = _index(plan, uvw, freq, None, flag, weight, conjugate=True)
    vals = _engine(plan).predict(plan, index, img)
    out = np.zeros(uvw.shape[0] * freq.size, dtype=plan.vis_dtype)
    out[index.flat_index()] = vals
    return out.reshape(uvw.shape[0], freq.size)


def grid_partial(uvw_m, freq_hz, vis, weight=None, flag=None, *,
                 plan: GriddingPlan) -> np.ndarray:
    """The uv grids of a chunk of visibilities, to be summed over chunks before the FFT.

    Parameters
    ----------
    uvw_m, freq_hz, vis, weight, flag
        As for :func:`dirty_image` (one chunk).
    plan : GriddingPlan
        The plan shared by all chunks (its w range must cover every chunk).

    Returns
    -------
    ndarray, shape ``plan.grid_shape`` = (n_planes or n_taylor, nu, nv), ``plan.grid_dtype``
        W-stacking: one grid per w plane; w-projection: one grid per Taylor term.
        Memory: ``prod(plan.grid_shape) * plan.grid_dtype.itemsize`` bytes.
    """
    uvw, freq, vis, weight, flag = _validate_vis(uvw_m, freq_hz, vis, weight, flag,
                                                 need_vis=True)
    index = _index(plan, uvw, freq, vis, flag, weight, conjugate=False)
    out = np.zeros(plan.grid_shape, dtype=plan.grid_dtype)
    eng = _engine(plan)
    for _ in eng.grid_planes(plan, index, into=out):
        pass
    return out


def finish_dirty(grids: np.ndarray, *, plan: GriddingPlan) -> np.ndarray:
    """Dirty image from (summed) :func:`grid_partial` grids: FFT, w screens, corrections.

    Parameters
    ----------
    grids : ndarray, complex, shape ``plan.grid_shape``
    plan : GriddingPlan

    Returns
    -------
    ndarray, float64, shape (npix_x, npix_y)
    """
    grids = np.asarray(grids)
    if grids.shape != plan.grid_shape or grids.dtype.kind != "c":
        raise ValueError(f"grids must be complex {plan.grid_shape}, got {grids.dtype} "
                         f"{grids.shape}")
    eng = _engine(plan)
    return eng.planes_to_dirty(plan, ((p, grids[p]) for p in range(grids.shape[0])
                                      if np.any(grids[p])), inplace=False)


__all__ = ["dirty_image", "finish_dirty", "grid_partial", "make_plan", "predict_vis",
           "w_range"]
