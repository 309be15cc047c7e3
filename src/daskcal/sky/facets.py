"""Facet geometry: Voronoi cells around calibrator directions, and ds9 region files.

Facets (FACTOR/Rapthor)
-----------------------
The image field is a square of side ``width_rad`` centred on the phase centre in the
tangent plane ``(l, m)`` of that centre (``l`` east, ``m`` north; the orthographic
projection of :func:`daskcal.data.geometry.lmn_of`). Each calibrator direction ``k``
has the position ``c_k = (l_k, m_k)``; its facet is the set of field points closer (in
the tangent plane) to ``c_k`` than to any other calibrator::

    F_k = { x in square : |x - c_k| <= |x - c_j| for all j }

i.e. the Voronoi cell of ``c_k`` clipped to the square. It is computed exactly as the
intersection of the square with the half-planes ``(x - (c_k + c_j) / 2) . (c_j - c_k) <= 0``
(Sutherland-Hodgman clipping of a convex polygon, one half-plane at a time), so every
facet is a convex polygon, the facets tile the square, and a calibrator inside the
square lies in its own facet. Vertices are listed counter-clockwise in ``(l, m)``
(east is +l; on the sky, seen from inside, that is clockwise).

:func:`facet_of` assigns points (or sky-model components) to facets by the same
nearest-centre rule, so a component is in the facet whose polygon contains it
(points outside the square go to the nearest centre too).

ds9 regions
-----------
:func:`format_ds9` writes one ``polygon(ra1,dec1,ra2,dec2,...)`` per facet in ``fk5``
degrees, with the facet name as ``# text={name}`` (the form WSClean's ``-facet-regions``
and Rapthor read); :func:`parse_ds9` reads such a file back. Edges are straight in
``(l, m)``; with ``n_edge_points > 0`` each edge gets that many extra vertices so that
the polygon follows the edge on the sky also for wide fields.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from daskcal.data.geometry import lmn_of, radec_of_lm
from daskcal.sky.model import SkyModel, SkyModelError


class FacetError(SkyModelError):
    """Facet parameters or region files that make no sense."""


# ----------------------------------------------------------------------------- polygons


def _clip_half_plane(poly: np.ndarray, normal: np.ndarray, offset: float) -> np.ndarray:
    """Keep the part of a convex polygon (k, 2) where ``x . normal <= offset``."""
    if poly.shape[0] == 0:
        return poly
    side = poly @ normal - offset
    out = []
    n = poly.shape[0]
    for i in range(n):
        p, q = poly[i], poly[(i + 1) % n]
        sp, sq = side[i], side[(i + 1) % n]
        if sp <= 0:
            out.append(p)
        if (sp < 0 < sq) or (sq < 0 < sp):
            t = sp / (sp - sq)
            out.append(p + t * (q - p))
    if not out:
        return np.zeros((0, 2))
    res = np.array(out)
    # drop repeated vertices (a cut through a vertex)
    keep = np.ones(res.shape[0], bool)
    for i in range(1, res.shape[0]):
        keep[i] = np.linalg.norm(res[i] - res[i - 1]) > 1e-15
    res = res[keep]
    if res.shape[0] > 1 and np.linalg.norm(res[0] - res[-1]) <= 1e-15:
        res = res[:-1]
    return res


def voronoi_polygons(centres_lm, width_rad: float, height_rad: float | None = None) -> list[np.ndarray]:
    """Voronoi cells of points in the plane, clipped to a square (rectangle) about the origin.

    Parameters
    ----------
    centres_lm : array, shape (n_dir, 2)
        Cell centres ``(l, m)``, radians (direction cosines).
    width_rad : float
        Side of the square along ``l``, radians.
    height_rad : float, optional
        Side along ``m`` (default: ``width_rad``).

    Returns
    -------
    list of ndarray, each shape (n_vertex_k, 2)
        Counter-clockwise vertices of each cell; empty (0, 2) for a centre whose cell
        misses the square entirely.
    """
    c = np.asarray(centres_lm, dtype=np.float64).reshape(-1, 2)
    if not (np.isfinite(width_rad) and width_rad > 0):
        raise FacetError(f"width_rad must be positive, not {width_rad!r}")
    h = width_rad if height_rad is None else float(height_rad)
    if not (np.isfinite(h) and h > 0):
        raise FacetError(f"height_rad must be positive, not {height_rad!r}")
    if not np.all(np.isfinite(c)):
        raise FacetError("facet centres must be finite")
    for i in range(c.shape[0]):
        for j in range(i):
            if np.allclose(c[i], c[j], rtol=0, atol=1e-12):
                raise FacetError(f"facet centres {j} and {i} coincide")
    hw, hh = 0.5 * width_rad, 0.5 * h
    square = np.array([[-hw, -hh], [hw, -hh], [hw, hh], [-hw, hh]])
    polys = []
    for k in range(c.shape[0]):
        poly = square.copy()
        for j in range(c.shape[0]):
            if j == k:
                continue
            normal = c[j] - c[k]
            offset = float(normal @ (0.5 * (c[j] + c[k])))
            poly = _clip_half_plane(poly, normal, offset)
        polys.append(poly)
    return polys


def point_in_polygon(x, y, poly) -> np.ndarray:
    """Whether points lie inside a polygon (even-odd ray casting; edges count as inside).

    Parameters
    ----------
    x, y : array, shape (n,)
        Point coordinates.
    poly : array, shape (k, 2)
        Polygon vertices, in order.

    Returns
    -------
    ndarray of bool, shape (n,)
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    poly = np.asarray(poly, dtype=np.float64)
    inside = np.zeros(x.shape, bool)
    on_edge = np.zeros(x.shape, bool)
    k = poly.shape[0]
    if k < 3:
        return inside
    for i in range(k):
        x1, y1 = poly[i]
        x2, y2 = poly[(i + 1) % k]
        cross = (x2 - x1) * (y - y1) - (y2 - y1) * (x - x1)
        within = ((np.minimum(x1, x2) - 1e-15 <= x) & (x <= np.maximum(x1, x2) + 1e-15)
                  & (np.minimum(y1, y2) - 1e-15 <= y) & (y <= np.maximum(y1, y2) + 1e-15))
        scale = max(np.hypot(x2 - x1, y2 - y1), 1e-300)
        on_edge |= within & (np.abs(cross) <= 1e-12 * scale)
        crosses = (y1 > y) != (y2 > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_at = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
        inside ^= crosses & (x < x_at)
    return inside | on_edge


def _densify(poly: np.ndarray, n_extra: int) -> np.ndarray:
    if n_extra <= 0 or poly.shape[0] == 0:
        return poly
    out = []
    k = poly.shape[0]
    for i in range(k):
        p, q = poly[i], poly[(i + 1) % k]
        for t in np.arange(n_extra + 1) / (n_extra + 1):
            out.append(p + t * (q - p))
    return np.array(out)


# ----------------------------------------------------------------------------- facets


@dataclass(frozen=True, eq=False)
class Facets:
    """Facets of an image field: calibrator directions and their Voronoi polygons.

    Attributes
    ----------
    name : ndarray of str, shape (n_dir,)
        Facet (direction) names.
    ra, dec : ndarray, shape (n_dir,)
        Calibrator directions (J2000), radians.
    phase_centre_rad : ndarray, shape (2,)
        (RA, Dec) of the tangent point, radians.
    width_rad, height_rad : float
        Field size in ``l`` and ``m``, radians.
    polygons_lm : list of ndarray, each (n_vertex_k, 2)
        Facet vertices ``(l, m)``, radians, counter-clockwise.
    """

    name: np.ndarray
    ra: np.ndarray
    dec: np.ndarray
    phase_centre_rad: np.ndarray
    width_rad: float
    height_rad: float
    polygons_lm: list

    @property
    def n_dir(self) -> int:
        """Number of facets."""
        return int(self.name.size)

    @property
    def centres_lm(self) -> np.ndarray:
        """``(l, m)`` of the calibrator directions, shape (n_dir, 2), radians."""
        return lmn_of(self.ra, self.dec, *self.phase_centre_rad)[:, :2]

    def polygons_radec(self, n_edge_points: int = 0) -> list[np.ndarray]:
        """Facet vertices as (RA, Dec) in radians, each of shape (n_vertex_k, 2).

        Parameters
        ----------
        n_edge_points : int
            Extra vertices inserted along each edge (straight in ``(l, m)``).
        """
        out = []
        for poly in self.polygons_lm:
            p = _densify(np.asarray(poly), n_edge_points)
            if p.shape[0] == 0:
                out.append(np.zeros((0, 2)))
                continue
            ra, dec = radec_of_lm(p[:, 0], p[:, 1], *self.phase_centre_rad)
            out.append(np.stack([ra, dec], axis=1))
        return out

    def contains(self, k: int, ra, dec) -> np.ndarray:
        """Whether directions (radians) lie in facet ``k``'s polygon, shape of ``ra``."""
        lmn = lmn_of(np.ravel(ra), np.ravel(dec), *self.phase_centre_rad)
        inside = point_in_polygon(lmn[:, 0], lmn[:, 1], self.polygons_lm[k]) & (lmn[:, 2] > 0)
        return inside.reshape(np.shape(ra))

    def facet_of(self, ra, dec) -> np.ndarray:
        """Index of the facet (nearest centre in the tangent plane) of directions.

        Parameters
        ----------
        ra, dec : array, shape (n,)
            Directions, radians.

        Returns
        -------
        ndarray of int64, shape (n,)
            Facet index of each direction (points outside the field: the nearest centre).
        """
        ra = np.atleast_1d(np.asarray(ra, dtype=np.float64))
        lm = lmn_of(ra, np.atleast_1d(dec), *self.phase_centre_rad)[:, :2]
        d2 = np.sum((lm[:, None, :] - self.centres_lm[None, :, :]) ** 2, axis=-1)
        return np.argmin(d2, axis=1).astype(np.int64)

    def assign(self, sky: SkyModel) -> SkyModel:
        """``sky`` with every component's patch set to the name of its facet."""
        import dataclasses

        if sky.n_source == 0:
            return sky
        return dataclasses.replace(sky, patch=self.name[self.facet_of(sky.ra, sky.dec)])

    def to_dataset(self) -> xr.Dataset:
        """The facets as an ``xarray.Dataset`` (dims ``direction``, ``vertex``, ``sky_dir_label``).

        ``VERTEX_LM`` and ``VERTEX_RADEC`` (direction, vertex, 2) are NaN-padded to the
        longest polygon; ``N_VERTEX`` gives each polygon's length.
        """
        n_v = max([p.shape[0] for p in self.polygons_lm] + [1])
        lm = np.full((self.n_dir, n_v, 2), np.nan)
        rd = np.full((self.n_dir, n_v, 2), np.nan)
        for k, (p, q) in enumerate(zip(self.polygons_lm, self.polygons_radec(), strict=True)):
            lm[k, :p.shape[0]] = p
            rd[k, :q.shape[0]] = q
        return xr.Dataset(
            {"VERTEX_LM": (("direction", "vertex", "lm_label"), lm, {"units": "rad"}),
             "VERTEX_RADEC": (("direction", "vertex", "sky_dir_label"), rd,
                              {"units": "rad", "frame": "fk5"}),
             "N_VERTEX": ("direction", np.array([p.shape[0] for p in self.polygons_lm]))},
            coords={"direction": self.name, "direction_ra": ("direction", self.ra, {"units": "rad"}),
                    "direction_dec": ("direction", self.dec, {"units": "rad"}),
                    "lm_label": ["l", "m"], "sky_dir_label": ["ra", "dec"]},
            attrs={"type": "facets", "phase_centre_rad": [float(x) for x in self.phase_centre_rad],
                   "width_rad": self.width_rad, "height_rad": self.height_rad})


def make_facets(names, ra, dec, phase_centre_rad, width_rad: float,
                height_rad: float | None = None) -> Facets:
    """Voronoi facets around directions, clipped to the image field (module notes).

    Parameters
    ----------
    names : sequence of str, length n_dir
        Facet names (unique).
    ra, dec : array, shape (n_dir,)
        Calibrator directions (J2000), radians; within 90 degrees of the phase centre.
    phase_centre_rad : array, shape (2,)
        (RA, Dec) of the image centre (the tangent point), radians.
    width_rad : float
        Side of the square field in ``l``, radians (direction cosine; ~ angle for small
        fields).
    height_rad : float, optional
        Side in ``m`` (default ``width_rad``).

    Returns
    -------
    Facets
    """
    names = np.asarray(names, dtype=str).reshape(-1)
    ra = np.atleast_1d(np.asarray(ra, dtype=np.float64))
    dec = np.atleast_1d(np.asarray(dec, dtype=np.float64))
    if names.size == 0 or ra.shape != names.shape or dec.shape != names.shape:
        raise FacetError("need one (ra, dec) per facet name and at least one facet")
    if len(set(names.tolist())) != names.size:
        raise FacetError("facet names are not unique")
    pc = np.asarray(phase_centre_rad, dtype=np.float64).reshape(2)
    lmn = lmn_of(ra, dec, *pc)
    if np.any(lmn[:, 2] <= 0):
        raise FacetError("facet directions must lie within 90 degrees of the phase centre")
    h = float(width_rad if height_rad is None else height_rad)
    polys = voronoi_polygons(lmn[:, :2], float(width_rad), h)
    return Facets(names, ra, dec, pc, float(width_rad), h, polys)


# ----------------------------------------------------------------------------- ds9

_DS9_HEADER = ("# Region file format: DS9 version 4.1\n"
               'global color=green dashlist=8 3 width=1 font="helvetica 10 normal roman" '
               "select=1 highlite=1 dash=0 fixed=0 edit=1 move=1 delete=1 include=1 source=1\n"
               "fk5\n")
_POLYGON = re.compile(r"^\s*polygon\s*\(([^)]*)\)\s*(#.*)?$", re.IGNORECASE)
_TEXT = re.compile(r"text\s*=\s*\{([^}]*)\}")


def format_ds9(facets: Facets, *, n_edge_points: int = 0) -> str:
    """ds9 region text of the facets: one fk5 ``polygon`` per facet, degrees, named by ``text``.

    Facets whose polygon is empty (a calibrator outside a field it does not reach) are
    left out.
    """
    lines = [_DS9_HEADER]
    for name, poly in zip(facets.name, facets.polygons_radec(n_edge_points), strict=True):
        if poly.shape[0] < 3:
            continue
        deg = np.degrees(poly)
        coords = ",".join(f"{r:.8f},{d:.8f}" for r, d in deg)
        lines.append(f"polygon({coords}) # text={{{name}}}\n")
    return "".join(lines)


def write_ds9(facets: Facets, path: str | os.PathLike, *, n_edge_points: int = 0) -> Path:
    """Write :func:`format_ds9` to ``path``; returns the path."""
    path = Path(path)
    path.write_text(format_ds9(facets, n_edge_points=n_edge_points))
    return path


def parse_ds9(text: str) -> dict[str, np.ndarray]:
    """Polygons of a ds9 region text in fk5 degrees (as :func:`format_ds9` writes).

    Only ``fk5`` (or ``icrs``/``j2000``) coordinates in decimal degrees are understood;
    polygons without a ``text`` are named ``polygon_<k>``.

    Returns
    -------
    dict of str to ndarray, shape (n_vertex, 2)
        (RA, Dec) vertices in degrees, by name, in file order.
    """
    out: dict[str, np.ndarray] = {}
    system = None
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#") or line.lower().startswith("global"):
            continue
        if line.lower() in ("fk5", "icrs", "j2000", "image", "physical", "galactic", "fk4"):
            system = line.lower()
            continue
        match = _POLYGON.match(line)
        if not match:
            continue
        if system not in ("fk5", "icrs", "j2000"):
            raise FacetError(f"line {lineno}: polygon in coordinate system {system!r}; "
                             "expected fk5")
        try:
            values = np.array([float(v) for v in match.group(1).split(",")])
        except ValueError:
            raise FacetError(f"line {lineno}: polygon coordinates must be decimal "
                             "degrees") from None
        if values.size < 6 or values.size % 2:
            raise FacetError(f"line {lineno}: a polygon needs at least 3 (ra, dec) pairs")
        text_match = _TEXT.search(match.group(2) or "")
        name = text_match.group(1) if text_match else f"polygon_{len(out)}"
        if name in out:
            raise FacetError(f"line {lineno}: polygon name {name!r} repeats")
        out[name] = values.reshape(-1, 2)
    return out


def read_ds9(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """:func:`parse_ds9` of a file."""
    return parse_ds9(Path(path).read_text())


__all__ = ["FacetError", "Facets", "format_ds9", "make_facets", "parse_ds9", "point_in_polygon",
           "read_ds9", "voronoi_polygons", "write_ds9"]
