"""Recipe adapters of the imaging stages: image (+ primary beam), facet solve, facet image.

The FACTOR/Rapthor loop as recipe steps::

    image_di      image            DI image; its CLEAN components are the sky model
    facet_solve   facet_solve      components -> patches -> calibrator directions and
                                   facets (:func:`~daskcal.stages.facets.plan_facets`),
                                   joint fast-phase + slow-complex DD solve
    facet_image   facet_image      per facet: subtract the other directions, correct with
                                   its gains, phase-shift, image; then the field mosaic
                                   ("fieldmosaic") with primary-beam correction

``facet_solve`` and ``facet_image`` derive the same sky model from the same image
(:func:`sky_from_image`); the facets are rebuilt from the directions stored with the
gains and ``field_size_deg`` (which both steps must share: the recipe says it once
per step, and ``facet_image`` checks it against the gains' attribute).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import xarray as xr
from pydantic import Field

from daskcal import DaskcalError
from daskcal.pipeline.registry import StageContext, StageSpec
from daskcal.stages.facets.config import FacetConfig
from daskcal.stages.imaging.config import (
    CubeConfig,
    FacetImageConfig,
    ImageConfig,
    SnapshotConfig,
)
from daskcal.stages.imaging.primary_beam import PrimaryBeamConfig

_BACKEND = Field("auto", description="Where the major cycles grid: 'dask' (lazy, per chunk: "
                "memory bounded by the chunks; the data are re-read every cycle), 'numpy' "
                "(the partition loaded once), 'auto' (numpy below in_memory_mb).")
_IN_MEMORY = Field(2048.0, gt=0, description="Largest memory (MB) backend 'auto' lets the "
                   "in-memory imager take: it needs about IN_MEMORY_BYTES_PER_SAMPLE (128) "
                   "bytes per (time, baseline, channel) sample of the imaged product.")
_REFERENCE = Field(None, description="Reference sky model (BBS/makesourcedb, or a .csv "
                   "catalogue) whose brightest point sources the step's QA finds in the image: "
                   "fluxes against the model and positional offsets, scored in the weblog "
                   "(daskcal.qa.sources); none: no comparison.")


class ImageStepConfig(ImageConfig):
    """Settings of the ``image`` step: imaging and CLEAN, and an optional primary beam."""

    primary_beam: PrimaryBeamConfig | None = Field(None, description="Primary beam: adds "
                                                   "PB and RESTORED_PBCOR (none: no "
                                                   "correction).")
    backend: Literal["auto", "dask", "numpy"] = _BACKEND
    in_memory_mb: float = _IN_MEMORY
    reference_sky_model: str | None = _REFERENCE


#: Memory of the in-memory imager per (time, baseline, channel) sample of the imaged
#: product (bytes): visibility (complex128) 16, imaging weight 8, flag 1, the gridder's
#: index and phase factors ~64 (:class:`daskcal.kernels.gridding.prepared.PreparedVis`),
#: the prediction in index order 16, and slack for the load's temporaries.
IN_MEMORY_BYTES_PER_SAMPLE = 128


def in_memory_bytes(xds: xr.Dataset) -> int:
    """Estimated memory (bytes) of imaging a partition in memory (backend ``numpy``)."""
    n = 1
    for d in ("time", "baseline_id", "frequency"):
        n *= int(xds.sizes.get(d, 1))
    return n * IN_MEMORY_BYTES_PER_SAMPLE


def choose_backend(xds: xr.Dataset, backend: str, in_memory_mb: float) -> str:
    """``backend``, with ``auto`` resolved by the in-memory imager's estimated memory
    (:func:`in_memory_bytes`, whatever other data variables the partition carries)."""
    if backend != "auto":
        return backend
    return "numpy" if in_memory_bytes(xds) <= in_memory_mb * 1e6 else "dask"


def driver_threads() -> int:
    """Threads the in-memory imager's FFTs may use in this (the driver's) process.

    The cluster's worker threads are idle while the driver images a partition in memory,
    so it uses as many (the distributed client's total; Dask's ``num_workers`` or the
    cores without one), capped by this machine's cores.
    """
    import os
    import sys

    cores = os.cpu_count() or 1
    try:
        if "distributed" not in sys.modules:  # no client then; importing it costs ~0.2 s
            raise ImportError
        from distributed import get_client

        n = sum(get_client().nthreads().values())
    except (ImportError, ValueError):
        import dask

        n = dask.config.get("num_workers", None) or cores
    return max(1, min(int(n), cores))


def _in_memory_threads(backend: str):
    """``scipy.fft.set_workers`` for the in-memory backend (nothing for Dask's)."""
    import contextlib

    import scipy.fft

    return scipy.fft.set_workers(driver_threads()) if backend == "numpy" else \
        contextlib.nullcontext()


class FacetSolveStepConfig(FacetConfig):
    """Settings of the ``facet_solve`` step: the sky model from a CLEAN model image, the
    calibrator selection and facets, and the DD solves."""

    min_component_jy: float = Field(0.0, ge=0, description="Leave CLEAN components "
                                    "fainter than this (absolute value) out of the sky model.")
    merge_radius_arcsec: float = Field(0.0, ge=0, description="Merge CLEAN components "
                                       "within this of a brighter one into one point at "
                                       "their flux-weighted centre (sky_from_image), arcsec; "
                                       "0: one component per pixel.")


class FacetImageStepConfig(FacetImageConfig):
    """Settings of the ``facet_image`` step: facet images and their mosaic."""

    field_size_deg: float = Field(5.0, gt=0, description="Side of the field tiled by the "
                                  "facets, degrees (as in the facet_solve step).")
    min_component_jy: float = Field(0.0, ge=0, description="As in the facet_solve step "
                                    "(the sky model subtracted per facet).")
    merge_radius_arcsec: float = Field(0.0, ge=0, description="As in the facet_solve step.")
    primary_beam: PrimaryBeamConfig | None = Field(None, description="Primary beam of the "
                                                   "mosaic (none: no correction).")
    backend: Literal["auto", "dask", "numpy"] = _BACKEND
    in_memory_mb: float = _IN_MEMORY
    reference_sky_model: str | None = _REFERENCE


def sky_from_image(image_xds: xr.Dataset, min_flux_jy: float = 0.0,
                   merge_radius_rad: float = 0.0):
    """The CLEAN components of an image as a point-source sky model.

    Parameters
    ----------
    image_xds : xarray.Dataset
        An image (``MODEL`` in Jy/pixel, dims ``(l, m)``; attrs ``phase_centre_rad``,
        ``cell_rad``, ``ref_freq_hz``).
    min_flux_jy : float
        Components with ``|S| <`` this are left out.
    merge_radius_rad : float
        If positive, components within this of a brighter one are merged into one point
        at their flux-weighted centre (:func:`daskcal.sky.catalogue.merge_components`),
        radians.

    Returns
    -------
    SkyModel
        One flat-spectrum point component per non-zero model pixel, at the pixel's
        direction (SIN projection), reference frequency the image's (or per merged group).
    """
    from daskcal.data.geometry import radec_of_lm
    from daskcal.sky.model import SkyModel

    model = np.asarray(image_xds["MODEL"].values, dtype=np.float64)
    cell = float(image_xds.attrs["cell_rad"])
    ra0, dec0 = (float(x) for x in image_xds.attrs["phase_centre_rad"])
    i, j = np.nonzero((model != 0) & (np.abs(model) >= min_flux_jy))
    n0, n1 = model.shape
    ra, dec = radec_of_lm((i - n0 // 2) * cell, (j - n1 // 2) * cell, ra0, dec0)
    sky = SkyModel.from_components(
        name=[f"cc{a}_{b}" for a, b in zip(i, j, strict=True)], ra=np.atleast_1d(ra),
        dec=np.atleast_1d(dec), stokes_i=model[i, j],
        ref_freq=float(image_xds.attrs["ref_freq_hz"]))
    if merge_radius_rad > 0:
        from daskcal.sky.catalogue import merge_components

        sky = merge_components(sky, merge_radius_rad)
    return sky


def _model_sky(image_xds: xr.Dataset, config):
    """The sky model of the facet steps (the same for the solve and the imaging)."""
    return sky_from_image(image_xds, config.min_component_jy,
                          math.radians(config.merge_radius_arcsec / 3600.0))


def _centre(context: StageContext) -> np.ndarray:
    from daskcal.pipeline.builtin import phase_centre

    return phase_centre(context)


def _image(xds: xr.Dataset, config: ImageStepConfig, context: StageContext) -> xr.Dataset:
    from daskcal.stages.imaging import image
    from daskcal.stages.imaging.primary_beam import primary_beam

    backend = choose_backend(xds, config.backend, config.in_memory_mb)
    with _in_memory_threads(backend):
        img = image(context.node, config, backend=backend)
    if config.primary_beam is not None:
        img = primary_beam(img, context.node, config.primary_beam)
    return img


def _facet_solve(xds: xr.Dataset, image_xds: xr.Dataset, config: FacetSolveStepConfig,
                 context: StageContext) -> xr.Dataset:
    from daskcal.stages.facets import plan_facets, solve_facets

    centre = _centre(context)
    sky = _model_sky(image_xds, config)
    if sky.n_source == 0:
        raise DaskcalError(f"step {context.step}: the model image has no CLEAN components")
    base = FacetConfig.model_validate(config.model_dump(exclude={"min_component_jy",
                                                                 "merge_radius_arcsec"}))
    plan = plan_facets(sky, centre, base, freq_hz=float(image_xds.attrs["ref_freq_hz"]))
    total = solve_facets(xds, plan, centre, base)["total"].to_dataset(inherit=False)
    return total.assign_attrs(field_size_deg=config.field_size_deg,
                              n_components=int(sky.n_source))


def _stitch_model(images: list[xr.Dataset], masks: list[np.ndarray], centre, npix: int,
                  cell: float) -> np.ndarray:
    """Each facet's CLEAN components inside its facet, on the field grid (Jy/pixel).

    A component at fractional field pixel ``(p, q)`` is shared bilinearly among the four
    pixels around it, so that the flux and the flux-weighted position of every group of
    components are kept (rounding to the nearest pixel moved each source by up to half a
    pixel per self-calibration round: the phase-only solves adopt the model's positions).
    """
    from daskcal.data.geometry import lmn_of, radec_of_lm

    out = np.zeros((npix, npix))
    for img, inside in zip(images, masks, strict=True):
        model = np.asarray(img["MODEL"].values, dtype=np.float64)
        i, j = np.nonzero((model != 0) & inside)
        if not i.size:
            continue
        c = float(img.attrs["cell_rad"])
        n0, n1 = model.shape
        ra, dec = radec_of_lm((i - n0 // 2) * c, (j - n1 // 2) * c, *img.attrs["phase_centre_rad"])
        lmn = lmn_of(np.atleast_1d(ra), np.atleast_1d(dec), *centre)
        x = lmn[:, 0] / cell + npix // 2
        y = lmn[:, 1] / cell + npix // 2
        p0, q0 = np.floor(x).astype(int), np.floor(y).astype(int)
        fx, fy = x - p0, y - q0
        flux = model[i, j]
        for dp, dq, w in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)),
                          (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
            p, q = p0 + dp, q0 + dq
            ok = (p >= 0) & (p < npix) & (q >= 0) & (q < npix) & (w > 0)
            np.add.at(out, (p[ok], q[ok]), flux[ok] * w[ok])
    return out


def _facet_image(xds: xr.Dataset, gains: xr.Dataset, image_xds: xr.Dataset,
                 config: FacetImageStepConfig, context: StageContext) -> xr.Dataset:
    from daskcal.sky.facets import make_facets
    from daskcal.stages.imaging.facet_image import facet_pixel_mask, image_facets
    from daskcal.stages.imaging.mosaic import mosaic
    from daskcal.stages.imaging.primary_beam import primary_beam

    centre = _centre(context)
    solved_size = gains.attrs.get("field_size_deg")
    if solved_size is not None and not math.isclose(float(solved_size), config.field_size_deg):
        raise DaskcalError(f"step {context.step}: field_size_deg {config.field_size_deg} "
                           f"differs from the facet solve's {solved_size}")
    names = [str(n) for n in gains["direction"].values]
    facets = make_facets(names, np.asarray(gains["direction_ra"].values),
                         np.asarray(gains["direction_dec"].values), centre,
                         math.radians(config.field_size_deg))
    sky = facets.assign(_model_sky(image_xds, config))
    base = FacetImageConfig.model_validate(config.model_dump(
        exclude={"field_size_deg", "min_component_jy", "merge_radius_arcsec", "primary_beam",
                 "backend", "in_memory_mb", "reference_sky_model"}))
    backend = choose_backend(xds, config.backend, config.in_memory_mb)
    with _in_memory_threads(backend):
        images = image_facets(context.node, gains, facets, base, sky=sky, backend=backend)
    npix = int(image_xds.sizes["l"])
    cell = float(image_xds.attrs["cell_rad"])
    regions = [np.asarray(img.attrs["facet_polygon_rad"]) for img in images]
    field = mosaic(images, centre_rad=tuple(centre), npix=npix, cell_rad=cell,
                   regions=regions, region_frame="radec")
    masks = [facet_pixel_mask(img) for img in images]
    field["MODEL"] = (("l", "m"), _stitch_model(images, masks, centre, npix, cell),
                      {"units": "Jy/pixel"})
    field.attrs.update({"n_iter": int(sum(img.attrs.get("n_iter", 0) for img in images)),
                        "n_major": int(max(img.attrs.get("n_major", 0) for img in images)),
                        "facets": names, "correlation": images[0].attrs.get("correlation",
                                                                            "I")})
    for key in ("theoretical_noise_jy",):
        vals = [img.attrs[key] for img in images if key in img.attrs]
        if vals:
            field.attrs[key] = float(np.median(vals))
    if config.primary_beam is not None:
        field = primary_beam(field, context.node, config.primary_beam)
    return field


def _cube(xds: xr.Dataset, config, context: StageContext) -> xr.Dataset:
    from daskcal.stages.imaging.cube import image_cube

    return image_cube(context.node, config)


def _snapshots(xds: xr.Dataset, config, context: StageContext) -> xr.Dataset:
    """Lazy (time, subband, l, m) images: the runner writes them region by region."""
    from daskcal.stages.imaging.snapshots import snapshot_images

    return snapshot_images(context.node, config)


IMAGE = StageSpec("image", ImageStepConfig, _image, "visibility->image",
                  "weighting, w-stacking/projection gridding, CLEAN, primary beam; FITS "
                  "and thumbnails", file_fields=("reference_sky_model",))
FACET_SOLVE = StageSpec("facet_solve", FacetSolveStepConfig, _facet_solve,
                        "image+visibility->gains",
                        "calibrator directions from a CLEAN model image, facets, joint DD "
                        "solves")
FACET_IMAGE = StageSpec("facet_image", FacetImageStepConfig, _facet_image,
                        "image+gains+visibility->image",
                        "facet images with their DD gains (others subtracted) and the "
                        "primary-beam-corrected field mosaic", file_fields=("reference_sky_model",))

CUBE = StageSpec("cube", CubeConfig, _cube, "visibility->image",
                 "spectral cube on a frequency or velocity axis (TOPO/LSRK/BARY) and its "
                 "continuum image")
SNAPSHOTS = StageSpec("snapshots", SnapshotConfig, _snapshots, "visibility->image",
                      "one image per time interval per subband (lazy, one task each)")

__all__ = ["CUBE", "FACET_IMAGE", "FACET_SOLVE", "IMAGE", "SNAPSHOTS", "FacetImageStepConfig",
           "FacetSolveStepConfig", "ImageStepConfig", "sky_from_image"]
