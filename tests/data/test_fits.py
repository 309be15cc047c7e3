"""FITS export: header, WCS orientation (positions to 0.1 pixel), atomic writes."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

from daskcal.data.fits import write_fits_image

sys.path.insert(0, str(Path(__file__).parents[1] / "stages"))
from test_image import SOURCES, cfg, fit_peak, sim_config


@pytest.fixture(scope="module")
def restored():
    from daskcal.stages.imaging import image
    from daskcal.testing import simulate_observation

    obs, _ = simulate_observation(sim_config())
    return image(obs[next(iter(obs.children))], cfg(), backend="numpy")


def test_fits_positions_and_header(restored, tmp_path):
    from astropy.coordinates import SkyCoord
    from astropy.io import fits
    from astropy.wcs import WCS

    out = restored
    beam = (out.bmaj_rad, out.bmin_rad, out.bpa_rad)
    path = write_fits_image(tmp_path / "img.fits", out.RESTORED.values, out.cell_rad,
                            out.phase_centre_rad, ref_freq_hz=out.ref_freq_hz,
                            bandwidth_hz=out.bandwidth_hz, beam_rad=beam,
                            date_obs="2024-03-20T19:00:00", telescope="VLA")
    with fits.open(path) as hdul:
        hdr, data = hdul[0].header, hdul[0].data
    assert data.shape == (1, 1, 128, 128)
    assert hdr["CTYPE1"] == "RA---SIN" and hdr["CTYPE2"] == "DEC--SIN"
    assert hdr["CTYPE3"] == "FREQ" and hdr["CTYPE4"] == "STOKES"
    assert hdr["BUNIT"] == "JY/BEAM" and hdr["BMAJ"] == pytest.approx(math.degrees(beam[0]))
    assert hdr["RADESYS"] == "FK5" and hdr["EQUINOX"] == 2000.0 and hdr["TELESCOP"] == "VLA"
    wcs = WCS(hdr).celestial
    img = data[0, 0]  # (y, x)
    # FITS beam PA is north through east as ours; in FITS (x, y) pixels l = -x, so fit on
    # the daskcal layout by undoing the flip: img[y, x] -> ours[nx - 1 - x, y]
    ours = img.T[::-1, :].astype(np.float64)
    for ra, dec, s in SOURCES:
        x, y = wcs.world_to_pixel(SkyCoord(ra, dec, unit="deg", frame="fk5"))
        i_ours, j_ours = 127 - float(x), float(y)
        fi, fj, amp = fit_peak(ours, int(round(i_ours)), int(round(j_ours)), beam, out.cell_rad)
        assert abs(fi - i_ours) < 0.1 and abs(fj - j_ours) < 0.1, (fi - i_ours, fj - j_ours)
        assert amp == pytest.approx(s, rel=0.01)


def test_atomic_and_no_overwrite(tmp_path):
    img = np.zeros((16, 16))
    p = write_fits_image(tmp_path / "a.fits", img, 1e-5, (1.0, 0.5), ref_freq_hz=1e9,
                         bunit="JY/PIXEL")
    with pytest.raises(FileExistsError):
        write_fits_image(p, img, 1e-5, (1.0, 0.5), ref_freq_hz=1e9)
    assert [f.name for f in tmp_path.iterdir()] == ["a.fits"]


# ----------------------------------------------------------------------------- products


@pytest.fixture(scope="module")
def sim_node():
    from daskcal.testing import simulate_observation

    obs, _ = simulate_observation(sim_config())
    return obs[next(iter(obs.children))]


def _check_positions(img_yx, wcs, beam, cell, sources, tol=0.1):
    """Fit each source's peak at the pixel astropy's WCS gives for its RA/Dec."""
    from astropy.coordinates import SkyCoord

    nx = img_yx.shape[1]
    ours = img_yx.T[::-1, :].astype(np.float64)
    for ra, dec, s in sources:
        x, y = wcs.world_to_pixel(SkyCoord(ra, dec, unit="deg", frame="fk5"))
        i_ours, j_ours = nx - 1 - float(x), float(y)
        fi, fj, amp = fit_peak(ours, int(round(i_ours)), int(round(j_ours)), beam, cell)
        assert abs(fi - i_ours) < tol and abs(fj - j_ours) < tol, (fi - i_ours, fj - j_ours)
        if s is not None:
            assert amp == pytest.approx(s, rel=0.01)


@pytest.mark.filterwarnings("ignore:'obsfix' made the change")
def test_write_image_products(restored, sim_node, tmp_path):
    from astropy.io import fits
    from astropy.time import Time
    from astropy.wcs import WCS
    from PIL import Image

    from daskcal.data.fits import write_image_products

    files = write_image_products(restored, tmp_path / "out", "field", node=sim_node)
    assert set(files) == {"DIRTY", "MODEL", "RESIDUAL", "RESTORED", "png", "jpg"}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        ["field-dirty.fits", "field-model.fits", "field-residual.fits", "field-restored.fits",
         "field.png", "field.jpg"])  # no temporary files left
    with Image.open(files["png"]) as im:
        assert im.format == "PNG" and im.size[0] > 100
    with Image.open(files["jpg"]) as im:
        assert im.format == "JPEG"
    # drawn once, encoded twice: the same picture (to JPEG's loss), and not a blank one
    with Image.open(files["png"]) as a, Image.open(files["jpg"]) as b:
        pa = np.asarray(a.convert("RGB"), dtype=float)
        pb = np.asarray(b.convert("RGB"), dtype=float)
    assert pa.shape == pb.shape and pa.std() > 20
    assert np.abs(pa - pb).mean() < 3.0
    with fits.open(files["RESTORED"]) as hdul:
        hdr, data = hdul[0].header, hdul[0].data
    # the start of the first integration, as configured
    from daskcal.testing import SimulationConfig

    start = Time(SimulationConfig.model_validate(sim_config()).start_time, scale="utc")
    assert hdr["MJD-OBS"] == pytest.approx(start.mjd, abs=1e-3 / 86400)
    assert Time(hdr["DATE-OBS"], scale="utc").mjd == pytest.approx(start.mjd, abs=1e-3 / 86400)
    assert hdr["TIMESYS"] == "UTC" and hdr["TELESCOP"] == "VLA"
    assert hdr["OBSERVER"] == "daskcal simulator" and hdr["OBJECT"] == "field_0"
    ant = sim_node["antenna_xds"]["ANTENNA_POSITION"].values.mean(axis=0)
    assert [hdr[f"OBSGEO-{a}"] for a in "XYZ"] == pytest.approx(list(ant))
    wcs = WCS(hdr)
    assert wcs.wcs.ctype[2] == "FREQ" and hdr["CRVAL3"] == pytest.approx(restored.ref_freq_hz)
    beam = (restored.bmaj_rad, restored.bmin_rad, restored.bpa_rad)
    _check_positions(data[0, 0], wcs.celestial, beam, restored.cell_rad, SOURCES)
    with fits.open(files["MODEL"]) as hdul:
        assert hdul[0].header["BUNIT"] == "JY/PIXEL"
        assert float(hdul[0].data.sum()) == pytest.approx(restored.MODEL.sum().item(), rel=1e-5)


@pytest.mark.filterwarnings("ignore:'obsfix' made the change")
def test_cube_fits(tmp_path):
    """A frequency cube: 4-D layout, FREQ axis values, per-channel beams, positions."""
    from astropy.io import fits
    from astropy.wcs import WCS

    from daskcal.data.fits import write_image_products
    from daskcal.stages.imaging.cube import image_cube

    sys.path.insert(0, str(Path(__file__).parents[1] / "stages"))
    from test_cube import SPEC, sim

    node = sim(3, 1.0e9, 3.2e8)
    cube = image_cube(node, dict(npix=128, cell_arcsec=10.0, niter=3000, auto_threshold=None,
                                 threshold_jy=5e-4, frame="LSRK", start=1.05e9, width=3.2e8,
                                 nchan=3, conversion="mid_time"), backend="numpy")
    files = write_image_products(cube, tmp_path, "cube", node=node)
    assert {"RESTORED", "MFS_RESTORED", "png", "jpg"} <= set(files)
    with fits.open(files["RESTORED"]) as hdul:
        hdr, data = hdul[0].header, hdul[0].data
        beams = hdul["BEAMS"].data
    assert data.shape == (1, 3, 128, 128) and hdr["NAXIS"] == 4
    assert hdr["SPECSYS"] == "LSRK" and hdr["CASAMBM"]
    wcs = WCS(hdr)
    freq = wcs.spectral.pixel_to_world(np.arange(3))
    np.testing.assert_allclose(freq.to_value("Hz"), [1.05e9, 1.37e9, 1.69e9], rtol=1e-12)
    np.testing.assert_allclose(beams["BMAJ"], np.degrees(cube.BEAM_MAJOR.values) * 3600,
                               rtol=1e-6)
    np.testing.assert_allclose(beams["BPA"], np.degrees(cube.BEAM_PA.values), rtol=1e-6)
    assert beams["CHAN"].tolist() == [0, 1, 2]
    assert hdr["BMAJ"] == pytest.approx(np.degrees(np.median(cube.BEAM_MAJOR.values)))
    for c in range(3):
        beam = tuple(float(cube[k][c]) for k in ("BEAM_MAJOR", "BEAM_MINOR", "BEAM_PA"))
        _check_positions(data[0, c], wcs.celestial, beam, cube.cell_rad,
                         [(ra, dec, None) for ra, dec, _, _ in SPEC])
    with fits.open(files["MFS_RESTORED"]) as hdul:
        assert hdul[0].header["SPECSYS"] == "TOPOCENT" and hdul[0].data.shape == (1, 1, 128, 128)


@pytest.mark.parametrize("convention", ["radio", "optical"])
def test_velocity_cube_header(tmp_path, convention):
    """VRAD / VOPT axes: astropy converts them back to the channel frequencies."""
    import astropy.units as u
    from astropy.io import fits
    from astropy.wcs import WCS

    from daskcal.data.fits import write_fits_cube

    f0, c = 1.420405752e9, 299_792.458
    vel = -50.0 + 2.5 * np.arange(5)  # km/s, regular in the convention's own velocity
    freq = f0 * (1 - vel / c) if convention == "radio" else f0 / (1 + vel / c)
    cube = np.random.default_rng(1).normal(size=(5, 16, 16))
    beams = np.array([[1e-4, 5e-5, 0.3]] * 5)
    beams[2] = np.nan  # an empty channel
    p = write_fits_cube(tmp_path / "v.fits", cube, 1e-5, (1.0, 0.5), freq_hz=freq,
                        velocity_km_s=vel, velocity_convention=convention, beams_rad=beams,
                        rest_freq_hz=f0, specsys="BARY", time_start_unix_s=1.7e9)
    with fits.open(p) as hdul:
        hdr, data = hdul[0].header, hdul[0].data
    assert hdr["CTYPE3"] == {"radio": "VRAD", "optical": "VOPT"}[convention]
    assert hdr["SPECSYS"] == "BARYCENT" and hdr["RESTFRQ"] == f0
    assert hdr["MJD-OBS"] == pytest.approx(1.7e9 / 86400 + 40587)
    sc = WCS(hdr).spectral.pixel_to_world(np.arange(5))
    np.testing.assert_allclose(sc.to_value(u.km / u.s), vel, atol=1e-9)
    np.testing.assert_allclose(sc.to_value(u.Hz), freq, rtol=1e-12)
    # data layout: channel k, pixel (i, j) of ours is FITS [0, k, j, nx - 1 - i]
    np.testing.assert_allclose(data[0, 3, 5, 15 - 2], cube[3, 2, 5], rtol=1e-6)
    with pytest.raises(ValueError, match="not regular"):
        write_fits_cube(tmp_path / "bad.fits", cube, 1e-5, (1.0, 0.5),
                        freq_hz=f0 / (1 + np.array([0, 1, 3, 4, 5.0]) / c))
