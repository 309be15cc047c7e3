"""daskcal.data.uvdata_import: anything pyuvdata reads, converted into the data model."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest

from daskcal import DaskcalError
from daskcal.data.schema import check_observation
from daskcal.data.uvdata_import import (
    OFFLINE_SITE_NAME,
    UVDataImportError,
    astropy_sites_offline,
    read_with_pyuvdata,
)

pytest.importorskip("pyuvdata")  # the optional extra daskcal[uvdata]


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pyuvdata's remarks about the test files
        return fn(*args, **kwargs)


def _only(obs):
    assert len(obs.children) == 1
    node = obs[next(iter(obs.children))]
    return node, node.to_dataset(inherit=False)


def reynolds_1934_jy(freq_hz: np.ndarray) -> np.ndarray:
    """PKS B1934-638 flux density (Reynolds 1994, the ATCA primary flux scale), Jy.

    log10 S = -30.7667 + 26.4908 x - 7.0977 x^2 + 0.605334 x^3, x = log10(f / MHz):
    14.9 Jy at 1.4 GHz, 12.6 Jy at 2.1 GHz, 9.2 Jy at 3.1 GHz.
    """
    x = np.log10(np.asarray(freq_hz) / 1e6)
    return 10.0 ** (-30.7667 + 26.4908 * x - 7.0977 * x**2 + 0.605334 * x**3)


def test_offline_sites_placeholder_and_restore():
    from astropy.coordinates import EarthLocation

    before = EarthLocation._site_registry
    with astropy_sites_offline():
        if not before:
            assert EarthLocation.get_site_names() == [OFFLINE_SITE_NAME]  # no download
    assert EarthLocation._site_registry is before


@pytest.mark.realdata
def test_atca_miriad_1934_flux_density(realdata):
    """ATCA CABB 16 cm data on PKS B1934-638 (Miriad, via pyuvdata's reader).

    The visibilities are raw (``vis_units`` 'uncalib': the Miriad gains,
    bandpass and leakage tables in the data set are not applied by
    pyuvdata), so the bounds are those of uncalibrated but Tsys-scaled ATCA
    data: over the flattest part of the bandpass (above 2.5 GHz) the Stokes I
    amplitude is within 30% of the Reynolds model (found 0.83-0.95 per
    baseline), the band median within a factor of 3 (found 1.57, the raw
    bandpass rises towards 1.3 GHz). Unit or frequency-axis mistakes fail
    both by far. 1934-638 is unresolved and unpolarised: equal amplitudes on
    153 m to 6 km baselines, XX = YY, cross hands at the leakage level.
    """
    obs = _quiet(read_with_pyuvdata, realdata("atca_miriad"))
    assert check_observation(obs) == []
    node, ds = _only(obs)
    ds = ds.compute()
    assert str(ds.field_name.values[0]) == "1934-638"
    assert list(ds.polarization.values) == ["XX", "XY", "YX", "YY"]
    assert dict(ds.sizes) == {"time": 1, "baseline_id": 15, "frequency": 2049,
                              "polarization": 4, "uvw_label": 3}
    assert "uncalib" in ds.attrs["data_groups"]["base"]["description"]
    ra, dec = node["field_and_source_base_xds"].to_dataset().FIELD_PHASE_CENTER_DIRECTION.values[0]
    assert np.rad2deg(ra) == pytest.approx(294.85, abs=0.01)  # 19h39m25s
    assert np.rad2deg(dec) == pytest.approx(-63.71, abs=0.01)

    freq = ds.frequency.values
    assert 1.07e9 < freq.min() and freq.max() < 3.13e9  # the CABB 16 cm band
    amp = np.where(ds.FLAG.values, np.nan, np.abs(ds.VISIBILITY.values))[0]  # (bl, chan, pol)
    stokes_i = 0.5 * (amp[..., 0] + amp[..., 3])
    ratio = stokes_i / reynolds_1934_jy(freq)
    upper = freq > 2.5e9
    per_baseline_upper = np.nanmedian(ratio[:, upper], axis=1)
    assert np.all((per_baseline_upper > 0.7) & (per_baseline_upper < 1.3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # channels flagged on every baseline
        band = np.nanmedian(stokes_i, axis=0)
    assert 1 / 3 < np.nanmedian(band / reynolds_1934_jy(freq)) < 3
    per_baseline = np.nanmedian(ratio, axis=1)
    lengths = np.linalg.norm(ds.UVW.values[0], axis=1)
    assert lengths.min() < 200 and lengths.max() > 5000
    assert per_baseline.max() / per_baseline.min() < 1.15  # unresolved
    assert 0.9 < np.nanmedian(amp[..., 0] / amp[..., 3]) < 1.1
    assert np.nanmedian(amp[..., 1] / amp[..., 0]) < 0.05
    assert np.nanmedian(amp[..., 2] / amp[..., 3]) < 0.05


@pytest.mark.realdata
def test_chunks_follow_resolve_chunks(realdata):
    obs = _quiet(read_with_pyuvdata, realdata("atca_miriad"), chunks="time=1,frequency=512")
    _, ds = _only(obs)
    assert ds.VISIBILITY.data.chunks[2] == (512, 512, 512, 512, 1)
    assert ds.FLAG.data.chunks == ds.VISIBILITY.data.chunks
    assert ds.UVW.data.chunks[0] == (1,)


@pytest.mark.realdata
def test_mwa_uvfits_both_readers_agree(realdata):
    """Our UVFITS reader and pyuvdata's give the same observation.

    One difference is pyuvdata's: it sets the imaginary part of parallel-hand
    autocorrelations to zero (here |Im| <= 2.4e-8 |Re|); we keep the file's values.
    """
    from daskcal.data.uvfits import read_uvfits

    path = realdata("mwa_uvfits")
    ours = read_uvfits(path).compute()
    theirs = _quiet(read_with_pyuvdata, path).compute()
    assert check_observation(theirs) == []
    (na, a), (nb, b) = _only(ours), _only(theirs)
    for var in ("FLAG", "WEIGHT", "UVW", "TIME_CENTROID", "EFFECTIVE_INTEGRATION_TIME"):
        np.testing.assert_array_equal(a[var].values, b[var].values, err_msg=var)
    np.testing.assert_array_equal(a.time.values, b.time.values)
    np.testing.assert_array_equal(a.frequency.values, b.frequency.values)
    np.testing.assert_array_equal(a.polarization.values, b.polarization.values)
    np.testing.assert_array_equal(a.baseline_antenna1_name.values, b.baseline_antenna1_name.values)
    np.testing.assert_array_equal(a.baseline_antenna2_name.values, b.baseline_antenna2_name.values)
    va, vb = a.VISIBILITY.values, b.VISIBILITY.values
    np.testing.assert_array_equal(va.real, vb.real)
    auto = (a.antenna1 == a.antenna2).values
    parallel = np.array([p[0] == p[1] for p in a.polarization.values])
    differs = auto[None, :, None, None] & parallel[None, None, None, :]
    np.testing.assert_array_equal(np.where(differs, 0, va.imag), vb.imag)
    assert np.all(np.abs(va.imag[np.broadcast_to(differs, va.shape)]) <= 1e-7 * np.abs(
        va.real[np.broadcast_to(differs, va.shape)]))
    ant_a, ant_b = na["antenna_xds"].to_dataset(), nb["antenna_xds"].to_dataset()
    np.testing.assert_array_equal(ant_a.antenna_name.values, ant_b.antenna_name.values)
    np.testing.assert_allclose(ant_a.ANTENNA_POSITION.values, ant_b.ANTENNA_POSITION.values,
                               rtol=0, atol=1e-6)
    fa = na["field_and_source_base_xds"].to_dataset()
    fb = nb["field_and_source_base_xds"].to_dataset()
    assert str(fa.field_name.values[0]) == str(fb.field_name.values[0]) == "UVCeti"
    np.testing.assert_allclose(fa.FIELD_PHASE_CENTER_DIRECTION.values,
                               fb.FIELD_PHASE_CENTER_DIRECTION.values, rtol=0, atol=1e-12)


@pytest.mark.realdata
def test_uvdata_object_and_reversed_baselines(realdata):
    """A UVData is accepted and left alone; rows stored ant1 > ant2 land on the same samples."""
    from pyuvdata import UVData

    from daskcal.data.uvfits import read_uvfits

    path = realdata("vla_day2_uvfits")
    uvd = _quiet(UVData.from_file, str(path))
    kept = copy.deepcopy(uvd)
    direct = _quiet(read_with_pyuvdata, uvd).compute()
    assert uvd == kept
    reversed_ = copy.deepcopy(uvd)
    reversed_.conjugate_bls("ant2<ant1")
    flipped = _quiet(read_with_pyuvdata, reversed_).compute()
    ref = read_uvfits(path).compute()
    (_, a), (_, b), (_, c) = _only(direct), _only(flipped), _only(ref)
    assert list(a.polarization.values) == ["RR", "RL", "LR", "LL"]
    for other in (b, c):
        np.testing.assert_array_equal(a.baseline_antenna1_name.values,
                                      other.baseline_antenna1_name.values)
        np.testing.assert_allclose(a.time.values, other.time.values, rtol=0, atol=1e-3)
        np.testing.assert_array_equal(a.VISIBILITY.values, other.VISIBILITY.values)
        np.testing.assert_array_equal(a.FLAG.values, other.FLAG.values)
        np.testing.assert_array_equal(a.WEIGHT.values, other.WEIGHT.values)
        np.testing.assert_allclose(a.UVW.values, other.UVW.values, rtol=0, atol=1e-6)


def test_missing_path(tmp_path):
    with pytest.raises(UVDataImportError, match="no such file") as err:
        read_with_pyuvdata(tmp_path / "gone.uvh5")
    assert str(err.value).startswith("gone.uvh5:") and "\n" not in str(err.value)
    assert isinstance(err.value, DaskcalError)


def test_unreadable_file(tmp_path):
    path = tmp_path / "junk.uvh5"
    path.write_bytes(b"not hdf5 at all\n" * 64)
    with pytest.raises(UVDataImportError, match="pyuvdata could not read it") as err:
        _quiet(read_with_pyuvdata, path)
    assert str(err.value).startswith("junk.uvh5:") and "\n" not in str(err.value)


def test_not_a_path_or_uvdata():
    with pytest.raises(UVDataImportError, match="expected a path or a pyuvdata.UVData"):
        read_with_pyuvdata(42)
