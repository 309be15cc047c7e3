"""Spectral cubes: per-channel fluxes of sources with spectral indices, frames, velocity axes."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

from daskcal.stages.imaging.cube import CubeConfig, doppler_factors, image_cube

sys.path.insert(0, str(Path(__file__).parent))
from test_image import fit_peak, true_pixels

C_KM_S = 299_792.458
RA0, DEC0 = 150.0, 40.0
# (ra, dec, flux at 1.4 GHz, spectral index): the positions of test_image.SOURCES
SPEC = [(150.1, 40.05, 2.0, -0.7), (150.0, 39.9, 1.0, 1.0), (149.93, 40.02, 0.5, -2.0)]
F_REF = 1.4e9


def sim(n_chan, f0, df, sources=SPEC, duration_s=1800):
    from daskcal.testing import simulate_observation

    cfg = dict(array="vla", vla=dict(configuration="D"), ra_deg=RA0, dec_deg=DEC0,
               duration_s=duration_s, integration_s=120, n_chan=n_chan, freq_start_hz=f0,
               channel_width_hz=df, polarizations=["RR", "LL"], gains=dict(enabled=False),
               noise=dict(enabled=False), aberration=False,
               sky=dict(preset="none", components=[
                   dict(name=f"s{k}", ra_deg=ra, dec_deg=dec, flux_jy=s, spectral_index=[a],
                        ref_freq_hz=F_REF) for k, (ra, dec, s, a) in enumerate(sources)]),
               chunks={"time": 8, "frequency": 4})
    obs, _ = simulate_observation(cfg)
    return obs[next(iter(obs.children))]


def independent_factor(node, frame):
    """f_frame / f_topo at mid-time from astropy's radial_velocity_correction (+ LSR apex)."""
    import astropy.units as u
    from astropy.coordinates import FK4, EarthLocation, SkyCoord
    from astropy.time import Time
    from astropy.utils import iers

    iers.conf.auto_download = False
    t = node["time"].values
    tm = Time(0.5 * (t.min() + t.max()), format="unix", scale="utc")
    xyz = node["antenna_xds"]["ANTENNA_POSITION"].values.mean(axis=0)
    loc = EarthLocation.from_geocentric(*xyz, unit=u.m)
    src = SkyCoord(RA0 * u.deg, DEC0 * u.deg, frame="icrs")
    v = src.radial_velocity_correction(kind="barycentric", obstime=tm,
                                       location=loc).to_value(u.km / u.s)
    if frame == "LSRK":  # the Sun moves at 20 km/s towards RA 18h, Dec +30 (B1900)
        apex = SkyCoord(270 * u.deg, 30 * u.deg, frame=FK4(equinox="B1900")).icrs
        v += 20.0 * math.cos(src.separation(apex).rad)
    return 1.0 - v / C_KM_S


@pytest.fixture(scope="module")
def wideband():
    node = sim(6, 1.0e9, 1.6e8)
    cfg = dict(npix=128, cell_arcsec=10.0, niter=3000, auto_threshold=None,
               threshold_jy=5e-4, frame="TOPO")
    return node, image_cube(node, cfg, backend="numpy")


def test_spectral_indices(wideband):
    """Channel peaks follow S0 (f / f0)^alpha to 1 % (restored, fitted at the true position)."""
    node, cube = wideband
    f = cube["frequency"].values
    np.testing.assert_allclose(f, node["frequency"].values)  # output = input grid in TOPO
    xs, ys = true_pixels()
    for c in range(cube.sizes["chan"]):
        beam = tuple(cube[k].values[c] for k in ("BEAM_MAJOR", "BEAM_MINOR", "BEAM_PA"))
        img = cube.RESTORED.values[c]
        for x, y, (_, _, s0, alpha) in zip(xs, ys, SPEC, strict=True):
            fx, fy, amp = fit_peak(img, int(round(x)), int(round(y)), beam, cube.cell_rad)
            expect = s0 * (f[c] / F_REF) ** alpha
            assert amp == pytest.approx(expect, rel=0.01), (c, s0, alpha, amp, expect)
            assert abs(fx - x) < 0.15 and abs(fy - y) < 0.15
    # beams shrink as 1/f (same uv coverage in metres)
    bmaj = cube.BEAM_MAJOR.values
    np.testing.assert_allclose(bmaj * f, bmaj[0] * f[0], rtol=0.05)
    assert "MFS_RESTORED" in cube and np.isfinite(cube.MFS_RESTORED.values).all()
    assert cube.N_SAMPLES.values.tolist() == [node.sizes["time"]] * 6


def test_doppler_factors_against_astropy_rv_correction():
    node = sim(2, 1.4e9, 1e6, sources=SPEC[:1], duration_s=600)
    xyz = node["antenna_xds"]["ANTENNA_POSITION"].values.mean(axis=0)
    t = node["time"].values
    tm = [0.5 * (t.min() + t.max())]
    pc = (math.radians(RA0), math.radians(DEC0))
    for frame in ("BARY", "LSRK"):
        k = doppler_factors(tm, xyz, pc, frame)[0]
        # 5 m/s between astropy's two routes; a wrong site, sign or frame is >= 300 m/s
        assert k == pytest.approx(independent_factor(node, frame), abs=5e-8), frame
    assert doppler_factors(tm, xyz, pc, "TOPO")[0] == 1.0
    # interpolation between 10-minute nodes against a direct evaluation at every time
    many = np.linspace(t.min(), t.min() + 3600, 7)
    direct = np.array([doppler_factors([x], xyz, pc, "LSRK")[0] for x in many])
    np.testing.assert_allclose(doppler_factors(many, xyz, pc, "LSRK"), direct, rtol=0,
                               atol=3e-12)


@pytest.fixture(scope="module")
def narrow():
    """16 channels of 20 kHz at 1.4 GHz: the LSRK shift (~85 kHz) is several channels."""
    return sim(16, 1.4e9, 2e4, sources=[(RA0, DEC0, 1.0, 0.0)])


def test_lsrk_shifts_channels(narrow):
    node = narrow
    f_in = node["frequency"].values
    width = 2e4
    base = dict(npix=32, cell_arcsec=20.0, niter=0, auto_threshold=None, continuum=False,
                weighting="natural", start=float(f_in[0]), width=width, nchan=16)
    topo = image_cube(node, {**base, "frame": "TOPO"}, backend="numpy")
    lsrk = image_cube(node, {**base, "frame": "LSRK"}, backend="numpy")
    np.testing.assert_allclose(topo.frequency.values, f_in)
    np.testing.assert_allclose(lsrk.frequency.values, f_in)  # same configured axis
    # the expected shift, from the independent Doppler factor at mid-time
    k = independent_factor(node, "LSRK")
    shift = (k - 1.0) * f_in.mean() / width  # channels
    assert lsrk.attrs["doppler_factor_mid"] == pytest.approx(k, abs=5e-8)
    frac = shift - math.floor(shift)
    assert 0.1 < frac < 0.9  # far from a channel edge (the drift in 30 min is ~0.03)
    n = round(shift)
    assert n >= 2
    n_t = node.sizes["time"]
    assert topo.N_SAMPLES.values.tolist() == [n_t] * 16
    assert lsrk.N_SAMPLES.values.tolist() == [0] * n + [n_t] * (16 - n)
    # empty output channels are NaN planes; filled ones image the 1 Jy source at the centre
    assert np.isnan(lsrk.DIRTY.values[:n]).all() and np.isnan(lsrk.BEAM_MAJOR.values[:n]).all()
    peak = lsrk.DIRTY.values[n:, 16, 16]
    np.testing.assert_allclose(peak, 1.0, rtol=1e-3)
    # LSRK channel j holds input channel j - n: same dirty image as TOPO channel j - n
    np.testing.assert_allclose(lsrk.DIRTY.values[n:], topo.DIRTY.values[:16 - n], atol=1e-6)
    mid = image_cube(node, {**base, "frame": "LSRK", "conversion": "mid_time"},
                     backend="numpy")
    np.testing.assert_array_equal(mid.N_SAMPLES.values, lsrk.N_SAMPLES.values)


@pytest.mark.parametrize(("convention", "backend"), [("radio", "dask"), ("optical", "numpy")])
def test_velocity_axis(narrow, convention, backend):
    node = narrow
    f_in = node["frequency"].values
    f0 = 1.4204e9
    k = independent_factor(node, "BARY")
    # a velocity grid whose channels are centred on the barycentric input frequencies
    fb = k * f_in[2:14]
    v = C_KM_S * ((f0 - fb) / f0 if convention == "radio" else (f0 - fb) / fb)
    start, nchan = float(v[0]), 12
    width = float(v[1] - v[0]) if convention == "radio" else float(np.mean(np.diff(v)))
    cfg = dict(npix=32, cell_arcsec=20.0, niter=0, auto_threshold=None, continuum=False,
               weighting="natural", frame="BARY", spectral_axis="velocity",
               velocity_convention=convention, rest_freq_hz=f0, start=start, width=width,
               nchan=nchan)
    cube = image_cube(node, cfg, backend=backend)
    vel = start + width * np.arange(nchan)
    f = cube.frequency.values
    np.testing.assert_allclose(cube.velocity.values, vel, rtol=0, atol=1e-9)
    if convention == "radio":
        np.testing.assert_allclose(vel, (f0 - f) / f0 * C_KM_S, rtol=0, atol=1e-9)
        assert width < 0  # velocity decreases with frequency
    else:
        np.testing.assert_allclose(vel, (f0 - f) / f * C_KM_S, rtol=0, atol=1e-9)
    # each output channel holds exactly one input channel at every time
    assert cube.N_SAMPLES.values.tolist() == [node.sizes["time"]] * nchan
    np.testing.assert_allclose(cube.DIRTY.values[:, 16, 16], 1.0, rtol=1e-3)


def test_config_validation():
    with pytest.raises(ValueError, match="velocity axis needs"):
        CubeConfig(npix=64, cell_arcsec=1.0, spectral_axis="velocity", start=0.0, width=1.0)
    with pytest.raises(ValueError, match="non-zero"):
        CubeConfig(npix=64, cell_arcsec=1.0, width=0.0)
    with pytest.raises(ValueError, match="extra"):
        CubeConfig(npix=64, cell_arcsec=1.0, nchannels=3)
    cfg = CubeConfig(npix=64, cell_arcsec=1.0, nchan=3, start=1e9, width=1e6)
    assert cfg.image_config().npix == 64
