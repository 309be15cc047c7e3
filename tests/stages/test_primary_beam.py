"""Primary beams on image grids and primary-beam correction.

References: astropy (FITS WCS of the SIN grid, SkyCoord separations, AltAz frames) for
the geometry, the simulator's injected sky and beam for the correction.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import xarray as xr

from daskcal.data.geometry import geodetic_to_itrf, radec_of_lm
from daskcal.kernels import beams
from daskcal.stages.imaging.primary_beam import (
    PrimaryBeamConfig,
    PrimaryBeamError,
    beam_image,
    pbcor,
    primary_beam,
    sample_times,
)

C = 299_792_458.0
RA0, DEC0 = 150.0, 40.0
CELL_AS = 10.0
NPIX = 192


def blank_image(npix, cell_rad, centre_deg, freq=1.4e9):
    lm = (np.arange(npix) - npix // 2) * cell_rad
    return xr.Dataset({"RESTORED": (("l", "m"), np.zeros((npix, npix)))},
                      coords={"l": lm, "m": lm},
                      attrs={"phase_centre_rad": list(np.radians(centre_deg)),
                             "cell_rad": cell_rad, "ref_freq_hz": freq})


def pixel_world(npix, cell_rad, centre_deg, i, j):
    """SkyCoord of daskcal pixels (i, j) through astropy's WCS of our FITS header."""
    from astropy.wcs import WCS

    from daskcal.data.fits import image_header

    w = WCS(image_header((npix, npix), cell_rad, np.radians(centre_deg), ref_freq_hz=1e9))
    # daskcal (i, j) -> FITS 0-based (x, y) = (npix - 1 - i, j); see daskcal.data.fits
    return w.celestial.pixel_to_world(npix - 1 - np.asarray(i), np.asarray(j))


@pytest.mark.parametrize("model", ["gaussian", "airy"])
def test_beam_value_at_known_directions(model):
    from astropy.coordinates import SkyCoord

    npix, cell = 256, math.radians(40 / 3600)
    img = blank_image(npix, cell, (RA0, DEC0), freq=1.4e9)
    pointing = (RA0 + 0.2, DEC0 - 0.1)  # not the phase centre
    pb = beam_image(img, model=model, diameter_m=25.0,
                    pointing_rad=np.radians(pointing)).values
    rng = np.random.default_rng(0)
    i, j = rng.integers(0, npix, 50), rng.integers(0, npix, 50)
    world = pixel_world(npix, cell, (RA0, DEC0), i, j)
    rho = world.separation(SkyCoord(pointing[0], pointing[1], unit="deg", frame="fk5")).rad
    lam_d = C / 1.4e9 / 25.0
    if model == "gaussian":
        ref = np.exp(-4 * math.log(2) * (rho / (1.02 * lam_d)) ** 2)
    else:
        from scipy.special import j1

        x = np.pi * np.sin(rho) / lam_d
        ref = (2 * j1(x) / x) ** 2
    np.testing.assert_allclose(pb[i, j], ref, rtol=1e-7, atol=1e-12)
    assert pb.max() <= 1.0


def test_band_average_and_errors():
    img = blank_image(64, math.radians(60 / 3600), (RA0, DEC0))
    freqs = np.array([1.3e9, 1.4e9, 1.5e9])
    avg = beam_image(img, diameter_m=25.0, freq_hz=freqs).values
    each = [beam_image(img, diameter_m=25.0, freq_hz=f).values for f in freqs]
    np.testing.assert_allclose(avg, np.mean(each, axis=0), rtol=1e-12)
    with pytest.raises(PrimaryBeamError, match="diameter_m"):
        beam_image(img, model="airy")
    with pytest.raises(PrimaryBeamError, match="time_s and site_itrf_m"):
        beam_image(img, model="lofar_hba")
    with pytest.raises(PrimaryBeamError, match="unknown beam model"):
        beam_image(img, model="cosine", diameter_m=25.0)


def test_off_sky_pixels_are_nan():
    img = blank_image(32, math.radians(4.0), (RA0, DEC0))  # 128 degrees across
    pb = beam_image(img, diameter_m=1.0, freq_hz=150e6).values
    lm = img["l"].values
    off = lm[:, None] ** 2 + lm[None, :] ** 2 > 1
    assert np.all(np.isnan(pb[off])) and np.all(np.isfinite(pb[~off]))


# ----------------------------------------------------------------------------- LOFAR

SITE = geodetic_to_itrf(6.869837, 52.915122, 50.0)  # the LOFAR superterp
T0 = 1710961200.0  # 2024-03-20T19:00 UTC


def astropy_enu(ra_deg, dec_deg, time_s):
    """(east, north, up) unit vectors of J2000 directions from astropy's AltAz frame."""
    import astropy.units as u
    from astropy.coordinates import AltAz, EarthLocation, SkyCoord
    from astropy.time import Time
    from astropy.utils import iers

    iers.conf.auto_download = False
    loc = EarthLocation.from_geocentric(*SITE, unit=u.m)
    aa = SkyCoord(ra_deg, dec_deg, unit="deg", frame="fk5").transform_to(
        AltAz(obstime=Time(time_s, format="unix"), location=loc))
    return beams.azel_to_enu(aa.az.rad, aa.alt.rad)


def test_lofar_beam_matches_astropy_altaz_frame():
    npix, cell = 96, math.radians(150 / 3600)  # 4 degrees
    img = blank_image(npix, cell, (123.4, 48.2), freq=150e6)
    t = T0 + 3600.0
    pb = beam_image(img, model="lofar_hba", time_s=[t], site_itrf_m=SITE, n_tiles=24).values
    rng = np.random.default_rng(3)
    i, j = rng.integers(0, npix, 30), rng.integers(0, npix, 30)
    world = pixel_world(npix, cell, (123.4, 48.2), i, j)
    dirs = astropy_enu(world.ra.deg, world.dec.deg, t)
    s0 = astropy_enu(123.4, 48.2, t)
    ref = beams.hba_station_power(dirs, s0, 150e6, beams.generated_hba_layout(24))[:, 0]
    # astropy adds diurnal aberration and refines precession: arcseconds on a 4 deg beam
    # (measured: 7e-5 at most)
    np.testing.assert_allclose(pb[i, j], ref, rtol=0, atol=5e-4)
    assert pb[npix // 2, npix // 2] == pytest.approx(1.0, abs=1e-9)


def test_lofar_beam_time_average_and_coarse_grid():
    npix, cell = 64, math.radians(300 / 3600)
    img = blank_image(npix, cell, (123.4, 48.2), freq=150e6)
    times = T0 + np.arange(0, 4 * 3600.0, 10.0)
    samples = sample_times(times, 3)
    np.testing.assert_allclose(np.diff(samples), (times[-1] - times[0]) / 3)
    avg = beam_image(img, model="lofar_hba", time_s=times, site_itrf_m=SITE, n_times=3)
    each = [beam_image(img, model="lofar_hba", time_s=[t], site_itrf_m=SITE).values
            for t in samples]
    np.testing.assert_allclose(avg.values, np.mean(each, axis=0), rtol=1e-10)
    assert avg.attrs["time_s"] == pytest.approx(list(samples))
    # the beam rotates and stretches with time: the snapshots differ
    assert np.max(np.abs(each[0] - each[2])) > 0.01
    # evaluated on a 32 x 32 grid and interpolated: close to the exact beam
    coarse = beam_image(img, model="lofar_hba", time_s=times, site_itrf_m=SITE, n_times=3,
                        max_grid=32)
    assert np.nanmax(np.abs(coarse.values - avg.values)) < 0.01


def test_lofar_several_stations_is_the_cross_correlation_beam():
    img = blank_image(48, math.radians(300 / 3600), (123.4, 48.2), freq=150e6)
    layouts = [beams.generated_hba_layout(24, rotation_rad=r) for r in (0.0, 0.4, 0.9)]
    t = [T0]
    pb = beam_image(img, model="lofar_hba", time_s=t, site_itrf_m=SITE,
                    tile_positions_m=layouts).values
    # reference: mean over pairs p != q of Re(V_p conj(V_q)), computed pair by pair
    from daskcal.data.geometry import radec_to_unit
    from daskcal.stages.imaging.primary_beam import j2000_to_enu

    ll, mm = np.meshgrid(img["l"].values, img["m"].values, indexing="ij")
    ra, dec = radec_of_lm(ll, mm, *np.radians([123.4, 48.2]))
    rot = j2000_to_enu(t, SITE)[0]
    dirs = radec_to_unit(ra, dec).reshape(-1, 3) @ rot.T
    s0 = rot @ radec_to_unit(*np.radians([123.4, 48.2]))
    v = [beams.hba_station_voltage(dirs, s0, 150e6, lay)[:, 0] for lay in layouts]
    pairs = [(p, q) for p in range(3) for q in range(3) if p != q]
    ref = np.mean([np.real(v[p] * np.conj(v[q])) for p, q in pairs], axis=0)
    np.testing.assert_allclose(pb.ravel(), ref, atol=1e-12)


def test_lofar_real_station_layout():
    pytest.importorskip("lofarantpos")
    img = blank_image(32, math.radians(600 / 3600), (123.4, 48.2), freq=150e6)
    a = beam_image(img, model="lofar_hba", time_s=[T0], site_itrf_m=SITE,
                   station=["CS002HBA0"]).values
    tiles, offsets = beams.lofar_station_layout("CS002HBA0")
    b = beam_image(img, model="lofar_hba", time_s=[T0], site_itrf_m=SITE,
                   tile_positions_m=tiles, element_offsets_m=offsets).values
    np.testing.assert_array_equal(a, b)
    with pytest.raises(PrimaryBeamError, match="XX999HBA"):
        beam_image(img, model="lofar_hba", time_s=[T0], site_itrf_m=SITE, station="XX999HBA")


# ----------------------------------------------------------------------------- pbcor


def source_at(i, j):
    cell = math.radians(CELL_AS / 3600)
    ra, dec = radec_of_lm((i - NPIX // 2) * cell, (j - NPIX // 2) * cell, *np.radians([RA0, DEC0]))
    return float(np.degrees(ra)), float(np.degrees(dec))


# pixel positions and true fluxes: the centre, and two sources at beam 0.83 and 0.59
SOURCES = [((96, 96), 1.0), ((136, 71), 2.0), ((36, 146), 1.5)]


@pytest.fixture(scope="module")
def simulated():
    from daskcal.stages.imaging import image
    from daskcal.testing import simulate_observation

    comps = [dict(name=f"s{k}", ra_deg=source_at(*ij)[0], dec_deg=source_at(*ij)[1], flux_jy=s,
                  spectral_index=[0.0], ref_freq_hz=1.4e9)
             for k, (ij, s) in enumerate(SOURCES)]
    cfg = dict(array="vla", vla=dict(configuration="D"), ra_deg=RA0, dec_deg=DEC0,
               start_time="2024-03-20T04:00:00", duration_s=1800, integration_s=120, n_chan=4,
               polarizations=["RR", "LL"], gains=dict(enabled=False),
               noise=dict(enabled=False), aberration=False,
               beam=dict(enabled=True, sidelobe_level=0.0, elevation_exponent=0.0),
               sky=dict(preset="none", components=comps), chunks={"time": 8, "frequency": 2})
    obs, truth = simulate_observation(cfg)
    node = obs[next(iter(obs.children))]
    img = image(node, dict(npix=NPIX, cell_arcsec=CELL_AS, niter=3000, auto_threshold=None,
                           threshold_jy=5e-4, weighting="briggs", robust=0.0), backend="numpy")
    true_beam = (truth["beam"].to_dataset()["BEAM"].values.astype(np.float64) ** 2).mean(
        axis=(0, 1, 3))
    return node, img, true_beam


def test_pbcor_recovers_true_fluxes(simulated):
    node, img, true_beam = simulated
    out = primary_beam(img, node, PrimaryBeamConfig(model="gaussian", cutoff=0.2))
    for k, ((i, j), flux) in enumerate(SOURCES):
        # the beam at the source is the simulator's (apparent flux E_p E_q S)
        assert out.PB.values[i, j] == pytest.approx(true_beam[k], rel=1e-4)
        assert img.RESTORED.values[i, j] == pytest.approx(flux * true_beam[k], rel=0.01)
        assert out.RESTORED_PBCOR.values[i, j] == pytest.approx(flux, rel=0.01)
    assert out.MODEL_PBCOR.sum().item() == pytest.approx(sum(s for _, s in SOURCES), rel=0.01)
    assert out.attrs["pb_cutoff"] == 0.2 and out.RESTORED_PBCOR.attrs["units"] == "Jy/beam"


def test_pbcor_cutoff_blanks(simulated):
    _, img, _ = simulated
    pb = beam_image(img, diameter_m=25.0)
    out = pbcor(img, pb, cutoff=0.7)
    low = pb.values < 0.7
    assert low.any() and (~low).any()
    assert np.all(np.isnan(out.RESTORED_PBCOR.values[low]))
    np.testing.assert_allclose(out.RESTORED_PBCOR.values[~low],
                               img.RESTORED.values[~low] / pb.values[~low], rtol=1e-12)
    np.testing.assert_array_equal(out.PB.values, pb.values)
    with pytest.raises(PrimaryBeamError, match="shape"):
        pbcor(img, pb.values[:10], cutoff=0.2)
    with pytest.raises(PrimaryBeamError, match="cutoff"):
        pbcor(img, pb, cutoff=0.0)


def test_config_schema():
    schema = PrimaryBeamConfig.model_json_schema()
    for name in ("model", "diameter_m", "cutoff", "n_times"):
        assert schema["properties"][name]["description"]
    with pytest.raises(ValueError, match="extra"):
        PrimaryBeamConfig(model="gaussian", colour="red")
    with pytest.raises(ValueError):
        PrimaryBeamConfig(cutoff=1.5)
