"""The runner's side of steps producing images: build, store, export, score.

A step of a ``...->image`` stage calls its stage once per selected partition; the
stage computes (CLEAN is iterative) and returns an in-memory image dataset
(:func:`daskcal.stages.imaging.image`'s layout: ``RESTORED``, ``RESIDUAL``, ``MODEL``,
``DIRTY`` with dims ``(l, m)``, attrs ``phase_centre_rad``, ``cell_rad``, ``bmaj_rad``
...). The runner stores the images as ``steps/NN-name.zarr`` (one node per partition,
published atomically with the step's fingerprint like every step output), exports
them as FITS and PNG/JPG thumbnails into ``RUN_DIR/products`` (atomically, file by
file) and scores them (:func:`image_qa`).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from daskcal import DaskcalError
from daskcal.pipeline.recipe import Step
from daskcal.pipeline.registry import StageContext

log = logging.getLogger(__name__)

def partition_field(node: xr.DataTree) -> str | None:
    """The name of a partition's (first) field, or None if it has no field dataset."""
    from daskcal.data.model import field_xds_of

    try:
        names = np.asarray(field_xds_of(node)["field_name"].values).ravel()
    except KeyError:
        return None
    return str(names[0]) if names.size else None


def selected_partitions(step: Step, obs: xr.DataTree) -> list[str]:
    """The partitions of ``obs`` that ``step`` processes (its ``select``, else all).

    Raises
    ------
    DaskcalError
        When the selection matches no partition (naming the fields present).
    """
    from daskcal.data.model import partition_names

    names = partition_names(obs)
    if step.select is None:
        return names
    chosen = [n for n in names if step.select.matches(n, partition_field(obs[n]))]
    if not chosen:
        have = sorted({f"{n} (field {partition_field(obs[n])})" for n in names})
        raise DaskcalError(f"step {step.name}: select {step.select.model_dump(exclude_none=True)}"
                           f" matches no partition of its input ({', '.join(have)})")
    return chosen


def _plain(value: Any) -> Any:
    """JSON-able attrs (numpy scalars and arrays to Python)."""
    return json.loads(json.dumps(value, default=lambda o: o.tolist()
                                 if hasattr(o, "tolist") else str(o)))


def build_image_tree(step: Step, obs: xr.DataTree, gains: xr.DataTree | None,
                     images: xr.DataTree | None,
                     pick: Callable[[xr.DataTree | None, str, str], xr.Dataset]) -> xr.DataTree:
    """Run the image stage on each selected partition; the images as one tree.

    Parameters
    ----------
    step : Step
    obs : xarray.DataTree
        The step's input visibilities.
    gains, images : xarray.DataTree, optional
        The trees named by the step's ``gains:`` and ``image:``.
    pick : callable
        ``pick(tree, partition, what)`` -> that partition's dataset in ``tree``.
    """
    names = selected_partitions(step, obs)
    datasets: dict[str, xr.Dataset] = {"/": xr.Dataset(attrs={"type": "image_set",
                                                              "partitions": names})}
    for name in names:
        ctx = StageContext(step.name, name, obs[name])
        g = pick(gains, name, "gains") if step.stage.needs_gains else None
        im = pick(images, name, "image") if step.stage.needs_image else None
        result = step.stage(obs[name].to_dataset(inherit=False), step.config, ctx, g, im)
        if not isinstance(result, xr.Dataset):
            raise DaskcalError(f"step {step.name}: stage {step.stage.name} returned a "
                               f"{type(result).__name__}, not an image xarray.Dataset")
        if not _lazy(result):  # snapshot series stay lazy: written region by region
            result = result.compute()
        result.attrs = {k: _plain(v) for k, v in result.attrs.items()}
        result.attrs.setdefault("type", "image")
        result.attrs.setdefault("field_name", partition_field(obs[name]))
        datasets[f"/{name}"] = result
    return xr.DataTree.from_dict(datasets)


def _lazy(xds: xr.Dataset) -> bool:
    import dask.array as da

    return any(isinstance(v.data, da.Array) for v in xds.data_vars.values())


def _series(xds: xr.Dataset) -> bool:
    """Whether an image dataset is a time series (snapshots: no FITS per image)."""
    var = "RESTORED" if "RESTORED" in xds else "DIRTY"
    return "time" in xds[var].dims


def image_partitions(tree: xr.DataTree) -> list[str]:
    """Partitions of an image tree (children holding a ``RESTORED`` or ``DIRTY`` image)."""
    return [k for k, v in tree.children.items()
            if "RESTORED" in v.data_vars or "DIRTY" in v.data_vars]


def write_image_files(step: Step, tree: xr.DataTree, products: Path,
                      obs: xr.DataTree | None = None) -> list[Path]:
    """FITS images and thumbnails of every partition of ``tree`` into ``products``.

    ``STEP-PARTITION-restored.fits`` etc. and ``STEP-PARTITION.png/.jpg``
    (:func:`daskcal.data.fits.write_image_products`, with the observation's metadata
    from the imaged partition of ``obs``).
    """
    from daskcal.data.fits import write_image_products

    files: list[Path] = []
    for part in image_partitions(tree):
        xds = tree[part].to_dataset(inherit=False)
        if _series(xds):
            log.info("step %s: %s is a snapshot series (zarr only, no FITS per image)",
                     step.name, part)
            continue
        node = obs[part] if obs is not None and part in obs.children else None
        written = write_image_products(xds, products, f"{step.name}-{part}", node=node)
        files += list(written.values())
    return files


def _first_plane(x: xr.DataArray) -> xr.DataArray:
    """The first (l, m) plane of a cube or series (the middle channel of a cube)."""
    for dim in x.dims:
        if dim not in ("l", "m"):
            x = x.isel({dim: x.sizes[dim] // 2 if dim == "chan" else 0})
    return x


def image_summary(xds: xr.Dataset, max_pix: int = 256) -> xr.Dataset:
    """A small copy of an image for the weblog (block-averaged to at most ``max_pix``)."""
    var = "RESTORED" if "RESTORED" in xds else "DIRTY"
    img = np.asarray(_first_plane(xds[var]).values, dtype=np.float64)
    f = max(1, math.ceil(max(img.shape) / max_pix))
    n0, n1 = img.shape[0] // f * f, img.shape[1] // f * f
    small = img[:n0, :n1].reshape(n0 // f, f, n1 // f, f).max(axis=(1, 3))
    keep = {k: v for k, v in xds.attrs.items() if k in ("cell_rad", "phase_centre_rad",
                                                         "bmaj_rad", "bmin_rad", "bpa_rad",
                                                         "ref_freq_hz", "field_name")}
    keep["cell_rad"] = float(xds.attrs.get("cell_rad", 0.0)) * f
    return xr.Dataset({"IMAGE": (("l", "m"), small)}, attrs={**keep, "variable": var})


def image_metrics(part: str, xds: xr.Dataset, reference=None) -> list:
    """Scored metrics of one image: rms (vs the thermal noise), dynamic range, restoring
    beam (vs the PSF's curvature) and, with a ``reference`` sky model, the fluxes and
    positions of its brightest sources (:mod:`daskcal.qa.sources`)."""
    from daskcal.qa.metrics import info, score_value
    from daskcal.qa.sources import beam_metric, source_metrics
    from daskcal.stages.imaging.masks import robust_rms

    res = _first_plane(xds["RESIDUAL"] if "RESIDUAL" in xds else xds["DIRTY"])
    values = np.asarray(res.values)
    rms = robust_rms(values[np.isfinite(values)])
    shown = _first_plane(xds["RESTORED"] if "RESTORED" in xds else xds["DIRTY"])
    peak = float(np.nanmax(np.abs(shown.values)))
    out = [info("image_rms", rms, f"residual rms (MAD) {rms:.3g} Jy/beam", partition=part,
                unit="Jy/beam"),
           info("image_peak", peak, f"peak {peak:.4g} Jy/beam", partition=part,
                unit="Jy/beam"),
           info("dynamic_range", peak / rms if rms > 0 else None,
                f"peak / rms = {peak / rms:.4g}" if rms > 0 else "rms is 0", partition=part)]
    var = "RESTORED" if "RESTORED" in xds else "DIRTY"
    planes = int(np.prod([n for d, n in xds[var].sizes.items() if d not in ("l", "m")]))
    if planes > 1:
        out.append(info("n_images", planes, f"{planes} image planes "
                        f"({', '.join(f'{d} {n}' for d, n in xds[var].sizes.items())}); "
                        "metrics of the first (a cube: its middle channel)", partition=part))
    noise = xds.attrs.get("theoretical_noise_jy")
    if noise:
        out.append(score_value("image_rms_ratio", rms / float(noise),
                               f"rms / thermal noise = {rms / float(noise):.3g}",
                               partition=part))
    if xds.attrs.get("bmaj_rad"):
        bmaj, bmin = (math.degrees(float(xds.attrs[k])) * 3600 for k in ("bmaj_rad", "bmin_rad"))
        out.append(info("restoring_beam", bmaj, f"restoring beam {bmaj:.3g}\" x {bmin:.3g}\", "
                        f"PA {math.degrees(float(xds.attrs['bpa_rad'])):.1f} deg",
                        partition=part, unit="arcsec"))
    if "n_iter" in xds.attrs:
        out.append(info("clean_components", xds.attrs["n_iter"],
                        f"{xds.attrs['n_iter']} components in {xds.attrs.get('n_major')} "
                        f"major cycles ({xds.attrs.get('stop_reason') or 'stopped'})",
                        partition=part))
    beam = beam_metric(part, xds)
    if beam is not None:
        out.append(beam)
    if reference is not None and planes == 1 and "RESTORED" in xds:
        out += source_metrics(part, xds, reference)
    return out


def image_qa(step: Step, tree: xr.DataTree, run_dir: Path, fingerprint: str,
             qa_dir: str = "qa") -> dict[str, Any]:
    """Score and save the QA of an image step; the short record kept in provenance."""
    from daskcal.qa.collect import save_step_qa
    from daskcal.qa.metrics import StepQA

    try:
        metrics, summaries = [], {}
        ref_path = getattr(step.config, "reference_sky_model", None)
        reference = None
        if ref_path:
            from daskcal.sky.catalogue import read_catalogue

            reference = read_catalogue(ref_path)
        for part in image_partitions(tree):
            xds = tree[part].to_dataset(inherit=False)
            metrics += image_metrics(part, xds, reference)
            summaries[f"{part}/image"] = image_summary(xds)
        qa = StepQA(step.name, step.stage.name, metrics, fingerprint)
        path = save_step_qa(run_dir / qa_dir, step.output_name.removesuffix(".zarr"), qa,
                            summaries)
    except Exception as exc:  # QA must not fail a run
        log.warning("step %s: QA failed (%s: %s)", step.name, type(exc).__name__, exc)
        return {"score": None, "reason": f"QA failed: {type(exc).__name__}: {exc}"}
    return {"score": qa.score, "reason": qa.reason, "file": str(path.relative_to(run_dir))}


def relpaths(files: list[Path], run_dir: Path) -> list[str]:
    """Paths relative to the run directory."""
    return [os.path.relpath(f, run_dir) for f in files]


__all__ = ["build_image_tree", "image_partitions", "image_qa",
           "image_summary", "partition_field", "relpaths",
           "selected_partitions", "write_image_files"]
