"""The sky model of the facet steps: facet CLEAN components stitched onto the field grid
(bilinearly: flux and centroid kept) and read back, optionally merged into points."""

from __future__ import annotations

import math

import numpy as np
import xarray as xr

from daskcal.data.geometry import angular_separation, lmn_of, radec_of_lm
from daskcal.pipeline.imagingsteps import _stitch_model, sky_from_image

CENTRE = np.radians([130.0, 52.0])
CELL = math.radians(30 / 3600)
NPIX = 96


def _facet_image(centre, components, npix=40, cell=CELL):
    """A facet image about ``centre`` holding CLEAN components at (i, j) pixels."""
    model = np.zeros((npix, npix))
    for (i, j), s in components.items():
        model[i, j] = s
    lm = (np.arange(npix) - npix // 2) * cell
    return xr.Dataset({"MODEL": (("l", "m"), model)}, coords={"l": lm, "m": lm},
                      attrs={"phase_centre_rad": [float(x) for x in centre], "cell_rad": cell,
                             "ref_freq_hz": 1.2e8})


def test_stitching_keeps_flux_and_centroid():
    # a facet centred 0.25 deg away, on its own tangent plane and pixel grid
    fc = radec_of_lm(0.2 * math.pi / 180, -0.15 * math.pi / 180, *CENTRE)
    comps = {(20, 20): 0.8, (21, 20): 0.15, (20, 21): 0.05, (5, 33): -0.02}
    img = _facet_image(np.array(fc, dtype=float), comps)
    inside = np.ones(img["MODEL"].shape, bool)
    field = _stitch_model([img], [inside], CENTRE, NPIX, CELL)
    assert math.isclose(field.sum(), sum(comps.values()), rel_tol=1e-12)
    # the flux-weighted field position of the source equals that of its components
    src = {k: v for k, v in comps.items() if v > 0}
    i, j = np.array(list(src)).T
    ra, dec = radec_of_lm((i - 20) * CELL, (j - 20) * CELL, *fc)
    lmn = lmn_of(np.atleast_1d(ra), np.atleast_1d(dec), *CENTRE)
    w = np.array(list(src.values()))
    want = (w @ lmn[:, :2]) / w.sum() / CELL + NPIX // 2
    p, q = np.nonzero(field > 0)
    got = np.array([field[p, q] @ p, field[p, q] @ q]) / field[p, q].sum()
    np.testing.assert_allclose(got, want, atol=1e-9)
    # masked-out components are left out
    none = _stitch_model([img], [np.zeros_like(inside)], CENTRE, NPIX, CELL)
    assert not none.any()


def test_sky_from_image_merges_split_sources():
    img = _facet_image(CENTRE, {(20, 20): 0.6, (21, 20): 0.3, (21, 21): 0.1, (30, 10): 0.5},
                       npix=NPIX)
    img = img.assign_coords(l=(np.arange(NPIX) - NPIX // 2) * CELL,
                            m=(np.arange(NPIX) - NPIX // 2) * CELL)
    img["MODEL"] = (("l", "m"), np.pad(img["MODEL"].values[:40, :40],
                                       ((0, NPIX - 40), (0, NPIX - 40))))
    plain = sky_from_image(img)
    assert plain.n_source == 4
    merged = sky_from_image(img, merge_radius_rad=math.radians(45 / 3600))
    assert merged.n_source == 2
    np.testing.assert_allclose(sorted(merged.stokes[:, 0]), [0.5, 1.0])
    k = int(np.argmax(merged.stokes[:, 0]))
    # the merged point is at the |S|-weighted mean of the three pixels' directions
    ij = np.array([[20, 20], [21, 20], [21, 21]]) - NPIX // 2
    ra, dec = radec_of_lm(ij[:, 0] * CELL, ij[:, 1] * CELL, *CENTRE)
    w = np.array([0.6, 0.3, 0.1])
    vec = np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)]) @ w
    want_ra, want_dec = math.atan2(vec[1], vec[0]) % (2 * math.pi), math.asin(
        vec[2] / np.linalg.norm(vec))
    assert angular_separation(merged.ra[k], merged.dec[k], want_ra, want_dec) < 1e-10
