"""FITS image export: SIN projection, spectral and STOKES axes, beams, atomic writes.

Orientation: daskcal images are ``image[i, j]`` with axis 0 ``l`` (east, increasing RA)
and axis 1 ``m`` (north), ``l = (i - npix_x // 2) cell`` (the gridder's layout). FITS
stores ``data[stokes, freq, y, x]`` with ``x`` (NAXIS1) fastest; we write RA decreasing
to the right as sky images are shown (``CDELT1 < 0``): ``x = npix_x - 1 - i`` and
``y = j``. The phase centre ``i = npix_x // 2, j = npix_y // 2`` is then at the
(1-based) ``CRPIX1 = npix_x - npix_x // 2``, ``CRPIX2 = npix_y // 2 + 1``. Pixels are
uniform in direction cosines, which is the SIN projection (``RA---SIN``/``DEC--SIN``).

Spectral axis (axis 3): ``FREQ`` (Hz) for images and frequency cubes (``CDELT3`` the
channel spacing), or ``VRAD`` / ``VOPT`` (m/s, radio / optical velocity) for velocity
cubes, with ``SPECSYS`` (``TOPOCENT``, ``LSRK``, ``BARYCENT``), ``RESTFRQ`` and the
observatory position ``OBSGEO-X/Y/Z`` (ITRF, m) so that WCS readers can change frames.
A cube's axis must be regular in its own unit (a radio-velocity axis is regular in
frequency too; an optical-velocity axis is not, so it is written as ``VOPT``).

Beams of cubes: ``BMAJ``/``BMIN``/``BPA`` of the primary header are the median of the
channel beams, and a CASA-style ``BEAMS`` binary table (``BMAJ``, ``BMIN`` in arcsec,
``BPA`` in degrees, ``CHAN``, ``POL``; primary ``CASAMBM = T``) gives every channel's
beam (NaN for empty channels).

Time: ``DATE-OBS`` (ISO, UTC) and ``MJD-OBS`` are the start of the observation (the
first integration's start), ``TIMESYS = 'UTC'``.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: MJD of the unix epoch.
_MJD_UNIX = 40587.0
_STOKES = {"I": 1, "Q": 2, "U": 3, "V": 4}
_SPECSYS = {"TOPO": "TOPOCENT", "LSRK": "LSRK", "BARY": "BARYCENT"}
#: FITS units of the image products written by :func:`write_image_products`.
PRODUCT_UNITS = {"DIRTY": "JY/BEAM", "RESTORED": "JY/BEAM", "RESIDUAL": "JY/BEAM",
                 "MODEL": "JY/PIXEL", "RESTORED_PBCOR": "JY/BEAM",
                 "RESIDUAL_PBCOR": "JY/BEAM", "MODEL_PBCOR": "JY/PIXEL", "PB": ""}


@dataclass(frozen=True)
class SpectralAxis:
    """A regular FITS spectral axis: ``value(k) = crval + (k + 1 - crpix) cdelt``.

    ``ctype`` is ``FREQ`` (Hz) or ``VRAD`` / ``VOPT`` (m/s).
    """

    ctype: str
    crval: float
    cdelt: float
    crpix: float = 1.0

    @property
    def cunit(self) -> str:
        """Unit of the axis."""
        return "Hz" if self.ctype == "FREQ" else "m/s"


def _iso(unix_s: float) -> str:
    t = _dt.datetime.fromtimestamp(float(unix_s), _dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]


def image_header(shape: tuple[int, int], cell_rad: float, phase_centre_rad, *,
                 ref_freq_hz: float = 0.0, bandwidth_hz: float = 0.0, stokes: str = "I",
                 beam_rad: tuple[float, float, float] | None = None, bunit: str = "JY/BEAM",
                 date_obs: str | None = None, telescope: str | None = None,
                 object_name: str | None = None, time_start_unix_s: float | None = None,
                 observer: str | None = None, specsys: str = "TOPOCENT",
                 spectral: SpectralAxis | None = None, rest_freq_hz: float | None = None,
                 obsgeo_itrf_m=None):
    """The FITS header of an ``(npix_x, npix_y)`` daskcal image (see the module notes).

    Parameters
    ----------
    shape : (int, int)
        ``(npix_x, npix_y)`` of the daskcal image (of one channel for cubes).
    cell_rad : float
        Pixel size, radians.
    phase_centre_rad : (float, float)
        RA, Dec of the image centre (J2000), radians.
    ref_freq_hz, bandwidth_hz : float
        Frequency axis centre and width, Hz (when ``spectral`` is not given).
    stokes : {"I", "Q", "U", "V"}
    beam_rad : (bmaj, bmin, bpa), optional
        Restoring beam, radians (FWHMs, PA north through east).
    bunit : str
        ``JY/BEAM`` (restored, residual) or ``JY/PIXEL`` (model).
    date_obs : str, optional
        ISO time of the observation start (``time_start_unix_s`` takes precedence).
    telescope, object_name, observer : str, optional
    time_start_unix_s : float, optional
        Start of the observation, unix seconds (UTC): ``DATE-OBS`` and ``MJD-OBS``.
    specsys : str
        ``SPECSYS`` (``TOPOCENT``, ``LSRK``, ``BARYCENT``; ``TOPO``/``BARY`` accepted).
    spectral : SpectralAxis, optional
        A cube's spectral axis (replaces ``ref_freq_hz``/``bandwidth_hz``).
    rest_freq_hz : float, optional
        ``RESTFRQ`` (needed by velocity axes).
    obsgeo_itrf_m : (x, y, z), optional
        Observatory position, ITRF metres (``OBSGEO-X/Y/Z``).

    Returns
    -------
    astropy.io.fits.Header
    """
    from astropy.io import fits

    nx, ny = shape[-2:]
    ra, dec = (math.degrees(x) for x in phase_centre_rad)
    cell = math.degrees(cell_rad)
    if spectral is None:
        spectral = SpectralAxis("FREQ", float(ref_freq_hz), float(bandwidth_hz) or 1.0)
    if spectral.ctype not in ("FREQ", "VRAD", "VOPT"):
        raise ValueError(f"spectral ctype must be FREQ, VRAD or VOPT, got {spectral.ctype!r}")
    if spectral.ctype != "FREQ" and not rest_freq_hz:
        raise ValueError(f"a {spectral.ctype} axis needs rest_freq_hz")
    h = fits.Header()
    h["BUNIT"] = bunit
    h["BTYPE"] = "Intensity"
    for k, (ctype, crpix, crval, cdelt, cunit) in enumerate([
            ("RA---SIN", nx - nx // 2, ra % 360.0, -cell, "deg"),
            ("DEC--SIN", ny // 2 + 1, dec, cell, "deg"),
            (spectral.ctype, spectral.crpix, spectral.crval, spectral.cdelt, spectral.cunit),
            ("STOKES", 1, _STOKES[stokes], 1.0, "")], start=1):
        h[f"CTYPE{k}"] = ctype
        h[f"CRPIX{k}"] = float(crpix)
        h[f"CRVAL{k}"] = crval
        h[f"CDELT{k}"] = cdelt
        h[f"CUNIT{k}"] = cunit
    h["LONPOLE"] = 180.0
    h["RADESYS"] = "FK5"
    h["EQUINOX"] = 2000.0
    h["SPECSYS"] = _SPECSYS.get(specsys, specsys)
    if rest_freq_hz:
        h["RESTFRQ"] = float(rest_freq_hz)
    h["OBSRA"] = ra % 360.0
    h["OBSDEC"] = dec
    if obsgeo_itrf_m is not None:
        # X/Y/Z only: wcslib derives OBSGEO-L/B/H itself (and reports, with astropy's
        # FITSFixedWarning, a few metres of disagreement with WGS84 geodetic values)
        for axis, value in zip("XYZ", np.asarray(obsgeo_itrf_m, dtype=float), strict=True):
            h[f"OBSGEO-{axis}"] = float(value)
    if beam_rad is not None and np.all(np.isfinite(beam_rad)):
        h["BMAJ"] = math.degrees(beam_rad[0])
        h["BMIN"] = math.degrees(beam_rad[1])
        h["BPA"] = math.degrees(beam_rad[2])
    if time_start_unix_s is not None:
        h["DATE-OBS"] = _iso(time_start_unix_s)
        h["MJD-OBS"] = (float(time_start_unix_s) / 86400.0 + _MJD_UNIX, "start, UTC")
        h["TIMESYS"] = "UTC"
    elif date_obs:
        h["DATE-OBS"] = date_obs
        try:
            t = _dt.datetime.fromisoformat(date_obs)
        except ValueError:
            t = None  # not ISO 8601: leave MJD-OBS to the reader
        if t is not None:
            t = t if t.tzinfo is not None else t.replace(tzinfo=_dt.UTC)
            h["MJD-OBS"] = (t.timestamp() / 86400.0 + _MJD_UNIX, "start, UTC")
            h["TIMESYS"] = "UTC"
    if telescope:
        h["TELESCOP"] = telescope
    if observer:
        h["OBSERVER"] = observer
    if object_name:
        h["OBJECT"] = object_name
    h["ORIGIN"] = "daskcal"
    return h


def to_fits_array(image: np.ndarray) -> np.ndarray:
    """Daskcal image(s) -> FITS data (float32).

    ``(npix_x, npix_y)`` becomes ``(1, 1, npix_y, npix_x)``; a cube ``(n_chan, npix_x,
    npix_y)`` becomes ``(1, n_chan, npix_y, npix_x)`` (STOKES, FREQ, DEC, RA).
    """
    img = np.asarray(image)
    if img.ndim == 2:
        img = img[None]
    if img.ndim != 3:
        raise ValueError(f"image must be 2-d or a 3-d cube, got {img.shape}")
    return np.ascontiguousarray(img[:, ::-1, :].transpose(0, 2, 1)[None], dtype=np.float32)


def _write_atomic(hdul, path: Path, overwrite: bool) -> Path:
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists (pass overwrite=True)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        hdul.writeto(tmp, overwrite=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


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

    hdr = image_header(np.shape(image), cell_rad, phase_centre_rad, **header_kw)
    hdu = fits.PrimaryHDU(data=to_fits_array(image), header=hdr)
    return _write_atomic(fits.HDUList([hdu]), Path(path), overwrite)


def _regular(values, what: str) -> tuple[float, float]:
    v = np.asarray(values, dtype=np.float64)
    if v.size < 2:
        return float(v[0]), 0.0
    d = np.diff(v)
    if not np.allclose(d, d[0], rtol=1e-9, atol=0.0):
        raise ValueError(f"the {what} axis is not regular (spacings {d.min():g}..{d.max():g})")
    return float(v[0]), float(d[0])


def spectral_axis_of(freq_hz, *, velocity_km_s=None, velocity_convention: str = "radio",
                     channel_width: float | None = None) -> SpectralAxis:
    """The :class:`SpectralAxis` of a cube's channels (frequency or velocity).

    Parameters
    ----------
    freq_hz : array, shape (n_chan,)
        Channel centres, Hz (regular unless a velocity axis is given).
    velocity_km_s : array, shape (n_chan,), optional
        Channel velocities, km/s: the axis is then ``VRAD`` or ``VOPT`` in m/s.
    velocity_convention : {"radio", "optical"}
    channel_width : float, optional
        Channel width of a one-channel axis: Hz, or km/s for a velocity axis.
    """
    if velocity_km_s is not None:
        v0, dv = _regular(np.asarray(velocity_km_s) * 1e3, "velocity")
        ctype = {"radio": "VRAD", "optical": "VOPT"}[velocity_convention]
        return SpectralAxis(ctype, v0, dv or 1e3 * float(channel_width or 1.0))
    f0, df = _regular(freq_hz, "frequency")
    return SpectralAxis("FREQ", f0, df or float(channel_width or 1.0))


def beams_table(beams_rad):
    """CASA-style per-channel ``BEAMS`` table of beams ``(n_chan, 3)`` (radians)."""
    from astropy.io import fits

    b = np.asarray(beams_rad, dtype=np.float64).reshape(-1, 3)
    n = b.shape[0]
    cols = [fits.Column("BMAJ", "1E", unit="arcsec", array=np.degrees(b[:, 0]) * 3600.0),
            fits.Column("BMIN", "1E", unit="arcsec", array=np.degrees(b[:, 1]) * 3600.0),
            fits.Column("BPA", "1E", unit="deg", array=np.degrees(b[:, 2])),
            fits.Column("CHAN", "1J", array=np.arange(n, dtype=np.int32)),
            fits.Column("POL", "1J", array=np.zeros(n, dtype=np.int32))]
    hdu = fits.BinTableHDU.from_columns(cols, name="BEAMS")
    hdu.header["EXTVER"] = 1
    hdu.header["NCHAN"] = n
    hdu.header["NPOL"] = 1
    return hdu


def write_fits_cube(path: str | Path, cube: np.ndarray, cell_rad: float, phase_centre_rad, *,
                    freq_hz, velocity_km_s=None, velocity_convention: str = "radio",
                    beams_rad=None, channel_width: float | None = None,
                    overwrite: bool = False, **header_kw) -> Path:
    """Write a cube ``(n_chan, npix_x, npix_y)`` as 4-D FITS (STOKES, FREQ, DEC, RA), atomically.

    Parameters
    ----------
    path : str or Path
    cube : ndarray, shape (n_chan, npix_x, npix_y)
    cell_rad, phase_centre_rad
        See :func:`image_header`.
    freq_hz : array, shape (n_chan,)
        Channel centres, Hz.
    velocity_km_s : array, shape (n_chan,), optional
        Write a velocity axis (``VRAD``/``VOPT``; needs ``rest_freq_hz``).
    velocity_convention : {"radio", "optical"}
    beams_rad : array, shape (n_chan, 3), optional
        Per-channel beams: the median goes to ``BMAJ/BMIN/BPA`` and all to a ``BEAMS``
        table.
    channel_width : float, optional
        Channel width of a one-channel cube (Hz, or km/s for a velocity axis).
    overwrite : bool
    **header_kw
        Further :func:`image_header` keywords (``specsys``, ``rest_freq_hz``, times...).
    """
    from astropy.io import fits

    cube = np.asarray(cube)
    if cube.ndim != 3 or cube.shape[0] != np.size(freq_hz):
        raise ValueError(f"cube must be (n_chan, npix_x, npix_y) with n_chan = "
                         f"{np.size(freq_hz)}, got {cube.shape}")
    axis = spectral_axis_of(freq_hz, velocity_km_s=velocity_km_s,
                            velocity_convention=velocity_convention,
                            channel_width=channel_width)
    hdus = []
    if beams_rad is not None:
        b = np.asarray(beams_rad, dtype=np.float64).reshape(-1, 3)
        good = np.isfinite(b).all(axis=1)
        if good.any():
            header_kw["beam_rad"] = tuple(np.median(b[good], axis=0))
        hdus.append(beams_table(b))
    hdr = image_header(cube.shape[1:], cell_rad, phase_centre_rad, spectral=axis, **header_kw)
    if hdus:
        hdr["CASAMBM"] = (True, "per-channel beams in the BEAMS table")
    hdul = fits.HDUList([fits.PrimaryHDU(data=to_fits_array(cube), header=hdr), *hdus])
    return _write_atomic(hdul, Path(path), overwrite)


def observation_metadata(node) -> dict:
    """:func:`image_header` keywords known from a partition node.

    ``time_start_unix_s`` (first integration start), ``telescope``, ``observer``,
    ``object_name`` (first field) and ``obsgeo_itrf_m`` (mean antenna position), each
    when present.
    """
    from daskcal.data.model import ANTENNA_NODE, field_xds_of, quantity_value

    vis = node.to_dataset(inherit=False)
    out: dict = {}
    if "time" in vis.coords and vis.sizes.get("time"):
        dt = quantity_value(vis["time"].attrs.get("integration_time"), 0.0)
        out["time_start_unix_s"] = float(np.nanmin(vis["time"].values)) - 0.5 * dt
    info = vis.attrs.get("observation_info") or {}
    observer = info.get("observer")
    if isinstance(observer, list | tuple):
        observer = next((str(o) for o in observer if o), None)
    if observer:
        out["observer"] = str(observer)
    if ANTENNA_NODE in node.children:
        ant = node[ANTENNA_NODE].to_dataset(inherit=False)
        tel = info.get("telescope_name") or ant.attrs.get("overall_telescope_name")
        if tel:
            out["telescope"] = str(tel)
        if "ANTENNA_POSITION" in ant:
            pos = np.asarray(ant["ANTENNA_POSITION"].values, dtype=np.float64).reshape(-1, 3)
            out["obsgeo_itrf_m"] = tuple(pos.mean(axis=0))
    try:
        names = field_xds_of(node)["field_name"].values
        if names.size:
            out["object_name"] = str(names.ravel()[0])
    except KeyError:
        pass
    return out


def _image_kw(xds, meta: dict) -> dict:
    a = xds.attrs
    kw = dict(meta)
    if a.get("obs_start_unix_s") is not None:
        kw.setdefault("time_start_unix_s", float(a["obs_start_unix_s"]))
    if a.get("field_name"):
        kw.setdefault("object_name", str(a["field_name"]))
    if a.get("specsys"):
        kw["specsys"] = str(a["specsys"])
    if a.get("rest_freq_hz"):
        kw["rest_freq_hz"] = float(a["rest_freq_hz"])
    return kw


def _thumbnail_source(xds):
    """A 2-D image dataset for the thumbnail, and the variable to show."""
    import xarray as xr

    for var in ("RESTORED_PBCOR", "MFS_RESTORED", "RESTORED", "MFS_DIRTY", "DIRTY"):
        if var in xds:
            break
    else:
        return None, None
    da_ = xds[var]
    if "chan" in da_.dims:
        with np.errstate(all="ignore"):
            plane = np.nanmean(np.asarray(da_.values, dtype=np.float64), axis=0)
        da_ = xr.DataArray(plane, dims=("l", "m"), attrs=dict(da_.attrs))
    keep = {k: xds.attrs[k] for k in ("cell_rad", "bmaj_rad", "bmin_rad", "bpa_rad",
                                      "field_name") if k in xds.attrs}
    return xr.Dataset({var: da_}, attrs=keep), var


def write_image_products(image_xds, directory: str | Path, stem: str, *, node=None,
                         overwrite: bool = True, thumbnails: bool = True,
                         **header_kw) -> dict[str, Path]:
    """Write an image (``image()``) or cube (``image_cube()``) dataset's products.

    Every variable of :data:`PRODUCT_UNITS` present (and ``MFS_*`` continuum images of a
    cube) becomes ``<stem>-<name>.fits`` (lower case, ``_`` -> ``-``), 2-D images as
    ``(1, 1, y, x)`` and cubes ``(chan, l, m)`` as ``(1, n_chan, y, x)`` with a
    per-channel ``BEAMS`` table; then ``<stem>.png`` and ``<stem>.jpg`` thumbnails
    (:func:`daskcal.qa.plots.plot_image`) of the restored image (the continuum or the
    channel mean for cubes). Every file is written atomically.

    Parameters
    ----------
    image_xds : xarray.Dataset
        Attrs ``cell_rad``, ``phase_centre_rad`` and (2-D) ``ref_freq_hz``,
        ``bandwidth_hz``, ``bmaj_rad, bmin_rad, bpa_rad``; cubes carry a ``frequency``
        (and ``velocity``) coordinate along ``chan`` and ``BEAM_MAJOR/MINOR/PA``.
    directory : str or Path
        Created if missing.
    stem : str
        File name prefix.
    node : xarray.DataTree, optional
        The imaged partition: observation start, telescope, observer, field, site
        (:func:`observation_metadata`).
    overwrite : bool
    thumbnails : bool
    **header_kw
        Override any :func:`image_header` keyword.

    Returns
    -------
    dict
        ``{variable or "png"/"jpg": Path}``.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    meta = observation_metadata(node) if node is not None else {}
    kw = {**_image_kw(image_xds, meta), **header_kw}
    a = image_xds.attrs
    cell = float(a["cell_rad"])
    centre = tuple(float(x) for x in a["phase_centre_rad"])
    files: dict[str, Path] = {}
    names = [v for v in image_xds.data_vars
             if v in PRODUCT_UNITS or (v.startswith("MFS_") and v[4:] in PRODUCT_UNITS)]
    for var in names:
        da_ = image_xds[var]
        bunit = PRODUCT_UNITS[var.removeprefix("MFS_")]
        path = directory / f"{stem}-{var.lower().replace('_', '-')}.fits"
        if da_.dims == ("chan", "l", "m"):
            vel = image_xds["velocity"].values if (
                "velocity" in image_xds.coords and a.get("spectral_axis") == "velocity") else None
            beams = (np.stack([image_xds[k].values for k in ("BEAM_MAJOR", "BEAM_MINOR",
                                                              "BEAM_PA")], axis=1)
                     if "BEAM_MAJOR" in image_xds else None)
            files[var] = write_fits_cube(
                path, da_.values, cell, centre, freq_hz=image_xds["frequency"].values,
                velocity_km_s=vel, velocity_convention=a.get("velocity_convention", "radio"),
                beams_rad=beams, channel_width=a.get("channel_width"),
                overwrite=overwrite, bunit=bunit, **kw)
        elif da_.dims == ("l", "m"):
            mfs = var.startswith("MFS_")
            ref = a.get("mfs_ref_freq_hz" if mfs else "ref_freq_hz", 0.0)
            bw = a.get("mfs_bandwidth_hz" if mfs else "bandwidth_hz", 0.0)
            beam = ((a["bmaj_rad"], a["bmin_rad"], a["bpa_rad"]) if "bmaj_rad" in a
                    else None)
            kw2 = {**kw, "specsys": "TOPOCENT"} if mfs else kw  # MFS: data frequencies
            files[var] = write_fits_image(path, da_.values, cell, centre, overwrite=overwrite,
                                          ref_freq_hz=float(ref), bandwidth_hz=float(bw),
                                          beam_rad=beam, bunit=bunit, **kw2)
    if thumbnails:
        from daskcal.qa.plots import plot_image

        thumb, var = _thumbnail_source(image_xds)
        if thumb is not None:
            files["png"] = plot_image(thumb, var, directory / f"{stem}.png",
                                      directory / f"{stem}.jpg")
            files["jpg"] = directory / f"{stem}.jpg"
    return files


__all__ = ["PRODUCT_UNITS", "SpectralAxis", "beams_table", "image_header",
           "observation_metadata", "spectral_axis_of", "to_fits_array", "write_fits_cube",
           "write_fits_image", "write_image_products"]
