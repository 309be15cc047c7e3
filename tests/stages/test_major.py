"""The major-cycle driver's stopping rules, on an image-plane instrument with a known PSF.

The "instrument" is a convolution: ``predict(model) = B_true * model`` and ``dirty(x) = x``
(visibilities are images here), while the minor cycle gets a PSF ``B`` that differs from
``B_true`` by a few per cent in its far sidelobes -- as a shift-invariant PSF differs from
the real, direction-dependent response. Each major cycle then lifts a few pixels a little
above the threshold.
"""

from __future__ import annotations

import numpy as np
import pytest

from daskcal.kernels.deconvolution import PsfConvolver
from daskcal.stages.imaging.config import ImageConfig
from daskcal.stages.imaging.major import THRESHOLD_TAIL, deconvolve

N = 64


def _psf(ripple):
    """A PSD PSF (the transform of non-negative uv weights: a ring-and-track coverage),
    peak 1 at ``(N, N)``; ``ripple`` adds weight at two uv cells: a far-sidelobe ripple."""
    rng = np.random.default_rng(11)
    w = np.zeros((2 * N, 2 * N))
    for _ in range(400):
        r, a = rng.uniform(3, 40), rng.uniform(0, np.pi)
        for sgn in (1, -1):  # Hermitian: a real PSF
            w[int(round(sgn * r * np.cos(a))) % (2 * N), int(round(sgn * r * np.sin(a))) % (2 * N)] += 1
    for cell in ((17, 9), (-17, -9)):
        w[cell] += ripple * w.sum() / 2
    psf = np.fft.fftshift(np.fft.ifft2(w).real)
    return psf / psf[N, N]


@pytest.fixture(scope="module")
def case():
    rng = np.random.default_rng(5)
    sky = np.zeros((N, N))
    for _ in range(12):
        sky[rng.integers(8, N - 8), rng.integers(8, N - 8)] += rng.uniform(0.2, 3.0)
    true = PsfConvolver(_psf(0.03))
    data = true(sky) + rng.normal(0.0, 2e-3, (N, N))
    return sky, true, data


def test_a_minor_cycle_at_the_threshold_ends_clean(case):
    sky, true, data = case
    cfg = ImageConfig(npix=N, cell_arcsec=1.0, deconvolver="clark", niter=20000, gain=0.1,
                      mgain=0.8, threshold_jy=0.01, auto_threshold=None, max_major=30)
    res = deconvolve(lambda x: x, true, data, _psf(0.0), cfg)
    assert res.stop == "threshold reached by the minor cycle"
    assert res.n_major < 7  # without the rule: 9 here, 20 (the limit) on a LOFAR field
    peak = np.abs(res.residual).max()
    assert peak <= 0.01 * (1 + 3 * THRESHOLD_TAIL)
    # the residual is the exact one of the final model
    np.testing.assert_allclose(res.residual, data - true(res.model), atol=1e-12)
    assert res.model.sum() == pytest.approx(sky.sum(), rel=0.01)


def test_an_exact_psf_stops_on_the_threshold(case):
    sky, true, data = case
    cfg = ImageConfig(npix=N, cell_arcsec=1.0, deconvolver="hogbom", niter=20000, gain=0.1,
                      mgain=0.8, threshold_jy=0.01, auto_threshold=None, max_major=30)
    res = deconvolve(lambda x: x, true, data, _psf(0.03), cfg)
    assert res.stop in ("threshold", "threshold reached by the minor cycle")
    assert np.abs(res.residual).max() <= 0.01 + 1e-12 or res.stop != "threshold"


def test_a_dropping_auto_threshold_keeps_cleaning(case):
    """With the threshold from the residual's rms, reaching it does not end CLEAN while
    the rms (and so the threshold) still drops."""
    sky, true, data = case
    cfg = ImageConfig(npix=N, cell_arcsec=1.0, deconvolver="clark", niter=20000, gain=0.1,
                      mgain=0.8, threshold_jy=0.0, auto_threshold=3.0, max_major=30)
    res = deconvolve(lambda x: x, true, data, _psf(0.0), cfg)
    rms = [h["rms_jy"] for h in res.history]
    assert rms[-1] < 0.5 * rms[0]
    assert res.threshold < 3.0 * 0.5 * rms[0]
    assert res.model.sum() == pytest.approx(sky.sum(), rel=0.01)
