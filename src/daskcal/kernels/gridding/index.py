"""The visibility index: used samples, their grid coordinates, sorted into tiles and w planes.

Both directions start by building an index (numba, two passes and a counting sort):

- a sample ``(row, chan)`` is *used* when it is not flagged and its weight is non-zero;
  flagged samples are skipped before their ``uvw`` is read, so the NaN ``uvw`` of rows
  missing from the source never enter an arithmetic operation;
- its grid coordinates are ``g_u = u f / c * N_u pixsize_x`` (cells), likewise ``g_v``,
  and (w-stacking) ``g_w = (w f / c - w0) / dw`` (planes);
- samples with ``w < 0`` are mirrored to ``(-u, -v, -w)`` with the conjugate visibility
  (Hermitian symmetry of a real sky: exact for the dirty image; the degridder conjugates
  their predictions back), so only ``|w|`` needs w planes or w kernels;
- samples are sorted by the key ``(tile, first plane)``: tiles are ``TILE x TILE``
  blocks of the uv grid, so consecutive samples touch the same few cache lines, and one
  w plane's samples of one tile form a contiguous range.

The index stores, per used sample in sorted order, the first kernel cell ``i0`` (wrapped
into the grid) and sub-cell position ``y in [-1, 1)`` of each axis (see
:func:`.es_kernel.tap_offsets`) and the position within its first w plane (w-stacking; the
plane itself is the key), or the continuous cell coordinates and w (w-projection); the
complex factor ``weight * exp(-2 pi i w phase_shift)`` (times the visibility when
gridding); and, for the degridder, the flat sample index ``row * n_chan + chan``. That is
24 bytes per sample for single-precision w-stacking.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from daskcal.kernels._jit import njit

#: Tile size (cells) of the sort key.
TILE = 32


class VisIndex(NamedTuple):
    """Sorted used samples (see module docs); ``n`` entries per used column.

    Only the columns a method needs are filled (others are empty): ES kernels use
    ``iu, iv, yu, yv`` (and ``yw`` with w planes), w-projection ``gu, gv, w``; the
    degridder needs ``idx``. Mirrored samples have ``idx = -(row * n_chan + chan) - 1``.
    """

    iu: np.ndarray  # uint16 (int32 for grids > 65535), first cell in u (wrapped)
    iv: np.ndarray  # same, in v
    yu: np.ndarray  # float32/64, sub-cell position in u
    yv: np.ndarray  # float32/64, sub-cell position in v
    yw: np.ndarray  # float32/64, sub-plane position (w-stacking)
    w: np.ndarray  # float64, w in wavelengths (w-projection)
    gu: np.ndarray  # float64, continuous u cell coordinate (w-projection)
    gv: np.ndarray  # float64, continuous v cell coordinate (w-projection)
    val: np.ndarray  # complex64/128, weight * phase (* visibility when gridding)
    idx: np.ndarray  # int32/int64, flat sample index (negative: mirrored)
    offsets: np.ndarray  # int64, (n_tiles * n_planes + 1,) start of each key
    n_tiles_v: int
    n_planes: int

    @property
    def n_tiles(self) -> int:
        """Number of tiles of the grid."""
        return (self.offsets.size - 1) // self.n_planes

    def plane_counts(self) -> np.ndarray:
        """Samples per first plane, shape (n_planes,)."""
        return np.diff(self.offsets).reshape(-1, self.n_planes).sum(axis=0)

    def flipped(self) -> np.ndarray:
        """Mirrored samples (``w < 0``), bool, shape (n,)."""
        return self.idx < 0

    def flat_index(self) -> np.ndarray:
        """``row * n_chan + chan`` of each sample, int64, shape (n,)."""
        i = self.idx.astype(np.int64)
        return np.where(i < 0, -i - 1, i)


@njit
def _key(gu, gv, gw, half_u, half_w, nu, nv, ntv, n_planes, tile):
    iu = int(math.ceil(gu - half_u)) % nu
    iv = int(math.ceil(gv - half_u)) % nv
    plane = int(math.ceil(gw - half_w)) if n_planes > 1 else 0
    return ((iu // tile) * ntv + iv // tile) * n_planes + plane, iu, iv, plane


@njit
def _count(uvw, fu, fv, fw, flag, weight, has_flag, has_weight, half_u, half_w, w0, inv_dw,
           nu, nv, ntv, n_planes, tile, counts):
    n_row, n_chan = uvw.shape[0], fu.shape[0]
    n_bad = 0
    for r in range(n_row):
        for c in range(n_chan):
            if has_flag and flag[r, c]:
                continue
            if has_weight and weight[r, c] == 0:
                continue
            u, v, w = uvw[r, 0], uvw[r, 1], uvw[r, 2]
            if not (math.isfinite(u) and math.isfinite(v) and math.isfinite(w)):
                n_bad += 1
                continue
            if w < 0.0 and fw[c] > 0.0:
                u, v, w = -u, -v, -w
            gw = (w * fw[c] - w0) * inv_dw
            key, iu, iv, plane = _key(u * fu[c], v * fv[c], gw, half_u, half_w, nu, nv, ntv,
                                      n_planes, tile)
            if n_planes > 1 and (plane < 0 or plane > n_planes - int(2.0 * half_w)):
                n_bad += 1
                continue
            counts[key + 1] += 1
    return n_bad


@njit
def _fill(uvw, fu, fv, fw, vis, flag, weight, has_vis, has_flag, has_weight, half_u, half_w,
          w0, inv_dw, phase_shift, sign, regular, nu, nv, ntv, n_planes, tile, keep_uv, keep_w,
          keep_idx, cursor, o_iu, o_iv, o_yu, o_yv, o_yw, o_w, o_gu, o_gv, o_val, o_idx):
    n_row, n_chan = uvw.shape[0], fu.shape[0]
    two_pi = 2.0 * math.pi
    dfw = (fw[n_chan - 1] - fw[0]) / (n_chan - 1) if n_chan > 1 else 0.0
    for r in range(n_row):
        u, v, w = uvw[r, 0], uvw[r, 1], uvw[r, 2]
        finite = math.isfinite(u) and math.isfinite(v) and math.isfinite(w)
        flipped = finite and w < 0.0 and fw[0] > 0.0
        if flipped:
            u, v, w = -u, -v, -w
        # phase factor exp(-2 pi i w f/c phase_shift), advanced over regular channels
        zr, zi, sr, si = 1.0, 0.0, 1.0, 0.0
        if finite and regular and phase_shift != 0.0:
            ph = -two_pi * w * fw[0] * phase_shift
            zr, zi = math.cos(ph), math.sin(ph)
            ph = -two_pi * w * dfw * phase_shift
            sr, si = math.cos(ph), math.sin(ph)
        for c in range(n_chan):
            if c:
                zr, zi = zr * sr - zi * si, zr * si + zi * sr
            if has_flag and flag[r, c]:
                continue
            if has_weight and weight[r, c] == 0:
                continue
            if not finite:
                continue
            gu, gv = u * fu[c], v * fv[c]
            wl = w * fw[c]
            gw = (wl - w0) * inv_dw
            key, iu, iv, plane = _key(gu, gv, gw, half_u, half_w, nu, nv, ntv, n_planes,
                                      tile)
            if n_planes > 1 and (plane < 0 or plane > n_planes - int(2.0 * half_w)):
                continue
            k = cursor[key]
            cursor[key] = k + 1
            if keep_uv:
                o_iu[k] = iu
                o_iv[k] = iv
                o_yu[k] = 2.0 * (math.ceil(gu - half_u) - gu + half_u) - 1.0
                o_yv[k] = 2.0 * (math.ceil(gv - half_u) - gv + half_u) - 1.0
                if n_planes > 1:
                    o_yw[k] = 2.0 * (plane - gw + half_w) - 1.0
            if keep_w:
                o_w[k] = wl
                o_gu[k] = gu
                o_gv[k] = gv
            wt = weight[r, c] if has_weight else 1.0
            if regular or phase_shift == 0.0:
                fac = complex(wt * zr, sign * wt * zi)
            else:
                ph = -two_pi * wl * phase_shift
                fac = complex(wt * math.cos(ph), sign * wt * math.sin(ph))
            if has_vis:
                x = vis[r, c]
                o_val[k] = (x.conjugate() if flipped else x) * fac
            else:
                o_val[k] = fac
            if keep_idx:
                o_idx[k] = -(r * n_chan + c) - 1 if flipped else r * n_chan + c


def _regular(freq_hz: np.ndarray) -> bool:
    """Evenly spaced channels (to 1e-12 of the highest frequency)."""
    n = freq_hz.size
    if n < 3:
        return True
    step = (freq_hz[-1] - freq_hz[0]) / (n - 1)
    dev = np.abs(freq_hz - (freq_hz[0] + step * np.arange(n))).max()
    return bool(dev <= 1e-12 * np.abs(freq_hz).max())


def build_index(uvw, freq_hz, vis, flag, weight, *, nu, nv, pixsize_x, pixsize_y, support,
                support_w=0, w0=0.0, dw=1.0, n_planes=1, phase_shift=0.0, conjugate=False,
                keep_w=False, real_dtype=np.float32, do_wgridding=True) -> VisIndex:
    """Build the sorted index of the used samples (inputs already validated).

    Parameters
    ----------
    uvw : ndarray, float64, shape (n_row, 3)
        Metres.
    freq_hz : ndarray, float64, shape (n_chan,)
    vis : ndarray, complex, shape (n_row, n_chan), or None
        Multiplied into ``val`` (gridding); ``None`` for degridding (then ``idx`` is
        stored).
    flag : ndarray of bool, shape (n_row, n_chan), or None
    weight : ndarray, float, shape (n_row, n_chan), or None
    nu, nv : int
        Grid size.
    pixsize_x, pixsize_y : float
        Radians.
    support, support_w : int
        Kernel supports in uv and w (``support_w = 0``: no w planes).
    w0, dw : float
        W of plane 0 and plane spacing, wavelengths.
    n_planes : int
    phase_shift : float
        ``val`` gets ``exp(-2 pi i |w| phase_shift)`` (conjugated with ``conjugate``).
    keep_w : bool
        Store ``w``, ``g_u``, ``g_v`` (w-projection) instead of the ES cell positions.
    real_dtype : numpy dtype
        float32 or float64 for the sub-cell positions and ``val``.
    do_wgridding : bool
        If false, ``w`` is taken as 0 everywhere.

    Returns
    -------
    VisIndex

    Raises
    ------
    ValueError
        If a used sample has non-finite uvw or a w outside the planes.
    """
    c = 299_792_458.0
    fu = freq_hz / c * (nu * pixsize_x)
    fv = freq_hz / c * (nv * pixsize_y)
    fw = freq_hz / c if do_wgridding else np.zeros_like(freq_hz)
    ntu, ntv = -(-nu // TILE), -(-nv // TILE)
    n_keys = ntu * ntv * n_planes
    counts = np.zeros(n_keys + 1, dtype=np.int64)
    has_flag, has_weight = flag is not None, weight is not None
    dummy_b = np.zeros((1, 1), dtype=np.bool_)
    dummy_f = np.zeros((1, 1), dtype=np.float64)
    fl = flag if has_flag else dummy_b
    wt = weight if has_weight else dummy_f
    half_u, half_w = 0.5 * support, 0.5 * support_w
    inv_dw = 1.0 / dw
    n_bad = _count(uvw, fu, fv, fw, fl, wt, has_flag, has_weight, half_u, half_w, w0, inv_dw,
                   nu, nv, ntv, n_planes, TILE, counts)
    if n_bad:
        raise ValueError(f"{n_bad} unflagged samples with non-zero weight have non-finite uvw "
                         "or a w outside the planned range")
    offsets = np.cumsum(counts)
    n = int(offsets[-1])
    cdtype = np.complex64 if real_dtype == np.float32 else np.complex128
    keep_uv, keep_idx = not keep_w, vis is None
    cell = np.uint16 if max(nu, nv) < 65536 else np.int32
    flat = np.int32 if uvw.shape[0] * freq_hz.size < 2**31 - 1 else np.int64

    def col(dtype, used):
        return np.empty(n if used else 0, dtype=dtype)

    # only the columns the method needs: the index is the largest per-sample allocation
    out = VisIndex(
        col(cell, keep_uv), col(cell, keep_uv), col(real_dtype, keep_uv),
        col(real_dtype, keep_uv), col(real_dtype, keep_uv and n_planes > 1),
        col(np.float64, keep_w), col(np.float64, keep_w), col(np.float64, keep_w),
        col(cdtype, True), col(flat, keep_idx), offsets, ntv, n_planes)
    has_vis = vis is not None
    # the dummy has the usual visibility dtype: one compiled signature for both uses
    vv = vis if has_vis else np.zeros((1, 1), dtype=np.complex128)
    cursor = offsets[:-1].copy()
    _fill(uvw, fu, fv, fw, vv, fl, wt, has_vis, has_flag, has_weight, half_u, half_w, w0,
          inv_dw, float(phase_shift), -1.0 if conjugate else 1.0, _regular(freq_hz), nu, nv,
          ntv, n_planes, TILE, keep_uv, keep_w, keep_idx, cursor, out.iu, out.iv, out.yu,
          out.yv, out.yw, out.w, out.gu, out.gv, out.val, out.idx)
    return out


__all__ = ["TILE", "VisIndex", "build_index"]
