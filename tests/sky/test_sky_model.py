"""Sky model arrays, spectra and the A-team."""

from __future__ import annotations

import numpy as np
import pytest

from daskcal.sky.ateam import ATEAM, ateam_sky_model
from daskcal.sky.model import SkyModel, SkyModelError


def _two():
    return SkyModel.from_components(
        name=["a", "b"], ra=[1.0, 7.0], dec=[0.5, -0.2], stokes_i=[10.0, 2.0], stokes_q=[1.0, 0.0],
        ref_freq=[150e6, 1.4e9], spectral_index=[[-0.7, -0.1], [0.3, 0.0]],
        major=[0.0, 1e-3], minor=[0.0, 4e-4], position_angle=[0.0, 0.5], patch=["p", "q"])


def test_log_polynomial_spectrum():
    sky = _two()
    f = np.array([75e6, 150e6, 300e6])
    flux = sky.flux(f)
    assert flux.shape == (2, 3, 4)
    x = np.log10(f / 150e6)
    np.testing.assert_allclose(flux[0, :, 0], 10 * (f / 150e6) ** (-0.7 - 0.1 * x))
    np.testing.assert_allclose(flux[0, :, 1], flux[0, :, 0] / 10)  # Q follows I
    np.testing.assert_allclose(flux[1, :, 0], 2 * (f / 1.4e9) ** 0.3)
    assert sky.ra[1] == pytest.approx(7.0 - 2 * np.pi)  # wrapped into [0, 2 pi)
    assert list(sky.is_gaussian) == [False, True]


def test_ordinary_polynomial_spectrum():
    sky = SkyModel.from_components(name=["a"], ra=[0.0], dec=[0.0], stokes_i=[4.0],
                                   ref_freq=100e6, spectral_index=[[2.0, 1.0]], log_si=False)
    f = np.array([100e6, 150e6])
    y = f / 100e6 - 1
    np.testing.assert_allclose(sky.flux(f)[0, :, 0], 4 + 2 * y + y**2)


def test_concatenate_select_and_dataset_roundtrip():
    sky = SkyModel.concatenate([_two(), ateam_sky_model(["TauA"])])
    assert sky.n_source == 3 and sky.spectral_index.shape == (3, 2)
    back = SkyModel.from_dataset(sky.to_dataset())
    for name in ("name", "ra", "dec", "stokes", "spectral_index", "major", "patch", "log_si"):
        assert np.array_equal(getattr(back, name), getattr(sky, name))
    assert sky.select(sky.is_gaussian).n_source == 2
    assert SkyModel.concatenate([]).n_source == 0


@pytest.mark.parametrize("kwargs,match", [
    (dict(name=["a", "a"]), "unique"),
    (dict(major=[0.0, 1e-3], minor=[1e-3, 1e-3]), "minor"),
    (dict(ref_freq=[0.0, 1e8]), "ref_freq"),
    (dict(dec=[2.0, 0.0]), "dec"),
    (dict(stokes_i=[np.nan, 1.0]), "non-finite"),
])
def test_invalid_models(kwargs, match):
    base = dict(name=["a", "b"], ra=[0.0, 1.0], dec=[0.0, 0.1], stokes_i=[1.0, 1.0],
                ref_freq=[1e8, 1e8])
    base.update(kwargs)
    with pytest.raises(SkyModelError, match=match):
        SkyModel.from_components(**base)


def test_ateam_values():
    sky = ateam_sky_model(epoch=2015.5)
    flux = {p: sky.flux([150e6])[sky.patch == p, 0, 0].sum() for p in ATEAM}
    assert flux["CygA"] == pytest.approx(10891, rel=1e-3)
    assert flux["CasA"] == pytest.approx(11000, rel=1e-3)
    assert 1300 < flux["TauA"] < 1500 and 1000 < flux["VirA"] < 1300
    # Cas A fades; positions are the catalogue ones
    later = ateam_sky_model(["CasA"], epoch=2025.5).flux([150e6])[0, 0, 0]
    assert later == pytest.approx(11000 * 0.993**10, rel=1e-6)
    casa = sky.select(sky.patch == "CasA")
    assert np.degrees(casa.ra[0]) == pytest.approx(350.85, abs=0.01)
    assert np.degrees(casa.dec[0]) == pytest.approx(58.815, abs=0.01)
    cyg = sky.select(sky.patch == "CygA")
    from daskcal.data.geometry import angular_separation

    assert np.degrees(angular_separation(cyg.ra[0], cyg.dec[0], cyg.ra[1], cyg.dec[1])) * 3600 \
        == pytest.approx(127, abs=1)
    with pytest.raises(SkyModelError, match="unknown A-team"):
        ateam_sky_model(["HerA"])
