"""Synthetic array layouts."""

from __future__ import annotations

import numpy as np
import pytest

from daskcal.data.geometry import itrf_to_geodetic
from daskcal.testing.arrays import LayoutError, lofar_hba_layout, make_layout, vla_layout


def test_lofar_counts_names_and_baselines():
    lay = lofar_hba_layout(n_international=14)
    assert lay.n_ant == 2 * 24 + 14 + 14
    assert lay.names[0] == "CS002HBA0" and "CS001HBA1" in lay.names
    assert "RS106HBA" in lay.names and "DE601HBA" in lay.names and lay.feed == "linear"
    assert len(set(lay.names)) == lay.n_ant
    enu = lay.enu_m()
    dist = np.hypot(enu[:, 0], enu[:, 1])
    core, remote = dist[:48], dist[48:62]
    assert core.max() < 2000 and 2000 < remote.min() and 50e3 < remote.max() < 80e3
    intl = np.linalg.norm(lay.itrf_m[62:] - lay.reference_itrf_m, axis=1)
    assert intl.min() > 200e3 and 900e3 < intl.max() < 1200e3
    lengths = lay.baseline_lengths_m()
    assert lengths.min() > 31  # stations never overlap
    assert set(np.unique(lay.diameter_m)) == {30.75, 41.05, 56.5}
    lon, lat, h = itrf_to_geodetic(lay.reference_itrf_m)
    assert (lon, lat) == pytest.approx((6.870, 52.915), abs=1e-3)
    # stations sit on the ellipsoid near the site height, even 60 km away
    _, _, heights = itrf_to_geodetic(lay.itrf_m[:62])
    assert np.allclose(heights, 49.3, atol=1e-3)


def test_lofar_options_and_determinism():
    a = lofar_hba_layout(6, 3, seed=5)
    b = lofar_hba_layout(6, 3, seed=5)
    c = lofar_hba_layout(10, 3, seed=6)
    assert np.array_equal(a.itrf_m, b.itrf_m)
    assert a.n_ant == 15 and c.n_ant == 23
    # the superterp is fixed, scattered core stations depend on the seed
    assert np.array_equal(a.itrf_m[:12], c.itrf_m[:12])
    assert not np.allclose(lofar_hba_layout(10, 0, seed=5).itrf_m[12:],
                           lofar_hba_layout(10, 0, seed=6).itrf_m[12:])
    joined = lofar_hba_layout(4, 0, split_core=False)
    assert list(joined.names) == ["CS002HBA", "CS003HBA", "CS004HBA", "CS005HBA"]
    with pytest.raises(LayoutError, match="n_core"):
        lofar_hba_layout(25)
    with pytest.raises(LayoutError, match="at least two"):
        lofar_hba_layout(0, 1)


@pytest.mark.parametrize("conf,max_km", [("A", 36.4), ("B", 11.1), ("C", 3.4), ("D", 1.03)])
def test_vla_configurations(conf, max_km):
    lay = vla_layout(conf, seed=3)
    assert lay.n_ant == 27 and lay.feed == "circular" and np.all(lay.diameter_m == 25.0)
    lengths = lay.baseline_lengths_m()
    assert lengths.max() / 1e3 == pytest.approx(max_km, rel=0.03)
    assert lengths.min() > 25.0
    enu = lay.enu_m()
    az = np.degrees(np.arctan2(enu[:, 0], enu[:, 1])) % 360
    assert set(np.round(az).astype(int)) == {355, 115, 235}  # a Y
    lon, lat, _ = itrf_to_geodetic(lay.reference_itrf_m)
    assert (lon, lat) == pytest.approx((-107.6184, 34.0784), abs=1e-6)
    assert all(n.startswith("ea") for n in lay.names)


def test_vla_seed_shuffles_pads_only():
    a, b = vla_layout("C", seed=1), vla_layout("C", seed=2)
    assert not np.array_equal(a.station_names, b.station_names)
    pads_a = dict(zip(a.station_names, map(tuple, a.itrf_m.round(6)), strict=True))
    pads_b = dict(zip(b.station_names, map(tuple, b.itrf_m.round(6)), strict=True))
    assert pads_a == pads_b
    with pytest.raises(LayoutError):
        make_layout("meerkat")
    with pytest.raises(LayoutError):
        vla_layout("E")


def test_antenna_xds():
    xds = vla_layout().to_antenna_xds()
    assert xds.sizes["antenna_name"] == 27
    assert list(xds["polarization_type"].values[0]) == ["R", "L"]
    assert float(xds["SEFD"][0]) == 420.0
