"""Selection flagging against explicit numpy masks; statistics against direct counts."""

from __future__ import annotations

import dask
import numpy as np
import pytest

from daskcal.data.chunking import chunk_data_vars
from daskcal.data.model import baseline_antenna_pairs, make_visibility_xds
from daskcal.stages.preflag import PreflagConfig, flag_statistics, preflag, selection_mask

C = 299_792_458.0


def _raise_on_compute(*args, **kwargs):
    raise AssertionError("computed while building the graph")


def _xds(seed=1, n_time=6, n_ant=5, n_chan=16):
    rng = np.random.default_rng(seed)
    a1, a2 = baseline_antenna_pairs(n_ant)
    shape = (n_time, a1.size, n_chan, 2)
    vis = (rng.normal(size=shape) + 1j * rng.normal(size=shape)).astype(np.complex64)
    vis[2, 3, 4, 1] = np.nan
    vis[4, 6, 7, 0] = np.inf
    vis[1, 5, 2, 0] = 50.0
    names = ["CS001HBA0", "CS002HBA0", "CS003HBA1", "RS106HBA", "RS508HBA"]
    uvw = rng.uniform(-3000, 3000, (n_time, a1.size, 3))
    xds = make_visibility_xds(
        time_s=1.7e9 + 2.0 * np.arange(n_time), frequency_hz=1.2e8 + 2e5 * np.arange(n_chan),
        polarization=["XX", "YY"], antenna_names=names, antenna1=a1, antenna2=a2,
        visibility=vis, uvw_m=uvw, integration_time_s=2.0, channel_width_hz=2e5,
    )
    return chunk_data_vars(xds, {"time": 2, "frequency": 8})


def test_each_selection_matches_explicit_mask():
    xds = _xds()
    n1 = xds.baseline_antenna1_name.values
    n2 = xds.baseline_antenna2_name.values
    f = xds.frequency.values
    t = xds.time.values
    uvw = xds.UVW.values
    uvd = np.hypot(uvw[..., 0], uvw[..., 1])
    vis = xds.VISIBILITY.values
    cases = {
        "autocorrelations": (PreflagConfig(autocorrelations=True, non_finite=False),
                             np.broadcast_to((n1 == n2)[None, :, None, None], vis.shape)),
        "baselines": (PreflagConfig(autocorrelations=False, non_finite=False,
                                    baselines=["RS*&CS002*"]),
                      np.broadcast_to((((np.char.startswith(n1.astype(str), "CS002")) &
                                        np.char.startswith(n2.astype(str), "RS")) |
                                       ((np.char.startswith(n2.astype(str), "CS002")) &
                                        np.char.startswith(n1.astype(str), "RS")))
                                      [None, :, None, None], vis.shape)),
        "uv_m": (PreflagConfig(autocorrelations=False, non_finite=False, uv_min_m=1000,
                               uv_max_m=3500),
                 np.broadcast_to(((uvd < 1000) | (uvd > 3500))[:, :, None, None], vis.shape)),
        "uv_lambda": (PreflagConfig(autocorrelations=False, non_finite=False,
                                    uv_max_lambda=1000.0),
                      np.broadcast_to((uvd[:, :, None] * f[None, None, :] / C > 1000)[..., None],
                                      vis.shape)),
        "time": (PreflagConfig(autocorrelations=False, non_finite=False,
                               time_ranges_s=[(t[1], t[2])]),
                 np.broadcast_to(((t >= t[1]) & (t <= t[2]))[:, None, None, None], vis.shape)),
        "freq": (PreflagConfig(autocorrelations=False, non_finite=False,
                               freq_ranges_hz=[(f[3] - 1, f[5] + 1)]),
                 np.broadcast_to(((f >= f[3] - 1) & (f <= f[5] + 1))[None, None, :, None],
                                 vis.shape)),
        "edges": (PreflagConfig(autocorrelations=False, non_finite=False, band_edge_channels=1,
                                channels_per_subband=8),
                  np.broadcast_to(np.isin(np.arange(16), [0, 7, 8, 15])[None, None, :, None],
                                  vis.shape)),
        "clip": (PreflagConfig(autocorrelations=False, non_finite=False, amplitude_max=10.0),
                 np.abs(np.nan_to_num(vis, nan=0, posinf=1e30)) > 10.0),
        "nonfinite": (PreflagConfig(autocorrelations=False), ~np.isfinite(vis)),
    }
    for name, (cfg, expected) in cases.items():
        got = selection_mask(xds, cfg).values
        assert expected.any(), name
        np.testing.assert_array_equal(got, expected, err_msg=name)


def test_preflag_ors_into_existing_flags_and_stays_lazy():
    xds = _xds()
    flag0 = np.zeros(xds.FLAG.shape, bool)
    flag0[0, 1, 2, 0] = True
    xds["FLAG"] = xds.FLAG.copy(data=dask.array.from_array(flag0, chunks=xds.FLAG.data.chunks))
    with dask.config.set(scheduler=_raise_on_compute):
        out = preflag(xds, PreflagConfig())
    flags = out.FLAG.values
    assert flags[0, 1, 2, 0]
    assert flags[2, 3, 4, 1] and flags[4, 6, 7, 0]
    assert out.attrs["processing_history"][-1]["stage"] == "preflag"


def test_flag_statistics_match_direct_counts():
    xds = _xds()
    out = preflag(xds, PreflagConfig(band_edge_channels=2))
    stats = flag_statistics(out).compute()
    f = out.FLAG.values
    np.testing.assert_allclose(stats.FLAGGED_FRACTION.values, f.mean())
    np.testing.assert_allclose(stats.FLAGGED_FRACTION_FREQUENCY.values, f.mean(axis=(0, 1, 3)))
    np.testing.assert_allclose(stats.FLAGGED_FRACTION_TIME.values, f.mean(axis=(1, 2, 3)))
    np.testing.assert_allclose(stats.FLAGGED_FRACTION_BASELINE.values, f.mean(axis=(0, 2, 3)))
    n1 = out.baseline_antenna1_name.values
    n2 = out.baseline_antenna2_name.values
    for ant in stats.antenna_name.values:
        sel = (n1 == ant) | (n2 == ant)
        np.testing.assert_allclose(stats.FLAGGED_FRACTION_ANTENNA.sel(antenna_name=ant).values,
                                   f[:, sel].mean())


def test_config_rejects_reversed_ranges():
    with pytest.raises(ValueError, match="end before its start"):
        PreflagConfig(time_ranges_s=[(10.0, 5.0)])


def test_elevation_selection_against_astropy_altaz():
    from astropy import units as u
    from astropy.coordinates import AltAz, EarthLocation, SkyCoord
    from astropy.time import Time
    from astropy.utils import iers

    from daskcal.data.model import baseline_antenna_pairs
    from daskcal.testing.factories import VLA_CENTRE_ITRF_M

    iers.conf.auto_download = False
    n_ant, n_time = 3, 25
    pos = VLA_CENTRE_ITRF_M + np.array([[0, 0, 0], [20e3, 0, 0], [0, -20e3, 5e3]])
    a1, a2 = baseline_antenna_pairs(n_ant)
    t = 1.7e9 + 3600.0 * np.arange(n_time)  # a day: the source rises and sets
    shape = (n_time, a1.size, 4, 2)
    xds = make_visibility_xds(
        time_s=t, frequency_hz=1.4e9 + 1e6 * np.arange(4), polarization=["RR", "LL"],
        antenna_names=["A", "B", "C"], antenna1=a1, antenna2=a2,
        visibility=np.ones(shape, np.complex64), uvw_m=np.zeros((n_time, a1.size, 3)),
        integration_time_s=10.0, channel_width_hz=1e6)
    centre = np.radians([200.0, 10.0])
    cfg = PreflagConfig(autocorrelations=False, elevation_min_deg=20.0)
    got = selection_mask(chunk_data_vars(xds, {"time": 7}), cfg, antenna_itrf_m=pos,
                         phase_centre_rad=centre).values
    source = SkyCoord(200.0 * u.deg, 10.0 * u.deg, frame="fk5", equinox="J2000")
    low = np.zeros((n_time, n_ant), bool)
    for i in range(n_ant):
        site = EarthLocation.from_geocentric(*pos[i], unit=u.m)
        alt = source.transform_to(AltAz(obstime=Time(t, format="unix", scale="utc"),
                                        location=site)).alt.deg
        low[:, i] = alt < 20.0
    expected = (low[:, a1] | low[:, a2])[:, :, None, None]
    assert 0 < expected.mean() < 1
    np.testing.assert_array_equal(got, np.broadcast_to(expected, shape))
    with pytest.raises(ValueError, match="antenna positions"):
        selection_mask(xds, cfg)
