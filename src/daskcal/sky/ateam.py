"""The "A-team": the four brightest radio sources of the northern low-frequency sky.

Positions are J2000 (the usual catalogue positions of the radio sources). Flux
densities are at 150 MHz and are *approximate* (good to roughly 10-20 per cent):
enough for realistic demixing and simulation work, not for flux calibration.

==========  ====================  ==========  =======================  =================
source      J2000 (RA, Dec)       S(150 MHz)  spectrum about 150 MHz   structure
==========  ====================  ==========  =======================  =================
Cas A       23:23:24.0 +58:48:54  11000 Jy    a0=-0.77, a1=-0.10;      4' Gaussian shell
                                  (2015.5)    fades 0.7 %/yr
Cyg A       19:59:28.36 +40:44:02 10891 Jy    a0=-0.690, a1=-0.178     two lobes, 127"
                                                                       apart at PA 111 deg
Tau A       05:34:31.94 +22:00:52 1430 Jy     a0=-0.25; fades          4.2' x 2.6' Gaussian
                                  (2015.5)    0.17 %/yr
Vir A       12:30:49.42 +12:23:28 1140 Jy     a0=-0.86                 inner lobes (60 %)
                                                                       + halo (40 %)
==========  ====================  ==========  =======================  =================

Sources of the numbers:

* Cyg A: the polynomial of Baars et al. (1977, A&A 61, 99),
  ``log S = 4.695 + 0.085 log nu - 0.178 log^2 nu`` (nu in MHz), evaluated and re-expanded
  about 150 MHz (``a0 = 0.085 - 2 * 0.178 * log 150``, ``a1 = -0.178``).
* Cas A: Baars et al. (1977) give 11.7 kJy at 150 MHz for epoch 1965 with index -0.770
  and a secular decrease of about 0.7 %/yr at this frequency (their
  ``0.97 - 0.30 log nu_GHz`` %/yr), consistent with the ~0.7 %/yr measured at 74 MHz by
  Helmboldt & Kassim (2009, AJ 138, 838); the low-frequency spectrum flattens
  (free-free absorption), hence the negative curvature. We take ~11 kJy at 150 MHz at
  epoch 2015.5, of the order of the values in LOFAR-era models (de Gasperin et al.
  2020, A&A 635, A150), and fade it at 0.7 %/yr from there.
* Tau A: ~1.4 kJy at 150 MHz with the flat Crab spectrum (Baars et al. 1977 give
  -0.299 above 1 GHz; flatter below) and its ~0.17 %/yr decline.
* Vir A: ~1.1 kJy at 150 MHz with index -0.86 (Baars et al. 1977, extrapolated below
  400 MHz, which gives ~2.1 kJy at 74 MHz as observed); its extended halo carries a
  large fraction of the low-frequency flux.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from daskcal.sky.model import SkyModel, SkyModelError

_ARCSEC = np.pi / (180.0 * 3600.0)
_F0 = 150e6


def _hms(h: float, m: float, s: float) -> float:
    return np.radians(15.0 * (h + m / 60.0 + s / 3600.0))


def _dms(d: float, m: float, s: float) -> float:
    sign = -1.0 if d < 0 else 1.0
    return sign * np.radians(abs(d) + m / 60.0 + s / 3600.0)


#: Per source: components as (suffix, flux fraction, dRA*cos(dec) arcsec, dDec arcsec,
#: major FWHM arcsec, minor FWHM arcsec, PA deg), plus centre, flux, spectrum, fading.
ATEAM: dict[str, dict] = {
    "CasA": {
        "ra": _hms(23, 23, 24.0), "dec": _dms(58, 48, 54.0),
        "flux_jy": 11000.0, "epoch": 2015.5, "fade_per_yr": 0.007,
        "spectral_index": (-0.77, -0.10),
        "components": [("", 1.0, 0.0, 0.0, 240.0, 240.0, 0.0)],
    },
    "CygA": {
        "ra": _hms(19, 59, 28.357), "dec": _dms(40, 44, 2.10),
        "flux_jy": 10891.0, "epoch": 2015.5, "fade_per_yr": 0.0,
        "spectral_index": (-0.690, -0.178),
        # lobes 127" apart along PA 111 deg (east lobe at PA 111, west lobe at PA 291)
        "components": [
            ("_east", 0.5, 63.5 * np.sin(np.radians(111)), 63.5 * np.cos(np.radians(111)),
             35.0, 20.0, 111.0),
            ("_west", 0.5, -63.5 * np.sin(np.radians(111)), -63.5 * np.cos(np.radians(111)),
             35.0, 20.0, 111.0),
        ],
    },
    "TauA": {
        "ra": _hms(5, 34, 31.94), "dec": _dms(22, 0, 52.2),
        "flux_jy": 1430.0, "epoch": 2015.5, "fade_per_yr": 0.0017,
        "spectral_index": (-0.25,),
        "components": [("", 1.0, 0.0, 0.0, 252.0, 156.0, 130.0)],
    },
    "VirA": {
        "ra": _hms(12, 30, 49.423), "dec": _dms(12, 23, 28.04),
        "flux_jy": 1140.0, "epoch": 2015.5, "fade_per_yr": 0.0,
        "spectral_index": (-0.86,),
        "components": [("_core", 0.6, 0.0, 0.0, 60.0, 40.0, 110.0),
                       ("_halo", 0.4, 0.0, 0.0, 540.0, 420.0, 110.0)],
    },
}


def ateam_sky_model(names: Sequence[str] | None = None, *, epoch: float = 2024.0) -> SkyModel:
    """A sky model of (some of) the A-team at a given epoch.

    Parameters
    ----------
    names : sequence of str, optional
        Any of ``"CasA", "CygA", "TauA", "VirA"``; all four by default.
    epoch : float
        Decimal year of the observation; fading sources are scaled from their
        reference epoch.

    Returns
    -------
    SkyModel
        One patch per source (``patch`` = its name), Stokes I only, reference
        frequency 150 MHz, logarithmic spectra.
    """
    names = list(ATEAM) if names is None else list(names)
    unknown = sorted(set(names) - set(ATEAM))
    if unknown:
        raise SkyModelError(f"unknown A-team source(s) {unknown}; choose from {sorted(ATEAM)}")
    rows: dict[str, list] = {k: [] for k in ("name", "ra", "dec", "i", "si", "maj", "min", "pa",
                                             "patch")}
    n_terms = max(len(ATEAM[n]["spectral_index"]) for n in names) if names else 0
    for src in names:
        info = ATEAM[src]
        fade = (1.0 - info["fade_per_yr"]) ** (epoch - info["epoch"])
        for suffix, frac, dx, dy, maj, mnr, pa in info["components"]:
            dec = info["dec"] + dy * _ARCSEC
            rows["name"].append(src + suffix)
            rows["ra"].append(info["ra"] + dx * _ARCSEC / np.cos(info["dec"]))
            rows["dec"].append(dec)
            rows["i"].append(info["flux_jy"] * frac * fade)
            rows["si"].append(list(info["spectral_index"])
                              + [0.0] * (n_terms - len(info["spectral_index"])))
            rows["maj"].append(maj * _ARCSEC)
            rows["min"].append(mnr * _ARCSEC)
            rows["pa"].append(np.radians(pa))
            rows["patch"].append(src)
    if not rows["name"]:
        return SkyModel.empty()
    return SkyModel.from_components(
        name=rows["name"], ra=np.array(rows["ra"]), dec=np.array(rows["dec"]),
        stokes_i=np.array(rows["i"]), ref_freq=_F0,
        spectral_index=np.array(rows["si"]).reshape(len(rows["name"]), n_terms),
        major=np.array(rows["maj"]), minor=np.array(rows["min"]),
        position_angle=np.array(rows["pa"]), patch=np.array(rows["patch"]))
