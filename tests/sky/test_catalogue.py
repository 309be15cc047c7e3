"""Cone extraction, CSV catalogues, patch summaries and grouping by brightest sources."""

from __future__ import annotations

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord

from daskcal import DaskcalError
from daskcal.sky.bbs import write_bbs
from daskcal.sky.catalogue import (
    CatalogueError,
    cone,
    cone_from_file,
    group_by_brightest,
    merge_components,
    patch_summary,
    read_catalogue,
    read_csv_catalogue,
)
from daskcal.sky.model import SkyModel

DEG = np.pi / 180


def _catalogue(n=3000, seed=3):
    rng = np.random.default_rng(seed)
    return SkyModel.from_components(
        name=[f"J{k:05d}" for k in range(n)], ra=rng.uniform(0, 2 * np.pi, n),
        dec=np.arcsin(rng.uniform(-1, 1, n)), stokes_i=rng.pareto(1.5, n) + 0.01,
        ref_freq=rng.choice([74e6, 150e6, 1.4e9], n), spectral_index=rng.normal(-0.7, 0.2, (n, 2)))


def _separation(sky, ra0, dec0):
    """Brute-force great-circle distance with astropy (radians)."""
    centre = SkyCoord(ra0 * u.rad, dec0 * u.rad)
    return centre.separation(SkyCoord(sky.ra * u.rad, sky.dec * u.rad)).to_value(u.rad)


# ----------------------------------------------------------------------------- cones


@pytest.mark.parametrize("ra0,dec0,radius", [
    (0.01, 0.3, 10 * DEG),  # straddles RA = 0
    (np.pi, 1.5, 15 * DEG),  # around the north pole
    (4.0, -0.7, 30 * DEG),
    (1.0, 0.2, 0.0),
])
def test_cone_matches_astropy_separation(ra0, dec0, radius):
    sky = _catalogue()
    sep = _separation(sky, ra0, dec0)
    assert not np.any(np.abs(sep - radius)[sep > 0] < 1e-12)  # no borderline cases
    out = cone(sky, ra0, dec0, radius)
    assert out.name.tolist() == sky.name[sep <= radius].tolist()


def test_cone_flux_cut_at_a_frequency():
    sky = _catalogue()
    ra0, dec0, radius = 2.0, 0.5, 25 * DEG
    sep = _separation(sky, ra0, dec0)
    ratio = 60e6 / sky.ref_freq
    x = np.log10(ratio)
    flux_60 = sky.stokes[:, 0] * ratio ** (sky.spectral_index[:, 0] + sky.spectral_index[:, 1] * x)
    expected = (sep <= radius) & (flux_60 >= 2.0)
    assert cone(sky, ra0, dec0, radius, min_flux_jy=2.0, freq_hz=60e6).name.tolist() == (
        sky.name[expected].tolist())
    at_ref = (sep <= radius) & (sky.stokes[:, 0] >= 2.0)
    assert cone(sky, ra0, dec0, radius, min_flux_jy=2.0).name.tolist() == sky.name[at_ref].tolist()
    with pytest.raises(CatalogueError, match="radius"):
        cone(sky, ra0, dec0, -1.0)
    with pytest.raises(CatalogueError, match="freq_hz"):
        cone(sky, ra0, dec0, 0.1, min_flux_jy=1.0, freq_hz=-5.0)


CSV = """\
# a small catalogue; ra/dec in degrees, fluxes in Jy at ref_freq_hz
name, ra_deg, dec_deg, flux_jy, ref_freq_hz, spectral_index, survey
3C196, 123.40009, 48.21739, 83.8, 150e6, "[-0.826, -0.236]", TGSS

J0815+4700, 123.9, 47.0, 1.25, 1.4e9, -0.8, NVSS
faint, 124.5, 48.5, 0.01, , , NVSS
far, 200.0, -20.0, 5.0, 150e6, -0.7, NVSS
"""


def test_csv_catalogue_and_cone_from_file(tmp_path):
    path = tmp_path / "catalogue.csv"
    path.write_text(CSV)
    sky = read_csv_catalogue(path)
    assert sky.name.tolist() == ["3C196", "J0815+4700", "faint", "far"]
    assert sky.ra[0] == pytest.approx(np.radians(123.40009))
    np.testing.assert_array_equal(sky.spectral_index[:2], [[-0.826, -0.236], [-0.8, 0.0]])
    assert sky.ref_freq.tolist() == [150e6, 1.4e9, 150e6, 150e6]
    ra0, dec0 = np.radians(123.5), np.radians(48.0)
    local = cone_from_file(path, ra0, dec0, 2 * DEG, min_flux_jy=0.1)
    assert local.name.tolist() == ["3C196", "J0815+4700"]
    # the same catalogue as a BBS file gives the same cone
    bbs = write_bbs(sky, tmp_path / "catalogue.skymodel")
    assert read_catalogue(bbs).name.tolist() == sky.name.tolist()
    assert cone_from_file(bbs, ra0, dec0, 2 * DEG, min_flux_jy=0.1).name.tolist() == local.name.tolist()


@pytest.mark.parametrize("text,message", [
    ("name, ra_deg, flux_jy\na, 1, 2\n", ":1: missing column(s) dec_deg"),
    ("name, ra_deg, dec_deg, flux_jy\na, 1, 95, 2\n", ":2: need ra_deg and dec_deg"),
    ("# c\nname, ra_deg, dec_deg, flux_jy\na, 1, 2, x\n", ":3: cannot parse flux_jy 'x'"),
    ("name, ra_deg, dec_deg, flux_jy\na, 1, 2, 3, 4\n", ":2: more values than columns"),
    ("name,ra_deg,dec_deg,flux_jy,spectral_index\na,1,2,3,-0.7\n", ":2: a spectral index needs"),
    ("name,ra_deg,dec_deg,flux_jy\na,1,2,3\na,1,2,3\n", "component names are not unique"),
    ("# only a comment\n", "empty catalogue"),
])
def test_csv_errors(tmp_path, text, message):
    path = tmp_path / "cat.csv"
    path.write_text(text)
    with pytest.raises(CatalogueError) as info:
        read_catalogue(path)
    assert str(info.value).startswith(str(path)) and message in str(info.value)
    assert isinstance(info.value, DaskcalError) and "\n" not in str(info.value)


# ----------------------------------------------------------------------------- patches


def test_patch_summary_fluxes_and_weighted_centres():
    ra = np.array([359.9, 0.3, 10.0, 20.0]) * DEG  # patch "A" straddles RA = 0
    dec = np.array([10.0, 10.2, -5.0, 0.0]) * DEG
    sky = SkyModel.from_components(name=["a1", "a2", "b", "lonely"], ra=ra, dec=dec,
                                   stokes_i=[1.0, 3.0, 2.0, 5.0], ref_freq=150e6,
                                   spectral_index=[-1.0], patch=["A", "A", "B", ""])
    summary = patch_summary(sky)
    assert summary.name.tolist() == ["A", "B", "lonely"]
    np.testing.assert_allclose(summary.flux_jy, [4.0, 2.0, 5.0])
    assert summary.n_component.tolist() == [2, 1, 1]
    coords = SkyCoord(ra[:2] * u.rad, dec[:2] * u.rad).cartesian.xyz.value @ np.array([1.0, 3.0])
    centre = SkyCoord(*coords, representation_type="cartesian")
    assert summary.ra[0] == pytest.approx(centre.spherical.lon.to_value(u.rad) % (2 * np.pi))
    assert summary.dec[0] == pytest.approx(centre.spherical.lat.to_value(u.rad))
    assert (summary.ra[1], summary.dec[1]) == pytest.approx((ra[2], dec[2]))
    np.testing.assert_allclose(patch_summary(sky, freq_hz=300e6).flux_jy, [2.0, 1.0, 2.5])
    assert patch_summary(SkyModel.empty()).name.size == 0


def _reference_centres(sky, min_flux, max_patches, min_sep):
    """The greedy centre selection, written out plainly with astropy distances."""
    flux = sky.stokes[:, 0]
    order = sorted(range(sky.n_source), key=lambda k: (-flux[k], sky.name[k]))
    centres = []
    for k in order:
        if (min_flux is not None and flux[k] < min_flux) or len(centres) == (max_patches or np.inf):
            continue
        if all(_separation(sky, sky.ra[c], sky.dec[c])[k] >= min_sep for c in centres):
            centres.append(k)
    return np.array(centres, dtype=int)


def _brute_force_checks(sky, grouped, *, min_flux, max_patches, min_sep, max_radius, rest="rest"):
    flux = sky.stokes[:, 0]
    patch = grouped.patch
    centre = _reference_centres(sky, min_flux, max_patches, min_sep)
    names = np.array([f"Patch_{k}" for k in range(len(centre))])
    # every component in exactly one patch; each centre in its own; names by decreasing flux
    assert patch.shape == (sky.n_source,) and set(patch.tolist()) <= set(names) | {rest}
    assert patch[centre].tolist() == names.tolist()
    assert np.all(np.diff(flux[centre]) <= 0)
    # centres keep their separation
    seps = np.array([_separation(sky, sky.ra[c], sky.dec[c]) for c in centre])  # (n_centre, n)
    assert np.all(seps[:, centre][~np.eye(len(centre), dtype=bool)] >= min_sep)
    # no member is brighter than its centre, unless it was skipped for being too close
    for k in range(sky.n_source):
        if patch[k] != rest and flux[k] > flux[centre[names.tolist().index(patch[k])]]:
            assert np.any(seps[flux[centre] >= flux[k], k] < min_sep)
    # every component joins its nearest centre, or the rest patch beyond max_radius
    nearest = np.argmin(seps, axis=0)
    dist = seps[nearest, np.arange(sky.n_source)]
    expected = names[nearest]
    if max_radius is not None:
        expected = np.where(dist <= max_radius, expected, rest)
    expected[centre] = names
    assert patch.tolist() == expected.tolist()
    return centre


@pytest.mark.parametrize("kwargs", [
    {"min_flux": 3.0, "max_patches": None, "min_sep": 0.0, "max_radius": None},
    {"min_flux": None, "max_patches": 12, "min_sep": 0.0, "max_radius": None},
    {"min_flux": 1.0, "max_patches": 20, "min_sep": 5 * DEG, "max_radius": 8 * DEG},
])
def test_group_by_brightest_invariants(kwargs):
    sky = cone(_catalogue(n=2000, seed=11), 1.0, 0.5, 25 * DEG)
    grouped = group_by_brightest(sky, min_flux_jy=kwargs["min_flux"], max_patches=kwargs["max_patches"],
                                 min_separation_rad=kwargs["min_sep"],
                                 max_radius_rad=kwargs["max_radius"])
    centre = _brute_force_checks(sky, grouped, **kwargs)
    flux = sky.stokes[:, 0]
    assert grouped.patch[np.argmax(flux)] == "Patch_0"
    if kwargs["min_sep"] == 0:  # centres are exactly the brightest candidates
        order = np.argsort(-flux, kind="stable")
        n = len(centre)
        assert sorted(centre.tolist()) == sorted(order[:n].tolist())
        for p in set(grouped.patch.tolist()) - {"rest"}:
            members = grouped.patch == p
            assert flux[members].max() == flux[centre[int(p.split("_")[1])]]
    # deterministic and independent of the input order
    perm = np.random.default_rng(0).permutation(sky.n_source)
    again = group_by_brightest(sky.select(perm), min_flux_jy=kwargs["min_flux"],
                               max_patches=kwargs["max_patches"], min_separation_rad=kwargs["min_sep"],
                               max_radius_rad=kwargs["max_radius"])
    assert dict(zip(again.name, again.patch, strict=True)) == dict(zip(grouped.name, grouped.patch,
                                                                       strict=True))


def test_group_ties_no_centres_and_errors():
    sky = SkyModel.from_components(name=["b", "a", "c"], ra=[0.0, 0.01, 0.02], dec=[0.0, 0.0, 0.0],
                                   stokes_i=[2.0, 2.0, 1.0], ref_freq=150e6)
    grouped = group_by_brightest(sky, max_patches=1)
    assert grouped.patch.tolist() == ["Patch_0"] * 3
    assert group_by_brightest(sky, max_patches=2).patch.tolist() == ["Patch_1", "Patch_0", "Patch_0"]
    assert group_by_brightest(sky, min_flux_jy=10.0).patch.tolist() == ["rest"] * 3
    assert group_by_brightest(SkyModel.empty()).n_source == 0
    # the documented exception: B is skipped as a centre (too close to A) but is nearer to C
    sep = 1 * DEG
    line = SkyModel.from_components(name=["A", "B", "C"], ra=[0.0, 0.9 * sep, 1.6 * sep],
                                    dec=[0.0, 0.0, 0.0], stokes_i=[10.0, 8.0, 5.0], ref_freq=150e6)
    grouped = group_by_brightest(line, min_separation_rad=sep)
    assert grouped.patch.tolist() == ["Patch_0", "Patch_1", "Patch_1"]
    _brute_force_checks(line, grouped, min_flux=None, max_patches=None, min_sep=sep, max_radius=None)
    with pytest.raises(CatalogueError, match="clashes"):
        group_by_brightest(sky, rest="Patch_3")
    with pytest.raises(CatalogueError, match="min_separation_rad"):
        group_by_brightest(sky, min_separation_rad=-1.0)
    with pytest.raises(CatalogueError, match="max_patches"):
        group_by_brightest(sky, max_patches=-1)


def _clean_source(name, ra, dec, flux, fractions, step):
    """A point source as CLEAN leaves it: ``flux`` split over neighbouring pixels."""
    k = len(fractions)
    return SkyModel.from_components(
        name=[f"{name}{i}" for i in range(k)], ra=ra + step * np.arange(k) % (2 * step),
        dec=dec + step * (np.arange(k) // 2), stokes_i=flux * np.asarray(fractions),
        ref_freq=150e6)


def test_blending_makes_a_split_source_one_candidate():
    px = 30 / 3600 * DEG
    bright = _clean_source("B", 0.0, 0.0, 5.0, [1.0], px)
    # 0.6 Jy spread over four pixels (none alone reaches the 0.2 Jy centre threshold), 0.5 deg
    # from the bright source: without blending its pixels join the bright source's patch
    split = _clean_source("S", 0.5 * DEG, 0.0, 0.6, [0.3, 0.3, 0.25, 0.15], px)
    sky = SkyModel.concatenate([bright, split])
    plain = group_by_brightest(sky, min_flux_jy=0.2, min_separation_rad=0.2 * DEG)
    assert set(plain.patch.tolist()) == {"Patch_0"}
    blended = group_by_brightest(sky, min_flux_jy=0.2, min_separation_rad=0.2 * DEG,
                                 blend_radius_rad=2 * px)
    assert blended.patch.tolist() == ["Patch_0"] + ["Patch_1"] * 4
    # blending nothing (radius below the pixel spacing) changes nothing
    same = group_by_brightest(sky, min_flux_jy=0.2, min_separation_rad=0.2 * DEG,
                              blend_radius_rad=0.5 * px)
    assert same.patch.tolist() == plain.patch.tolist()
    # a source's pixels stay together even when one is nearer to another centre
    near = group_by_brightest(SkyModel.concatenate([bright, split.select([0, 1])]),
                              blend_radius_rad=0.6 * DEG, max_patches=2)
    assert near.patch.tolist() == ["Patch_0"] * 3
    with pytest.raises(CatalogueError, match="blend_radius_rad"):
        group_by_brightest(sky, blend_radius_rad=-1.0)


def test_group_by_brightest_without_blending_is_unchanged_by_a_tiny_radius():
    sky = cone(_catalogue(n=2000, seed=11), 1.0, 0.5, 25 * DEG)
    a = group_by_brightest(sky, min_flux_jy=1.0, max_patches=20, min_separation_rad=5 * DEG)
    b = group_by_brightest(sky, min_flux_jy=1.0, max_patches=20, min_separation_rad=5 * DEG,
                           blend_radius_rad=1e-9)
    assert a.patch.tolist() == b.patch.tolist()


def test_merge_components_against_a_direct_sum():
    px = 30 / 3600 * DEG
    a = _clean_source("A", 0.3, 0.2, 2.0, [0.5, 0.3, 0.15, 0.05], px)
    b = _clean_source("B", 0.3 + 0.2 * DEG, 0.2, 1.0, [0.7, 0.3], px)
    sky = SkyModel.concatenate([b, a])
    merged = merge_components(sky, 3 * px)
    assert merged.n_source == 2
    assert merged.name.tolist() == ["B0", "A0"]  # the brightest members, in the model's order
    np.testing.assert_allclose(merged.stokes[:, 0], [1.0, 2.0])
    assert np.all(merged.major == 0)
    for got, part in zip(range(2), (b, a), strict=True):
        # the |S|-weighted mean direction, computed independently with astropy
        c = SkyCoord(part.ra * u.rad, part.dec * u.rad).cartesian.xyz.value  # (3, n)
        v = (c * part.stokes[:, 0]).sum(axis=1)
        want = SkyCoord(x=v[0], y=v[1], z=v[2], representation_type="cartesian")
        sep = SkyCoord(merged.ra[got] * u.rad, merged.dec[got] * u.rad).separation(
            SkyCoord(want.spherical.lon, want.spherical.lat))
        assert sep.to_value(u.arcsec) < 1e-6
    assert merge_components(sky, 0.0) is sky
    with pytest.raises(CatalogueError, match="radius_rad"):
        merge_components(sky, -1.0)


def test_grouped_model_writes_patch_centres(tmp_path):
    from daskcal.sky.bbs import read_bbs, read_bbs_patches

    sky = group_by_brightest(cone(_catalogue(seed=5), 3.0, 1.0, 10 * DEG), max_patches=5,
                             min_separation_rad=2 * DEG)
    path = write_bbs(sky, tmp_path / "grouped.skymodel")
    summary = patch_summary(sky)
    patches = read_bbs_patches(path)
    assert list(patches) == summary.name.tolist()
    for name, ra, dec in zip(summary.name, summary.ra, summary.dec, strict=True):
        assert patches[name] == pytest.approx((ra, dec), abs=1e-10)
    assert read_bbs(path).patch.tolist() == sky.patch.tolist()
