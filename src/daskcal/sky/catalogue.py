"""Catalogues: cone extraction, patch summaries and grouping components into patches.

Grouping algorithm (:func:`group_by_brightest`)
-----------------------------------------------
This is the "group around the brightest sources" step of LSMTool/Rapthor (calibrator
selection followed by a Voronoi tessellation on the sky), made deterministic:

1. Each component's Stokes I flux density ``S`` is taken at ``freq_hz`` (or at its own
   reference frequency).
2. Blending (``blend_radius_rad > 0``, for CLEAN components: one source's flux is spread
   over a few neighbouring pixels): going down the components by decreasing ``S`` (ties
   as in 3), each component not yet blended heads a *source* that takes every
   not-yet-blended component within ``blend_radius_rad`` of it; the source's flux is
   the sum of its components'. Without blending every component is its own source.
3. Candidates are the sources (their heads) with flux ``>= min_flux_jy``, ordered by
   decreasing flux (equal fluxes: by the head's name, then by its position in the model).
4. Going down that list, a candidate becomes a patch centre unless its head lies within
   ``min_separation_rad`` of an earlier (brighter) centre; this stops after
   ``max_patches`` centres.
5. Every source joins, with all its components, the patch of the centre nearest to its
   head (great-circle distance; a tie goes to the brighter centre); with
   ``max_radius_rad``, sources whose head is farther than that from every centre join
   the ``rest`` patch instead.
6. Patches are named ``f"{prefix}{k}"`` with ``k = 0, 1, ...`` in order of decreasing
   centre flux.

Invariants (tested, without blending; with it they hold for the sources): every
component is in exactly one patch and every centre in its own; no member of a patch is brighter than its centre unless it was itself skipped as a
centre for lying within ``min_separation_rad`` of a brighter one (so with
``min_separation_rad=0`` the centres are exactly the ``max_patches`` brightest
candidates and each is the brightest of its patch); the brightest candidate is the
centre of ``Patch_0``; permuting the components permutes the result (names are unique,
so the order of ties never depends on memory layout).
"""

from __future__ import annotations

import csv
import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from daskcal.data.geometry import angular_separation, radec_to_unit, unit_to_radec
from daskcal.sky.model import SkyModel, SkyModelError


class CatalogueError(SkyModelError):
    """A catalogue file that cannot be read, or grouping parameters that make no sense."""


def _stokes_i(sky: SkyModel, freq_hz: float | None) -> np.ndarray:
    """Stokes I of each component at ``freq_hz`` (or at its reference frequency), Jy, (n_source,)."""
    if freq_hz is None:
        return sky.stokes[:, 0].copy()
    if not np.isfinite(freq_hz) or freq_hz <= 0:
        raise CatalogueError(f"freq_hz must be a positive frequency, not {freq_hz!r}")
    return sky.flux(np.array([float(freq_hz)]))[:, 0, 0]


# ----------------------------------------------------------------------------- cones


def cone(sky: SkyModel, ra0: float, dec0: float, radius_rad: float,
         min_flux_jy: float | None = None, freq_hz: float | None = None) -> SkyModel:
    """The components within a cone, optionally above a flux density.

    Parameters
    ----------
    sky : SkyModel
        The catalogue.
    ra0, dec0 : float
        Centre of the cone (J2000), radians.
    radius_rad : float
        Radius of the cone, radians; components at a great-circle distance
        ``<= radius_rad`` are kept.
    min_flux_jy : float, optional
        Keep only components with Stokes I ``>= min_flux_jy`` (Jy).
    freq_hz : float, optional
        Frequency at which fluxes are compared (Hz); each component's reference
        frequency if not given.

    Returns
    -------
    SkyModel
        The selected components, in catalogue order.
    """
    if not np.isfinite(radius_rad) or radius_rad < 0:
        raise CatalogueError(f"cone radius must be a non-negative angle, not {radius_rad!r}")
    keep = angular_separation(ra0, dec0, sky.ra, sky.dec) <= radius_rad
    if min_flux_jy is not None:
        keep &= _stokes_i(sky, freq_hz) >= min_flux_jy
    return sky.select(keep)


_CSV_REQUIRED = ("name", "ra_deg", "dec_deg", "flux_jy")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def _csv_float(row: dict, key: str, default: float, where: str) -> float:
    text = (row.get(key) or "").strip()
    if not text:
        return default
    if not _NUMBER.fullmatch(text):
        raise CatalogueError(f"{where}: cannot parse {key} {text!r}")
    return float(text)


def read_csv_catalogue(path) -> SkyModel:
    """Read a simple CSV catalogue (one header row; ``#`` lines are comments).

    Columns (case-insensitive, any order): ``name``, ``ra_deg``, ``dec_deg``,
    ``flux_jy`` (Stokes I, Jy) are required; optional are ``ref_freq_hz`` (150 MHz when
    absent and no spectral index), ``spectral_index`` (one number or a quoted
    ``"[a0, a1, ...]"``), ``log_si`` (true/false), ``major_arcsec``, ``minor_arcsec``
    (FWHM), ``pa_deg`` and ``patch``. Other columns are ignored.

    Returns
    -------
    SkyModel
        One component per data row.
    """
    from daskcal.sky.bbs import _read_text, _spectral_index

    text = _read_text(path)
    lines = [(n, line) for n, line in enumerate(text.splitlines(), start=1)
             if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        raise CatalogueError(f"{path}: empty catalogue (no header row)")
    reader = csv.DictReader([line for _, line in lines], skipinitialspace=True)
    reader.fieldnames = [f.strip().lower() for f in (reader.fieldnames or [])]
    missing = [c for c in _CSV_REQUIRED if c not in reader.fieldnames]
    if missing:
        raise CatalogueError(f"{path}:{lines[0][0]}: missing column(s) {', '.join(missing)}")
    rows: dict[str, list] = {k: [] for k in ("name", "ra", "dec", "i", "ref", "si", "log", "maj",
                                             "min", "pa", "patch")}
    for (lineno, _), row in zip(lines[1:], reader, strict=False):
        where = f"{path}:{lineno}"
        if None in row:
            raise CatalogueError(f"{where}: more values than columns")
        name = (row["name"] or "").strip()
        if not name:
            raise CatalogueError(f"{where}: empty name")
        ra, dec = _csv_float(row, "ra_deg", np.nan, where), _csv_float(row, "dec_deg", np.nan, where)
        if not np.isfinite(ra) or not np.isfinite(dec) or abs(dec) > 90:
            raise CatalogueError(f"{where}: need ra_deg and dec_deg with |dec_deg| <= 90")
        try:
            si = _spectral_index((row.get("spectral_index") or "").strip())
        except ValueError as exc:
            raise CatalogueError(f"{where}: {exc}".replace("SpectralIndex", "spectral_index")) from None
        ref = _csv_float(row, "ref_freq_hz", 0.0, where)
        if ref < 0 or (ref == 0 and any(si)):
            raise CatalogueError(f"{where}: a spectral index needs a positive ref_freq_hz")
        log = (row.get("log_si") or "true").strip().lower()
        if log not in ("true", "false", "1", "0", "yes", "no"):
            raise CatalogueError(f"{where}: cannot parse log_si {log!r}")
        maj, mnr = _csv_float(row, "major_arcsec", 0.0, where), _csv_float(row, "minor_arcsec", 0.0, where)
        if mnr > maj or mnr < 0:
            raise CatalogueError(f"{where}: need 0 <= minor_arcsec <= major_arcsec")
        for key, val in (("name", name), ("ra", np.radians(ra)), ("dec", np.radians(dec)),
                         ("i", _csv_float(row, "flux_jy", np.nan, where)),
                         ("ref", ref if ref > 0 else 150e6), ("si", si),
                         ("log", log in ("true", "1", "yes")), ("maj", maj), ("min", mnr),
                         ("pa", np.radians(_csv_float(row, "pa_deg", 0.0, where))),
                         ("patch", (row.get("patch") or "").strip())):
            rows[key].append(val)
        if not np.isfinite(rows["i"][-1]):
            raise CatalogueError(f"{where}: empty flux_jy")
    if not rows["name"]:
        return SkyModel.empty()
    n_terms = max(len(s) for s in rows["si"])
    si = np.array([s + [0.0] * (n_terms - len(s)) for s in rows["si"]]).reshape(len(rows["si"]), n_terms)
    arcsec = np.pi / (180 * 3600)
    try:
        return SkyModel.from_components(
            name=rows["name"], ra=np.array(rows["ra"]), dec=np.array(rows["dec"]),
            stokes_i=np.array(rows["i"]), ref_freq=np.array(rows["ref"]), spectral_index=si,
            log_si=np.array(rows["log"]), major=np.array(rows["maj"]) * arcsec,
            minor=np.array(rows["min"]) * arcsec, position_angle=np.array(rows["pa"]),
            patch=np.array(rows["patch"], dtype=str))
    except SkyModelError as exc:
        raise CatalogueError(f"{path}: {str(exc).removeprefix('sky model: ')}") from None


def read_catalogue(path) -> SkyModel:
    """Read a catalogue: a ``.csv`` file (:func:`read_csv_catalogue`), else a BBS sky model."""
    if Path(path).suffix.lower() == ".csv":
        return read_csv_catalogue(path)
    from daskcal.sky.bbs import read_bbs

    return read_bbs(path)


def cone_from_file(path, ra0: float, dec0: float, radius_rad: float,
                   min_flux_jy: float | None = None, freq_hz: float | None = None) -> SkyModel:
    """:func:`cone` of the catalogue in ``path`` (:func:`read_catalogue`); angles in radians."""
    return cone(read_catalogue(path), ra0, dec0, radius_rad, min_flux_jy=min_flux_jy,
                freq_hz=freq_hz)


# ----------------------------------------------------------------------------- patches


@dataclass(frozen=True)
class PatchSummary:
    """Per-patch totals of a sky model, arrays of length ``n_patch``.

    Attributes
    ----------
    name : ndarray of str, shape (n_patch,)
        Patch names, in order of first appearance in the model.
    ra, dec : ndarray, shape (n_patch,)
        Flux-weighted centre (J2000), radians.
    flux_jy : ndarray, shape (n_patch,)
        Total Stokes I, Jy.
    n_component : ndarray of int, shape (n_patch,)
        Number of components.
    """

    name: np.ndarray
    ra: np.ndarray
    dec: np.ndarray
    flux_jy: np.ndarray
    n_component: np.ndarray


def patch_summary(sky: SkyModel, freq_hz: float | None = None) -> PatchSummary:
    """Total flux and flux-weighted centre of each patch.

    The centre is the direction of ``sum_k |S_k| u_k`` over the patch's components
    (``u_k`` unit vectors, ``S_k`` Stokes I at ``freq_hz`` or at each reference
    frequency), as DP3's ``makesourcedb`` does but with ``|S|`` weights so that negative
    components (CLEAN) cannot push it away; the plain mean direction if all fluxes are
    zero. A component without a patch (``""``) is a patch of its own, named after it.

    Parameters
    ----------
    sky : SkyModel
        The sky model.
    freq_hz : float, optional
        Frequency of the fluxes, Hz.

    Returns
    -------
    PatchSummary
    """
    flux = _stokes_i(sky, freq_hz)
    patch = np.where(sky.patch == "", sky.name, sky.patch)
    names = list(dict.fromkeys(patch.tolist()))
    index = {p: k for k, p in enumerate(names)}
    which = np.array([index[p] for p in patch.tolist()], dtype=np.int64)
    n_patch = len(names)
    unit = radec_to_unit(sky.ra, sky.dec).reshape(-1, 3)
    weight = np.abs(flux)
    total_w = np.bincount(which, weight, minlength=n_patch)
    w = np.where(total_w[which] > 0, weight, 1.0)
    vec = np.stack([np.bincount(which, w * unit[:, j], minlength=n_patch) for j in range(3)], axis=1)
    ra, dec = unit_to_radec(vec) if n_patch else (np.zeros(0), np.zeros(0))
    return PatchSummary(name=np.array(names, dtype=str), ra=np.asarray(ra), dec=np.asarray(dec),
                        flux_jy=np.bincount(which, flux, minlength=n_patch),
                        n_component=np.bincount(which, minlength=n_patch))


def group_by_brightest(sky: SkyModel, *, min_flux_jy: float | None = None,
                       max_patches: int | None = None, min_separation_rad: float = 0.0,
                       max_radius_rad: float | None = None, freq_hz: float | None = None,
                       prefix: str = "Patch_", rest: str = "rest",
                       blend_radius_rad: float = 0.0) -> SkyModel:
    """Group components into patches around the brightest sources (see the module notes).

    Parameters
    ----------
    sky : SkyModel
        The components (their current patches are replaced).
    min_flux_jy : float, optional
        Flux density a patch centre needs, Jy (no limit if not given).
    max_patches : int, optional
        Largest number of centres (all that qualify if not given).
    min_separation_rad : float
        A candidate closer than this to a brighter centre is not a centre, radians.
    max_radius_rad : float, optional
        Components farther than this from every centre go to the ``rest`` patch.
    freq_hz : float, optional
        Frequency of the fluxes, Hz (each reference frequency if not given).
    prefix : str
        Patch names are ``prefix + "0"``, ``prefix + "1"``, ... by decreasing centre flux.
    rest : str
        Name of the patch of components that belong to no centre (no centres at all, or
        beyond ``max_radius_rad``).
    blend_radius_rad : float
        Components within this of a brighter one are blended into its source (module
        notes, step 2), radians; 0: no blending.

    Returns
    -------
    SkyModel
        ``sky`` with its ``patch`` array replaced.
    """
    if max_patches is not None and max_patches < 0:
        raise CatalogueError(f"max_patches must not be negative, not {max_patches}")
    if not np.isfinite(min_separation_rad) or min_separation_rad < 0:
        raise CatalogueError(f"min_separation_rad must be a non-negative angle, not {min_separation_rad!r}")
    if max_radius_rad is not None and not (np.isfinite(max_radius_rad) and max_radius_rad >= 0):
        raise CatalogueError(f"max_radius_rad must be a non-negative angle, not {max_radius_rad!r}")
    if re.fullmatch(re.escape(prefix) + r"\d+", rest):
        raise CatalogueError(f"rest patch name {rest!r} clashes with the names {prefix}0, {prefix}1, ...")
    if not np.isfinite(blend_radius_rad) or blend_radius_rad < 0:
        raise CatalogueError(f"blend_radius_rad must be a non-negative angle, not {blend_radius_rad!r}")
    flux = _stokes_i(sky, freq_hz)
    head = _blend(sky, flux, blend_radius_rad)  # (n_source,): index of each one's source head
    src_flux = np.zeros(sky.n_source)
    np.add.at(src_flux, head, flux)
    heads = np.flatnonzero(head == np.arange(sky.n_source))
    order = heads[np.lexsort((heads, sky.name[heads], -src_flux[heads]))]  # last key: primary
    if min_flux_jy is not None:
        order = order[src_flux[order] >= min_flux_jy]
    centres: list[int] = []
    limit = sky.n_source if max_patches is None else max_patches
    for k in order:
        if len(centres) >= limit:
            break
        if centres and min_separation_rad > 0:
            c = np.array(centres)
            if np.any(angular_separation(sky.ra[c], sky.dec[c], sky.ra[k], sky.dec[k])
                      < min_separation_rad):
                continue
        centres.append(int(k))
    patch = np.full(sky.n_source, rest, dtype=object)
    if centres:
        c = np.array(centres)
        ra, dec = sky.ra[head], sky.dec[head]  # every component at its source's head
        dist = angular_separation(sky.ra[c][None, :], sky.dec[c][None, :],
                                  ra[:, None], dec[:, None])  # (n_source, n_centre)
        nearest = np.argmin(dist, axis=1)  # first (brightest) centre wins ties
        inside = np.ones(sky.n_source, bool) if max_radius_rad is None else (
            dist[np.arange(sky.n_source), nearest] <= max_radius_rad)
        names = np.array([f"{prefix}{k}" for k in range(len(centres))], dtype=object)
        patch[inside] = names[nearest[inside]]
        own = np.isin(head, c)  # a centre's source always belongs to its own patch
        index = {h: k for k, h in enumerate(centres)}
        patch[own] = names[[index[int(h)] for h in head[own]]]
    return dataclasses.replace(sky, patch=patch.astype(str))


def merge_components(sky: SkyModel, radius_rad: float, *,
                     freq_hz: float | None = None) -> SkyModel:
    """Merge components within ``radius_rad`` of a brighter one into one point component.

    The components are blended as in :func:`group_by_brightest` (module notes, step 2:
    by decreasing Stokes I at ``freq_hz``, each not-yet-blended one takes the
    not-yet-blended ones within ``radius_rad``). Each source becomes one point component
    at the ``|S|``-weighted centre of its members (as :func:`patch_summary`), with their
    summed Stokes parameters and the name, reference frequency, spectral terms and patch
    of its brightest member. Meant for CLEAN-component models of compact sources: CLEAN
    spreads a source that sits between pixels over a few of them, which moves its flux
    to the pixel centres (a wrong visibility amplitude on long baselines); the merged
    component is at the sub-pixel position. Extended emission is coarse-grained to
    points about ``radius_rad`` apart.

    Parameters
    ----------
    sky : SkyModel
    radius_rad : float
        Blending radius, radians (0: ``sky`` unchanged).
    freq_hz : float, optional
        Frequency of the fluxes that order the components, Hz (each reference
        frequency if not given).

    Returns
    -------
    SkyModel
        The merged components (point sources), in the order of their brightest members
        in ``sky``.
    """
    if not np.isfinite(radius_rad) or radius_rad < 0:
        raise CatalogueError(f"radius_rad must be a non-negative angle, not {radius_rad!r}")
    if radius_rad == 0 or sky.n_source < 2:
        return sky
    head = _blend(sky, _stokes_i(sky, freq_hz), radius_rad)
    heads, which = np.unique(head, return_inverse=True)
    n = heads.size
    weight = np.abs(sky.stokes[:, 0])
    total_w = np.bincount(which, weight, minlength=n)
    w = np.where(total_w[which] > 0, weight, 1.0)
    unit = radec_to_unit(sky.ra, sky.dec).reshape(-1, 3)
    vec = np.stack([np.bincount(which, w * unit[:, k], minlength=n) for k in range(3)], axis=1)
    ra, dec = unit_to_radec(vec)
    stokes = np.stack([np.bincount(which, sky.stokes[:, k], minlength=n) for k in range(4)],
                      axis=1)
    return dataclasses.replace(
        sky.select(heads), ra=np.atleast_1d(np.asarray(ra, dtype=np.float64)),
        dec=np.atleast_1d(np.asarray(dec, dtype=np.float64)), stokes=stokes,
        major=np.zeros(n), minor=np.zeros(n), position_angle=np.zeros(n))


def _blend(sky: SkyModel, flux: np.ndarray, radius_rad: float) -> np.ndarray:
    """Index of the source head of each component (module notes, step 2), int (n_source,).

    Components are visited by decreasing flux (ties: name, then index); each one not yet
    taken becomes a head and takes the untaken components within ``radius_rad``.
    """
    n = sky.n_source
    head = np.arange(n)
    if radius_rad <= 0 or n < 2:
        return head
    order = np.lexsort((np.arange(n), sky.name, -flux))
    taken = np.zeros(n, bool)
    for k in order:
        if taken[k]:
            continue
        near = (~taken) & (angular_separation(sky.ra[k], sky.dec[k], sky.ra, sky.dec)
                           <= radius_rad)
        near[k] = True
        head[near] = k
        taken |= near
    return head
