"""Exact per-visibility evaluation of w-projection kernel taps (numba).

For a visibility at continuous cell coordinate ``g`` with w coordinate ``w`` and support
``W``, the taps are ``k_w(i0 + j - g)``, ``j = 0 .. W-1``, ``i0 = ceil(g - W/2)`` (see
:mod:`.wkernels` for the definition). With ``x = i0 - g`` and the midpoint nodes
``xi_q = xi_0 + q / L``::

    k_w(x + j) = exp(-2 pi i j xi_0) * sum_q a_q exp(i phi_q) exp(-2 pi i j q / L)
    phi_q = -2 pi (w p(xi_q D) + x xi_q)

``phi_q`` is a quartic polynomial in ``q``; ``exp(i phi_q)`` is advanced by a 4th-order
finite-difference recurrence (four complex products per node) re-seeded from the exact
phase every :data:`RESEED` nodes (rounding drift below 1e-10), the terms are folded
modulo ``L`` and a radix-2 FFT of length ``L`` yields all taps at once.
"""

from __future__ import annotations

import math

import numpy as np

from daskcal.kernels._jit import njit

#: Nodes between exact re-seeds of the phase recurrence.
RESEED = 32


@njit
def _phase(q, xi0, h, w, scale, x):
    xi = xi0 + q * h
    l2 = (xi * scale) ** 2
    return -2.0 * math.pi * (w * (-0.5 * l2 - 0.125 * l2 * l2) + x * xi)


@njit
def fft_inplace(re, im, n, tw_re, tw_im):
    """In-place forward FFT (``exp(-2 pi i j k / n)``) of length ``n`` (a power of two).

    ``tw_re/tw_im`` hold ``exp(-2 pi i k / n_max)`` for ``k < n_max / 2`` with ``n_max``
    a multiple of ``n``.
    """
    j = 0
    for i in range(1, n):
        bit = n >> 1
        while j & bit:
            j ^= bit
            bit >>= 1
        j |= bit
        if i < j:
            re[i], re[j] = re[j], re[i]
            im[i], im[j] = im[j], im[i]
    n_max = 2 * tw_re.shape[0]
    size = 2
    while size <= n:
        half = size >> 1
        step = n_max // size
        for start in range(0, n, size):
            for k in range(half):
                wr = tw_re[k * step]
                wi = tw_im[k * step]
                a = start + k
                b = a + half
                xr = re[b] * wr - im[b] * wi
                xi = re[b] * wi + im[b] * wr
                re[b] = re[a] - xr
                im[b] = im[a] - xi
                re[a] += xr
                im[a] += xi
        size <<= 1


def twiddles(n_max: int) -> tuple[np.ndarray, np.ndarray]:
    """``exp(-2 pi i k / n_max)``, ``k < n_max / 2``, as (real, imaginary) float64 arrays."""
    ang = -2.0 * np.pi * np.arange(n_max // 2) / n_max
    return np.cos(ang), np.sin(ang)


@njit
def wp_taps(g, w, support, length, amp, xi0, scale, post_re, post_im, tw_re, tw_im,
            buf_re, buf_im, out_re, out_im):
    """Taps of one visibility on one axis; returns the first cell ``i0`` (unwrapped).

    Parameters
    ----------
    g : float
        Continuous cell coordinate.
    w : float
        W, wavelengths.
    support, length : int
        ``W`` and the FFT length ``L`` of this table entry.
    amp : ndarray, float64, shape (Q,)
        ``h A(xi_q)`` of the entry's nodes.
    xi0, scale : float
        First node and ``D`` of the axis.
    post_re, post_im : ndarray, float64, shape (>= W,)
        ``exp(-2 pi i j xi0)``.
    tw_re, tw_im : ndarray
        FFT twiddles (:func:`twiddles`).
    buf_re, buf_im : ndarray, float64, shape (>= L,)
        Scratch.
    out_re, out_im : ndarray, shape (>= W,)
        Receive the taps (entries ``W ..`` set to 0).
    """
    i0 = math.ceil(g - 0.5 * support)
    x = i0 - g
    h = 1.0 / length
    n_q = amp.shape[0]
    for k in range(length):
        buf_re[k] = 0.0
        buf_im[k] = 0.0
    q = 0
    while q < n_q:
        p0 = _phase(q, xi0, h, w, scale, x)
        p1 = _phase(q + 1, xi0, h, w, scale, x)
        p2 = _phase(q + 2, xi0, h, w, scale, x)
        p3 = _phase(q + 3, xi0, h, w, scale, x)
        p4 = _phase(q + 4, xi0, h, w, scale, x)
        d1 = p1 - p0
        d2 = p2 - 2.0 * p1 + p0
        d3 = p3 - 3.0 * p2 + 3.0 * p1 - p0
        d4 = p4 - 4.0 * p3 + 6.0 * p2 - 4.0 * p1 + p0
        # z = e^{i p(q)} and r_k = e^{i D_k(q)} of the forward differences
        # D1(q) = p(q+1) - p(q), D2(q) = D1(q+1) - D1(q), ... (D4 is constant)
        zr, zi = math.cos(p0), math.sin(p0)
        r1r, r1i = math.cos(d1), math.sin(d1)
        r2r, r2i = math.cos(d2), math.sin(d2)
        r3r, r3i = math.cos(d3), math.sin(d3)
        r4r, r4i = math.cos(d4), math.sin(d4)
        end = min(q + RESEED, n_q)
        for qq in range(q, end):
            a = amp[qq]
            k = qq % length
            buf_re[k] += a * zr
            buf_im[k] += a * zi
            # z <- z r1 ; r1 <- r1 r2 ; r2 <- r2 r3 ; r3 <- r3 r4
            t = zr * r1r - zi * r1i
            zi = zr * r1i + zi * r1r
            zr = t
            t = r1r * r2r - r1i * r2i
            r1i = r1r * r2i + r1i * r2r
            r1r = t
            t = r2r * r3r - r2i * r3i
            r2i = r2r * r3i + r2i * r3r
            r2r = t
            t = r3r * r4r - r3i * r4i
            r3i = r3r * r4i + r3i * r4r
            r3r = t
        q = end
    fft_inplace(buf_re, buf_im, length, tw_re, tw_im)
    for j in range(support):
        out_re[j] = buf_re[j] * post_re[j] - buf_im[j] * post_im[j]
        out_im[j] = buf_re[j] * post_im[j] + buf_im[j] * post_re[j]
    for j in range(support, out_re.shape[0]):
        out_re[j] = 0.0
        out_im[j] = 0.0
    return i0


__all__ = ["RESEED", "fft_inplace", "twiddles", "wp_taps"]
