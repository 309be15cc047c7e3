"""Analytic primary beams against independent references.

* Airy: a direct numerical Hankel transform of the uniformly illuminated aperture.
* Gaussian: its defining half-power point and the simulator's own beam.
* LOFAR HBA station: a slow numpy sum over every dipole of ``exp(i k (s - s0) . r)``
  (dipole positions taken from ``lofarantpos`` when installed, else built here), the
  ``~1.02 lambda / D`` width of a filled aperture and the tile's grating-lobe position.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import optimize, special

from daskcal.kernels import beams

C = 299_792_458.0


# ----------------------------------------------------------------------------- dishes


def hankel_power(theta, freq, diameter):
    """|E|^2 of a uniform disc: E = int_0^a J0(k r sin(theta)) r dr / (a^2 / 2)."""
    k = 2 * np.pi * freq / C
    a = diameter / 2
    x, w = np.polynomial.legendre.leggauss(400)  # exact to degree 799 in r
    r = 0.5 * a * (x + 1.0)
    q = k * np.sin(np.atleast_1d(theta))[:, None]
    val = 0.5 * a * np.sum(w * special.j0(q * r) * r, axis=1)
    return (val / (a * a / 2)) ** 2


def test_airy_matches_numerical_hankel_transform():
    freq, diam = 1.4e9, 25.0
    lam_d = C / freq / diam
    theta = np.linspace(0, 3.5 * lam_d, 41)  # main lobe, first null, first sidelobe
    ref = hankel_power(theta, freq, diam)
    got = beams.airy_power(theta, freq, diam)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-9)
    # first null at 1.2197 lambda / D (the first zero of J1 / pi)
    t0 = optimize.minimize_scalar(lambda t: beams.airy_power(t, freq, diam),
                                  bounds=(1.1 * lam_d, 1.35 * lam_d), method="bounded").x
    assert t0 / lam_d == pytest.approx(special.jn_zeros(1, 1)[0] / np.pi, rel=1e-4)


def test_airy_fwhm():
    freq, diam = 150e6, 30.75
    lam_d = C / freq / diam
    half = optimize.brentq(lambda t: hankel_power([t], freq, diam)[0] - 0.5, 0.1 * lam_d,
                           lam_d)
    assert beams.airy_fwhm_rad(freq, diam) == pytest.approx(2 * half, rel=1e-6)
    assert 2 * half / lam_d == pytest.approx(1.02, rel=0.02)  # 1.029
    assert beams.airy_power(half, freq, diam) == pytest.approx(0.5, abs=1e-9)


def test_gaussian_fwhm_and_broadcasting():
    freq = np.array([120e6, 150e6, 180e6])
    diam = 30.75
    fwhm = 1.02 * C / (freq * diam)
    np.testing.assert_allclose(beams.gaussian_fwhm_rad(freq, diam), fwhm, rtol=1e-14)
    np.testing.assert_allclose(beams.gaussian_power(fwhm / 2, freq, diam), 0.5, rtol=1e-12)
    np.testing.assert_allclose(beams.gaussian_power(fwhm, freq, diam), 1 / 16, rtol=1e-12)
    rho = np.linspace(0, 0.2, 7)[:, None]
    p = beams.gaussian_power(rho, freq[None, :], diam, floor=0.01)
    assert p.shape == (7, 3)
    np.testing.assert_allclose(p[0], 1.0)
    with pytest.raises(ValueError, match="floor"):
        beams.gaussian_power(0.1, 150e6, 25.0, floor=1.0)


def test_gaussian_is_the_simulator_beam():
    """Same convention as daskcal.testing.corruptions.beam_voltage (squared)."""
    from daskcal.data.geometry import angular_separation, geodetic_to_itrf, radec_of_lm
    from daskcal.testing.corruptions import beam_voltage

    pc = np.radians([150.0, 70.0])  # circumpolar at the VLA: always above the horizon
    l = np.linspace(-0.01, 0.012, 9)
    ra, dec = radec_of_lm(l, 0.4 * l, *pc)
    freq = np.array([1.35e9, 1.45e9])
    diam = np.array([25.0, 18.0])
    site = geodetic_to_itrf(-107.6, 34.08, 2124.0)
    v = beam_voltage(np.array([1.7e9]), freq, ra, dec, pc, diam, site, sidelobe_level=2e-3,
                     elevation_exponent=0.0, aberration=False)
    rho = angular_separation(pc[0], pc[1], ra, dec)
    ours = beams.gaussian_power(rho[None, :, None], freq[None, None, :],
                                diam[:, None, None], floor=2e-3)
    np.testing.assert_allclose(v[0].astype(np.float64) ** 2, ours, rtol=1e-6)


# ----------------------------------------------------------------------------- HBA


def element_power(dirs, freq, h):
    """Crossed horizontal dipoles over ground, written out independently."""
    k = 2 * np.pi * freq / C
    out = []
    for s in dirs:
        if s[2] <= 0:
            out.append(0.0)
            continue
        px = 1 - s[0] ** 2  # dipole along east
        py = 1 - s[1] ** 2  # dipole along north
        ground = (2 * math.sin(k * h * s[2])) ** 2
        out.append(0.5 * (px + py) * ground)
    return np.array(out)


def slow_station_power(dirs, s0, freq, dipoles, h=beams.HBA_ELEMENT_HEIGHT_M):
    """|1/N sum_d exp(i k (s - s0) . r_d)|^2 E(s) / E(s0) over every dipole (numpy)."""
    k = 2 * np.pi * freq / C
    ph = k * (dirs - s0[None, :]) @ dipoles.T  # (n_dir, n_dipole)
    af = np.exp(1j * ph).mean(axis=1)
    return np.abs(af) ** 2 * element_power(dirs, freq, h) / element_power(s0[None], freq, h)


def dipoles_of(tiles, rotation=0.0):
    g = (np.arange(4) - 1.5) * 1.25
    out = []
    c, s = math.cos(rotation), math.sin(rotation)
    for t in tiles:
        for a in g:
            for b in g:
                out.append([t[0] + a * c - b * s, t[1] + a * s + b * c, t[2]])
    return np.array(out)


def random_directions(rng, n, min_el_deg=5.0):
    az = rng.uniform(0, 2 * np.pi, n)
    el = np.arcsin(rng.uniform(math.sin(math.radians(min_el_deg)), 1.0, n))
    return np.stack([np.cos(el) * np.sin(az), np.cos(el) * np.cos(az), np.sin(el)], axis=1)


def near(s0, rng, n, radius_rad):
    """Directions within ``radius_rad`` of ``s0`` (main lobe and near sidelobes)."""
    e = np.cross(s0, [0, 0, 1.0])
    e /= np.linalg.norm(e)
    nn = np.cross(s0, e)
    r = radius_rad * np.sqrt(rng.uniform(0, 1, n))
    phi = rng.uniform(0, 2 * np.pi, n)
    d = (np.cos(r)[:, None] * s0 + np.sin(r)[:, None]
         * (np.cos(phi)[:, None] * e + np.sin(phi)[:, None] * nn))
    return d / np.linalg.norm(d, axis=1, keepdims=True)


@pytest.mark.parametrize("rotation", [0.0, 0.3])
def test_station_beam_vs_dipole_sum_generated(rotation):
    rng = np.random.default_rng(1)
    tiles = beams.generated_hba_layout(24, rotation_rad=rotation)
    s0 = beams.azel_to_enu(math.radians(200.0), math.radians(55.0))
    dirs = np.concatenate([near(s0, rng, 200, 0.15), random_directions(rng, 200)])
    for freq in (120e6, 160e6, 210e6):
        ref = slow_station_power(dirs, s0, freq, dipoles_of(tiles, rotation))
        got = beams.hba_station_power(dirs, s0, freq, tiles,
                                      beams.hba_tile_offsets(rotation))[:, 0]
        np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-12)
    assert beams.hba_station_power(s0, s0, 150e6, tiles)[0, 0] == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("field", ["CS002HBA0", "RS106HBA", "CS003HBA"])
def test_station_beam_vs_dipole_sum_real_layout(field):
    pytest.importorskip("lofarantpos")
    from lofarantpos.db import LofarAntennaDatabase

    db = LofarAntennaDatabase()
    dipoles = np.asarray(db.hba_dipole_pqr(field), np.float64) @ np.asarray(
        db.pqr_to_localnorth(field)).T
    tiles, offsets = beams.lofar_station_layout(field)
    rng = np.random.default_rng(2)
    s0 = beams.azel_to_enu(math.radians(75.0), math.radians(40.0))
    dirs = np.concatenate([near(s0, rng, 200, 0.12), random_directions(rng, 100)])
    freq = np.array([130e6, 175e6])
    got = beams.hba_station_power(dirs, s0, freq, tiles, offsets)
    for c, f in enumerate(freq):
        ref = slow_station_power(dirs, s0, f, dipoles)
        # lofarantpos stores dipoles in float32 (~1e-6 m): phase errors ~ 1e-5 rad
        np.testing.assert_allclose(got[:, c], ref, rtol=1e-4, atol=1e-7)


def half_power_width(tiles, offsets, freq, axis):
    """Full width (radians) at half power of a zenith beam along an east or north cut."""
    def cut(t):
        s = np.zeros(3)
        s[axis], s[2] = math.sin(t), math.cos(t)
        return beams.hba_station_power(s, [0, 0, 1.0], freq, tiles, offsets)[0, 0] - 0.5

    lam_d = C / freq / 30.0
    right = optimize.brentq(cut, 1e-4, 1.5 * lam_d)
    left = optimize.brentq(cut, -1.5 * lam_d, -1e-4)
    return right - left


@pytest.mark.parametrize(("n_tiles", "diameter"), [(24, 30.75), (48, 41.05)])
def test_station_half_power_width(n_tiles, diameter):
    tiles = beams.generated_hba_layout(n_tiles)
    for freq in (120e6, 150e6, 190e6):
        expect = 1.02 * C / freq / diameter
        for axis in (0, 1):
            assert half_power_width(tiles, None, freq, axis) == pytest.approx(expect, rel=0.15)


def test_real_station_half_power_width():
    pytest.importorskip("lofarantpos")
    for field, diameter in (("CS002HBA0", 30.75), ("RS106HBA", 41.05)):
        tiles, offsets = beams.lofar_station_layout(field)
        width = half_power_width(tiles, offsets, 150e6, 0)
        assert width == pytest.approx(1.02 * C / 150e6 / diameter, rel=0.15)


@pytest.mark.parametrize("rotation", [0.0, math.radians(25.0)])
def test_tile_grating_lobe(rotation):
    """A 1.25 m grid steered to s0 repeats its main lobe at s0 - (lambda / d) axis."""
    freq = 200e6
    lam = C / freq
    axis = np.array([math.cos(rotation), math.sin(rotation), 0.0])
    s0 = math.sin(math.radians(40.0)) * axis + np.array([0, 0, math.cos(math.radians(40.0))])
    t_lobe = s0 - lam / 1.25 * axis
    t_lobe[2] = math.sqrt(1 - t_lobe[0] ** 2 - t_lobe[1] ** 2)
    offsets = beams.hba_tile_offsets(rotation)
    af = beams.array_factor(t_lobe, s0, offsets, freq)
    assert abs(af[0]) == pytest.approx(1.0, abs=1e-12)
    # and it is where the tile's power peaks along the great circle through s0 and the axis
    ts = np.linspace(-0.9999, 0.0, 20000)  # direction cosine along the axis (westwards)
    dirs = ts[:, None] * axis[None, :] + np.sqrt(1 - ts**2)[:, None] * np.array([0, 0, 1.0])
    p = np.abs(beams.array_factor(dirs, s0, offsets, freq)) ** 2
    assert ts[np.argmax(p)] == pytest.approx(float(t_lobe @ axis), abs=1e-4)
    # and no grating lobe for a pointing at zenith below 240 MHz (lambda > d)
    p_z = np.abs(beams.array_factor(dirs, [0, 0, 1.0], offsets, freq)) ** 2
    assert np.max(p_z[ts < -0.6]) < 0.3


def test_azel_and_validation():
    tiles = beams.generated_hba_layout(48)
    az = np.radians([10.0, 100.0, 250.0])
    el = np.radians([60.0, 45.0, -5.0])
    a = beams.hba_station_power_azel(az, el, math.radians(100.0), math.radians(45.0),
                                     [150e6, 170e6], tiles)
    b = beams.hba_station_power(beams.azel_to_enu(az, el),
                                beams.azel_to_enu(math.radians(100.0), math.radians(45.0)),
                                [150e6, 170e6], tiles)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a[1], 1.0)
    assert np.all(a[2] == 0.0)  # below the horizon
    back = beams.enu_to_azel(beams.azel_to_enu(az, el))
    np.testing.assert_allclose(np.concatenate(back), np.concatenate([az, el]), atol=1e-12)
    with pytest.raises(ValueError, match="unit vectors"):
        beams.hba_station_power([[1.0, 1.0, 1.0]], [0, 0, 1.0], 150e6, tiles)
    with pytest.raises(ValueError, match="horizon"):
        beams.hba_station_power([[0, 0, 1.0]], [1.0, 0, 0], 150e6, tiles)
    with pytest.raises(ValueError, match="element_offsets_m"):
        beams.hba_station_power([[0, 0, 1.0]], [0, 0, 1.0], 150e6, tiles, np.zeros((5, 16, 3)))


def test_generated_layout_geometry():
    for n, diameter in ((24, 30.75), (48, 41.05)):
        t = beams.generated_hba_layout(n)
        assert t.shape == (n, 3)
        r = np.hypot(t[:, 0], t[:, 1])
        assert r.max() <= diameter / 2  # tile centres inside the field
        d = np.hypot(*(t[:, None, :2] - t[None, :, :2]).transpose(2, 0, 1))
        assert np.min(d[d > 0]) == pytest.approx(5.15)  # no overlapping tiles
        np.testing.assert_allclose(t[:, :2].mean(axis=0), 0.0, atol=1.0)


_EVERYBEAM_SCRIPT = r"""
import json, sys
import numpy as np
import everybeam as eb
d = json.loads(sys.stdin.read())
site, rot = np.array(d["site"]), np.array(d["enu_rows"])
axes = eb.StationCoordinateSystemAxes()
axes.p, axes.q, axes.r = rot[0], rot[1], rot[2]
root = eb.StationNode()
station = eb.StationNode(eb.StationCoordinateSystem(list(site), axes), "CS999HBA")
for t in d["tiles"]:
    station.add_child_element(np.array(t))  # positions in the station's (p, q, r) frame
root.add_child_node(station, site)
opt = eb.Options()
opt.element_response_model = eb.ElementResponseModel.hamaker
tel = eb.create_telescope(eb.TelescopeType.LOFAR, opt, root, np.array([2.15, 0.84]),
                          [2.15, 0.84], reference_frequency=d["freq"])
s0 = rot.T @ np.array(d["s0"])
out = []
for s in d["dirs"]:
    af = tel.array_factor(d["mjd_s"], np.array([0], np.uint64), np.array([d["freq"]]),
                          rot.T @ np.array(s), s0)
    v = np.asarray(af).ravel()[0]
    out.append([v.real, v.imag])
print(json.dumps(out))
"""


def test_station_array_factor_matches_everybeam(tmp_path):
    """EveryBeam's LOFAR array factor of a station built from our tile positions.

    EveryBeam needs casacore's measures tables (leap seconds) even for this; it runs in a
    subprocess with CASARCFILES pointing at them. A telescope created from a station tree
    (no Measurement Set) has no tile beam in its array factor, so the comparison is of the
    station array factor ``A(s)``.
    """
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    pytest.importorskip("everybeam")
    data_dir = next((p for p in ("/var/lib/casacore/data", "/usr/share/casacore/data",
                                 "/usr/local/share/casacore/data")
                     if (Path(p) / "geodetic" / "TAI_UTC").exists()), None)
    if data_dir is None:
        pytest.skip("no casacore measures data (geodetic/TAI_UTC) for EveryBeam")
    from daskcal.data.geometry import enu_matrix, geodetic_to_itrf

    lon, lat = 6.869837, 52.915122
    site = geodetic_to_itrf(lon, lat, 50.0)
    rows = enu_matrix(math.radians(lon), math.radians(lat))
    rng = np.random.default_rng(4)
    tiles = beams.generated_hba_layout(24, rotation_rad=0.35)
    tiles[:, :2] += rng.normal(0.0, 0.5, (24, 2))  # no symmetry: the phase of A matters too
    s0 = beams.azel_to_enu(math.radians(200.0), math.radians(55.0))
    dirs = np.concatenate([near(s0, rng, 30, 0.1), random_directions(rng, 30)])
    freq = 150e6
    rc = tmp_path / "casarc"
    rc.write_text(f"measures.directory: {data_dir}\n")
    payload = dict(site=site.tolist(), enu_rows=rows.tolist(), tiles=tiles.tolist(),
                   s0=s0.tolist(), dirs=dirs.tolist(), freq=freq,
                   mjd_s=(1710961200.0 / 86400 + 40587.0) * 86400)
    proc = subprocess.run([sys.executable, "-c", _EVERYBEAM_SCRIPT], input=json.dumps(payload),
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "CASARCFILES": str(rc),
                               # the wheel's compiled-in data path is its build directory
                               "EVERYBEAM_DATADIR": str(Path(sys.prefix) / "share" /
                                                        "everybeam")}, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    theirs = np.array(json.loads(proc.stdout.strip().splitlines()[-1]))
    theirs = theirs[:, 0] + 1j * theirs[:, 1]
    ours = beams.array_factor(dirs, s0, tiles, freq)
    np.testing.assert_allclose(ours, theirs, atol=1e-9)
