"""Per-step QA: which lazy summaries a step gets, how they are scored, where they are saved.

:func:`step_summaries` builds the lazy summaries of a step from its input and output
trees (by stage kind, plus stage-specific ones: A-team fluxes for ``demix``);
the runner computes them with the step's writes and passes the result to
:func:`score_step`, which turns them into a :class:`~daskcal.qa.metrics.StepQA`
with the scorer registered for the stage (:func:`register_scorer`; the imaging stage
will add one scoring ``image_rms_ratio``). :func:`save_step_qa` writes
``RUN_DIR/qa/NN-name.json`` (metrics) and ``RUN_DIR/qa/NN-name.zarr`` (the summaries,
which the weblog plots).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from daskcal.qa.lazy import LazySummary
from daskcal.qa.metrics import Metric, StepQA, info, score_value
from daskcal.qa.summary import (
    antenna_flag_fraction,
    ateam_summary,
    flag_only_summary,
    flagged_solutions_summary,
    gains_summary,
    visibility_summary,
)

#: ``scorer(partition, summaries, config) -> list of Metric`` by stage name.
Scorer = Callable[[str, Mapping[str, xr.Dataset], Mapping[str, Any]], list[Metric]]
_SCORERS: dict[str, Scorer] = {}
#: Separator of partition and summary name in the keys of a summary mapping.
SEP = "/"


def register_scorer(stage: str) -> Callable[[Scorer], Scorer]:
    """Decorator registering the scorer of a stage (replaces the generic one)."""
    def deco(fn: Scorer) -> Scorer:
        _SCORERS[stage] = fn
        return fn
    return deco


def _partitions(tree: xr.DataTree, var: str) -> list[str]:
    return [name for name, child in tree.children.items() if var in child.data_vars]


def _decimal_year(unix_s: float) -> float:
    import datetime as _dt

    t = _dt.datetime.fromtimestamp(unix_s, _dt.UTC)
    start = _dt.datetime(t.year, 1, 1, tzinfo=_dt.UTC)
    end = _dt.datetime(t.year + 1, 1, 1, tzinfo=_dt.UTC)
    return t.year + (t - start).total_seconds() / (end - start).total_seconds()


def step_summaries(stage: str, kind: str, config: Mapping[str, Any],
                   before: xr.DataTree | None, after: xr.DataTree) -> dict[str, LazySummary]:
    """The lazy summaries of a step (``{"PARTITION/NAME": summary}``; ``dask.compute``
    makes each an :class:`xarray.Dataset`).

    Parameters
    ----------
    stage, kind : str
        The stage's name and kind.
    config : mapping
        The step's config (JSON data).
    before : xarray.DataTree, optional
        The step's input (visibilities or gains).
    after : xarray.DataTree
        The step's output.
    """
    out: dict[str, LazySummary] = {}
    if kind.endswith("->visibility"):
        for name in _partitions(after, "VISIBILITY"):
            xds = after[name].to_dataset(inherit=False)
            out[f"{name}{SEP}vis"] = visibility_summary(xds)
            if before is not None and name in before.children and "FLAG" in before[name]:
                bxds = before[name].to_dataset(inherit=False)
                out[f"{name}{SEP}before"] = flag_only_summary(bxds)
                if stage == "demix" and config.get("enabled", True):
                    pc = _phase_centre(after[name])
                    if pc is not None:
                        epoch = _decimal_year(float(bxds["time"].values[0]))
                        src = list(config.get("sources", []))
                        if src:
                            out[f"{name}{SEP}ateam_before"] = ateam_summary(bxds, src, pc, epoch)
                            out[f"{name}{SEP}ateam_after"] = ateam_summary(xds, src, pc, epoch)
    elif kind.endswith("->gains"):
        for name in _partitions(after, "GAIN"):
            out[f"{name}{SEP}gains"] = gains_summary(after[name].to_dataset(inherit=False))
            if (before is not None and name in before.children
                    and "GAIN_FLAG" in before[name]):
                f = before[name].to_dataset(inherit=False)["GAIN_FLAG"]
                out[f"{name}{SEP}before"] = flagged_solutions_summary(f)
    return out


def _phase_centre(node: xr.DataTree) -> np.ndarray | None:
    from daskcal.data.model import field_xds_of

    try:
        fxds = field_xds_of(node)
        return np.asarray(fxds["FIELD_PHASE_CENTER_DIRECTION"].values,
                          np.float64).reshape(-1, 2)[0]
    except (KeyError, ValueError):
        return None


def split(summaries: Mapping[str, xr.Dataset]) -> dict[str, dict[str, xr.Dataset]]:
    """``{"P/NAME": ds}`` -> ``{"P": {"NAME": ds}}``."""
    out: dict[str, dict[str, xr.Dataset]] = {}
    for key, ds in summaries.items():
        part, _, name = key.rpartition(SEP)
        out.setdefault(part, {})[name] = ds
    return out


def _scalar(ds: xr.Dataset | None, name: str) -> float | None:
    if ds is None or name not in ds:
        return None
    return float(np.asarray(ds[name].values))


# ----------------------------------------------------------------------------- scorers


def _flag_metrics(part: str, s: Mapping[str, xr.Dataset]) -> list[Metric]:
    vis, before = s.get("vis"), s.get("before")
    out: list[Metric] = []
    after_f = _scalar(vis, "FLAG_FRACTION")
    if after_f is None:
        return out
    out.append(score_value("total_flag_fraction", after_f,
                           f"{100 * after_f:.1f} % of the samples flagged after the step",
                           partition=part))
    if before is not None and before.sizes.get("baseline_id") == vis.sizes.get("baseline_id") \
            and before.attrs.get("n_samples") == vis.attrs.get("n_samples"):
        before_f = _scalar(before, "FLAG_FRACTION") or 0.0
        new = max(0.0, after_f - before_f)
        out.append(score_value("new_flag_fraction", new,
                               f"{100 * new:.1f} % newly flagged ({100 * before_f:.1f} % -> "
                               f"{100 * after_f:.1f} %)", partition=part))
        ant_after = antenna_flag_fraction(vis)
        ant_before = antenna_flag_fraction(before.assign_coords(
            baseline_antenna1_name=vis["baseline_antenna1_name"],
            baseline_antenna2_name=vis["baseline_antenna2_name"]))
        diff = (ant_after - ant_before).clip(min=0)
        worst = str(diff["antenna_name"].values[int(np.argmax(diff.values))])
        out.append(score_value("antenna_new_flag_fraction", float(diff.max()),
                               f"antenna {worst}: {100 * float(diff.max()):.1f} % newly "
                               "flagged", partition=part))
    return out


def _generic_visibility(part: str, s: Mapping[str, xr.Dataset],
                        config: Mapping[str, Any]) -> list[Metric]:
    return _flag_metrics(part, s)


@register_scorer("average")
def _score_average(part: str, s: Mapping[str, xr.Dataset],
                   config: Mapping[str, Any]) -> list[Metric]:
    out = _flag_metrics(part, s)
    vis, before = s.get("vis"), s.get("before")
    if vis is None or before is None:
        return out
    achieved = before.attrs["n_samples"] / max(vis.attrs["n_samples"], 1)
    out.append(info("data_volume_bytes", vis.attrs["data_bytes"],
                    f"data volume {before.attrs['data_bytes'] / 1e6:.2f} MB -> "
                    f"{vis.attrs['data_bytes'] / 1e6:.2f} MB ({achieved:.2f}x fewer "
                    "samples)", partition=part, unit="B"))
    ft, fc = config.get("time_factor"), config.get("freq_factor")
    if isinstance(ft, int) and isinstance(fc, int) and ft * fc > 0:
        shortfall = max(0.0, 1.0 - achieved / (ft * fc))
        out.append(score_value("averaging_shortfall", shortfall,
                               f"reduction {achieved:.2f}x of the requested {ft * fc}x",
                               partition=part))
    return out


@register_scorer("demix")
def _score_demix(part: str, s: Mapping[str, xr.Dataset],
                 config: Mapping[str, Any]) -> list[Metric]:
    out = _flag_metrics(part, s)
    b, a = s.get("ateam_before"), s.get("ateam_after")
    if not config.get("enabled", True):
        return [*out, info("demix_enabled", 0, "demixing disabled: data passed through",
                           partition=part)]
    if b is None or a is None:
        return out
    noise_floor = float(config.get("flux_threshold_jy") or 0.0)
    n_skip = 0
    for src in b["source"].values:
        fb = float(b["ATEAM_FLUX"].sel(source=src))
        fa = float(a["ATEAM_FLUX"].sel(source=src))
        ratio = fa / fb if fb > 0 else 0.0
        if not np.isfinite(fb) or fb <= max(noise_floor, 0.0) or ratio >= 0.9:
            n_skip += 1
        out.append(score_value("demix_residual_ratio", min(ratio, 1.0) if fb > 0 else 0.0,
                               f"{src}: apparent flux {fb:.3g} Jy -> {fa:.3g} Jy",
                               partition=part) if ratio < 0.9 else
                   info("demix_residual_ratio", ratio,
                        f"{src}: apparent flux {fb:.3g} Jy -> {fa:.3g} Jy (not subtracted: "
                        "below the selection limits or absent)", partition=part))
    n = b.sizes["source"]
    out.append(info("demix_skipped_fraction", n_skip / max(n, 1),
                    f"{n_skip} of {n} A-team sources not subtracted", partition=part))
    return out


def _gain_metrics(part: str, s: Mapping[str, xr.Dataset]) -> list[Metric]:
    g = s.get("gains")
    out: list[Metric] = []
    if g is None:
        return out
    fl = _scalar(g, "FLAGGED_SOLUTIONS") or 0.0
    out.append(score_value("flagged_solution_fraction", fl,
                           f"{100 * fl:.1f} % of the solutions flagged", partition=part))
    sc = _scalar(g, "AMP_SCATTER")
    if sc is not None and np.isfinite(sc):
        out.append(score_value("gain_amplitude_scatter", sc,
                               f"amplitude scatter over antennas {100 * sc:.1f} %",
                               partition=part))
    if "CHI2" in g:
        chi2 = np.asarray(g["CHI2"].values, np.float64)
        chi2 = chi2[np.isfinite(chi2) & (chi2 > 0)]
        if chi2.size:
            med = float(np.median(chi2))
            out.append(score_value("chi2_excess", max(med, 1 / med),
                                   f"median reduced chi-squared {med:.3g}", partition=part))
    if "CONVERGED" in g:
        unc = 1.0 - float(np.mean(np.asarray(g["CONVERGED"].values)))
        out.append(score_value("unconverged_fraction", unc,
                               f"{100 * unc:.1f} % of the solution cells did not converge",
                               partition=part))
    return out


def _generic_gains(part: str, s: Mapping[str, xr.Dataset],
                   config: Mapping[str, Any]) -> list[Metric]:
    return _gain_metrics(part, s)


@register_scorer("smooth")
def _score_smooth(part: str, s: Mapping[str, xr.Dataset],
                  config: Mapping[str, Any]) -> list[Metric]:
    out = [m for m in _gain_metrics(part, s) if m.name != "flagged_solution_fraction"]
    before, g = s.get("before"), s.get("gains")
    if before is not None and g is not None:
        new = max(0.0, (_scalar(g, "FLAGGED_SOLUTIONS") or 0.0)
                  - (_scalar(before, "FLAGGED_SOLUTIONS") or 0.0))
        out.append(score_value("smooth_new_flag_fraction", new,
                               f"{100 * new:.1f} % of the solutions flagged as outliers",
                               partition=part))
    return out


def score_step(step: str, stage: str, kind: str, config: Mapping[str, Any],
               summaries: Mapping[str, xr.Dataset], fingerprint: str = "") -> StepQA:
    """Score computed summaries (see :func:`step_summaries`) into a :class:`StepQA`."""
    if stage in _SCORERS:
        scorer = _SCORERS[stage]
    elif kind.endswith("->gains"):
        scorer = _generic_gains
    else:
        scorer = _generic_visibility
    metrics: list[Metric] = []
    for part, s in split(summaries).items():
        metrics += scorer(part, s, config)
    return StepQA(step, stage, metrics, fingerprint)


def product_qa(step: str, stage: str, files: list[Path], checks: Mapping[str, bool],
               fingerprint: str = "") -> StepQA:
    """QA of a product step: every file exists and reads back (``checks``: file -> ok)."""
    metrics = []
    for f in files:
        ok = bool(checks.get(str(f), f.exists()))
        metrics.append(Metric("product_readable", float(f.stat().st_size) if f.exists()
                              else None, 1.0 if ok else 0.0,
                              f"{f.name}: {'written and read back' if ok else 'unreadable'}",
                              unit="B"))
    return StepQA(step, stage, metrics, fingerprint)


# ----------------------------------------------------------------------------- storage


def save_step_qa(qa_dir: str | os.PathLike, stem: str, qa: StepQA,
                 summaries: Mapping[str, xr.Dataset] | None = None) -> Path:
    """Write ``qa_dir/STEM.json`` (and ``qa_dir/STEM.zarr`` with the summaries)."""
    from daskcal.data.zarr_store import quiet_zarr

    qa_dir = Path(qa_dir)
    qa_dir.mkdir(parents=True, exist_ok=True)
    data = qa.to_json()
    if summaries:
        store = qa_dir / f"{stem}.zarr"
        shutil.rmtree(store, ignore_errors=True)
        tree = xr.DataTree.from_dict({f"/{k}": v for k, v in summaries.items()})
        with quiet_zarr():
            tree.to_zarr(store, mode="w", zarr_format=3, consolidated=True)
        data["summaries"] = store.name
    path = qa_dir / f"{stem}.json"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)
    return path


def load_step_qa(path: str | os.PathLike) -> StepQA | None:
    """The QA of a step from its JSON file (None if absent or unreadable)."""
    try:
        return StepQA.from_json(json.loads(Path(path).read_text()))
    except (OSError, ValueError, KeyError):
        return None


def load_summaries(path: str | os.PathLike) -> dict[str, xr.Dataset]:
    """The summaries saved by :func:`save_step_qa` (``{"P/NAME": dataset}``, in memory)."""
    path = Path(path)
    if not path.is_dir():
        return {}
    tree = xr.open_datatree(path, engine="zarr", consolidated=True)
    out = {}
    for node in tree.subtree:
        if node.data_vars:
            out[node.path.strip("/")] = node.to_dataset(inherit=False).load()
    tree.close()
    return out


__all__ = ["SEP", "load_step_qa", "load_summaries", "product_qa", "register_scorer",
           "save_step_qa", "score_step", "split", "step_summaries"]
