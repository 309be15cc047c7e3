"""Phase shifting: rotate visibilities and UVW to a new phase centre (exact, with w).

With ``uvw = X(antenna1) - X(antenna2)`` on the (u, v, w) axes of the phase centre
``s0`` and ``V = sum S exp(+2 pi i (u l + v m + w (n - 1)) f / c)`` (the Measurement
Set's convention), i.e. ``V = sum S exp(+2 pi i b.(s - s0) f / c)`` for the baseline
vector ``b``, moving the phase centre to ``s1`` multiplies each visibility by::

    exp(-2 pi i (u l1 + v m1 + w (n1 - 1)) f / c)

where ``(l1, m1, n1)`` are the direction cosines of ``s1`` relative to ``s0``, and
rotates the baseline coordinates to the axes of ``s1``: ``uvw1 = A1 A0^T uvw`` with
``A`` the matrices whose rows are the (u, v, w) unit vectors of each centre. The
result is exact (no small-field approximation): a source at ``s`` then contributes
``S exp(+2 pi i (u1 l' + v1 m' + w1 (n' - 1)) f / c)`` with ``(l', m', n')`` relative to
``s1``. Both centres are J2000 (RA, Dec), radians; the axes are those of
:mod:`daskcal.data.geometry` (``u`` east, ``v`` north, ``w`` towards the centre).
"""

from __future__ import annotations

import numpy as np

from daskcal.kernels._jit import njit

#: Speed of light, m/s.
C_M_S = 299_792_458.0


def uvw_axes(ra_rad: float, dec_rad: float) -> np.ndarray:
    """Rows: the u (east), v (north), w (towards the direction) unit vectors, shape (3, 3)."""
    sa, ca, sd, cd = np.sin(ra_rad), np.cos(ra_rad), np.sin(dec_rad), np.cos(dec_rad)
    return np.array([[-sa, ca, 0.0], [-sd * ca, -sd * sa, cd], [cd * ca, cd * sa, sd]])


def _centre(name, value) -> np.ndarray:
    c = np.asarray(value, dtype=np.float64).reshape(-1)
    if c.size != 2 or not np.all(np.isfinite(c)) or abs(c[1]) > np.pi / 2 + 1e-12:
        raise ValueError(f"{name} must be a finite (ra, dec) in radians, got {value!r}")
    return c


def shift_geometry(old_centre_rad, new_centre_rad) -> tuple[np.ndarray, np.ndarray]:
    """Direction cosines of the new centre and the UVW rotation.

    Parameters
    ----------
    old_centre_rad, new_centre_rad : array, shape (2,)
        J2000 (RA, Dec) of the current and the new phase centre, radians.

    Returns
    -------
    lmn : ndarray, shape (3,)
        ``(l1, m1, n1)`` of the new centre relative to the old.
    rotation : ndarray, shape (3, 3)
        ``uvw_new = rotation @ uvw_old``.
    """
    c0 = _centre("old_centre_rad", old_centre_rad)
    c1 = _centre("new_centre_rad", new_centre_rad)
    a0, a1 = uvw_axes(*c0), uvw_axes(*c1)
    return a0 @ a1[2], a1 @ a0.T


def phase_shift(vis, uvw, frequency, old_centre_rad, new_centre_rad, *,
                out=None) -> tuple[np.ndarray, np.ndarray]:
    """Rotate visibilities and their UVW to a new phase centre.

    Parameters
    ----------
    vis : ndarray, complex64 or complex128, shape (n_time, n_bl, n_chan, n_corr)
        Visibilities at the old phase centre, Jy.
    uvw : ndarray, float, shape (n_time, n_bl, 3)
        Baseline coordinates on the old centre's axes, metres.
    frequency : ndarray, float, shape (n_chan,)
        Channel frequencies, Hz.
    old_centre_rad, new_centre_rad : array, shape (2,)
        J2000 (RA, Dec), radians.
    out : ndarray, optional
        Array of the shape and dtype of ``vis`` for the result (may be ``vis``).

    Returns
    -------
    vis_new : ndarray, same shape and dtype as ``vis``
    uvw_new : ndarray, float64, shape (n_time, n_bl, 3)

    Raises
    ------
    ValueError
        For inconsistent shapes or dtypes.
    """
    if not isinstance(vis, np.ndarray) or vis.ndim != 4 or vis.dtype not in (np.complex64,
                                                                              np.complex128):
        raise ValueError("vis must be a complex64/complex128 array (n_time, n_bl, n_chan, n_corr)")
    uvw = np.asarray(uvw)
    frequency = np.asarray(frequency)
    if uvw.shape != vis.shape[:2] + (3,) or uvw.dtype.kind != "f":
        raise ValueError(f"uvw must be float {vis.shape[:2] + (3,)}, got {uvw.dtype} {uvw.shape}")
    if frequency.shape != (vis.shape[2],) or frequency.dtype.kind != "f":
        raise ValueError(f"frequency must be float of shape ({vis.shape[2]},)")
    if out is None:
        out = np.empty_like(vis)
    elif not isinstance(out, np.ndarray) or out.shape != vis.shape or out.dtype != vis.dtype:
        raise ValueError("out must have the shape and dtype of vis")
    lmn, rot = shift_geometry(old_centre_rad, new_centre_rad)
    uvw64 = np.ascontiguousarray(uvw, dtype=np.float64)
    _shift(np.ascontiguousarray(vis), uvw64, np.ascontiguousarray(frequency, np.float64),
           lmn, out)
    return out, uvw64 @ rot.T


@njit
def _shift(vis, uvw, freq, lmn, out):
    n_time, n_bl, n_chan, n_corr = vis.shape
    scale = -2.0 * np.pi / C_M_S
    for t in range(n_time):
        for b in range(n_bl):
            ph = scale * (uvw[t, b, 0] * lmn[0] + uvw[t, b, 1] * lmn[1]
                          + uvw[t, b, 2] * (lmn[2] - 1.0))
            for f in range(n_chan):
                x = ph * freq[f]
                rot = complex(np.cos(x), np.sin(x))
                for c in range(n_corr):
                    out[t, b, f, c] = vis[t, b, f, c] * rot
