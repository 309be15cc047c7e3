"""Clean masks from ds9/CASA-like region strings and from thresholds."""

from __future__ import annotations

import re

import numpy as np

from daskcal.data.geometry import lmn_of

_UNITS = {'"': 1.0 / 3600.0, "'": 1.0 / 60.0, "d": 1.0, "": 1.0}
_NUM = r"\s*([-+0-9.eE]+)\s*"
_SIZE = r"\s*([-+0-9.eE]+)\s*([\"'d]?)\s*"
_CIRCLE = re.compile(rf"^circle\({_NUM},{_NUM},{_SIZE}\)$", re.I)
_BOX = re.compile(rf"^box\({_NUM},{_NUM},{_SIZE},{_SIZE}\)$", re.I)


def _pixels(ra_deg, dec_deg, ra0, dec0, npix, cell):
    lmn = lmn_of(np.radians([ra_deg]), np.radians([dec_deg]), ra0, dec0)
    return lmn[0, 0] / cell + npix // 2, lmn[0, 1] / cell + npix // 2


def region_mask(regions, npix: int, cell_rad: float, phase_centre_rad) -> np.ndarray:
    """Boolean mask (``True`` = may clean) of the union of region strings.

    Parameters
    ----------
    regions : sequence of str
        ``circle(ra_deg, dec_deg, radius)`` or ``box(ra_deg, dec_deg, width, height)``
        (centre and full sizes, as ds9); sizes carry a unit suffix ``"`` (arcsec), ``'``
        (arcmin) or ``d`` (degrees; the default). Boxes are aligned with the l, m axes.
    npix : int
        Image side, pixels.
    cell_rad : float
        Pixel size, radians.
    phase_centre_rad : (float, float)
        RA and Dec of the image centre, radians.

    Returns
    -------
    ndarray of bool, shape (npix, npix), axis 0 ``l``, axis 1 ``m``
    """
    ra0, dec0 = phase_centre_rad
    i = np.arange(npix)[:, None]
    j = np.arange(npix)[None, :]
    mask = np.zeros((npix, npix), dtype=bool)
    for text in regions:
        s = text.strip()
        if mc := _CIRCLE.match(s):
            ra, dec, r, u = float(mc[1]), float(mc[2]), float(mc[3]), mc[4]
            x, y = _pixels(ra, dec, ra0, dec0, npix, cell_rad)
            rp = np.radians(r * _UNITS[u]) / cell_rad
            mask |= (i - x) ** 2 + (j - y) ** 2 <= rp * rp
        elif mb := _BOX.match(s):
            ra, dec = float(mb[1]), float(mb[2])
            wp = np.radians(float(mb[3]) * _UNITS[mb[4]]) / cell_rad
            hp = np.radians(float(mb[5]) * _UNITS[mb[6]]) / cell_rad
            x, y = _pixels(ra, dec, ra0, dec0, npix, cell_rad)
            mask |= (np.abs(i - x) <= wp / 2) & (np.abs(j - y) <= hp / 2)
        else:
            raise ValueError(f"cannot parse region {text!r}: expected circle(ra, dec, r) or "
                             "box(ra, dec, width, height)")
    return mask


def robust_rms(image: np.ndarray) -> float:
    """Rms estimated from the median absolute deviation (``1.4826 MAD``)."""
    x = np.asarray(image, dtype=np.float64).ravel()
    return float(1.4826 * np.median(np.abs(x - np.median(x))))


__all__ = ["region_mask", "robust_rms"]
