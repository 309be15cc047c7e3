"""The image stage on a tiny simulated VLA observation: fluxes, positions, backends, masks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import optimize

from daskcal.data.geometry import lmn_of
from daskcal.stages.imaging import image

RA0, DEC0 = 150.0, 40.0
SOURCES = [(150.1, 40.05, 2.0), (150.0, 39.9, 1.0), (149.93, 40.02, 0.5)]
NPIX, CELL_AS = 128, 10.0


def sim_config(noise=False):
    return dict(array="vla", vla=dict(configuration="D"), ra_deg=RA0, dec_deg=DEC0,
                duration_s=1800, integration_s=120, n_chan=4, polarizations=["RR", "LL"],
                gains=dict(enabled=False), noise=dict(enabled=noise), aberration=False,
                sky=dict(preset="none", components=[
                    dict(name=f"s{k}", ra_deg=ra, dec_deg=dec, flux_jy=s, spectral_index=[0.0],
                         ref_freq_hz=1.4e9) for k, (ra, dec, s) in enumerate(SOURCES)]),
                chunks={"time": 8, "frequency": 2})


@pytest.fixture(scope="module")
def node():
    from daskcal.testing import simulate_observation

    obs, _ = simulate_observation(sim_config())
    return obs[next(iter(obs.children))]


def fit_peak(img, i, j, beam, cell, half=4):
    """Sub-pixel Gaussian fit (fixed beam shape) about pixel (i, j): (x, y, amplitude)."""
    bmaj, bmin, bpa = beam
    ii, jj = np.mgrid[i - half:i + half + 1, j - half:j + half + 1]
    y = img[ii, jj].ravel()

    def g(p):
        l, m = (ii - p[0]) * cell, (jj - p[1]) * cell
        a = l * math.sin(bpa) + m * math.cos(bpa)
        b = l * math.cos(bpa) - m * math.sin(bpa)
        return (p[2] * np.exp(-4 * math.log(2) * ((a / bmaj) ** 2 + (b / bmin) ** 2))).ravel()

    sol = optimize.least_squares(lambda p: g(p) - y, [i, j, img[i, j]])
    return sol.x


def true_pixels():
    lmn = lmn_of(np.radians([s[0] for s in SOURCES]), np.radians([s[1] for s in SOURCES]),
                 math.radians(RA0), math.radians(DEC0))
    cell = math.radians(CELL_AS / 3600)
    return lmn[:, 0] / cell + NPIX // 2, lmn[:, 1] / cell + NPIX // 2


def cfg(**kw):
    base = dict(npix=NPIX, cell_arcsec=CELL_AS, niter=3000, auto_threshold=None,
                threshold_jy=5e-4, weighting="briggs", robust=0.0)
    return {**base, **kw}


@pytest.fixture(scope="module")
def hogbom(node):
    return image(node, cfg(deconvolver="hogbom"), backend="numpy")


def test_fluxes_and_positions(hogbom):
    out = hogbom
    beam = (out.bmaj_rad, out.bmin_rad, out.bpa_rad)
    r = out.RESTORED.values
    for (x, y), (_, _, s) in zip(zip(*true_pixels(), strict=True), SOURCES, strict=True):
        fx, fy, amp = fit_peak(r, int(round(x)), int(round(y)), beam, out.cell_rad)
        assert abs(fx - x) < 0.1 and abs(fy - y) < 0.1, (fx - x, fy - y)
        assert amp == pytest.approx(s, rel=0.01)
    assert out.MODEL.sum().item() == pytest.approx(sum(s[2] for s in SOURCES), rel=0.01)
    assert np.abs(out.RESIDUAL.values).max() < 1e-3


def test_clark_agrees(node, hogbom):
    clark = image(node, cfg(deconvolver="clark"), backend="numpy")
    np.testing.assert_allclose(clark.RESTORED.values, hogbom.RESTORED.values, atol=2e-3)


def test_dask_backend_matches_numpy(node, hogbom):
    out = image(node, cfg(deconvolver="hogbom"), backend="dask")
    np.testing.assert_allclose(out.RESTORED.values, hogbom.RESTORED.values, atol=1e-5)
    assert out.attrs["n_major"] == hogbom.attrs["n_major"]


def test_region_mask_honoured(node):
    ra, dec, _ = SOURCES[0]
    out = image(node, cfg(mask=[f'circle({ra}, {dec}, 60")'], niter=500), backend="numpy")
    model = out.MODEL.values
    x, y = true_pixels()
    i, j = np.nonzero(model)
    assert i.size and np.all((i - x[0]) ** 2 + (j - y[0]) ** 2 <= 36.0 + 1e-9)


def test_noise_rms():
    """After CLEAN the residual rms is near that of a noise-only image (same noise seed)."""
    from daskcal.testing import simulate_observation

    rms = {}
    for label, components in (("sky", True), ("noise", False)):
        sc = sim_config(noise=True)
        if not components:
            sc["sky"]["components"] = []
        obs, _ = simulate_observation(sc)
        nd = obs[next(iter(obs.children))]
        out = image(nd, cfg(weighting="natural", auto_threshold=3.0, threshold_jy=0.0,
                            niter=3000 if components else 0), backend="numpy")
        rms[label] = float(out.RESIDUAL.std())
    print("residual rms", rms)
    # measured: 1.82e-4 vs 1.30e-4 Jy/beam (x1.4) when stopping at 3 sigma with natural
    # weighting and this snapshot's high sidelobes; a goal is x1.1
    assert rms["noise"] <= rms["sky"] < 1.5 * rms["noise"]
