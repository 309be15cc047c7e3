"""Repeated gridding and degridding of one set of samples (the major cycles of CLEAN).

Between major cycles only the visibilities change: the samples used, their grid cells,
sub-cell positions and sort order (the index, :mod:`.index`) do not. :class:`PreparedVis`
builds the index once and then, per call, only gathers the new values into index order
(one pass over the samples). Its :meth:`PreparedVis.residual_image` grids
``vis - predict(model)`` without ever forming the ``(n_row, n_chan)`` prediction: the
degridded values stay in index order and the residual is formed there.

Results equal those of :func:`.imaging.dirty_image` / :func:`.imaging.predict_vis` on the
same plan (up to single-precision rounding of the stored phase factors).
"""

from __future__ import annotations

import numpy as np

from daskcal.kernels import _threads as threads
from daskcal.kernels._jit import njit
from daskcal.kernels.gridding.imaging import _engine, _index, _validate_vis
from daskcal.kernels.gridding.plan import GriddingPlan

#: Samples per thread below which the gathers run on one thread.
MIN_SAMPLES_PER_THREAD = 50_000


@njit
def _gather(phase, wt, idx, vis, pred, use_pred, out, lo, hi):
    # out[k] = phase[k] wt[k] x', x = vis[flat] (- pred[k]); x' = conj(x) if mirrored
    for k in range(lo, hi):
        j = idx[k]
        flat = -j - 1 if j < 0 else j
        x = vis[flat]
        if use_pred:
            x = x - pred[k]
        if j < 0:
            x = x.conjugate()
        out[k] = phase[k] * (wt[k] * x)


def _split(n: int) -> list[tuple[int, int]]:
    return threads.ranges(n, max(1, min(threads.count(), n // MIN_SAMPLES_PER_THREAD)))


class PreparedVis:
    """The index of fixed samples, for many dirty images and predictions on one plan.

    Parameters
    ----------
    plan : GriddingPlan
    uvw_m : ndarray, float, shape (n_row, 3)
        Metres (rows whose samples are all unused may be NaN).
    freq_hz : ndarray, float, shape (n_chan,)
    weight : ndarray, float, shape (n_row, n_chan), optional
        Imaging weights (0: unused), multiplied into the visibilities when gridding.
    flag : ndarray of bool, shape (n_row, n_chan), optional

    Notes
    -----
    Memory: the index (about 24 bytes per used sample for single-precision w-stacking),
    a weight and an index (12 bytes) and the phase factors of both directions (8-16 bytes
    each) per used sample; the values gathered per call reuse one buffer.
    """

    def __init__(self, plan: GriddingPlan, uvw_m, freq_hz, weight=None, flag=None):
        if not isinstance(plan, GriddingPlan):
            raise ValueError("plan must be a GriddingPlan (see make_plan)")
        uvw, freq, _, weight, flag = _validate_vis(uvw_m, freq_hz, None, weight, flag,
                                                   need_vis=False)
        self.plan = plan
        self.shape = (uvw.shape[0], freq.size)
        used_flag = flag
        if weight is not None:
            used_flag = (weight == 0) if flag is None else (flag | (weight == 0))
        # geometry once; ``val`` is the gridding phase factor (weight 1)
        index = _index(plan, uvw, freq, None, used_flag, None, conjugate=False)
        self._phase = index.val
        self._idx = index.idx
        flat = index.flat_index()
        rdt = index.val.real.dtype
        self._wt = (np.ones(flat.size, dtype=rdt) if weight is None
                    else weight.reshape(-1)[flat].astype(rdt))
        self._flat = flat
        self._grid_index = index._replace(val=np.empty_like(index.val))
        self._pred_index = index._replace(val=np.conj(index.val))

    @property
    def n_used(self) -> int:
        """Number of used samples."""
        return int(self._phase.size)

    def _values(self, vis, pred=None) -> np.ndarray:
        v = np.ascontiguousarray(vis).reshape(-1)
        if v.size != self.shape[0] * self.shape[1] or v.dtype.kind != "c":
            raise ValueError(f"vis must be complex {self.shape}, got {np.asarray(vis).shape}")
        out = self._grid_index.val
        p = pred if pred is not None else np.zeros(1, dtype=np.complex128)
        threads.run(_gather, [(self._phase, self._wt, self._idx, v, p, pred is not None, out)
                              + r for r in _split(out.size)])
        return out

    def dirty(self, vis) -> np.ndarray:
        """Dirty image of ``vis`` (complex, shape (n_row, n_chan)), as
        :func:`.imaging.dirty_image`; float64, shape (npix_x, npix_y)."""
        self._values(vis)
        return _engine(self.plan).dirty(self.plan, self._grid_index)

    def predict_values(self, image) -> np.ndarray:
        """Visibilities of a model image at the used samples, in index order, complex128
        shape (n_used,) (see :meth:`scatter`)."""
        img = np.asarray(image)
        if img.shape != (self.plan.npix_x, self.plan.npix_y) or img.dtype.kind != "f":
            raise ValueError(f"image must be real {(self.plan.npix_x, self.plan.npix_y)}, "
                             f"got {img.dtype} {img.shape}")
        return _engine(self.plan).predict(self.plan, self._pred_index, img)

    def scatter(self, values) -> np.ndarray:
        """Values in index order as an ``(n_row, n_chan)`` array (0 at unused samples), of
        the plan's visibility dtype."""
        out = np.zeros(self.shape[0] * self.shape[1], dtype=self.plan.vis_dtype)
        out[self._flat] = values
        return out.reshape(self.shape)

    def predict(self, image) -> np.ndarray:
        """Visibilities of a model image (Jy/pixel), as :func:`.imaging.predict_vis` with
        0/1 weights: shape (n_row, n_chan), 0 at unused samples."""
        return self.scatter(self.predict_values(image))

    def residual_image(self, vis, image) -> np.ndarray:
        """``dirty(vis - predict(image))`` with the prediction kept in index order."""
        pred = self.predict_values(image)
        self._values(vis, pred)
        return _engine(self.plan).dirty(self.plan, self._grid_index)


__all__ = ["MIN_SAMPLES_PER_THREAD", "PreparedVis"]
