"""W-projection kernels: the anti-aliasing window times the Fresnel (w) term, evaluated exactly.

Formulation
-----------
In one grid dimension (cell units: ``xi`` in cycles per cell, offsets ``d`` in cells) the
w-projection kernel of a visibility with w coordinate ``w`` (wavelengths) is the inverse
Fourier transform of an image-domain *window* ``A`` times the w phase screen::

    k_w(d) = int_{-xi_c}^{xi_c} A(xi) exp(-2 pi i (w p(xi D) + d xi)) dxi

with ``A(xi) = exp(beta (sqrt(1 - (xi / xi_c)^2) - 1))`` (the ES function, placed in the
*image* domain), ``D = N pixsize`` (grid size times pixel size, radians per cycle per cell)
and ``p(l) = -l^2 / 2 - l^4 / 8`` the separable part of ``n - 1``. Because ``A`` vanishes
beyond ``xi_c <= 1 - 1 / (2 sigma)``, the gridded image has *no* aliases: the only errors
are the truncation of ``k_w`` to a finite support ``W_w`` (chosen per ``|w|`` from a table
computed here, so that the truncated tail is below the accuracy budget) and the
non-separable remainder ``R(l, m) = (n - 1) - p(l) - p(m)`` of the w term, which the
gridder handles with a short Taylor series (see :mod:`.wproject`). The grid correction is
the window itself, ``A(xi_x) A(xi_y)``, known in closed form.

Exact evaluation per visibility: the integral is a midpoint rule on ``Q = 2 xi_c L``
uniform nodes (spacing ``1 / L``); its only error is the periodic repetition of ``k_w``
with period ``L`` cells, negligible for ``L >= W_w + W_0``. The phase at the nodes is a
quartic polynomial in the node index, advanced by a 4th-order finite-difference
recurrence (four complex products per node, no trigonometric calls), the nodes are folded
modulo ``L`` and one radix-2 FFT of length ``L`` gives all ``W_w`` taps. No tables, no
nearest-neighbour sampling in ``w`` or in the sub-cell offset.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from daskcal.kernels.gridding.es_kernel import es_fourier

#: Largest kernel support (cells) w-projection will build.
MAX_SUPPORT = 1024


def separable_nm1(l: np.ndarray) -> np.ndarray:
    """The separable part ``p(l) = -l^2/2 - l^4/8`` of ``n - 1`` (one axis)."""
    l2 = np.asarray(l, dtype=np.float64) ** 2
    return -0.5 * l2 - 0.125 * l2 * l2


def window(xi: np.ndarray, xi_c: float, beta: float) -> np.ndarray:
    """The image-domain window ``A(xi)`` (zero for ``|xi| >= xi_c``)."""
    z = np.asarray(xi, dtype=np.float64) / xi_c
    out = np.zeros_like(z)
    inside = np.abs(z) < 1.0
    out[inside] = np.exp(beta * (np.sqrt(1.0 - z[inside] ** 2) - 1.0))
    return out


def kernel_dense(d: np.ndarray, w: float, scale: float, xi_c: float, beta: float,
                 n_nodes: int = 4096) -> np.ndarray:
    """``k_w(d)`` by a dense Gauss-Legendre rule (design and test reference).

    Parameters
    ----------
    d : array_like, float
        Offsets, cells.
    w : float
        W coordinate, wavelengths.
    scale : float
        ``D``: radians of ``l`` per cycle per cell (grid size times pixel size).
    xi_c, beta : float
        Window parameters.
    n_nodes : int
        Quadrature nodes.

    Returns
    -------
    ndarray, complex128, shape of ``d``
    """
    x, wt = np.polynomial.legendre.leggauss(n_nodes)
    xi = x * xi_c
    a = window(xi, xi_c, beta) * wt * xi_c * np.exp(-2j * np.pi * w * separable_nm1(xi * scale))
    d = np.asarray(d, dtype=np.float64)
    out = np.empty(d.size, dtype=np.complex128)
    flat = d.ravel()
    step = max(1, 4_000_000 // n_nodes)
    for k in range(0, flat.size, step):
        out[k:k + step] = np.exp(-2j * np.pi * np.multiply.outer(flat[k:k + step], xi)) @ a
    return out.reshape(d.shape)


def kernel_sampled(w: float, scale: float, xi_c: float, beta: float, period: int,
                   n_sub: int) -> np.ndarray:
    """``k_w`` at offsets ``(i - M/2) / n_sub``, ``i = 0 .. M-1``, ``M = period n_sub``.

    Midpoint rule with node spacing ``1 / period`` evaluated for all offsets by one FFT
    (the same rule as the gridding loops, so exact up to the ``period``-periodic
    repetition of ``k_w``).

    Returns
    -------
    ndarray, complex128, shape (period * n_sub,)
    """
    h = 1.0 / period
    q = int(np.ceil(2.0 * xi_c * period))
    xi = (np.arange(q) + 0.5 - 0.5 * q) * h
    c = window(xi, xi_c, beta) * h * np.exp(-2j * np.pi * w * separable_nm1(xi * scale))
    m = period * n_sub
    # k(d_i) = sum_q c_q exp(-2 pi i d_i xi_q), d_i = (i - m/2) / n_sub
    #        = exp(-2 pi i d_i xi_0) * sum_q c_q exp(-2 pi i (i - m/2) q / m)
    buf = np.zeros(m, dtype=np.complex128)
    np.add.at(buf, np.arange(q) % m, c)
    i = np.arange(m)
    vals = np.fft.fft(buf)
    # index (i - m/2) mod m of the FFT holds sum_q c_q exp(-2 pi i (i - m/2) q / m)
    vals = vals[(i - m // 2) % m]
    d = (i - m // 2) / n_sub
    return vals * np.exp(-2j * np.pi * d * xi[0])


def _worst_tail(k: np.ndarray, n_sub: int, support: int) -> float:
    """Worst (over sub-cell positions) sum of |k| at integer offsets outside ``support`` taps.

    ``k`` is sampled at offsets ``(i - c) / n_sub`` with ``c = k.size // 2``.
    """
    c = k.size // 2
    best = 0.0
    absk = np.abs(k)
    for s in range(n_sub):
        # a visibility at sub-cell position x = s / n_sub has taps at x - W/2 + j
        first = c + s - (support * n_sub) // 2
        idx = np.arange(first % n_sub, absk.size, n_sub)
        taps = (idx >= first) & (idx < first + support * n_sub)
        best = max(best, float(absk[idx[~taps]].sum()))
    return best


@dataclass(frozen=True, eq=False)
class WProjectKernel:
    """W-projection kernel parameters of one grid axis.

    Attributes
    ----------
    xi_c, beta : float
        Window ``A`` (cycles per cell, shape parameter).
    scale : float
        ``D``, radians per cycle per cell of this axis.
    support0 : int
        Support (cells) at ``w = 0``.
    w_table : ndarray, float64, shape (n_tab,)
        Increasing ``|w|`` (wavelengths) at which the support was designed; the last is the
        largest ``|w|`` the plan allows.
    support_table : ndarray, int64, shape (n_tab,)
        Support (cells) valid for ``|w| <= w_table[i]`` (and above ``w_table[i - 1]``).
    fft_len_table : ndarray, int64, shape (n_tab,)
        Quadrature period ``L`` (a power of two) for each entry.
    edge : float
        ``A`` at the image edge, ``A(1 / (2 sigma))``.
    truncation_error : float
        Bound on the truncation error relative to the image-edge window.
    """

    xi_c: float
    beta: float
    scale: float
    support0: int
    w_table: np.ndarray
    support_table: np.ndarray
    fft_len_table: np.ndarray
    edge: float
    truncation_error: float


def design_window(sigma: float, target: float) -> tuple[float, float, int, float]:
    """Choose ``xi_c``, ``beta`` and the ``w = 0`` support for an oversampling and accuracy.

    ``xi_c = 1 - 1/(2 sigma)`` (the widest window without aliases); ``beta`` is scanned to
    minimise the support ``W_0`` at which the truncated tail of ``k_0``, relative to
    ``A`` at the image edge, is at most ``target``.

    Returns
    -------
    xi_c, beta : float
    support0 : int
    error : float
        Achieved relative truncation error at ``w = 0``.
    """
    xi_c = 1.0 - 0.5 / sigma
    edge_xi = 0.5 / sigma
    n_sub = 16
    best = None
    for support in range(4, 41):
        half = support // 2 + 4
        d = (np.arange(-half * n_sub, half * n_sub + 1)) / n_sub
        for c in np.linspace(0.80, 1.05, 11):
            beta = c * np.pi * xi_c * support
            k0 = es_fourier(d, 2.0 * xi_c, beta)
            edge = float(window(np.array([edge_xi]), xi_c, beta)[0])
            err = _worst_tail(k0, n_sub, support) / edge
            if err <= target and (best is None or err < best[3]):
                best = (xi_c, float(beta), support, err)
        if best is not None:
            return best
    raise ValueError(f"no w-projection window reaches accuracy {target:g} at sigma={sigma}")


def design_axis(sigma: float, scale: float, w_max: float, target: float,
                n_tab: int = 24) -> WProjectKernel:
    """Design the kernel of one axis for ``|w| <= w_max`` (wavelengths) and an accuracy.

    Parameters
    ----------
    sigma : float
        Grid oversampling of this axis.
    scale : float
        ``D = N pixsize`` of this axis, radians per cycle per cell.
    w_max : float
        Largest ``|w|``, wavelengths.
    target : float
        Allowed truncation error of one axis, relative to ``A`` at the image edge.
    n_tab : int
        Number of ``|w|`` entries of the support table.

    Returns
    -------
    WProjectKernel
    """
    xi_c, beta, support0, _ = design_window(sigma, target)
    edge = float(window(np.array([0.5 / sigma]), xi_c, beta)[0])
    if xi_c * scale >= 0.5:
        raise ValueError("field of view too wide for the separable w-projection kernels "
                         f"(grid half-width {xi_c * scale:.3f} in direction cosine)")
    n_sub = 8
    w_tab = w_max * (np.arange(1, n_tab + 1) / n_tab) ** 1.5 if w_max > 0 else np.array([0.0])
    supports, lens, worst = [], [], 0.0
    prev = support0
    for w in w_tab:
        slope = abs(w) * scale * scale * xi_c  # half-spread of the chirp, cells
        period = 32
        while period < 2.6 * slope + 4 * support0 + 32:
            period *= 2
        k = kernel_sampled(w, scale, xi_c, beta, period, n_sub)
        support = max(prev, support0)
        while _worst_tail(k, n_sub, support) / edge > target:
            support += 2
            if support > min(period, MAX_SUPPORT):
                raise ValueError(f"w-projection support exceeds {MAX_SUPPORT} cells at "
                                 f"|w|={w:.0f}: use method='wstack'")
        worst = max(worst, _worst_tail(k, n_sub, support) / edge)
        supports.append(support)
        prev = support
        length = 16
        while length < support + support0 + 4:
            length *= 2
        lens.append(length)
    return WProjectKernel(xi_c, beta, float(scale), support0, np.asarray(w_tab, np.float64),
                          np.asarray(supports, np.int64), np.asarray(lens, np.int64), edge,
                          worst)


def quadrature_tables(kern: WProjectKernel) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-table-entry node amplitudes for the numba kernels.

    Returns
    -------
    amp : ndarray, float64, shape (sum of Q_i,)
        ``h A(xi_q)`` of the ``Q_i = 2 xi_c L_i`` midpoint nodes of each entry, concatenated.
    amp_offset : ndarray, int64, shape (n_tab + 1,)
        Start of each entry in ``amp``.
    xi0 : ndarray, float64, shape (n_tab,)
        First node ``xi_0`` of each entry.
    """
    amps, offs, xi0s = [], [0], []
    for length in kern.fft_len_table:
        h = 1.0 / float(length)
        q = int(np.ceil(2.0 * kern.xi_c * length))
        # midpoint rule on [-q h / 2, q h / 2] (A vanishes beyond xi_c <= q h / 2)
        xi = (np.arange(q) + 0.5 - 0.5 * q) * h
        amps.append(window(xi, kern.xi_c, kern.beta) * h)
        xi0s.append(float(xi[0]))
        offs.append(offs[-1] + q)
    return np.concatenate(amps), np.asarray(offs, np.int64), np.asarray(xi0s, np.float64)


__all__ = [
    "MAX_SUPPORT", "WProjectKernel", "design_axis", "design_window", "kernel_dense",
    "kernel_sampled",
    "quadrature_tables", "separable_nm1", "window",
]
