"""Multiscale CLEAN (Cornwell 2008, IEEE JSTSP 2, 793), as a greedy descent.

The model is a sum of *scale functions* ``phi_s`` at component positions. A scale of
size ``s`` pixels is a tapered paraboloid ``(1 - r^2 / s^2)`` for ``r < s`` (Cornwell's
choice), normalised to unit sum, so a component's amplitude is its flux (Jy); ``s = 0``
is a delta function. The minor loop keeps the residual smoothed by every scale,
``R_s = phi_s * R``, and the cross PSFs ``B_st = phi_s * phi_t * PSF``.

CLEAN minimises ``J(x) = x^T B x - 2 x^T d`` (``B`` the PSF convolution, ``d`` the dirty
image). Adding ``a phi_s`` at ``p`` changes ``J`` by ``a^2 B_ss(0) - 2 a R_s(p)``; the best
amplitude is ``R_s(p) / B_ss(0)`` and the decrease ``R_s(p)^2 / B_ss(0)``. Each iteration

1. picks the scale and pixel maximising ``bias_s |R_s(p)| / sqrt(B_ss(0))`` (the largest
   decrease of ``J``, weighted by the small-scale bias ``bias_s = 1 - scale_bias s /
   s_max``);
2. adds ``a = gain R_s(p) / B_ss(0)`` of ``phi_s`` at ``p``;
3. updates every ``R_t -= a B_st(. - p)`` (exactly: the ``B`` are twice the image size).

With a PSF whose transform is non-negative (any PSF made from non-negative weights),
``B`` is positive semi-definite and every step decreases ``J`` by ``gain (2 - gain)``
times the chosen decrease: the loop is a descent and cannot oscillate. (Selecting by
``bias_s |R_s(p)|`` alone, as before, is not a descent: on PSFs with strong sidelobes
the large scales kept over- and under-shooting the point residual.)

A scale component is placed only where its function lies inside the image (at least
``ceil(s)`` pixels from the edges): a function cut by the edge breaks the exactness of the
``R_t`` updates, and with it the descent (that, too, made the old loop wander).

The loop stops when the unsmoothed residual ``|R|`` inside the mask is at or below the
threshold (Jy/beam, the quantity Hogbom CLEAN compares), or after ``niter`` components.
"""

from __future__ import annotations

import numpy as np

from daskcal.kernels._jit import njit
from daskcal.kernels.deconvolution._common import PsfConvolver, check_inputs, subtract_shifted


def scale_function(scale_px: float, shape: tuple[int, int]) -> np.ndarray:
    """The unit-sum scale function of size ``scale_px`` centred at ``(shape[0]//2, shape[1]//2)``.

    Returns
    -------
    ndarray, float64, ``shape``
    """
    out = np.zeros(shape)
    cx, cy = shape[0] // 2, shape[1] // 2
    if scale_px <= 0:
        out[cx, cy] = 1.0
        return out
    x = np.arange(shape[0])[:, None] - cx
    y = np.arange(shape[1])[None, :] - cy
    r2 = (x * x + y * y) / float(scale_px) ** 2
    out = np.where(r2 < 1.0, 1.0 - r2, 0.0)
    return out / out.sum()


@njit
def _ms_loop(rs, bst, weight, norm, select, edge, i_delta, mask, comps, gain, threshold,
             niter):
    """Greedy descent over scales; ``rs[i_delta]`` is the unsmoothed residual.

    Scale ``s`` is selectable only ``edge[s]`` pixels or more from the image edges, so
    that its function is never cut by the edge (the objective stays exact).
    """
    n_s = rs.shape[0]
    for it in range(niter):
        # stopping rule on the unsmoothed residual
        r0 = rs[i_delta]
        peak = 0.0
        for i in range(r0.shape[0]):
            for j in range(r0.shape[1]):
                if mask[i, j] and abs(r0[i, j]) > peak:
                    peak = abs(r0[i, j])
        if peak <= threshold:
            return it
        best, bs, bi, bj = -1.0, -1, -1, -1
        for s in range(n_s):
            if not select[s]:
                continue
            r = rs[s]
            e = edge[s]
            for i in range(e, r.shape[0] - e):
                for j in range(e, r.shape[1] - e):
                    if mask[i, j]:
                        a = weight[s] * abs(r[i, j])
                        if a > best:
                            best, bs, bi, bj = a, s, i, j
        if bs < 0 or best <= 0.0:
            return it
        amp = gain * rs[bs, bi, bj] / norm[bs]
        comps[bs, bi, bj] += amp
        for t in range(n_s):
            subtract_shifted(rs[t], bst[bs, t], bi, bj, amp)
    return niter


class MultiscaleCleaner:
    """Multiscale minor cycles for one PSF (the cross PSFs are computed once).

    Parameters
    ----------
    psf : ndarray, float, shape (2 nx, 2 ny)
        PSF, peak 1 at ``(nx, ny)``.
    scales_px : sequence of float
        Scale sizes, pixels (include 0 for point sources), e.g. ``(0, 4, 8, 16)``.
    scale_bias : float
        Small-scale bias, ``[0, 1)``.

    Notes
    -----
    Memory: ``n_scales^2`` arrays of ``4 nx ny`` float64.
    """

    def __init__(self, psf: np.ndarray, scales_px=(0, 4, 8, 16), scale_bias: float = 0.6):
        p = np.ascontiguousarray(psf, dtype=np.float64)
        if p.ndim != 2 or p.shape[0] % 2 or p.shape[1] % 2:
            raise ValueError(f"psf must be 2-d with even sides, got {p.shape}")
        if not 0.0 <= scale_bias < 1.0:
            raise ValueError(f"scale_bias must lie in [0, 1), got {scale_bias}")
        self.scales = np.array(sorted(float(s) for s in scales_px))
        if self.scales.size == 0 or self.scales[0] < 0:
            raise ValueError("scales_px must be non-empty and non-negative")
        self.psf = p
        nx, ny = p.shape[0] // 2, p.shape[1] // 2
        self.nx, self.ny = nx, ny
        # a delta scale is always tracked (the stopping rule); selectable only if asked for
        tracked = self.scales if self.scales[0] == 0 else np.concatenate([[0.0], self.scales])
        self._select = np.array([s > 0 or self.scales[0] == 0 for s in tracked])
        self._i_delta = 0
        phis = [scale_function(s, p.shape) for s in tracked]
        # convolvers of phi_s (image -> smoothed image) and of the PSF
        self.phi_conv = [PsfConvolver(ph) for ph in phis]
        n_s = tracked.size
        big = (4 * nx, 4 * ny)
        psf_big = np.zeros(big)
        psf_big[nx:3 * nx, ny:3 * ny] = p
        fts = [np.fft.rfft2(np.fft.ifftshift(_embed(ph, big))) for ph in phis]
        psf_ft = np.fft.rfft2(psf_big)
        self.bst = np.zeros((n_s, n_s) + p.shape)
        for s in range(n_s):
            for t in range(s, n_s):
                full = np.fft.irfft2(psf_ft * fts[s] * fts[t], s=big)
                self.bst[s, t] = self.bst[t, s] = full[nx:3 * nx, ny:3 * ny]
        self.norm = np.array([self.bst[s, s, nx, ny] for s in range(n_s)])
        if not np.all(self.norm > 0):
            raise ValueError("a scale's PSF peak phi_s * phi_s * PSF (0) is not positive: "
                             "the PSF is not positive definite")
        smax = tracked.max()
        self.bias = (1.0 - scale_bias * tracked / smax) if smax > 0 else np.ones(n_s)
        # selection weight: bias x (decrease of the objective)^(1/2) per unit |R_s|
        self._weight = self.bias / np.sqrt(self.norm)
        # half-support of each scale function (pixels): keep components off the edges
        self._edge = np.array([int(np.ceil(s)) for s in tracked], dtype=np.int64)
        self._tracked = tracked
        self.phis = phis
        self.psf_conv = PsfConvolver(p)

    def clean(self, residual, *, gain: float = 0.1, threshold: float = 0.0,
              niter: int = 1000, mask=None) -> tuple[np.ndarray, np.ndarray, int]:
        """Run the minor loop.

        Parameters
        ----------
        residual : ndarray, float, shape (nx, ny)
            Jy/beam.
        gain, threshold, niter, mask
            As :func:`~daskcal.kernels.deconvolution.hogbom.hogbom_clean`.

        Returns
        -------
        model : ndarray, float64, shape (nx, ny)
            The scale components convolved with their scale functions, Jy/pixel.
        residual : ndarray, float64, shape (nx, ny)
            ``residual - PSF * model`` (exact, by FFT).
        n_iter : int
        """
        if not 0.0 < gain <= 1.0:
            raise ValueError(f"gain must lie in (0, 1], got {gain}")
        if niter < 0 or threshold < 0:
            raise ValueError("niter and threshold must be non-negative")
        res, _, m = check_inputs(residual, self.psf, mask)
        rs = np.stack([c(res) for c in self.phi_conv])
        comps = np.zeros_like(rs)
        n = _ms_loop(rs, self.bst, self._weight, self.norm, self._select, self._edge,
                     self._i_delta, m, comps, float(gain), float(threshold), int(niter))
        model = np.zeros_like(res)
        for s in range(self._tracked.size):
            if np.any(comps[s]):
                model += self.phi_conv[s](comps[s])
        return model, res - self.psf_conv(model), int(n)


def _embed(img: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Centred ``img`` inside a zero array of ``shape`` (centres at ``shape // 2``)."""
    out = np.zeros(shape)
    ox = shape[0] // 2 - img.shape[0] // 2
    oy = shape[1] // 2 - img.shape[1] // 2
    out[ox:ox + img.shape[0], oy:oy + img.shape[1]] = img
    return out


def multiscale_clean(residual, psf, *, scales_px=(0, 4, 8, 16), scale_bias: float = 0.6,
                     gain: float = 0.1, threshold: float = 0.0, niter: int = 1000,
                     mask=None) -> tuple[np.ndarray, np.ndarray, int]:
    """One-shot :class:`MultiscaleCleaner` (see it for the parameters)."""
    return MultiscaleCleaner(psf, scales_px, scale_bias).clean(
        residual, gain=gain, threshold=threshold, niter=niter, mask=mask)


__all__ = ["MultiscaleCleaner", "multiscale_clean", "scale_function"]
