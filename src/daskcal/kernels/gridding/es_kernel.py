"""The "exponential of semicircle" (ES) anti-aliasing kernel: design, accuracy, evaluation.

The kernel (Barnett, Magland & af Klinteberg 2019, "A parallel non-uniform fast Fourier
transform library based on an exponential of semicircle kernel") of support ``W`` grid
cells is::

    phi(d) = exp(beta * (sqrt(1 - (2 d / W)^2) - 1))    for |d| <= W / 2, else 0

with ``d`` the offset from the visibility in cells, ``phi(0) = 1``. Its Fourier transform
``phi_hat(xi) = int phi(d) exp(-2 pi i xi d) dd`` (``xi`` in cycles per cell) is the
*grid correction*: the dirty image is divided by it. We evaluate it by Gauss-Legendre
quadrature after the substitution ``2 d / W = sin(theta)``, which removes the square-root
singularity at the support edges, so the integrand is analytic and the quadrature
converges exponentially (to ~1e-15 with the node counts used here).

Accuracy. On a grid oversampled by ``sigma`` (grid size / image size) the image occupies
``|xi| <= 1 / (2 sigma)``; gridding a unit visibility puts ``phi_hat(xi + m)`` of every
alias ``m != 0`` onto the pixel at ``xi``. The error estimate of one dimension is the
worst case over the image of the alias sum relative to the signal::

    e_1d = max_{|xi| <= 1/(2 sigma)} sum_{0 < |m| <= 4} |phi_hat(xi + m)| / phi_hat(xi)

(a bound for a single point source or a single visibility, attained in practice; see
:mod:`.plan` for how the dimensions combine). For every support ``W`` and oversampling
``sigma`` the shape parameter ``beta`` is chosen to minimise ``e_1d`` (a scan then a
golden-section refinement); the kernels the planner uses are tabulated ahead of time
(:func:`make_es_kernel`).

Evaluation. Inside the gridding loops the kernel is never evaluated with ``exp`` and
``sqrt``: for each of the ``W`` taps it is a polynomial of degree ``D`` in the fractional
position ``y in [-1, 1)`` of the visibility within its cell (a Chebyshev interpolant
converted to monomials, evaluated with Horner's rule, vectorised over the taps). The
kernel *is* this piecewise polynomial: its grid correction is the polynomial's own exact
Fourier transform (:func:`pp_fourier`) and ``D`` is the smallest degree whose alias error
is within 5 % of the exact ES kernel's (``D = W + 1`` in practice).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

#: Supports (cells) considered by the kernel selection.
SUPPORTS: tuple[int, ...] = tuple(range(2, 17))
#: Aliases summed on each side by the error estimate.
_N_ALIAS = 4
#: Sample points of the image half-range in the error estimate.
_N_XI = 48


@lru_cache(maxsize=64)
def _legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.polynomial.legendre.leggauss(n)


@lru_cache(maxsize=64)
def _theta_rule(n: int) -> tuple[np.ndarray, np.ndarray]:
    x, w = _legendre(n)
    return x * (np.pi / 2.0), w * (np.pi / 2.0)


def es_kernel(d: np.ndarray, support: int, beta: float) -> np.ndarray:
    """The ES kernel ``phi(d)`` at offsets ``d`` (cells), zero outside ``|d| <= W/2``.

    Parameters
    ----------
    d : array_like, float
        Offsets from the visibility, grid cells.
    support : int
        ``W``, cells.
    beta : float
        Shape parameter.

    Returns
    -------
    ndarray, float64, shape of ``d``
    """
    z = 2.0 * np.asarray(d, dtype=np.float64) / support
    inside = np.abs(z) <= 1.0
    out = np.zeros_like(z)
    out[inside] = np.exp(beta * (np.sqrt(1.0 - z[inside] ** 2) - 1.0))
    return out


def es_fourier(xi: np.ndarray, support: int, beta: float, n_nodes: int | None = None) -> np.ndarray:
    """Fourier transform ``phi_hat(xi)`` of the ES kernel (real and even).

    Parameters
    ----------
    xi : array_like, float
        Frequencies, cycles per grid cell.
    support, beta : int, float
        Kernel support (cells) and shape parameter.
    n_nodes : int, optional
        Gauss-Legendre nodes in ``theta``; default grows with ``beta`` and ``W max|xi|``
        so that the result is exact to ~1e-14 relative to ``phi_hat(0)``.

    Returns
    -------
    ndarray, float64, shape of ``xi``
    """
    xi = np.asarray(xi, dtype=np.float64)
    if n_nodes is None:
        top = float(np.abs(xi).max()) if xi.size else 0.0
        n_nodes = int(min(1024, 48 + 1.2 * beta + 2.0 * np.pi * support * top))
        n_nodes = 32 * (n_nodes // 32 + 1)
    th, wt = _theta_rule(int(n_nodes))
    f = np.exp(beta * (np.cos(th) - 1.0)) * np.cos(th) * wt
    arg = (np.pi * support) * np.multiply.outer(xi, np.sin(th))
    return 0.5 * support * (np.cos(arg) @ f)


def _alias_ratio(fourier, sigma: float, n_alias: int) -> float:
    xi = np.linspace(0.0, 0.5 / sigma, _N_XI)
    m = np.arange(1, n_alias + 1, dtype=np.float64)
    allxi = np.concatenate([xi, (xi[:, None] + m).ravel(), (xi[:, None] - m).ravel()])
    vals = fourier(allxi)
    base = vals[: xi.size]
    al = np.abs(vals[xi.size:]).reshape(2, xi.size, m.size).sum(axis=(0, 2))
    return float((al / base).max())


def alias_error(support: int, beta: float, sigma: float, n_alias: int = _N_ALIAS) -> float:
    """Worst-case relative alias error ``e_1d`` of the exact ES kernel (see module docs)."""
    return _alias_ratio(lambda xi: es_fourier(xi, support, beta), sigma, n_alias)


@lru_cache(maxsize=512)
def optimal_beta(support: int, sigma: float) -> float:
    """``beta`` minimising :func:`alias_error` (first two aliases) for ``W`` and ``sigma``.

    Searched as ``beta = c pi W (1 - 1/(2 sigma))`` (the asymptotically optimal value is
    ``c ~ 1``): a scan of ``c in [0.8, 1.02]`` (the error is not unimodal in ``beta``)
    refined by golden section around the best point.
    """
    scale = np.pi * support * (1.0 - 0.5 / sigma)

    def f(c):
        return alias_error(support, c * scale, sigma, n_alias=2)

    grid = np.linspace(0.80, 1.02, 12)
    errs = [f(c) for c in grid]
    k = int(np.argmin(errs))
    a, b = grid[max(k - 1, 0)], grid[min(k + 1, grid.size - 1)]
    g = (np.sqrt(5.0) - 1.0) / 2.0
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = f(c), f(d)
    for _ in range(10):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = f(d)
    if min(fc, fd) > errs[k]:
        return float(grid[k] * scale)
    return float((c if fc < fd else d) * scale)


@dataclass(frozen=True, eq=False)
class ESKernel:
    """A piecewise-polynomial ES kernel, as used by the gridding loops.

    The kernel *is* the piecewise polynomial (tap ``j`` of a visibility at fractional
    position ``y`` is ``sum_d coeffs[d, j] y^(D - d)``); :meth:`fourier` is the exact
    Fourier transform of that piecewise polynomial (Gauss-Legendre on each cell), so the
    grid correction matches the kernel actually applied and the polynomial fit only
    matters through the alias error, which :attr:`error` measures for the polynomial
    kernel itself.

    Attributes
    ----------
    support : int
        ``W``, cells.
    beta : float
        Shape parameter of the ES template.
    sigma : float
        Grid oversampling it was designed for.
    error : float
        Worst-case alias error ``e_1d`` of the polynomial kernel at ``sigma``.
    coeffs : ndarray, float64, shape (degree + 1, W)
        Monomial coefficients, highest power first, of each tap as a function of the
        fractional position ``y in [-1, 1)`` (see :func:`tap_offsets`).
    """

    support: int
    beta: float
    sigma: float
    error: float
    coeffs: np.ndarray

    @property
    def degree(self) -> int:
        """Degree of the tap polynomials."""
        return self.coeffs.shape[0] - 1

    def fourier(self, xi: np.ndarray) -> np.ndarray:
        """Exact Fourier transform of the polynomial kernel, ``xi`` in cycles per cell.

        Parameters
        ----------
        xi : array_like, float, any shape

        Returns
        -------
        ndarray, float64, shape of ``xi``
        """
        return pp_fourier(self.coeffs, xi)


def pp_fourier(coeffs: np.ndarray, xi: np.ndarray) -> np.ndarray:
    """Fourier transform of a symmetric piecewise-polynomial kernel (see :class:`ESKernel`).

    Exact up to rounding for ``|xi| <= 6`` (24-point Gauss-Legendre rule per cell, more
    for higher degrees or frequencies).
    """
    xi = np.asarray(xi, dtype=np.float64)
    support = coeffs.shape[1]
    top = float(np.abs(xi).max()) if xi.size else 0.0
    n = 8 * (int(max(24, coeffs.shape[0] // 2 + 8 + 2.0 * top)) // 8 + 1)
    y, wy = _legendre(n)
    taps = kernel_taps(coeffs, y)  # (n, W)
    d = tap_offsets(y, support)  # (n, W)
    flat_d = d.ravel()
    f = (taps * (0.5 * wy)[:, None]).ravel()
    out = np.empty(xi.size)
    xr = xi.ravel()
    step = max(1, 2_000_000 // max(flat_d.size, 1))
    for k in range(0, xr.size, step):
        out[k:k + step] = np.cos((2.0 * np.pi) * np.multiply.outer(xr[k:k + step], flat_d)) @ f
    return out.reshape(xi.shape)


def tap_offsets(y: np.ndarray, support: int) -> np.ndarray:
    """Offsets (cells) of the ``W`` taps from a visibility at fractional position ``y``.

    A visibility at continuous grid coordinate ``g`` touches cells ``i0 .. i0 + W - 1``
    with ``i0 = ceil(g - W/2)``; with ``x = i0 - g + W/2 in [0, 1)`` and ``y = 2 x - 1``
    tap ``j`` is at offset ``x - W/2 + j``.

    Returns
    -------
    ndarray, shape (..., W)
    """
    x = 0.5 * (np.asarray(y, dtype=np.float64) + 1.0)
    return x[..., None] - 0.5 * support + np.arange(support)


def fit_taps(support: int, beta: float, degree: int) -> np.ndarray:
    """Chebyshev interpolants of the ES taps, as monomial coefficients (highest first).

    Returns
    -------
    ndarray, float64, shape (degree + 1, W)
    """
    nodes = np.cos(np.pi * (np.arange(degree + 1) + 0.5) / (degree + 1))
    vals = es_kernel(tap_offsets(nodes, support), support, beta)  # (degree+1, W)
    cheb = np.polynomial.chebyshev.chebfit(nodes, vals, degree)  # (degree+1, W)
    mono = _cheb_to_mono(degree) @ cheb  # lowest power first
    return mono[::-1].copy()


@lru_cache(maxsize=32)
def _cheb_to_mono(degree: int) -> np.ndarray:
    """Matrix taking Chebyshev coefficients to monomial ones (both lowest first)."""
    n = degree + 1
    out = np.zeros((n, n))
    for k in range(n):
        c = np.polynomial.chebyshev.cheb2poly(np.eye(n)[k])
        out[:c.size, k] = c
    return out


def kernel_taps(coeffs: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Evaluate tap polynomials (numpy reference of the numba Horner loops).

    Parameters
    ----------
    coeffs : ndarray, shape (degree + 1, W)
    y : array_like, shape (...)
        Fractional positions in ``[-1, 1)``.

    Returns
    -------
    ndarray, shape (..., W)
    """
    y = np.asarray(y, dtype=np.float64)[..., None]
    out = np.broadcast_to(coeffs[0], y.shape[:-1] + coeffs.shape[1:]).copy()
    for c in coeffs[1:]:
        out = out * y + c
    return out


@lru_cache(maxsize=256)
def make_es_kernel(support: int, sigma: float) -> ESKernel:
    """The piecewise-polynomial ES kernel of a support for an oversampling factor.

    The kernels the planner considers (every support in :data:`SUPPORTS` for its
    oversampling factors) are designed once, ahead of time: their ``beta``, polynomial
    degree and alias error are tabulated in :mod:`._es_table` (regenerated with
    ``python -m daskcal.kernels.gridding.es_table``; a test redesigns a sample and
    compares), so a new process only fits the tap polynomials (milliseconds) instead of
    searching ``beta`` (~20 ms per kernel, ~3 s per imaging plan). Other factors are
    designed on the spot by :func:`design_es_kernel`.

    Parameters
    ----------
    support : int
        ``W`` in 2 .. 16 cells.
    sigma : float
        Grid oversampling factor, > 1.

    Returns
    -------
    ESKernel
    """
    from daskcal.kernels.gridding._es_table import ES_TABLE

    entry = ES_TABLE.get((int(support), round(float(sigma), 6)))
    if entry is None:
        return design_es_kernel(support, sigma)
    beta, degree, error = entry
    return ESKernel(int(support), beta, float(sigma), error, fit_taps(int(support), beta, degree))


def design_es_kernel(support: int, sigma: float) -> ESKernel:
    """Design the piecewise-polynomial ES kernel of a support for an oversampling factor.

    ``beta`` from :func:`optimal_beta`; the polynomial degree is the smallest in
    ``W + 1 .. 24`` whose kernel's alias error is within 5 % of the exact ES kernel's
    (or the best found). Parameters and result as :func:`make_es_kernel`.
    """
    if int(support) not in SUPPORTS:
        raise ValueError(f"support must be in {SUPPORTS[0]}..{SUPPORTS[-1]}, got {support}")
    if not sigma > 1.0:
        raise ValueError(f"sigma must be > 1, got {sigma}")
    support, sigma = int(support), float(sigma)
    beta = optimal_beta(support, sigma)
    target = 1.05 * alias_error(support, beta, sigma)
    best = None
    for degree in range(support + 1, 25):
        coeffs = fit_taps(support, beta, degree)
        err = _alias_ratio(lambda xi, c=coeffs: pp_fourier(c, xi), sigma, _N_ALIAS)
        if best is None or err < best[0]:
            best = (err, coeffs)
        if err <= target:
            break
    return ESKernel(support, beta, sigma, best[0], best[1])


__all__ = [
    "SUPPORTS", "ESKernel", "alias_error", "design_es_kernel", "es_fourier", "es_kernel",
    "fit_taps", "kernel_taps", "make_es_kernel", "optimal_beta", "pp_fourier", "tap_offsets",
]
