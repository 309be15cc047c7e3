"""Field mosaics of analytic images made on different SIN grids.

The input images are built here from the sky (RA/Dec, flux) through astropy's WCS of
each grid's FITS header (independent of daskcal's geometry); the truth in the output
grid (source pixel positions) comes from the output grid's WCS the same way.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import xarray as xr
from scipy import optimize

from daskcal.sky.facets import voronoi_polygons
from daskcal.stages.imaging.mosaic import MosaicError, mosaic
from daskcal.stages.imaging.primary_beam import beam_image

C = 299_792_458.0
FREQ = 1.4e9
DIAM = 25.0
FWHM_PB_DEG = math.degrees(1.02 * C / FREQ / DIAM)  # 0.5 deg
RESTORE_AS = 50.0  # restoring beam FWHM, arcsec
CENTRES = [(150.0, 40.0), (150.3, 40.15)]  # two pointings ~0.27 deg apart
NPIX_IN, CELL_IN_AS = 160, 10.0
OUT_CENTRE, NPIX_OUT, CELL_OUT_AS = (150.15, 40.07), 200, 8.0
# (ra, dec, flux): near each pointing, and in the overlap
SKY = [(149.95, 40.03, 1.0), (150.33, 40.12, 2.0), (150.16, 40.09, 0.8), (150.05, 39.94, 0.5)]


def wcs_of(centre_deg, npix, cell_as):
    from astropy.wcs import WCS

    from daskcal.data.fits import image_header

    h = image_header((npix, npix), math.radians(cell_as / 3600), np.radians(centre_deg),
                     ref_freq_hz=FREQ)
    return WCS(h).celestial


def daskcal_pixel(w, npix, ra_deg, dec_deg):
    """(i, j) fractional daskcal pixel of directions, via astropy (FITS x = npix - 1 - i)."""
    from astropy.coordinates import SkyCoord

    x, y = w.world_to_pixel(SkyCoord(ra_deg, dec_deg, unit="deg", frame="fk5"))
    return npix - 1 - np.asarray(x), np.asarray(y)


def primary_beam_at(centre_deg, ra_deg, dec_deg):
    from astropy.coordinates import SkyCoord

    rho = SkyCoord(ra_deg, dec_deg, unit="deg", frame="fk5").separation(
        SkyCoord(*centre_deg, unit="deg", frame="fk5")).deg
    return np.exp(-4 * math.log(2) * (rho / FWHM_PB_DEG) ** 2)


def analytic_image(centre_deg, *, residual=0.0, sky=SKY):
    """An apparent restored image (sources x primary beam, restoring beam RESTORE_AS)."""
    w = wcs_of(centre_deg, NPIX_IN, CELL_IN_AS)
    ii, jj = np.meshgrid(np.arange(NPIX_IN), np.arange(NPIX_IN), indexing="ij")
    img = np.zeros((NPIX_IN, NPIX_IN))
    model = np.zeros((NPIX_IN, NPIX_IN))
    sig_px = RESTORE_AS / CELL_IN_AS / math.sqrt(8 * math.log(2))
    for ra, dec, s in sky:
        x, y = daskcal_pixel(w, NPIX_IN, ra, dec)
        b = primary_beam_at(centre_deg, ra, dec)
        img += s * b * np.exp(-((ii - x) ** 2 + (jj - y) ** 2) / (2 * sig_px**2))
        if 0 <= round(float(x)) < NPIX_IN and 0 <= round(float(y)) < NPIX_IN:
            model[round(float(x)), round(float(y))] += s * b
    cell = math.radians(CELL_IN_AS / 3600)
    lm = (np.arange(NPIX_IN) - NPIX_IN // 2) * cell
    beam_rad = math.radians(RESTORE_AS / 3600)
    return xr.Dataset(
        {"RESTORED": (("l", "m"), img + residual, {"units": "Jy/beam"}),
         "RESIDUAL": (("l", "m"), np.full((NPIX_IN, NPIX_IN), residual), {"units": "Jy/beam"}),
         "MODEL": (("l", "m"), model, {"units": "Jy/pixel"})},
        coords={"l": lm, "m": lm},
        attrs={"type": "image", "phase_centre_rad": list(np.radians(centre_deg)),
               "cell_rad": cell, "ref_freq_hz": FREQ, "bmaj_rad": beam_rad,
               "bmin_rad": beam_rad, "bpa_rad": 0.0})


def fit_peak(img, x, y, cell_as, half=4):
    """Sub-pixel Gaussian fit (restoring-beam width fixed): (x, y, amplitude)."""
    i, j = int(round(float(x))), int(round(float(y)))
    ii, jj = np.mgrid[i - half:i + half + 1, j - half:j + half + 1]
    data = img[ii, jj].ravel()
    sig = RESTORE_AS / cell_as / math.sqrt(8 * math.log(2))

    def resid(p):
        return (p[2] * np.exp(-((ii - p[0]) ** 2 + (jj - p[1]) ** 2) / (2 * sig**2))).ravel() - data

    return optimize.least_squares(resid, [i, j, img[i, j]]).x


@pytest.fixture(scope="module")
def inputs():
    images = [analytic_image(c, residual=1e-3 * (k + 1)) for k, c in enumerate(CENTRES)]
    beams = [beam_image(img, model="gaussian", diameter_m=DIAM) for img in images]
    return images, beams


def out_grid():
    return dict(centre_rad=np.radians(OUT_CENTRE), npix=NPIX_OUT,
                cell_rad=math.radians(CELL_OUT_AS / 3600))


def test_linear_mosaic_fluxes_and_positions(inputs):
    images, beams = inputs
    out = mosaic(images, beams=beams, sigmas=[1.0, 1.0], cutoff=0.2, **out_grid())
    w_out = wcs_of(OUT_CENTRE, NPIX_OUT, CELL_OUT_AS)
    for ra, dec, s in SKY:
        x, y = daskcal_pixel(w_out, NPIX_OUT, ra, dec)
        fx, fy, amp = fit_peak(out.RESTORED_PBCOR.values - out.RESIDUAL_PBCOR.values, x, y,
                               CELL_OUT_AS)
        assert abs(fx - x) < 0.1 and abs(fy - y) < 0.1, (ra, dec, fx - x, fy - y)
        assert amp == pytest.approx(s, rel=0.01), (ra, dec)
    # a pixel seen by both pointings is their beam-weighted combination
    assert out.attrs["mosaic_mode"] == "linear" and out.attrs["n_images"] == 2
    assert out.attrs["bmaj_rad"] == pytest.approx(math.radians(RESTORE_AS / 3600))
    keep = np.isfinite(out.RESTORED_PBCOR.values)
    np.testing.assert_allclose(out.RESTORED.values[keep],
                               (out.RESTORED_PBCOR * out.PB).values[keep], rtol=1e-12)
    assert np.all(out.PB.values[keep] >= 0.2)
    np.testing.assert_allclose(out.WEIGHT.values, out.PB.values ** 2, rtol=1e-12)


def test_linear_mosaic_weights_by_noise(inputs):
    """Unequal sigmas: the overlap is the inverse-variance, beam-weighted mean."""
    images, beams = inputs
    sig = [1.0, 3.0]
    out = mosaic(images, beams=beams, sigmas=sig, variables=("RESIDUAL",), **out_grid())
    # RESIDUAL is constant (1e-3, 2e-3 Jy/beam) in each image: check one overlap pixel
    i, j = NPIX_OUT // 2, NPIX_OUT // 2
    from astropy.coordinates import SkyCoord

    w_out = wcs_of(OUT_CENTRE, NPIX_OUT, CELL_OUT_AS)
    pos = w_out.pixel_to_world(NPIX_OUT - 1 - i, j)
    b = [primary_beam_at(c, pos.ra.deg, pos.dec.deg) for c in CENTRES]
    wts = [1 / s**2 for s in sig]
    r = [1e-3, 2e-3]
    expect = sum(bb * rr * ww for bb, rr, ww in zip(b, r, wts, strict=True)) / sum(
        bb * bb * ww for bb, ww in zip(b, wts, strict=True))
    assert out.RESIDUAL_PBCOR.values[i, j] == pytest.approx(expect, rel=1e-4)
    assert isinstance(pos, SkyCoord)


def test_facet_mosaic_picks_the_right_facet(inputs):
    images, beams = inputs
    grid = out_grid()
    # Voronoi facets around the two image centres, in the output's (l, m)
    from daskcal.data.geometry import lmn_of

    centres_lm = lmn_of(*np.radians(np.array(CENTRES).T), *grid["centre_rad"])[:, :2]
    width = NPIX_OUT * grid["cell_rad"]
    polys = voronoi_polygons(centres_lm, width * 1.01)
    out = mosaic(images, beams=beams, regions=polys, **grid)
    assert out.attrs["mosaic_mode"] == "facets"
    facet = out.FACET.values
    # reference: nearest centre, for pixels inside the chosen image (astropy geometry)
    w_out = wcs_of(OUT_CENTRE, NPIX_OUT, CELL_OUT_AS)
    ii, jj = np.meshgrid(np.arange(NPIX_OUT), np.arange(NPIX_OUT), indexing="ij")
    world = w_out.pixel_to_world((NPIX_OUT - 1 - ii).ravel(), jj.ravel())
    from astropy.coordinates import SkyCoord

    d = np.stack([world.separation(SkyCoord(*c, unit="deg", frame="fk5")).rad
                  for c in CENTRES])
    # distances in the output tangent plane decide; on the sky they agree except within
    # a pixel of the boundary
    ll = (ii.ravel() - NPIX_OUT // 2) * grid["cell_rad"]
    mm = (jj.ravel() - NPIX_OUT // 2) * grid["cell_rad"]
    dl = np.stack([np.hypot(ll - c[0], mm - c[1]) for c in centres_lm])
    nearest = np.argmin(dl, axis=0)
    margin = np.abs(dl[0] - dl[1]) > 2 * grid["cell_rad"]
    assert np.all(np.argmin(d, axis=0)[margin] == nearest[margin])
    covered = np.zeros(ii.size, bool)
    for f, c in enumerate(CENTRES):
        x, y = daskcal_pixel(wcs_of(c, NPIX_IN, CELL_IN_AS), NPIX_IN, world.ra.deg,
                             world.dec.deg)
        inside = (x >= 0) & (x <= NPIX_IN - 1) & (y >= 0) & (y <= NPIX_IN - 1)
        covered |= (nearest == f) & inside
    ok = margin & covered
    assert ok.sum() > 0.5 * ii.size
    np.testing.assert_array_equal(facet.ravel()[ok], nearest[ok])
    assert np.all(facet.ravel()[~covered & margin] == -1)
    # each pixel holds its facet's values: RESIDUAL is 1e-3 (k + 1) in image k
    res = out.RESIDUAL.values.ravel()
    np.testing.assert_allclose(res[facet.ravel() >= 0], 1e-3 * (facet.ravel()[facet.ravel() >= 0]
                                                                 + 1), rtol=1e-9)
    assert np.all(np.isnan(res[facet.ravel() < 0]))
    # primary-beam corrected sources (the facets share the sky; each has its own beam)
    for ra, dec, s in SKY:
        x, y = daskcal_pixel(w_out, NPIX_OUT, ra, dec)
        k = facet[int(round(float(x))), int(round(float(y)))]
        if k < 0:
            continue
        fx, fy, amp = fit_peak(out.RESTORED_PBCOR.values - out.RESIDUAL_PBCOR.values, x, y,
                               CELL_OUT_AS, half=3)
        assert abs(fx - x) < 0.1 and abs(fy - y) < 0.1, (ra, dec, fx - x, fy - y)
        assert amp == pytest.approx(s, rel=0.01), (ra, dec)


def test_facet_regions_in_radec_and_beam_attrs(inputs):
    images, beams = inputs
    grid = out_grid()
    from daskcal.data.geometry import lmn_of, radec_of_lm

    centres_lm = lmn_of(*np.radians(np.array(CENTRES).T), *grid["centre_rad"])[:, :2]
    polys_lm = voronoi_polygons(centres_lm, NPIX_OUT * grid["cell_rad"] * 1.01)
    polys_radec = [np.stack(radec_of_lm(p[:, 0], p[:, 1], *grid["centre_rad"]), axis=1)
                   for p in polys_lm]
    a = mosaic(images, beams=beams, regions=polys_lm, **grid)
    b = mosaic(images, beams=beams, regions=polys_radec, region_frame="radec", **grid)
    same = a.FACET.values == b.FACET.values
    assert same.mean() > 0.999  # vertices round-trip to ~1e-16 rad; edges may flip
    # restoring beams that differ: the mean, and every input's beam kept
    changed = [images[0], images[1].assign_attrs(bmaj_rad=images[1].attrs["bmaj_rad"] * 1.1)]
    c = mosaic(changed, beams=beams, regions=polys_lm, **grid)
    assert c.attrs["bmaj_rad"] == pytest.approx(images[0].attrs["bmaj_rad"] * 1.05)
    assert len(c.attrs["input_beams_rad"]) == 2
    assert "input_beams_rad" not in a.attrs


def test_errors(inputs):
    images, beams = inputs
    with pytest.raises(MosaicError, match="needs the beam"):
        mosaic(images, **out_grid())
    with pytest.raises(MosaicError, match="1 beams for 2 images"):
        mosaic(images, beams=beams[:1], **out_grid())
    with pytest.raises(MosaicError, match="3 regions"):
        mosaic(images, regions=[np.zeros((3, 2))] * 3, **out_grid())
    with pytest.raises(MosaicError, match="none of"):
        mosaic(images, beams=beams, variables=("NOPE",), **out_grid())
