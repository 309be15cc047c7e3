"""Field mosaics: reproject images onto one SIN grid and combine them.

Reprojection (exact geometry)
-----------------------------
Output pixel ``(i, j)`` has direction cosines ``l = (i - n // 2) cell``,
``m = (j - n // 2) cell`` about the output centre, hence a J2000 direction
(:func:`daskcal.data.geometry.radec_of_lm`), hence direction cosines ``(l_f, m_f, n_f)``
about the phase centre of input image ``f`` (:func:`~daskcal.data.geometry.lmn_of`) and
the fractional input pixel ``x = l_f / cell_f + n_l // 2``, ``y = m_f / cell_f + n_m //
2``. The input is interpolated there with a cubic B-spline (``scipy.ndimage.
map_coordinates``, ``order=3``); points outside the input grid (or with ``n_f <= 0``) get
no value. Restored images (smooth on the scale of the restoring beam, a few pixels) keep
their peaks to a fraction of a per cent.

Two modes
---------
* **facets** (``regions`` given): every output pixel comes from the image whose region
  contains it (the first one if several do), and is NaN where none does. Regions are
  polygons in the output's ``(l, m)`` (``region_frame="lm"``) or in J2000 ``(RA, Dec)``
  radians (``"radec"``, mapped to the output's ``(l, m)``, so edges are straight there), or
  a :class:`daskcal.sky.facets.Facets`. ``PB`` is the stitched beam; ``X_PBCOR = X / PB``
  where ``PB >= cutoff``.
* **linear** (no regions): overlapping pointings are combined as
  ``I = sum_f B_f I_f w_f / sum_f B_f^2 w_f`` with ``w_f = 1 / sigma_f^2`` (``sigma_f``
  given, or the robust rms of the image's ``RESIDUAL``). ``WEIGHT = sum_f B_f^2 w_f``,
  ``PB = sqrt(WEIGHT / max_f w_f)`` (the effective beam: it equals ``B`` for a single
  pointing), ``X_PBCOR = I`` where ``PB >= cutoff`` (NaN elsewhere) and ``X = I PB`` (the
  flat-noise "apparent" mosaic).

Restoring beam: the attrs ``bmaj_rad, bmin_rad, bpa_rad`` are those of the first image
when all agree to ``beam_rtol``; otherwise they are the mean major and minor axes and the
(axial) mean position angle, every image's beam is kept in ``input_beams_rad`` and a
warning is logged (a restored flux in Jy/beam is still right for point sources;
integrated fluxes of extended sources then need the facet's own beam).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import xarray as xr

from daskcal import DaskcalError
from daskcal.data.geometry import lmn_of, radec_of_lm
from daskcal.sky.facets import Facets, point_in_polygon
from daskcal.stages.imaging.masks import robust_rms

log = logging.getLogger(__name__)

_ROWS = 256  # output rows reprojected at once (memory ~ 100 bytes x rows x npix)


class MosaicError(DaskcalError, ValueError):
    """Mosaic inputs that make no sense (mismatched lists, bad grids)."""


def output_grid(centre_rad, npix: int, cell_rad: float) -> tuple[np.ndarray, np.ndarray]:
    """``l`` and ``m`` coordinates (radians) of a square SIN grid, each shape (npix,)."""
    lm = (np.arange(npix) - npix // 2) * float(cell_rad)
    return lm, lm.copy()


def _input_grid(img: xr.Dataset):
    pc = img.attrs.get("phase_centre_rad")
    if pc is None or np.size(pc) != 2:
        raise MosaicError("every image needs a phase_centre_rad attribute (ra, dec)")
    cell = float(img.attrs["cell_rad"])
    nl, nm = img.sizes["l"], img.sizes["m"]
    return float(np.ravel(pc)[0]), float(np.ravel(pc)[1]), cell, nl, nm


def reproject_coords(img: xr.Dataset, centre_rad, l_out, m_out) -> tuple[np.ndarray, ...]:
    """Fractional pixel coordinates in ``img`` of output pixels (see the module notes).

    Parameters
    ----------
    img : xarray.Dataset
        Input image (attrs ``phase_centre_rad``, ``cell_rad``; dims ``l, m``).
    centre_rad : (float, float)
        J2000 centre of the output grid, radians.
    l_out, m_out : array, shape (n_rows,), (n_cols,)
        Output coordinates, radians.

    Returns
    -------
    x, y : ndarray, shape (n_rows, n_cols)
        Fractional indices along the input's ``l`` and ``m`` axes.
    inside : ndarray of bool, shape (n_rows, n_cols)
        Within the input grid (and in front of its tangent plane).
    """
    ra0, dec0, cell, nl, nm = _input_grid(img)
    ll, mm = np.meshgrid(np.asarray(l_out, np.float64), np.asarray(m_out, np.float64),
                         indexing="ij")
    on_sky = ll * ll + mm * mm <= 1.0
    ra, dec = radec_of_lm(ll, mm, float(centre_rad[0]), float(centre_rad[1]))
    lmn = lmn_of(ra.ravel(), dec.ravel(), ra0, dec0).reshape(ll.shape + (3,))
    x = lmn[..., 0] / cell + nl // 2
    y = lmn[..., 1] / cell + nm // 2
    inside = (on_sky & (lmn[..., 2] > 0) & (x >= -1e-9) & (x <= nl - 1 + 1e-9)
              & (y >= -1e-9) & (y <= nm - 1 + 1e-9))
    return x, y, inside


def _spline(values: np.ndarray, order: int):
    from scipy.ndimage import spline_filter

    v = np.asarray(values, dtype=np.float64)
    v = np.where(np.isfinite(v), v, 0.0)
    return spline_filter(v, order=order, mode="nearest") if order > 1 else v


def _sample(coeffs: np.ndarray, x, y, order: int) -> np.ndarray:
    from scipy.ndimage import map_coordinates

    return map_coordinates(coeffs, [x, y], order=order, mode="nearest", prefilter=False)


def _regions_lm(regions, region_frame: str, centre_rad, n: int) -> list[np.ndarray]:
    if isinstance(regions, Facets):
        polys = regions.polygons_radec(n_edge_points=16)
        region_frame = "radec"
    else:
        polys = [np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in regions]
    if len(polys) != n:
        raise MosaicError(f"{len(polys)} regions for {n} images")
    if region_frame == "lm":
        return polys
    if region_frame != "radec":
        raise MosaicError(f"region_frame must be 'lm' or 'radec', got {region_frame!r}")
    out = []
    for p in polys:
        if p.shape[0] == 0:
            out.append(p)
            continue
        lmn = lmn_of(p[:, 0], p[:, 1], float(centre_rad[0]), float(centre_rad[1]))
        out.append(lmn[:, :2])
    return out


def _restoring_beam(images, beam_rtol: float) -> dict:
    beams = [tuple(float(img.attrs[k]) for k in ("bmaj_rad", "bmin_rad", "bpa_rad"))
             for img in images if all(k in img.attrs for k in ("bmaj_rad", "bmin_rad",
                                                               "bpa_rad"))]
    if not beams:
        return {}
    b = np.array(beams)
    first = b[0]
    same = bool(np.all(np.abs(b[:, :2] - first[:2]) <= beam_rtol * first[0]))
    elongated = (b[:, 0] - b[:, 1]) > beam_rtol * b[:, 0]
    if same and np.any(elongated):  # the position angle matters only for elongated beams
        dpa = np.abs(np.angle(np.exp(2j * (b[:, 2] - first[2])))) / 2
        same = bool(np.all(dpa[elongated] <= beam_rtol * math.pi))
    if same:
        return {"bmaj_rad": first[0], "bmin_rad": first[1], "bpa_rad": first[2]}
    pa = 0.5 * float(np.angle(np.mean(np.exp(2j * b[:, 2]))))
    log.warning("restoring beams of the mosaicked images differ by more than %.3g: the "
                "mosaic's attrs give their mean", beam_rtol)
    return {"bmaj_rad": float(b[:, 0].mean()), "bmin_rad": float(b[:, 1].mean()),
            "bpa_rad": pa, "input_beams_rad": b.tolist()}


def mosaic(images: Sequence[xr.Dataset], *, centre_rad, npix: int, cell_rad: float,
           beams: Sequence | None = None, regions: Sequence | Facets | None = None,
           region_frame: Literal["lm", "radec"] = "lm", sigmas: Sequence[float] | None = None,
           cutoff: float = 0.2, variables: Sequence[str] = ("RESTORED", "RESIDUAL"),
           order: int = 3, beam_rtol: float = 0.01) -> xr.Dataset:
    """Reproject images onto one SIN grid and combine them (see the module notes).

    Parameters
    ----------
    images : sequence of xarray.Dataset
        daskcal images, each on its own SIN grid (attrs ``phase_centre_rad``,
        ``cell_rad``; dims ``(l, m)``).
    centre_rad : (float, float)
        J2000 (RA, Dec) of the output centre, radians.
    npix : int
        Output size, pixels (square).
    cell_rad : float
        Output pixel size, radians.
    beams : sequence of (xarray.DataArray or ndarray (n_l, n_m)) or None
        Power beam of each image on its own grid (:func:`~.primary_beam.beam_image`).
        Required in linear mode; in facet mode without beams no ``*_PBCOR`` is made.
    regions : sequence of polygons (k, 2) or Facets, optional
        One region per image: facet mode. Without: linear mosaic.
    region_frame : {"lm", "radec"}
        Coordinates of the polygons: the output's ``(l, m)`` or J2000 (RA, Dec), radians.
    sigmas : sequence of float, optional
        Noise of each image (linear mode), Jy/beam; default the robust rms of its
        ``RESIDUAL`` (or of the first variable).
    cutoff : float
        Lowest (effective) beam kept in the ``*_PBCOR`` images.
    variables : sequence of str
        Images to mosaic (those not in every input are skipped).
    order : int
        Spline order of the interpolation (0 nearest, 1 bilinear, 3 bicubic).
    beam_rtol : float
        Relative tolerance under which restoring beams count as equal.

    Returns
    -------
    xarray.Dataset
        dims ``(l, m)``: each variable ``X`` (apparent in facet mode, flat-noise in linear
        mode), ``X_PBCOR`` (when beams are given), ``PB``; ``WEIGHT`` (linear) or
        ``FACET`` (facet mode: index of the image used, -1 for none). attrs as
        :func:`~.stage.image` (``phase_centre_rad``, ``cell_rad``, ``ref_freq_hz``,
        restoring beam) plus ``mosaic_mode``, ``n_images``, ``pb_cutoff``.
    """
    images = list(images)
    n = len(images)
    if n == 0:
        raise MosaicError("no images to mosaic")
    if npix < 1 or not cell_rad > 0:
        raise MosaicError(f"bad output grid: npix={npix}, cell_rad={cell_rad}")
    if not 0 < cutoff <= 1:
        raise MosaicError(f"cutoff must be in (0, 1], got {cutoff}")
    if beams is not None and len(beams) != n:
        raise MosaicError(f"{len(beams)} beams for {n} images")
    names = [v for v in variables if all(v in img for img in images)]
    if not names:
        raise MosaicError(f"none of {list(variables)} is in every image")
    facet_mode = regions is not None
    if not facet_mode and beams is None:
        raise MosaicError("a linear mosaic needs the beam of every image")
    centre = (float(np.ravel(centre_rad)[0]), float(np.ravel(centre_rad)[1]))
    l_out, m_out = output_grid(centre, npix, cell_rad)
    coeffs = [{v: _spline(img[v].values, order) for v in names} for img in images]
    bcoef = None if beams is None else [
        _spline(np.asarray(b.values if isinstance(b, xr.DataArray) else b), order)
        for b in beams]
    out = {v: np.full((npix, npix), np.nan) for v in names}
    pb = np.full((npix, npix), np.nan)
    if facet_mode:
        polys = _regions_lm(regions, region_frame, centre, n)
        facet = np.full((npix, npix), -1, dtype=np.int64)
    else:
        if sigmas is None:
            ref = "RESIDUAL" if all("RESIDUAL" in img for img in images) else names[0]
            sigmas = [robust_rms(img[ref].values) for img in images]
        sig = np.asarray(sigmas, dtype=np.float64)
        if sig.shape != (n,) or np.any(~(sig > 0)):
            raise MosaicError("sigmas must be one positive value per image")
        w = 1.0 / sig**2
        num = {v: np.zeros((npix, npix)) for v in names}
        wsum = np.zeros((npix, npix))
    for r0 in range(0, npix, _ROWS):
        rows = slice(r0, min(npix, r0 + _ROWS))
        ll, mm = np.meshgrid(l_out[rows], m_out, indexing="ij")
        for f, img in enumerate(images):
            x, y, inside = reproject_coords(img, centre, l_out[rows], m_out)
            if facet_mode:
                take = inside & (facet[rows] < 0)
                take &= point_in_polygon(ll.ravel(), mm.ravel(), polys[f]).reshape(ll.shape)
                if not np.any(take):
                    continue
                facet[rows][take] = f
                for v in names:
                    out[v][rows][take] = _sample(coeffs[f][v], x[take], y[take], order)
                if bcoef is not None:
                    pb[rows][take] = _sample(bcoef[f], x[take], y[take], order)
            else:
                if not np.any(inside):
                    continue
                b = _sample(bcoef[f], x[inside], y[inside], order)
                b = np.where(np.isfinite(b), b, 0.0)
                wsum[rows][inside] += b * b * w[f]
                for v in names:
                    num[v][rows][inside] += b * w[f] * _sample(coeffs[f][v], x[inside],
                                                               y[inside], order)
    data: dict = {}
    if facet_mode:
        for v in names:
            data[v] = (("l", "m"), out[v], dict(images[0][v].attrs))
        data["FACET"] = (("l", "m"), facet, {"units": "", "description": "index of the image "
                                             "each pixel comes from (-1: none)"})
    else:
        wmax = float(w.max())
        pb = np.sqrt(wsum / wmax)
        has = wsum > 0
        for v in names:
            mos = np.where(has, num[v] / np.where(has, wsum, 1.0), np.nan)
            out[v] = mos
            data[v] = (("l", "m"), np.where(has, mos * pb, np.nan), dict(images[0][v].attrs))
        data["WEIGHT"] = (("l", "m"), wsum, {"units": "Jy^-2 beam^2",
                                             "description": "sum_f B_f^2 / sigma_f^2"})
    if bcoef is not None:
        keep = np.isfinite(pb) & (pb >= cutoff)
        if facet_mode:
            safe = np.where(keep, pb, 1.0)
            for v in names:
                data[f"{v}_PBCOR"] = (("l", "m"), np.where(keep, out[v] / safe, np.nan),
                                      dict(images[0][v].attrs))
        else:
            for v in names:
                data[f"{v}_PBCOR"] = (("l", "m"), np.where(keep, out[v], np.nan),
                                      dict(images[0][v].attrs))
        data["PB"] = (("l", "m"), pb, {"units": "1"})
    attrs = {"type": "image", "phase_centre_rad": list(centre), "cell_rad": float(cell_rad),
             "mosaic_mode": "facets" if facet_mode else "linear", "n_images": n,
             "pb_cutoff": float(cutoff), "interpolation_order": int(order)}
    freqs = [float(img.attrs["ref_freq_hz"]) for img in images if "ref_freq_hz" in img.attrs]
    if freqs:
        attrs["ref_freq_hz"] = float(np.mean(freqs))
    attrs.update(_restoring_beam(images, beam_rtol))
    return xr.Dataset(data, coords={"l": l_out, "m": m_out}, attrs=attrs)


__all__ = ["MosaicError", "mosaic", "output_grid", "reproject_coords"]
