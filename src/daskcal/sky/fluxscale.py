"""Flux-density standards of primary calibrators: Perley & Butler (2017).

Perley & Butler (2017, ApJS 230, 7; "PB2017") give the spectrum of each calibrator as a
polynomial in the logarithm of frequency::

    log10(S / Jy) = a0 + a1 x + a2 x**2 + a3 x**3 + ...,    x = log10(nu / GHz)

(their Table 6). :func:`flux_density` evaluates it, :func:`spectral_terms` re-expands it
exactly about any reference frequency ``f0`` into the logarithmic spectral model of
:class:`~daskcal.sky.model.SkyModel` (BBS ``LogarithmicSI = true``)::

    S(nu) = S0 * (nu / f0) ** (b1 + b2 y + b3 y**2 + ...),    y = log10(nu / f0)

with ``log10 S0 = b0`` and ``b_j = sum_k a_k C(k, j) x0**(k - j)`` (``x0 = log10(f0 /
GHz)``): the same polynomial, so the model reproduces PB2017 at every frequency, not only
near ``f0``. :func:`calibrator_sky_model` returns that point source at the calibrator's
J2000 position.

3C48, 3C138 and 3C147 are variable (a few per cent per decade at L band); the
coefficients here are PB2017's values for the 2016-2017 epoch (the last row of NRAO's
``PerleyButler2017Coeffs`` table distributed with CASA), as CASA uses them for
observations after 2012. 3C286 (and 3C196, 3C295) are steady. The polynomials are valid
within each source's frequency range (``freq_range_hz``); :func:`flux_density` refuses
frequencies outside it unless ``extrapolate=True``.

Only Stokes I: at the resolutions where these sources are points, their linear
polarisation (3C286: about 9 % at L band) does not enter the parallel hands of
circular feeds, and the parallel hands of linear feeds need Q and U, which are not
modelled here.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import comb

import numpy as np

from daskcal import DaskcalError
from daskcal.sky.model import SkyModel

_HOUR = np.pi / 12.0
_DEG = np.pi / 180.0


class FluxScaleError(DaskcalError, ValueError):
    """An unknown calibrator or a frequency outside its flux standard's validity."""


def _ra(h: float, m: float, s: float) -> float:
    return (h + m / 60.0 + s / 3600.0) * _HOUR


def _dec(sign: int, d: float, m: float, s: float) -> float:
    return sign * (d + m / 60.0 + s / 3600.0) * _DEG


@dataclass(frozen=True)
class FluxStandard:
    """One calibrator's flux-density polynomial and position.

    Attributes
    ----------
    name : str
        Canonical name, e.g. ``"3C286"``.
    aliases : tuple of str
        Other names it is known by (B1950 and J2000 designations), e.g. ``"1331+305"``.
    ra_rad, dec_rad : float
        J2000 position, radians.
    coefficients : tuple of float
        ``a0, a1, ...`` of ``log10(S/Jy) = sum a_k log10(nu/GHz)**k``.
    freq_range_hz : (float, float)
        Frequencies where the polynomial is valid, Hz.
    reference : str
        Where the coefficients come from.
    """

    name: str
    aliases: tuple[str, ...]
    ra_rad: float
    dec_rad: float
    coefficients: tuple[float, ...]
    freq_range_hz: tuple[float, float]
    reference: str = "Perley & Butler 2017, ApJS 230, 7, Table 6"


#: PB2017 standards (Table 6; 2016-2017 epoch for the variable 3C48, 3C138 and 3C147).
#: Positions: J2000, from the VLA calibrator list.
PERLEY_BUTLER_2017: dict[str, FluxStandard] = {s.name: s for s in (
    FluxStandard("3C286", ("1331+305", "J1331+3030", "1328+307", "1331+30500002_0"),
                 _ra(13, 31, 8.288), _dec(1, 30, 30, 32.96),
                 (1.2481, -0.4507, -0.1798, 0.0357), (0.05e9, 50e9)),
    FluxStandard("3C48", ("0137+331", "J0137+3309", "0134+329"),
                 _ra(1, 37, 41.2994), _dec(1, 33, 9, 35.133),
                 (1.3253, -0.7553, -0.1914, 0.0498), (0.05e9, 50e9)),
    FluxStandard("3C147", ("0542+498", "J0542+4951", "0538+498"),
                 _ra(5, 42, 36.1379), _dec(1, 49, 51, 7.234),
                 (1.4516, -0.6961, -0.2007, 0.0640, -0.0464, 0.0289), (0.05e9, 50e9)),
    FluxStandard("3C138", ("0521+166", "J0521+1638", "0518+165"),
                 _ra(5, 21, 9.886), _dec(1, 16, 38, 22.05),
                 (1.0088, -0.4981, -0.1552, -0.0102, 0.0223), (0.2e9, 50e9)),
)}


def _key(name: str) -> str:
    return "".join(name.split()).upper()


def flux_standard(name: str) -> FluxStandard:
    """The PB2017 standard of a calibrator, by name or alias (case and spaces ignored).

    Raises
    ------
    FluxScaleError
        If the source is not a PB2017 calibrator known here.
    """
    key = _key(name)
    for std in PERLEY_BUTLER_2017.values():
        if key == _key(std.name) or key in {_key(a) for a in std.aliases}:
            return std
    raise FluxScaleError(f"{name!r} is not a known flux calibrator; known: "
                         f"{', '.join(PERLEY_BUTLER_2017)}")


def _as_standard(source: str | FluxStandard) -> FluxStandard:
    return source if isinstance(source, FluxStandard) else flux_standard(source)


def flux_density(source: str | FluxStandard, frequency_hz, *,
                 extrapolate: bool = False) -> np.ndarray:
    """Stokes I flux density of a calibrator, Jy.

    Parameters
    ----------
    source : str or FluxStandard
        Calibrator name or alias (see :data:`PERLEY_BUTLER_2017`).
    frequency_hz : float or array, shape (n,)
        Frequencies, Hz.
    extrapolate : bool
        Allow frequencies outside the standard's validity range.

    Returns
    -------
    ndarray, shape of ``frequency_hz``
        ``S(nu)``, Jy.
    """
    std = _as_standard(source)
    f = np.asarray(frequency_hz, dtype=np.float64)
    lo, hi = std.freq_range_hz
    if not extrapolate and (np.any(f < lo) or np.any(f > hi)):
        raise FluxScaleError(f"{std.name}: frequencies {f.min():.6g}-{f.max():.6g} Hz are "
                             f"outside the PB2017 range {lo:.6g}-{hi:.6g} Hz")
    x = np.log10(f / 1e9)
    return np.power(10.0, np.polynomial.polynomial.polyval(x, std.coefficients))


def spectral_terms(source: str | FluxStandard, ref_freq_hz: float) -> tuple[float, np.ndarray]:
    """The PB2017 spectrum re-expanded about ``ref_freq_hz`` (exact; see the module notes).

    Parameters
    ----------
    source : str or FluxStandard
    ref_freq_hz : float
        Reference frequency ``f0``, Hz.

    Returns
    -------
    (float, ndarray of shape (n_terms - 1,))
        ``S0 = S(f0)`` in Jy and the logarithmic spectral terms ``b1, b2, ...``
        (``b1`` is the spectral index at ``f0``).
    """
    std = _as_standard(source)
    if not ref_freq_hz > 0:
        raise FluxScaleError(f"{std.name}: reference frequency must be positive, "
                             f"got {ref_freq_hz}")
    a = np.asarray(std.coefficients, dtype=np.float64)
    x0 = np.log10(ref_freq_hz / 1e9)
    b = np.zeros_like(a)
    for k, ak in enumerate(a):
        for j in range(k + 1):
            b[j] += ak * comb(k, j) * x0 ** (k - j)
    return float(10.0 ** b[0]), b[1:]


def spectral_index(source: str | FluxStandard, frequency_hz) -> np.ndarray:
    """Local spectral index ``d log S / d log nu`` at each frequency (dimensionless)."""
    std = _as_standard(source)
    x = np.log10(np.asarray(frequency_hz, dtype=np.float64) / 1e9)
    deriv = np.polynomial.polynomial.polyder(np.asarray(std.coefficients, dtype=np.float64))
    return np.polynomial.polynomial.polyval(x, deriv)


def calibrator_sky_model(source: str | FluxStandard, ref_freq_hz: float = 1e9, *,
                         name: str | None = None, ra_rad: float | None = None,
                         dec_rad: float | None = None) -> SkyModel:
    """A one-component :class:`SkyModel` of a calibrator on the PB2017 scale.

    Parameters
    ----------
    source : str or FluxStandard
    ref_freq_hz : float
        Reference frequency of the model, Hz (the spectrum is exact at every frequency;
        choose the band centre to make ``stokes`` and the first term readable).
    name : str, optional
        Component name (default: the calibrator's canonical name).
    ra_rad, dec_rad : float, optional
        Position, radians (default: the standard's J2000 position).
    """
    std = _as_standard(source)
    s0, terms = spectral_terms(std, ref_freq_hz)
    return SkyModel.from_components(
        name=[name or std.name], ra=std.ra_rad if ra_rad is None else ra_rad,
        dec=std.dec_rad if dec_rad is None else dec_rad, stokes_i=s0, ref_freq=ref_freq_hz,
        spectral_index=terms, log_si=True)


__all__ = ["PERLEY_BUTLER_2017", "FluxScaleError", "FluxStandard", "calibrator_sky_model",
           "flux_density", "flux_standard", "spectral_index", "spectral_terms"]
