"""Minor-cycle kernels against slow numpy references; beam fitting; masks honoured."""

from __future__ import annotations

import math

import numpy as np
import pytest

from daskcal.kernels.deconvolution import (
    Beam,
    beam_from_moments,
    clark_clean,
    fit_beam,
    gaussian_image,
    hogbom_clean,
    multiscale_clean,
    restore,
)

N = 64
CELL = math.radians(2.0 / 3600.0)


def _psf(n=N):
    """A PSF with sidelobes: an elliptical Gaussian times a cosine ripple, twice the size."""
    g = gaussian_image(Beam(math.radians(9 / 3600), math.radians(5 / 3600), math.radians(30)),
                       (2 * n, 2 * n), CELL, CELL)
    x = np.arange(2 * n)[:, None] - n
    y = np.arange(2 * n)[None, :] - n
    return g * 0.8 + 0.2 * np.cos(0.5 * x + 0.2 * y) * np.exp(-(x * x + y * y) / 200.0)


def _sky():
    sky = np.zeros((N, N))
    sky[20, 30], sky[40, 12], sky[33, 50] = 1.0, -0.4, 0.25
    return sky


def _dirty(sky, psf):
    out = np.zeros_like(sky)
    for i, j in zip(*np.nonzero(sky), strict=True):
        out += sky[i, j] * psf[N - i:2 * N - i, N - j:2 * N - j]
    return out


def _hogbom_ref(res, psf, gain, thr, niter, mask):
    res, model = res.copy(), np.zeros_like(res)
    for it in range(niter):
        a = np.where(mask, np.abs(res), -1)
        i, j = np.unravel_index(np.argmax(a), a.shape)
        if abs(res[i, j]) <= thr:
            return model, res, it
        model[i, j] += gain * res[i, j]
        res -= gain * res[i, j] * psf[N - i:2 * N - i, N - j:2 * N - j]
    return model, res, niter


def test_hogbom_matches_reference():
    psf = _psf()
    dirty = _dirty(_sky(), psf)
    mask = np.ones((N, N), bool)
    m, r, n = hogbom_clean(dirty, psf, gain=0.2, threshold=1e-3, niter=300)
    rm, rr, rn = _hogbom_ref(dirty, psf, 0.2, 1e-3, 300, mask)
    assert n == rn
    np.testing.assert_allclose(m, rm, atol=1e-12)
    np.testing.assert_allclose(r, rr, atol=1e-12)


@pytest.mark.parametrize("algo", ["hogbom", "clark", "multiscale"])
def test_recovers_points(algo):
    psf = _psf()
    sky = _sky()
    dirty = _dirty(sky, psf)
    kw = dict(gain=0.1, threshold=1e-4, niter=5000)
    if algo == "hogbom":
        m, r, n = hogbom_clean(dirty, psf, **kw)
    elif algo == "clark":
        m, r, n = clark_clean(dirty, psf, **kw)
    else:
        m, r, n = multiscale_clean(dirty, psf, scales_px=(0, 3, 6), **kw)
    assert np.abs(r).max() <= 2e-3
    for i, j in zip(*np.nonzero(sky), strict=True):
        assert m[i - 2:i + 3, j - 2:j + 3].sum() == pytest.approx(sky[i, j], abs=5e-3)


def test_clark_agrees_with_hogbom():
    psf = _psf()
    dirty = _dirty(_sky(), psf)
    mh, rh, _ = hogbom_clean(dirty, psf, gain=0.1, threshold=1e-4, niter=5000)
    mc, rc, _ = clark_clean(dirty, psf, gain=0.1, threshold=1e-4, niter=5000)
    np.testing.assert_allclose(mc, mh, atol=2e-3)
    # Clark's residual is exact: dirty - PSF * model
    np.testing.assert_allclose(rc, dirty - _dirty(mc, psf), atol=1e-10)


def _clark_ref(res, psf, gain, thr, niter, max_active, min_active=0):
    """Clark cycles, slowly: Hogbom with the full PSF on the (at most ``max_active``
    brightest) pixels above ``thr``, then the exact subtraction of the components."""
    res, model, done, cycles = res.copy(), np.zeros_like(res), 0, 0
    while done < niter and np.abs(res).max() > thr:
        act = np.argwhere(np.abs(res) > thr)
        if cycles and len(act) < min_active:
            break
        lim = thr
        if len(act) > max_active:
            a = np.abs(res[tuple(act.T)])
            act = act[np.sort(np.argsort(a)[-max_active:])]
            lim = max(thr, np.abs(res[tuple(act.T)]).min())
        vals, comp, n = res[tuple(act.T)].copy(), np.zeros_like(res), 0
        while n < niter - done:
            k = int(np.argmax(np.abs(vals)))
            if abs(vals[k]) <= lim:
                break
            amp = gain * vals[k]
            i0, j0 = act[k]
            comp[i0, j0] += amp
            vals -= amp * psf[N + act[:, 0] - i0, N + act[:, 1] - j0]
            n += 1
        if n == 0:
            break
        done, cycles, model = done + n, cycles + 1, model + comp
        res -= _dirty(comp, psf)
    return model, res, done, cycles


@pytest.mark.parametrize("min_active", [0, 200])
def test_clark_equals_slow_reference(min_active):
    psf = _psf()
    dirty = _dirty(_sky(), psf)
    kw = dict(gain=0.1, threshold=2e-3, niter=3000, max_active=400)
    m, r, n = clark_clean(dirty, psf, min_active=min_active, **kw)
    rm, rr, rn, cycles = _clark_ref(dirty, psf, 0.1, 2e-3, 3000, 400, min_active)
    assert n == rn
    np.testing.assert_allclose(m, rm, rtol=0, atol=1e-12)
    np.testing.assert_allclose(r, rr, rtol=0, atol=1e-12)
    if min_active:  # the tail was left: fewer cycles, the peak still above the threshold
        full = _clark_ref(dirty, psf, 0.1, 2e-3, 3000, 400)
        assert cycles < full[3] and np.abs(r).max() > 2e-3
    else:
        assert cycles > 2 and np.abs(r).max() <= 2e-3


@pytest.mark.parametrize("workers", [1, 2])
def test_clark_fft_and_direct_subtractions_agree_with_the_reference(workers, monkeypatch):
    """A crowded field: the first cycles have more components than the direct-subtraction
    limit (FFT pairs), the tail fewer (direct): both exact, on one thread or two (the
    direct subtraction shares image rows among the threads: forced at this size)."""
    import scipy.fft

    from daskcal.kernels.deconvolution import clark

    monkeypatch.setattr(clark, "MIN_PIXELS_PER_THREAD", 1)
    rng = np.random.default_rng(2)
    sky = np.zeros((N, N))
    sky[rng.integers(4, N - 4, 150), rng.integers(4, N - 4, 150)] = rng.uniform(0.05, 1, 150)
    psf = _psf()
    dirty = _dirty(sky, psf)
    with scipy.fft.set_workers(workers):
        m, r, n = clark_clean(dirty, psf, gain=0.1, threshold=1e-2, niter=20000,
                              max_active=600)
    rm, rr, rn, cycles = _clark_ref(dirty, psf, 0.1, 1e-2, 20000, 600)
    assert cycles > 20 and n == rn and np.abs(r).max() <= 1e-2  # 26 cycles, 11 direct
    np.testing.assert_allclose(m, rm, rtol=0, atol=1e-10)
    np.testing.assert_allclose(r, rr, rtol=0, atol=1e-10)


def test_clark_patch_still_cleans():
    psf = _psf()
    sky = _sky()
    m, r, _ = clark_clean(_dirty(sky, psf), psf, gain=0.1, threshold=1e-4, niter=5000,
                          patch_half_width=12)
    assert np.abs(r).max() <= 2e-3
    for i, j in zip(*np.nonzero(sky), strict=True):
        assert m[i - 2:i + 3, j - 2:j + 3].sum() == pytest.approx(sky[i, j], abs=5e-3)


@pytest.mark.parametrize("algo", [hogbom_clean, clark_clean, multiscale_clean])
def test_mask_honoured(algo):
    psf = _psf()
    dirty = _dirty(_sky(), psf)
    mask = np.zeros((N, N), bool)
    mask[15:26, 25:36] = True
    m, _, _ = algo(dirty, psf, gain=0.1, threshold=1e-3, niter=500, mask=mask)
    assert np.all(m[~mask] == 0) if algo is not multiscale_clean else True
    if algo is multiscale_clean:
        # scale functions spread components; their centres stay inside: with scales (0,)
        m0, _, _ = algo(dirty, psf, scales_px=(0,), gain=0.1, threshold=1e-3, niter=500,
                        mask=mask)
        assert np.all(np.abs(m0[~mask]) < 1e-12)
    assert m[mask].sum() > 0.9


def test_multiscale_gaussian_flux():
    psf = _psf()
    src = gaussian_image(Beam(math.radians(16 / 3600), math.radians(16 / 3600), 0.0),
                         (N, N), CELL, CELL, centre=(32, 32))
    src *= 2.0 / src.sum()  # 2 Jy integrated
    dirty = np.zeros((N, N))
    from daskcal.kernels.deconvolution import PsfConvolver

    dirty = PsfConvolver(psf)(src)
    m, r, n = multiscale_clean(dirty, psf, scales_px=(0, 4, 8), gain=0.2, threshold=1e-4,
                               niter=3000)
    assert m.sum() == pytest.approx(2.0, rel=0.03)


def test_multiscale_is_a_descent():
    """The CLEAN objective ``x^T B x - 2 x^T d`` never increases, edges included.

    Sky: points (one 3 pixels from an edge) and a broad Gaussian; the objective and the
    residual ``d - PSF * x`` are computed here with the slow direct convolution.
    """
    psf = _psf()
    sky = _sky()
    sky[3, 40] = 0.3
    blob = gaussian_image(Beam(math.radians(14 / 3600), math.radians(10 / 3600), 0.5), (N, N),
                          CELL, CELL, centre=(45, 40))
    dirty = _dirty(sky, psf) + _dirty(0.05 * blob, psf)
    last, peak = np.inf, []
    for niter in (5, 20, 50, 100, 200, 400, 800, 1600):
        m, r, n = multiscale_clean(dirty, psf, scales_px=(0, 3, 6, 12), gain=0.2,
                                   threshold=1e-4, niter=niter)
        np.testing.assert_allclose(r, dirty - _dirty(m, psf), atol=1e-9)
        obj = float(np.sum(m * _dirty(m, psf)) - 2.0 * np.sum(m * dirty))
        assert obj <= last + 1e-12, (niter, obj, last)
        last = obj
        peak.append(np.abs(r).max())
    assert peak[-1] < 1e-2 * peak[0]
    assert m.sum() == pytest.approx(sky.sum() + 0.05 * blob.sum(), rel=0.02)


@pytest.mark.parametrize("pa_deg", [0.0, 35.0, -60.0, 90.0])
def test_fit_beam_on_analytic_gaussian(pa_deg):
    truth = Beam(math.radians(12 / 3600), math.radians(6 / 3600), math.radians(pa_deg))
    psf = gaussian_image(truth, (128, 128), CELL, CELL)
    fit = fit_beam(psf, CELL, CELL)
    mom = beam_from_moments(psf, CELL, CELL)
    assert fit.bmaj_rad == pytest.approx(truth.bmaj_rad, rel=1e-6)
    assert fit.bmin_rad == pytest.approx(truth.bmin_rad, rel=1e-6)
    dpa = (fit.bpa_rad - truth.bpa_rad + math.pi / 2) % math.pi - math.pi / 2
    assert abs(dpa) < 1e-6
    # moments (truncation-corrected) are good to a few per cent on pixels
    assert mom.bmaj_rad == pytest.approx(truth.bmaj_rad, rel=0.1)
    assert mom.bmin_rad == pytest.approx(truth.bmin_rad, rel=0.1)


def test_restore_point_peak():
    beam = Beam(math.radians(8 / 3600), math.radians(5 / 3600), 0.3)
    model = np.zeros((N, N))
    model[10, 40] = 1.5
    r = restore(model, np.zeros((N, N)), beam, CELL, CELL)
    assert r[10, 40] == pytest.approx(1.5)
    assert r.max() == pytest.approx(1.5)
