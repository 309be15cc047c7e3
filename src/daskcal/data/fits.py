"""FITS image export (SIN projection, FREQ and STOKES axes, restoring beam), atomic writes.

Orientation: daskcal images are ``image[i, j]`` with axis 0 ``l`` (east, increasing RA)
and axis 1 ``m`` (north), ``l = (i - npix_x // 2) cell`` (the gridder's layout). FITS
stores ``data[stokes, freq, y, x]`` with ``x`` (NAXIS1) fastest; we write RA decreasing
to the right as sky images are shown (``CDELT1 < 0``): ``x = npix_x - 1 - i`` and
``y = j``. The phase centre ``i = npix_x // 2, j = npix_y // 2`` is then at the
(1-based) ``CRPIX1 = npix_x - npix_x // 2``, ``CRPIX2 = npix_y // 2 + 1``. Pixels are
uniform in direction cosines, which is the SIN projection (``RA---SIN``/``DEC--SIN``).
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import numpy as np


def image_header(shape: tuple[int, int], cell_rad: float, phase_centre_rad, *,
                 ref_freq_hz: float, bandwidth_hz: float = 0.0, stokes: str = "I",
                 beam_rad: tuple[float, float, float] | None = None, bunit: str = "JY/BEAM",
                 date_obs: str | None = None, telescope: str | None = None,
                 object_name: str | None = None):
    """The FITS header of an ``(npix_x, npix_y)`` daskcal image (see the module notes).

    Parameters
    ----------
    shape : (int, int)
        ``(npix_x, npix_y)`` of the daskcal image.
    cell_rad : float
        Pixel size, radians.
    phase_centre_rad : (float, float)
        RA, Dec of the image centre (J2000), radians.
    ref_freq_hz, bandwidth_hz : float
        Frequency axis centre and width, Hz.
    stokes : {"I", "Q", "U", "V"}
    beam_rad : (bmaj, bmin, bpa), optional
        Restoring beam, radians (FWHMs, PA north through east).
    bunit : str
        ``JY/BEAM`` (restored, residual) or ``JY/PIXEL`` (model).
    date_obs : str, optional
        ISO time of the observation start.
    telescope, object_name : str, optional

    Returns
    -------
    astropy.io.fits.Header
    """
    from astropy.io import fits

    nx, ny = shape
    ra, dec = (math.degrees(x) for x in phase_centre_rad)
    cell = math.degrees(cell_rad)
    h = fits.Header()
    h["BUNIT"] = bunit
    h["BTYPE"] = "Intensity"
    for k, (ctype, crpix, crval, cdelt, cunit) in enumerate([
            ("RA---SIN", nx - nx // 2, ra % 360.0, -cell, "deg"),
            ("DEC--SIN", ny // 2 + 1, dec, cell, "deg"),
            ("FREQ", 1, float(ref_freq_hz), float(bandwidth_hz) or 1.0, "Hz"),
            ("STOKES", 1, {"I": 1, "Q": 2, "U": 3, "V": 4}[stokes], 1.0, "")], start=1):
        h[f"CTYPE{k}"] = ctype
        h[f"CRPIX{k}"] = float(crpix)
        h[f"CRVAL{k}"] = crval
        h[f"CDELT{k}"] = cdelt
        h[f"CUNIT{k}"] = cunit
    h["LONPOLE"] = 180.0
    h["RADESYS"] = "FK5"
    h["EQUINOX"] = 2000.0
    h["SPECSYS"] = "TOPOCENT"
    h["OBSRA"] = ra % 360.0
    h["OBSDEC"] = dec
    if beam_rad is not None:
        h["BMAJ"] = math.degrees(beam_rad[0])
        h["BMIN"] = math.degrees(beam_rad[1])
        h["BPA"] = math.degrees(beam_rad[2])
    if date_obs:
        h["DATE-OBS"] = date_obs
    if telescope:
        h["TELESCOP"] = telescope
    if object_name:
        h["OBJECT"] = object_name
    h["ORIGIN"] = "daskcal"
    return h


def to_fits_array(image: np.ndarray) -> np.ndarray:
    """``(npix_x, npix_y)`` daskcal image -> ``(1, 1, npix_y, npix_x)`` FITS data (float32)."""
    img = np.asarray(image)
    if img.ndim != 2:
        raise ValueError(f"image must be 2-d, got {img.shape}")
    return np.ascontiguousarray(img[::-1, :].T[None, None], dtype=np.float32)


def write_fits_image(path: str | Path, image: np.ndarray, cell_rad: float, phase_centre_rad,
                     *, overwrite: bool = False, **header_kw) -> Path:
    """Write a daskcal image as a FITS file atomically (temporary file, then rename).

    Parameters
    ----------
    path : str or Path
    image : ndarray, shape (npix_x, npix_y)
        Axis 0 ``l`` (east), axis 1 ``m`` (north).
    cell_rad, phase_centre_rad
        See :func:`image_header`.
    overwrite : bool
        Replace an existing file.
    **header_kw
        Further :func:`image_header` keywords (``ref_freq_hz`` is required).

    Returns
    -------
    Path
    """
    from astropy.io import fits

    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists (pass overwrite=True)")
    hdr = image_header(np.shape(image), cell_rad, phase_centre_rad, **header_kw)
    hdu = fits.PrimaryHDU(data=to_fits_array(image), header=hdr)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        hdu.writeto(tmp, overwrite=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


__all__ = ["image_header", "to_fits_array", "write_fits_image"]
