"""The restoring-beam helpers work on windows about the peak: the same values as on the
whole grid, bit for bit."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from daskcal.kernels.deconvolution.beamfit import (
    FOUR_LN2,
    Beam,
    beam_from_moments,
    fit_beam,
    gaussian_image,
    main_lobe,
)


def _gaussian_everywhere(beam, shape, px, py, centre=None):
    cx, cy = (shape[0] // 2, shape[1] // 2) if centre is None else centre
    l = (np.arange(shape[0])[:, None] - cx) * px
    m = (np.arange(shape[1])[None, :] - cy) * py
    s, c = math.sin(beam[2]), math.cos(beam[2])
    a, b = l * s + m * c, l * c - m * s
    return np.exp(-FOUR_LN2 * ((a / beam[0]) ** 2 + (b / beam[1]) ** 2))


@pytest.mark.parametrize(("beam", "shape", "px", "py", "centre"), [
    (Beam(3e-5, 2e-5, 0.4), (512, 512), 1e-5, 1e-5, None),
    (Beam(3e-5, 2e-5, -1.2), (300, 517), -1e-5, 2e-5, (40.5, 500)),
    (Beam(2e-4, 2e-5, 0.0), (64, 4000), 1e-5, 1e-5, (-20, 3)),
    (Beam(5e-3, 4e-3, 0.3), (100, 100), 1e-5, 1e-5, None),  # wider than the grid
    (Beam(2e-5, 4e-5, 2.0), (256, 256), 1e-5, 1e-5, None),  # bmin > bmaj
])
def test_gaussian_image_equals_the_whole_grid_evaluation(beam, shape, px, py, centre):
    got = gaussian_image(beam, shape, px, py, centre)
    want = _gaussian_everywhere(beam, shape, px, py, centre)
    assert got.dtype == want.dtype and np.array_equal(got, want)


def _lobe_everywhere(psf, level):
    pk = np.unravel_index(int(np.argmax(psf)), psf.shape)
    labels, _ = ndimage.label(psf >= level * psf[pk])
    return labels == labels[pk]


@pytest.mark.parametrize("sigma", [1.5, 30.0, 90.0])  # lobes inside and beyond the first window
def test_main_lobe_and_fits_equal_the_whole_grid_labelling(sigma):
    rng = np.random.default_rng(3)
    n = 400
    i = np.arange(n)[:, None] - n // 2
    j = np.arange(n)[None, :] - n // 2
    psf = np.exp(-(i * i + 0.5 * j * j + 0.3 * i * j) / (2 * sigma**2))
    psf += 0.2 * np.cos(0.05 * i) * np.cos(0.07 * j) + rng.normal(0, 0.01, psf.shape)
    psf[n // 2, n // 2] = psf.max() + 0.1
    mask, peak = main_lobe(psf)
    assert peak == (n // 2, n // 2)
    assert np.array_equal(mask, _lobe_everywhere(psf, 0.35))
    # the moments of the whole-grid mask's pixels (in row-major order)
    ii, jj = np.nonzero(_lobe_everywhere(psf, 0.35))
    pi, pj = peak
    cov = np.cov(np.stack([(ii - pi) * 1e-5, (jj - pj) * 1e-5]), bias=True,
                 aweights=psf[ii, jj] / psf[pi, pj])
    cov /= 1.0 + 0.35 * math.log(0.35) / (1.0 - 0.35)
    evals, evecs = np.linalg.eigh(cov)
    k = math.sqrt(8.0 * math.log(2.0))
    got = beam_from_moments(psf, 1e-5, 1e-5)
    assert got.bmaj_rad == float(k * np.sqrt(max(evals[1], 0.0)))
    assert got.bmin_rad == float(k * np.sqrt(max(evals[0], 0.0)))
    assert all(math.isfinite(x) for x in fit_beam(psf, 1e-5, 1e-5))
