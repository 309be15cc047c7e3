"""Image QA against known sources and the PSF's curvature, on images with a known answer."""

from __future__ import annotations

import math

import numpy as np
import pytest
import xarray as xr

from daskcal.data.geometry import radec_of_lm
from daskcal.kernels.deconvolution import Beam, gaussian_image
from daskcal.qa.sources import beam_metric, curvature_beam, measure_sources, source_metrics
from daskcal.sky.model import SkyModel

NPIX = 128
CELL = math.radians(10.0 / 3600)
BEAM = Beam(math.radians(60 / 3600), math.radians(40 / 3600), math.radians(30.0))
RA0, DEC0 = math.radians(130.0), math.radians(52.0)
#: (i, j) true pixel, flux (Jy), image/model flux factor, shift of the image (pixels)
SOURCES = [((40.3, 70.6), 3.0, 1.02, (0.3, 0.0)), ((90.8, 30.2), 1.5, 0.97, (0.0, -0.4)),
           ((64.5, 100.1), 0.8, 1.00, (0.0, 0.0)), ((20.1, 20.9), 0.4, 1.05, (0.2, 0.2)),
           ((100.4, 95.5), 0.01, 1.0, (0.0, 0.0))]


def _case(noise=1e-4, seed=0):
    img = np.random.default_rng(seed).normal(0.0, noise, (NPIX, NPIX))
    ls, ms = [], []
    for (i, j), s, f, (di, dj) in SOURCES:
        img += s * f * gaussian_image(BEAM, (NPIX, NPIX), CELL, CELL, centre=(i + di, j + dj))
        ls.append((i - NPIX // 2) * CELL)
        ms.append((j - NPIX // 2) * CELL)
    ra, dec = radec_of_lm(np.array(ls), np.array(ms), RA0, DEC0)
    sky = SkyModel.from_components(name=[f"s{k}" for k in range(len(SOURCES))], ra=ra,
                                   dec=dec, stokes_i=[s[1] for s in SOURCES], ref_freq=150e6)
    return img, sky


def _dataset(img, psf=None, beam=BEAM):
    data = {"RESTORED": (("l", "m"), img)}
    if psf is not None:
        data["PSF"] = (("l_psf", "m_psf"), psf)
    return xr.Dataset(data, attrs={"cell_rad": CELL, "phase_centre_rad": [RA0, DEC0],
                                   "bmaj_rad": beam.bmaj_rad, "bmin_rad": beam.bmin_rad,
                                   "bpa_rad": beam.bpa_rad, "ref_freq_hz": 150e6})


def test_fluxes_and_offsets_of_known_sources():
    img, sky = _case()
    rows = measure_sources(img, CELL, (RA0, DEC0), BEAM, sky, 150e6, n=10)
    assert [r["name"] for r in rows] == ["s0", "s1", "s2", "s3", "s4"]  # by model flux
    for r, ((i, j), s, f, (di, dj)) in zip(rows, SOURCES, strict=True):
        assert r["model_jy"] == pytest.approx(s, rel=1e-9)
        if s < 0.1:  # 100 sigma: fitted, but loosely
            assert r["ratio"] == pytest.approx(f, abs=0.05)
            continue
        assert r["ratio"] == pytest.approx(f, abs=1e-3)
        assert r["pixel"][0] == pytest.approx(i + di, abs=0.01)
        assert r["pixel"][1] == pytest.approx(j + dj, abs=0.01)
        assert r["offset_arcsec"] == pytest.approx(10.0 * math.hypot(di, dj), abs=0.1)
        assert r["offset_beam"] == pytest.approx(r["offset_arcsec"] / 60.0, rel=1e-6)


def test_source_metrics_score_the_median_error():
    img, sky = _case()
    flux, astro = source_metrics("p", _dataset(img), sky, min_snr=20)
    # scored: s0..s3 (s4 is at S/N ~100 > 20 as well): deviations .02 .03 0 .05 ~0
    assert flux.name == "known_source_flux" and flux.value == pytest.approx(0.02, abs=2e-3)
    assert 0.0 < flux.score <= 1.0 and "s3" in flux.reason
    assert astro.value == pytest.approx(10 * 0.3 / 60, abs=0.01)  # median of 5 / 6 beam
    assert astro.score == 1.0
    # an image whose fluxes are 15 % low scores badly
    low, _ = source_metrics("p", _dataset(0.85 * img), sky, min_snr=20)
    assert low.value == pytest.approx(0.15, abs=0.01) and low.score < 0.3
    # nothing bright enough: reported, not scored
    faint = 1e-4 * img + np.random.default_rng(1).normal(0.0, 1e-4, img.shape)
    (none,) = source_metrics("p", _dataset(faint), sky, min_snr=20)
    assert none.name == "known_sources" and none.score == 1.0


@pytest.mark.parametrize("pa_deg", [30.0, -60.0, 89.0])
def test_curvature_beam_of_a_gaussian_psf_is_the_gaussian(pa_deg):
    beam = Beam(BEAM.bmaj_rad, BEAM.bmin_rad, math.radians(pa_deg))
    psf = gaussian_image(beam, (2 * NPIX, 2 * NPIX), CELL, CELL)
    got = curvature_beam(psf, CELL)
    assert got.bmaj_rad == pytest.approx(beam.bmaj_rad, rel=1e-9)
    assert got.bmin_rad == pytest.approx(beam.bmin_rad, rel=1e-9)
    assert math.degrees(got.bpa_rad) == pytest.approx(pa_deg, abs=1e-6)


def test_beam_metric():
    psf = gaussian_image(BEAM, (2 * NPIX, 2 * NPIX), CELL, CELL)
    good = beam_metric("p", _dataset(np.zeros((NPIX, NPIX)), psf))
    assert good.value == pytest.approx(0.0, abs=1e-9) and good.score == 1.0
    wide = Beam(2 * BEAM.bmaj_rad, BEAM.bmin_rad, BEAM.bpa_rad)
    bad = beam_metric("p", _dataset(np.zeros((NPIX, NPIX)), psf, beam=wide))
    assert bad.value == pytest.approx(1.0, rel=1e-6) and bad.score == 0.0
    assert beam_metric("p", _dataset(np.zeros((NPIX, NPIX)))) is None
