"""Facet imaging: each facet imaged about its own centre with its own DD gains (FACTOR/Rapthor).

After direction-dependent calibration (:func:`daskcal.stages.facets.solve_facets`) each
facet ``d`` of a :class:`~daskcal.sky.facets.Facets` tiling is imaged on its own:

1. (optional, FACTOR's "subtract everything outside the facet") the other directions,
   corrupted by their own DD gains, are subtracted from the data
   (:func:`daskcal.stages.subtract.subtract` with ``exclude=[d]``); where the gains hold
   a ``MODEL_SCALE`` per direction (the solve fitted one flux scale per direction's model,
   :class:`~daskcal.stages.facets.FacetConfig` ``model_scale_iter``), each other
   direction's model is scaled by it. The scale corrects the *model*, not the data, so
   facet ``d`` itself is corrected by its gains alone;
2. the data are corrected with the inverse of direction ``d``'s gains,
   ``V' = G^d_p^-1 V_pq G^d_q^-H`` (:func:`daskcal.stages.apply.apply`: the solution cell
   holding each sample, samples with flagged, zero or singular gains flagged and set to 0);
   with ``update_weights`` the weights become ``w |g_pa|^2 |g_qb|^2`` (the inverse noise
   variance of the corrected data, as DP3's ``applycal.updateweights``);
3. visibilities, ``UVW`` and the field's phase centre are moved to the facet centre
   (:func:`daskcal.kernels.phase_shift.phase_shift`, exact with ``w``).

Steps 1-3 are :func:`facet_visibilities` (lazy: a new partition node whose ``base`` data
group is the facet's data, imaged by :func:`daskcal.stages.imaging.image` as it is).
:func:`image_facets` images every facet with a square image that covers the facet's
polygon (times ``padding``) at the configured cell and records what a mosaic needs in
the image attributes:

``facet_name``, ``facet_index``
    the facet (= direction) name and its index in the :class:`Facets`;
``phase_centre_rad``, ``cell_rad``
    (RA, Dec) of the image centre (the facet centre) and the pixel size, radians
    (set by :func:`~daskcal.stages.imaging.image`); pixel ``(i, j)`` is at
    ``l = (i - npix // 2) cell``, ``m = (j - npix // 2) cell`` about that centre;
``facet_polygon_rad``
    the facet polygon's vertices ``[[ra, dec], ...]`` (J2000, radians), counter-clockwise;
    its edges are straight lines in the tangent plane of ``facet_tangent_rad``;
``facet_tangent_rad``
    (RA, Dec) of that tangent point (the field centre of the facet tiling), radians;
``facet_direction_rad``
    (RA, Dec) of the calibrator direction whose gains were applied, radians.

:func:`facet_pixel_mask` turns these into the boolean mask of the image pixels inside
the polygon. Phase-shift and correction commute (both multiply a visibility by numbers
per baseline and correlation), so their order does not matter.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import dask.array as da
import numpy as np
import xarray as xr

from daskcal import DaskcalError
from daskcal.data.geometry import lmn_of, radec_of_lm
from daskcal.data.model import FIELD_NODE, VIS_DIMS
from daskcal.kernels.phase_shift import phase_shift, shift_geometry
from daskcal.sky.facets import Facets, point_in_polygon
from daskcal.sky.model import SkyModel
from daskcal.stages.apply import ApplyConfig, apply, cell_index
from daskcal.stages.imaging.config import FacetImageConfig
from daskcal.stages.imaging.stage import image
from daskcal.stages.solve import antenna_table, group_variables, receptor_labels
from daskcal.stages.subtract import SubtractConfig, subtract

_GDIMS = ("gain_time", "gain_frequency", "antenna_name", "receptor")
_TMP_GROUP, _TMP_VAR = "_facet", "_VISIBILITY_FACET"


class FacetImageError(DaskcalError, ValueError):
    """Facets, gains or imaging settings that do not fit together."""


# ----------------------------------------------------------------------------- gains


def _total(dd_gains: xr.DataTree | xr.Dataset) -> xr.Dataset:
    """The gains dataset of a ``solve_facets`` tree (its ``total`` node) or a dataset."""
    if isinstance(dd_gains, xr.DataTree):
        if "total" in dd_gains.children:
            return dd_gains["total"].to_dataset(inherit=False)
        return dd_gains.to_dataset(inherit=False)
    return dd_gains


def _subtraction_gains(gains: xr.Dataset) -> xr.Dataset:
    """The gains that predict the other directions: ``GAIN sqrt(MODEL_SCALE)`` if the solve
    fitted a flux scale per direction's model (module notes), else ``gains`` unchanged."""
    if "MODEL_SCALE" not in gains:
        return gains
    scale = np.sqrt(gains["MODEL_SCALE"].clip(min=0.0))
    gain = (gains["GAIN"] * scale).transpose(*gains["GAIN"].dims)
    return gains.assign(GAIN=gain.assign_attrs(gains["GAIN"].attrs))


def _direction(gains: xr.Dataset, facet: str | int) -> tuple[str, int]:
    if "GAIN" not in gains or "direction" not in gains["GAIN"].dims:
        raise FacetImageError("dd_gains need GAIN (gain_time, gain_frequency, antenna_name, "
                              "direction, receptor) as made by solve_facets")
    names = [str(d) for d in gains["direction"].values]
    if isinstance(facet, int | np.integer):
        if not 0 <= int(facet) < len(names):
            raise FacetImageError(f"facet index {facet} is not in [0, {len(names)})")
        return names[int(facet)], int(facet)
    if str(facet) not in names:
        raise FacetImageError(f"facet {facet!r} is not among the gains' directions {names}")
    return str(facet), names.index(str(facet))


def _gain_weight_block(weight, t_idx, f_idx, gains, gflags, a1, a2, ra, rb):
    """``w |g_pa|^2 |g_qb|^2`` (weights unchanged where a gain is bad: the sample is flagged)."""
    amp2 = np.abs(gains) ** 2
    bad = gflags | ~np.isfinite(amp2) | (amp2 == 0)
    amp2 = np.where(bad, 1.0, amp2)  # (T, F, ant, 2)
    out = np.empty(weight.shape, weight.dtype)
    for i in range(weight.shape[0]):
        gi = amp2[t_idx[i]][f_idx]  # (chan, ant, 2)
        factor = gi[:, a1][..., ra] * gi[:, a2][..., rb]  # (chan, bl, corr)
        out[i] = weight[i] * np.transpose(factor, (1, 0, 2))
    return out


def _updated_weights(xds: xr.Dataset, weight_name: str, gains: xr.Dataset, chunks) -> da.Array:
    a1, a2, names = antenna_table(xds)
    lookup = {str(n): i for i, n in enumerate(gains["antenna_name"].values)}
    to_gain = np.array([lookup.get(n, 0) for n in names], np.int64)
    receptors = receptor_labels(xds)
    rmap = {lab: i for i, lab in enumerate(receptors)}
    pols = [str(p) for p in xds["polarization"].values]
    ra = np.array([rmap[p[0]] for p in pols])
    rb = np.array([rmap[p[1]] for p in pols])
    t_idx = cell_index(xds["time"].values, gains["gain_time_lower"].values,
                       gains["gain_time_upper"].values)
    f_idx = cell_index(xds["frequency"].values, gains["gain_frequency_lower"].values,
                       gains["gain_frequency_upper"].values)
    weight = _lazy(xds[weight_name].data).rechunk(chunks)
    g = da.asarray(gains["GAIN"].transpose(*_GDIMS).data).rechunk(-1)
    gf = da.asarray(gains["GAIN_FLAG"].transpose(*_GDIMS).data).rechunk(-1)
    return da.blockwise(
        _gain_weight_block, "tbfc", weight, "tbfc",
        da.from_array(t_idx, chunks=(chunks[0],)), "t",
        da.from_array(f_idx, chunks=(chunks[2],)), "f", g, "TFar", gf, "TFar",
        to_gain[a1], None, to_gain[a2], None, ra, None, rb, None,
        concatenate=True, dtype=weight.dtype, meta=np.empty((0, 0, 0, 0), weight.dtype))


# ----------------------------------------------------------------------------- shift


def _lazy(arr) -> da.Array:
    return arr if isinstance(arr, da.Array) else da.from_array(np.asarray(arr), chunks=-1)


def _shift_block(vis, uvw, freq, old, new):
    out, _ = phase_shift(vis, uvw, freq, old, new)
    return out


def _rotate_block(uvw, rotation):
    return np.asarray(uvw, dtype=np.float64) @ rotation.T


def phase_centre_of(node: xr.DataTree) -> np.ndarray:
    """(RA, Dec) of a partition's (first) field phase centre, radians, shape (2,)."""
    if FIELD_NODE not in node.children:
        raise FacetImageError(f"the partition has no {FIELD_NODE} child")
    fx = node[FIELD_NODE].to_dataset(inherit=False)
    pc = np.asarray(fx["FIELD_PHASE_CENTER_DIRECTION"].values, dtype=np.float64)
    return pc.reshape(-1, 2)[0].copy()


def _partition(node: xr.DataTree, vis_xds: xr.Dataset, centre: np.ndarray) -> xr.DataTree:
    """``node`` with a new visibility dataset and its field phase centre(s) at ``centre``."""
    parts: dict[str, xr.Dataset] = {"/": vis_xds}
    for sub in node.subtree:
        if sub is node:
            continue
        parts[str(sub.relative_to(node))] = sub.to_dataset(inherit=False)
    field = parts[FIELD_NODE].copy()
    pcd = field["FIELD_PHASE_CENTER_DIRECTION"]
    field["FIELD_PHASE_CENTER_DIRECTION"] = (pcd.dims, np.broadcast_to(
        centre, pcd.shape).copy(), pcd.attrs)
    parts[FIELD_NODE] = field
    return xr.DataTree.from_dict(parts)


def facet_visibilities(node: xr.DataTree, dd_gains: xr.DataTree | xr.Dataset | None,
                       facet: str | int | None = None, *,
                       centre_rad: Sequence[float] | np.ndarray | None = None,
                       data_group: str = "base", update_weights: bool = True,
                       sky: SkyModel | None = None) -> xr.DataTree:
    """A partition node of one facet's data: DD-corrected and phase-shifted, lazily.

    Parameters
    ----------
    node : xarray.DataTree
        A partition node (visibility dataset with ``antenna_xds`` and
        ``field_and_source_base_xds`` children), numpy- or dask-backed.
    dd_gains : xarray.DataTree or xarray.Dataset or None
        The tree of :func:`~daskcal.stages.facets.solve_facets` (its ``total`` node is
        used) or a gains dataset with ``GAIN``, ``GAIN_FLAG`` (gain_time, gain_frequency,
        antenna_name, direction, receptor), cell-edge and ``direction_ra``/``direction_dec``
        coordinates. ``None``: no correction (phase shift only; give ``centre_rad``).
    facet : str or int, optional
        The direction, by name or index along ``direction`` (required with gains).
    centre_rad : array, shape (2,), optional
        (RA, Dec) of the new phase centre, radians (default: the direction's
        ``direction_ra``, ``direction_dec``).
    data_group : str
        Data group of ``node`` to correct and shift.
    update_weights : bool
        Scale the weights by ``|g_pa|^2 |g_qb|^2`` (module notes).
    sky : SkyModel, optional
        Components with ``patch`` naming their direction (``FacetPlan.sky``): if given,
        the *other* directions, corrupted by their gains, are subtracted first.

    Returns
    -------
    xarray.DataTree
        A partition node (all children of ``node``; the field phase centre set to the
        new centre) whose visibility dataset holds ``VISIBILITY`` (complex64), ``FLAG``
        (with the gains' flags), ``WEIGHT`` (float32), ``UVW`` (on the new centre's axes)
        in the single data group ``base``; the other correlated-data variables of
        ``node`` are dropped (they refer to the old centre). Attribute ``facet`` records
        the facet, centres and what was done. Nothing is computed.

    Raises
    ------
    FacetImageError
        For an unknown facet, missing centre or gains without a direction axis;
        :class:`~daskcal.stages.apply.ApplyError` for gains that do not fit the data.
    """
    xds = node.to_dataset(inherit=False)
    old = phase_centre_of(node)
    input_group = data_group
    name, gains, subtracted = None, None, []
    if dd_gains is not None:
        total = _total(dd_gains)
        if facet is None:
            raise FacetImageError("facet_visibilities: name the facet whose gains to apply")
        name, k = _direction(total, facet)
        if centre_rad is None:
            centre_rad = (float(total["direction_ra"].values[k]),
                          float(total["direction_dec"].values[k]))
        if sky is not None:
            xds = subtract(xds, sky, _subtraction_gains(total), old, exclude=[name],
                           config=SubtractConfig(data_group=data_group, output="_RESIDUAL",
                                                 output_data_group="_residual"))
            subtracted = [str(d) for d in total["direction"].values if str(d) != name]
            data_group = "_residual"
        gains = total.isel(direction=k).transpose(*_GDIMS)
    elif sky is not None:
        raise FacetImageError("facet_visibilities: subtracting the other directions (sky) "
                              "needs their dd_gains")
    elif facet is not None:
        name = str(facet)
    if centre_rad is None:
        raise FacetImageError("facet_visibilities: without gains, give centre_rad")
    new = np.asarray(centre_rad, dtype=np.float64).reshape(2)

    data_name, flag_name, weight_name = group_variables(xds, data_group)
    source = f"data group {input_group!r}" + (" minus the other directions" if subtracted
                                              else "")
    if gains is not None:
        xds = apply(xds, gains, ApplyConfig(data_group=data_group, output=_TMP_VAR,
                                            output_data_group=_TMP_GROUP,
                                            propagate_flags=True))
        data_name = _TMP_VAR
    vis = _lazy(xds[data_name].data).rechunk({1: -1, 3: -1})
    flag = _lazy(xds[flag_name].data).rechunk(vis.chunks)
    weight = _lazy(xds[weight_name].data).rechunk(vis.chunks)
    if gains is not None and update_weights:
        weight = _updated_weights(xds, weight_name, gains, vis.chunks)
    uvw = _lazy(xds["UVW"].data).rechunk((vis.chunks[0], -1, -1))
    freq = da.from_array(np.asarray(xds["frequency"].values, np.float64), chunks=(vis.chunks[2],))
    shifted = da.blockwise(_shift_block, "tbfc", vis, "tbfc", uvw, "tbx", freq, "f", old, None,
                           new, None, concatenate=True, dtype=vis.dtype,
                           meta=np.empty((0, 0, 0, 0), vis.dtype))
    _, rotation = shift_geometry(old, new)
    uvw_new = uvw.map_blocks(_rotate_block, rotation, dtype=np.float64)

    drop = [v for v in xds.data_vars if xds[v].dims == VIS_DIMS]
    out = xds.drop_vars(drop)
    out["VISIBILITY"] = (VIS_DIMS, shifted.astype(np.complex64), {"type": "quanta", "units": "Jy"})
    out["FLAG"] = (VIS_DIMS, flag.astype(bool), {"type": "flag"})
    out["WEIGHT"] = (VIS_DIMS, weight.astype(np.float32), {"type": "quanta",
                                                           "units": "unitless"})
    out["UVW"] = (xds["UVW"].dims, uvw_new, xds["UVW"].attrs)
    base = dict(xds.attrs.get("data_groups", {}).get("base", {}))
    what = f"corrected for the DD gains of {name}" if gains is not None else "not corrected"
    base.update({"correlated_data": "VISIBILITY", "flag": "FLAG", "weight": "WEIGHT",
                 "uvw": "UVW", "field_and_source": FIELD_NODE,
                 "description": f"facet {name}: {source} {what}, phase-shifted to "
                                "the facet centre"})
    facet_info = {"name": name, "phase_centre_rad": [float(x) for x in new],
                  "original_phase_centre_rad": [float(x) for x in old],
                  "data_group": input_group,
                  "dd_corrected": gains is not None,
                  "weights_updated": bool(gains is not None and update_weights),
                  "subtracted_directions": subtracted}
    out.attrs = {**xds.attrs, "data_groups": {"base": base}, "facet": facet_info}
    return _partition(node, out, new)


# ----------------------------------------------------------------------------- images


def facet_centre(facets: Facets, k: int, how: Literal["direction", "polygon"] = "direction"
                 ) -> np.ndarray:
    """(RA, Dec) of facet ``k``'s image centre, radians, shape (2,).

    ``direction``: the calibrator direction; ``polygon``: the centre of the polygon's
    bounding box in the tiling's tangent plane.
    """
    if how == "direction" or facets.polygons_lm[k].shape[0] == 0:
        return np.array([facets.ra[k], facets.dec[k]], dtype=np.float64)
    if how != "polygon":
        raise FacetImageError(f"centre must be 'direction' or 'polygon', not {how!r}")
    p = np.asarray(facets.polygons_lm[k])
    lc, mc = 0.5 * (p.min(axis=0) + p.max(axis=0))
    ra, dec = radec_of_lm(lc, mc, *facets.phase_centre_rad)
    return np.array([float(ra), float(dec)])


def facet_npix(facets: Facets, k: int, centre_rad, cell_rad: float, padding: float = 1.2,
               *, n_edge_points: int = 8) -> int:
    """Smallest even image size (pixels) about ``centre_rad`` covering facet ``k`` x ``padding``.

    The polygon (with ``n_edge_points`` extra vertices per edge, since straight edges of
    the tiling's tangent plane bend slightly in the image's) is projected about
    ``centre_rad``; the size is ``2 ceil(padding max(|l|, |m|) / cell_rad)``, at least 16.
    """
    poly = facets.polygons_radec(n_edge_points)[k]
    if poly.shape[0] == 0:
        raise FacetImageError(f"facet {facets.name[k]!r} has an empty polygon")
    c = np.asarray(centre_rad, dtype=np.float64).reshape(2)
    lmn = lmn_of(poly[:, 0], poly[:, 1], *c)
    half = float(np.max(np.abs(lmn[:, :2])))
    return max(16, 2 * math.ceil(padding * half / cell_rad))


def facet_pixel_mask(img: xr.Dataset, polygon_rad=None, tangent_rad=None) -> np.ndarray:
    """Pixels of an image inside a facet polygon, bool (npix_l, npix_m), axis 0 ``l``.

    Parameters
    ----------
    img : xarray.Dataset
        An image with coordinates ``l``, ``m`` (radians about ``phase_centre_rad``), as
        made by :func:`image_facets`.
    polygon_rad, tangent_rad : array, optional
        Polygon vertices (n_vertex, 2) and the tangent point (2,) in which its edges are
        straight, (RA, Dec) radians (default: the image's ``facet_polygon_rad`` and
        ``facet_tangent_rad`` attributes).
    """
    poly = np.asarray(img.attrs["facet_polygon_rad"] if polygon_rad is None else polygon_rad,
                      dtype=np.float64).reshape(-1, 2)
    tangent = np.asarray(img.attrs["facet_tangent_rad"] if tangent_rad is None else tangent_rad,
                         dtype=np.float64).reshape(2)
    pc = np.asarray(img.attrs["phase_centre_rad"], dtype=np.float64).reshape(2)
    l2, m2 = np.meshgrid(img["l"].values, img["m"].values, indexing="ij")
    ra, dec = radec_of_lm(l2.ravel(), m2.ravel(), *pc)
    lmn = lmn_of(ra, dec, *tangent)
    poly_lm = lmn_of(poly[:, 0], poly[:, 1], *tangent)[:, :2]
    inside = point_in_polygon(lmn[:, 0], lmn[:, 1], poly_lm) & (lmn[:, 2] > 0)
    return inside.reshape(l2.shape)


def image_facets(node: xr.DataTree, dd_gains: xr.DataTree | xr.Dataset | None, facets: Facets,
                 config: FacetImageConfig | dict, *, sky: SkyModel | None = None,
                 names: Sequence[str] | None = None,
                 backend: Literal["dask", "numpy"] = "dask") -> list[xr.Dataset]:
    """Image every facet about its centre with its own DD gains (module notes).

    Like :func:`~daskcal.stages.imaging.image` this is an iterative driver: it computes
    (the gains once, then each facet's PSF and one residual per major cycle).

    Parameters
    ----------
    node : xarray.DataTree
        A partition node.
    dd_gains : xarray.DataTree or xarray.Dataset or None
        DD gains (see :func:`facet_visibilities`) with a direction per facet name;
        ``None`` images the facets without DD correction.
    facets : Facets
        The facet tiling (e.g. ``FacetPlan.facets``).
    config : FacetImageConfig or dict
    sky : SkyModel, optional
        Sky model with patches = facet names: with ``config.subtract_others`` the other
        directions are subtracted (with their gains) before each facet is imaged.
    names : sequence of str, optional
        Facets to image (default: all with a non-empty polygon).
    backend : {"dask", "numpy"}
        Passed to :func:`~daskcal.stages.imaging.image`.

    Returns
    -------
    list of xarray.Dataset
        One image per facet, in the order of ``facets`` (or ``names``): the products of
        :func:`~daskcal.stages.imaging.image` with the facet attributes of the module notes.
    """
    cfg = config if isinstance(config, FacetImageConfig) else \
        FacetImageConfig.model_validate(config)
    all_names = [str(n) for n in facets.name]
    if names is None:
        chosen = [n for k, n in enumerate(all_names) if facets.polygons_lm[k].shape[0] >= 3]
    else:
        chosen = [str(n) for n in names]
        unknown = sorted(set(chosen) - set(all_names))
        if unknown:
            raise FacetImageError(f"facets {unknown} are not among {all_names}")
    total = None
    if dd_gains is not None:
        total = _total(dd_gains).compute()  # small: read or solve once, not per major cycle
        have = {str(d) for d in total["direction"].values}
        missing = [n for n in chosen if n not in have]
        if missing:
            raise FacetImageError(f"no DD gains for facets {missing} (gains have "
                                  f"{sorted(have)})")
    subtract_sky = sky if (sky is not None and cfg.subtract_others and total is not None) \
        else None
    images = []
    for name in chosen:
        k = all_names.index(name)
        centre = facet_centre(facets, k, cfg.centre)
        npix = cfg.npix or facet_npix(facets, k, centre, cfg.cell_rad, cfg.padding)
        fnode = facet_visibilities(node, total, name if total is not None else None,
                                   centre_rad=centre, data_group=cfg.data_group,
                                   update_weights=cfg.update_weights, sky=subtract_sky)
        polygon = facets.polygons_radec()[k]
        attrs = {"facet_name": name, "facet_index": k,
                 "facet_polygon_rad": polygon.tolist(),
                 "facet_tangent_rad": [float(x) for x in facets.phase_centre_rad],
                 "facet_direction_rad": [float(facets.ra[k]), float(facets.dec[k])],
                 "dd_corrected": total is not None,
                 "subtracted_directions": fnode.attrs["facet"]["subtracted_directions"]}
        mask = None
        if cfg.mask_to_facet:
            lm = (np.arange(npix) - npix // 2) * cfg.cell_rad
            grid = xr.Dataset(coords={"l": lm, "m": lm},
                              attrs={"phase_centre_rad": list(centre)})
            mask = facet_pixel_mask(grid, polygon, facets.phase_centre_rad)
        img = image(fnode, cfg.image_config(npix), mask=mask, backend=backend)
        img.attrs.update(attrs)
        images.append(img)
    return images


__all__ = ["FacetImageConfig", "FacetImageError", "facet_centre", "facet_npix",
           "facet_pixel_mask", "facet_visibilities", "image_facets", "phase_centre_of"]
