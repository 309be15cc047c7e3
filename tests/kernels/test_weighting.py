"""Imaging weights against a slow numpy reference and the Briggs limits."""

from __future__ import annotations

import math

import numpy as np
import pytest

from daskcal.kernels.weighting import imaging_weights, taper_sigma_lambda, uv_density

C = 299_792_458.0
NPIX, CELL = 64, math.radians(20.0 / 3600.0)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(1)
    uvw = rng.normal(size=(400, 3)) * 300.0
    freq = np.array([1.0e9, 1.2e9, 1.4e9])
    w = rng.uniform(0.5, 2.0, (400, 3))
    flag = rng.random((400, 3)) < 0.1
    return uvw, freq, w, flag


def _ref(uvw, freq, w, flag, mode, robust=0.0):
    du = 1.0 / (NPIX * CELL)
    cells, use = {}, ~flag
    keys = np.empty(flag.shape, dtype=object)
    for r in range(uvw.shape[0]):
        for c in range(freq.size):
            u, v = uvw[r, :2] * freq[c] / C
            if u < 0 or (u == 0 and v < 0):
                u, v = -u, -v
            k = (math.floor(u / du + 0.5), math.floor(v / du + 0.5))
            keys[r, c] = k
            if use[r, c]:
                cells[k] = cells.get(k, 0.0) + w[r, c]
    d = np.array([[cells.get(keys[r, c], 0.0) for c in range(freq.size)]
                  for r in range(uvw.shape[0])])
    if mode == "natural":
        out = w.copy()
    elif mode == "uniform":
        out = w / np.where(d > 0, d, 1)
    else:
        f2 = (5 * 10 ** -robust) ** 2 / ((d * w)[use].sum() / w[use].sum())
        out = w / (1 + d * f2)
    return np.where(use, out, 0.0)


@pytest.mark.parametrize("mode,robust", [("natural", 0), ("uniform", 0), ("briggs", -0.5),
                                         ("briggs", 1.0)])
def test_weights_match_reference(data, mode, robust):
    uvw, freq, w, flag = data
    got = imaging_weights(uvw, freq, w, flag, npix_x=NPIX, npix_y=NPIX, pixsize_x_rad=CELL,
                          pixsize_y_rad=CELL, weighting=mode, robust=robust)
    np.testing.assert_allclose(got, _ref(uvw, freq, w, flag, mode, robust), rtol=1e-12)


def test_briggs_limits(data):
    uvw, freq, w, flag = data
    kw = dict(npix_x=NPIX, npix_y=NPIX, pixsize_x_rad=CELL, pixsize_y_rad=CELL)
    uni = imaging_weights(uvw, freq, w, flag, weighting="uniform", **kw)
    nat = imaging_weights(uvw, freq, w, flag, weighting="natural", **kw)
    lo = imaging_weights(uvw, freq, w, flag, weighting="briggs", robust=-2, **kw)
    hi = imaging_weights(uvw, freq, w, flag, weighting="briggs", robust=2, **kw)
    np.testing.assert_allclose(lo / lo.max(), uni / uni.max(), atol=1e-4)
    # +2: within a few per cent of natural (exactly natural only as robust -> infinity)
    np.testing.assert_allclose(hi / hi.max(), nat / nat.max(), atol=0.05)


def test_density_sums_weights(data):
    uvw, freq, w, flag = data
    d = uv_density(uvw, freq, w, flag, npix_x=NPIX, npix_y=NPIX, pixsize_x_rad=CELL,
                   pixsize_y_rad=CELL)
    assert d.sum() == pytest.approx(w[~flag].sum())


def test_taper(data):
    uvw, freq, w, flag = data
    fwhm = math.radians(60.0 / 3600.0)
    kw = dict(npix_x=NPIX, npix_y=NPIX, pixsize_x_rad=CELL, pixsize_y_rad=CELL,
              weighting="natural")
    t = imaging_weights(uvw, freq, w, flag, taper_fwhm_rad=fwhm, **kw)
    s = taper_sigma_lambda(fwhm_rad=fwhm)
    rho2 = (uvw[:, None, 0] ** 2 + uvw[:, None, 1] ** 2) * (freq[None] / C) ** 2
    np.testing.assert_allclose(t, np.where(flag, 0, w * np.exp(-rho2 / (2 * s * s))))
    # the uv FWHM form: taper is 1/2 at rho = fwhm / 2
    assert taper_sigma_lambda(fwhm_lambda=1000.0) * math.sqrt(8 * math.log(2)) == \
        pytest.approx(1000.0)


def test_rejects_bad_input(data):
    uvw, freq, w, flag = data
    with pytest.raises(ValueError):
        imaging_weights(uvw, freq, w, flag, npix_x=NPIX, npix_y=NPIX, pixsize_x_rad=CELL,
                        pixsize_y_rad=CELL, weighting="briggs", robust=3)
