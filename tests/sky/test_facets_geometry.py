"""Facet geometry: Voronoi tiling of the field, calibrators in their facets, ds9 round trip."""

from __future__ import annotations

import numpy as np
import pytest

from daskcal.data.geometry import lmn_of
from daskcal.sky.facets import (
    FacetError,
    format_ds9,
    make_facets,
    parse_ds9,
    point_in_polygon,
    read_ds9,
    voronoi_polygons,
    write_ds9,
)
from daskcal.sky.model import SkyModel

PC = np.radians([123.4, 48.2])


def _facets(n=6, seed=0, width_deg=5.0):
    rng = np.random.default_rng(seed)
    l, m = rng.uniform(-0.035, 0.035, (2, n))
    from daskcal.data.geometry import radec_of_lm

    ra, dec = radec_of_lm(l, m, *PC)
    return make_facets([f"F{k}" for k in range(n)], ra, dec, PC, np.radians(width_deg))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_field_point_lies_in_exactly_one_facet(seed):
    facets = _facets(seed=seed)
    half = 0.5 * facets.width_rad
    # an irrational offset keeps the grid off the (measure-zero) shared edges
    g = (np.arange(80) + 0.5 + 1 / np.pi) / 80.0 * 2 * half - half
    l, m = (a.ravel() for a in np.meshgrid(g, g))
    counts = np.zeros(l.size, int)
    which = np.full(l.size, -1)
    for k, poly in enumerate(facets.polygons_lm):
        inside = point_in_polygon(l, m, poly)
        counts += inside
        which[inside] = k
    assert np.all(counts == 1)
    # the polygons agree with the nearest-centre rule
    d2 = ((l[:, None] - facets.centres_lm[:, 0]) ** 2 + (m[:, None] - facets.centres_lm[:, 1]) ** 2)
    np.testing.assert_array_equal(which, np.argmin(d2, axis=1))
    # areas add up to the field
    area = sum(0.5 * abs(np.sum(p[:, 0] * np.roll(p[:, 1], -1) - np.roll(p[:, 0], -1) * p[:, 1]))
               for p in facets.polygons_lm)
    assert area == pytest.approx(facets.width_rad * facets.height_rad, rel=1e-12)


def test_each_facet_contains_its_calibrator():
    facets = _facets(n=8, seed=3)
    for k in range(facets.n_dir):
        assert facets.contains(k, facets.ra[k], facets.dec[k])
        others = [j for j in range(facets.n_dir) if j != k]
        assert not np.any(facets.contains(k, facets.ra[others], facets.dec[others]))
    np.testing.assert_array_equal(facets.facet_of(facets.ra, facets.dec), np.arange(facets.n_dir))


def test_vertices_in_lm_and_radec_agree():
    facets = _facets(n=4, seed=5)
    for lm, rd in zip(facets.polygons_lm, facets.polygons_radec(), strict=True):
        back = lmn_of(rd[:, 0], rd[:, 1], *PC)[:, :2]
        np.testing.assert_allclose(back, lm, atol=1e-12)
    xds = facets.to_dataset()
    assert xds.sizes["direction"] == 4
    assert list(xds["direction"].values) == list(facets.name)


def test_single_facet_is_the_field():
    (poly,) = voronoi_polygons([[0.01, 0.0]], 0.1)
    assert poly.shape == (4, 2)
    assert np.abs(poly).max() == pytest.approx(0.05)


def test_assign_puts_components_in_their_facets():
    facets = _facets(n=5, seed=7)
    rng = np.random.default_rng(1)
    from daskcal.data.geometry import radec_of_lm

    ra, dec = radec_of_lm(*rng.uniform(-0.04, 0.04, (2, 50)), *PC)
    sky = SkyModel.from_components(name=[f"s{i}" for i in range(50)], ra=ra, dec=dec,
                                   stokes_i=1.0, ref_freq=1.5e8)
    out = facets.assign(sky)
    for k, name in enumerate(facets.name):
        members = out.patch == name
        assert np.all(facets.contains(k, out.ra[members], out.dec[members]))


def test_ds9_round_trip(tmp_path):
    facets = _facets(n=6, seed=2)
    path = write_ds9(facets, tmp_path / "facets.reg")
    text = path.read_text()
    assert text.splitlines()[2] == "fk5"
    assert sum(line.startswith("polygon(") for line in text.splitlines()) == 6
    polys = read_ds9(path)
    assert list(polys) == list(facets.name)
    for name, rd in zip(facets.name, facets.polygons_radec(), strict=True):
        np.testing.assert_allclose(np.radians(polys[name]), rd, atol=np.radians(1e-7))
    # densified edges still describe the same facets
    dense = parse_ds9(format_ds9(facets, n_edge_points=3))
    assert all(dense[n].shape[0] == 4 * polys[n].shape[0] for n in polys)


def test_ds9_errors():
    with pytest.raises(FacetError, match="fk5"):
        parse_ds9("image\npolygon(1,2,3,4,5,6)\n")
    with pytest.raises(FacetError, match="3 \\(ra, dec\\)"):
        parse_ds9("fk5\npolygon(1,2,3,4)\n")
    assert list(parse_ds9("fk5\npolygon(1,2,3,4,5,6)\n")) == ["polygon_0"]


def test_bad_facets():
    with pytest.raises(FacetError, match="coincide"):
        voronoi_polygons([[0, 0], [0, 0]], 0.1)
    with pytest.raises(FacetError, match="positive"):
        voronoi_polygons([[0, 0]], 0.0)
    with pytest.raises(FacetError, match="unique"):
        make_facets(["a", "a"], PC[[0, 0]], PC[[1, 1]] + [0, 0.01], PC, 0.1)
