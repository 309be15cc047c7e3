"""PB2017 flux standards against NRAO's published coefficient table and the polynomial itself."""

from __future__ import annotations

import importlib.util
import zipfile
from pathlib import Path

import numpy as np
import pytest

from daskcal.sky.bbs import read_bbs
from daskcal.sky.fluxscale import (
    PERLEY_BUTLER_2017,
    FluxScaleError,
    calibrator_sky_model,
    flux_density,
    flux_standard,
    spectral_index,
    spectral_terms,
)

SKYMODELS = Path(__file__).resolve().parents[2] / "configs" / "skymodels"
FREQS = np.geomspace(0.3e9, 40e9, 57)


def _published(coeffs, f_hz):
    """PB2017 eq. (1) written out term by term: 10 ** sum a_k log10(nu/GHz)**k."""
    x = np.log10(np.asarray(f_hz) / 1e9)
    return 10.0 ** sum(a * x ** k for k, a in enumerate(coeffs))


@pytest.mark.realdata
@pytest.mark.skipif(importlib.util.find_spec("casacore") is None, reason="needs python-casacore")
def test_coefficients_match_nraos_pb2017_table(realdata_cache, tmp_path):
    """Every coefficient equals NRAO's PerleyButler2017Coeffs table (CASA data, epoch 2017)."""
    from casacore.tables import table

    from daskcal.testing.realdata import CASADATA, fetch_wheel

    member = "casadata/__data__/nrao/VLA/standards/PerleyButler2017Coeffs"
    with zipfile.ZipFile(fetch_wheel(CASADATA, realdata_cache)) as zf:
        zf.extractall(tmp_path, [m for m in zf.namelist() if m.startswith(member + "/")])
    with table(str(tmp_path / member), ack=False) as t:
        epochs = t.getcol("Epoch")
        last = int(np.argmax(epochs))
        assert epochs[last] == pytest.approx(2017.0)
        for name, std in PERLEY_BUTLER_2017.items():
            col = f"{name}_coeffs"
            want = np.trim_zeros(np.asarray(t.getcol(col)[last], dtype=np.float64), "b")
            np.testing.assert_allclose(std.coefficients, want, atol=5e-5, err_msg=name)
            rng = t.getcolkeywords(col)["ValidFreqRange"]
            scale = {"GHz": 1e9, "MHz": 1e6}[rng["freqRangeUnit"]]
            np.testing.assert_allclose(std.freq_range_hz, np.asarray(rng["freqRange"]) * scale)


@pytest.mark.parametrize("name", sorted(PERLEY_BUTLER_2017))
def test_flux_density_is_the_published_polynomial(name):
    std = PERLEY_BUTLER_2017[name]
    f = FREQS[(FREQS >= std.freq_range_hz[0]) & (FREQS <= std.freq_range_hz[1])]
    np.testing.assert_allclose(flux_density(name, f), _published(std.coefficients, f), rtol=1e-12)


def test_3c286_at_l_band():
    """S(1.4134 GHz) = 10^(1.2481 - 0.4507 x - 0.1798 x^2 + 0.0357 x^3) ~ 15.01 Jy, alpha ~ -0.50."""
    x = np.log10(1.4134)
    s = 10 ** (1.2481 - 0.4507 * x - 0.1798 * x ** 2 + 0.0357 * x ** 3)
    assert flux_density("3C286", 1.4134e9) == pytest.approx(s, rel=1e-12)
    assert 14.9 < s < 15.1
    assert spectral_index("3C 286", 1.4134e9) == pytest.approx(
        -0.4507 - 2 * 0.1798 * x + 3 * 0.0357 * x ** 2, rel=1e-12)


@pytest.mark.parametrize("name", sorted(PERLEY_BUTLER_2017))
def test_spectral_index_is_the_log_derivative(name):
    f = np.array([1.0e9, 1.4e9, 5e9, 20e9])
    h = 1e-5
    num = (np.log10(flux_density(name, f * 10 ** h)) -
           np.log10(flux_density(name, f * 10 ** -h))) / (2 * h)
    np.testing.assert_allclose(spectral_index(name, f), num, atol=1e-7)


@pytest.mark.parametrize("f0", [0.15e9, 1.4134e9, 8.4e9])
@pytest.mark.parametrize("name", sorted(PERLEY_BUTLER_2017))
def test_sky_model_reproduces_the_standard_everywhere(name, f0):
    """The re-expanded log-polynomial equals PB2017 at all frequencies, not only near f0."""
    std = PERLEY_BUTLER_2017[name]
    sky = calibrator_sky_model(name, f0)
    f = FREQS[(FREQS >= std.freq_range_hz[0]) & (FREQS <= std.freq_range_hz[1])]
    np.testing.assert_allclose(sky.flux(f)[0, :, 0], _published(std.coefficients, f), rtol=1e-10)
    np.testing.assert_array_equal(sky.flux(f)[0, :, 1:], 0.0)
    s0, terms = spectral_terms(name, f0)
    assert s0 == pytest.approx(_published(std.coefficients, f0), rel=1e-12)
    assert terms[0] == pytest.approx(spectral_index(name, f0), rel=1e-10)
    assert (sky.ra[0], sky.dec[0]) == (pytest.approx(std.ra_rad), pytest.approx(std.dec_rad))


def test_positions_are_the_catalogue_j2000_positions():
    from astropy.coordinates import SkyCoord

    cat = {"3C286": "13h31m08.288s +30d30m32.96s", "3C48": "01h37m41.2994s +33d09m35.133s",
           "3C147": "05h42m36.1379s +49d51m07.234s", "3C138": "05h21m09.886s +16d38m22.05s"}
    for name, text in cat.items():
        c = SkyCoord(text, frame="icrs")
        std = flux_standard(name)
        assert std.ra_rad == pytest.approx(c.ra.rad, abs=1e-10)
        assert std.dec_rad == pytest.approx(c.dec.rad, abs=1e-10)


def test_aliases_and_unknown_sources():
    assert flux_standard("1331+305").name == "3C286"
    assert flux_standard("j0137+3309").name == "3C48"
    assert flux_standard("3c 147").name == "3C147"
    with pytest.raises(FluxScaleError, match="not a known flux calibrator"):
        flux_standard("Cygnus X")


def test_frequency_range_is_enforced():
    with pytest.raises(FluxScaleError, match="outside the PB2017 range"):
        flux_density("3C138", 0.1e9)
    assert np.isfinite(flux_density("3C138", 0.1e9, extrapolate=True))
    with pytest.raises(FluxScaleError, match="must be positive"):
        spectral_terms("3C286", 0.0)


def test_shipped_3c286_skymodel_is_the_standard():
    """configs/skymodels/3c286.skymodel reads back as PB2017 3C286 at every frequency."""
    sky = read_bbs(SKYMODELS / "3c286.skymodel")
    assert sky.n_source == 1 and str(sky.name[0]) == "3C286"
    f = np.linspace(1.0e9, 2.0e9, 11)
    np.testing.assert_allclose(sky.flux(f)[0, :, 0], flux_density("3C286", f), rtol=1e-12)
    std = flux_standard("3C286")
    assert sky.ra[0] == pytest.approx(std.ra_rad, abs=1e-9)
    assert sky.dec[0] == pytest.approx(std.dec_rad, abs=1e-9)
