"""The runner's side of QA and products: step summaries, product steps, the weblog.

The runner (:mod:`daskcal.pipeline.runner`) builds a step's lazy QA summaries with
:func:`lazy_step_qa` and computes them with the step's writes; :func:`save_qa` scores
and saves them (``RUN_DIR/qa/NN-name.json`` and ``.zarr``) and returns the short record
kept in provenance. A resumed or skipped step gets its QA from the published output
(:func:`published_step_qa`; a skipped step whose QA file carries its fingerprint reuses
it). :func:`run_product_step` runs ``gains->product`` steps (H5parm export), whose
record ``RUN_DIR/steps/NN-name.json`` lists the files written and lets a rerun skip
them. QA and the weblog never fail a run: their errors are logged and recorded.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import xarray as xr

from daskcal.pipeline.execute import PAUSED_TIMEOUT_S
from daskcal.pipeline.provenance import now_iso
from daskcal.pipeline.recipe import Step

log = logging.getLogger(__name__)

#: Directory of the QA files in a run directory.
QA_DIR = "qa"


def _stem(step: Step) -> str:
    return step.output_name.removesuffix(".zarr")


def lazy_step_qa(step: Step, before: xr.DataTree | None,
                 after: xr.DataTree) -> dict[str, Any] | None:
    """The step's lazy QA summaries (None if they cannot be built; logged).

    Returns
    -------
    dict or None
        ``{"P/NAME": summary}``: Dask collections of a few tasks per data block
        (:class:`daskcal.qa.lazy.LazySummary`) that compute to datasets.
    """
    from daskcal.qa.collect import step_summaries

    try:
        lazy = step_summaries(step.stage.name, step.stage.kind,
                              step.config.model_dump(mode="json"), before, after)
    except Exception as exc:  # QA must not fail a run
        log.warning("step %s: no QA summaries (%s: %s)", step.name, type(exc).__name__, exc)
        return None
    return dict(lazy)


def save_qa(step: Step, run_dir: Path, rec: dict[str, Any],
            summaries: dict[str, Any]) -> dict[str, Any]:
    """Score computed summaries (as :func:`lazy_step_qa` gives them), save them, and return the provenance entry of the QA."""
    from daskcal.qa.collect import save_step_qa, score_step

    try:
        qa = score_step(step.name, step.stage.name, step.stage.kind,
                        step.config.model_dump(mode="json"), summaries, rec["fingerprint"])
        path = save_step_qa(run_dir / QA_DIR, _stem(step), qa, summaries)
    except Exception as exc:  # QA must not fail a run
        log.warning("step %s: QA failed (%s: %s)", step.name, type(exc).__name__, exc)
        return {"score": None, "reason": f"QA failed: {type(exc).__name__}: {exc}"}
    return {"score": qa.score, "reason": qa.reason,
            "file": str(path.relative_to(run_dir))}


def published_step_qa(step: Step, run_dir: Path, rec: dict[str, Any],
                      open_input: Callable[[], xr.DataTree]) -> dict[str, Any]:
    """QA of a step from its published output (reusing a QA file of its fingerprint)."""
    import dask

    from daskcal.qa.collect import load_step_qa

    path = run_dir / QA_DIR / f"{_stem(step)}.json"
    qa = load_step_qa(path)
    if qa is not None and qa.fingerprint == rec["fingerprint"]:
        return {"score": qa.score, "reason": qa.reason, "file": str(path.relative_to(run_dir))}
    try:
        out_path = run_dir / rec["output"]
        if step.stage.produces_gains:
            from daskcal.data.zarr_store import open_zarr

            after = open_zarr(out_path, validate=False)
        else:
            from daskcal.data.open import open_observation

            after = open_observation(out_path)
        lazy = lazy_step_qa(step, open_input(), after)
        if lazy is None:
            return {"score": None, "reason": "no QA summaries"}
        (summaries,) = dask.compute(lazy)
    except Exception as exc:  # QA must not fail a run
        log.warning("step %s: QA failed (%s: %s)", step.name, type(exc).__name__, exc)
        return {"score": None, "reason": f"QA failed: {type(exc).__name__}: {exc}"}
    return save_qa(step, run_dir, rec, summaries)


def _check_product(path: Path) -> bool:
    """Whether a product file reads back (H5parm: with :func:`read_h5parm`)."""
    if not path.is_file():
        return False
    if path.suffix == ".h5":
        from daskcal.data.h5parm import read_h5parm

        try:
            read_h5parm(path)
        except Exception:
            return False
    return True


def run_product_step(step: Step, run_dir: Path, base: dict[str, Any], old: dict[str, Any],
                     open_gains: Callable[[], xr.DataTree],
                     open_vis: Callable[[], xr.DataTree], label: str,
                     echo: Callable[[str], None]) -> dict[str, Any]:
    """Run (or skip) a ``gains->product`` step; its files go to ``RUN_DIR/products``."""
    import dask

    from daskcal.pipeline.registry import StageContext
    from daskcal.qa.collect import product_qa, save_step_qa

    marker = run_dir / "steps" / f"{_stem(step)}.json"
    base = {**base, "output": str(marker.relative_to(run_dir))}
    try:
        done = json.loads(marker.read_text())
    except (OSError, ValueError):
        done = {}
    if (done.get("fingerprint") == base["fingerprint"]
            and all((run_dir / f).is_file() for f in done.get("files", []))):
        echo(f"{label}: unchanged, skipped")
        return {**old, **base, "status": "skipped", "checked": now_iso(),
                "files": done["files"]}
    start, t0 = now_iso(), time.perf_counter()
    gains, vis = open_gains(), open_vis()
    products = run_dir / "products"
    files: list[Path] = []
    # the product's data are read here, by Dask threads in this process: on a cluster
    # the whole table would be gathered into one task on one worker (a worker of a
    # 2 x 512 MiB cluster was killed for memory gathering the gains of a 4.3 GB run)
    with dask.config.set(scheduler="threads"):
        for name, child in gains.children.items():
            if "GAIN" not in child.data_vars:
                continue
            node = vis[name] if name in vis.children else child
            ctx = StageContext(step.name, name, node, output_dir=products)
            written = step.stage(child.to_dataset(inherit=False), step.config, ctx)
            files += [Path(p) for p in written]
    rel = [os.path.relpath(f, run_dir) for f in files]
    tmp = marker.with_name(f".{marker.name}.tmp")
    tmp.write_text(json.dumps({"fingerprint": base["fingerprint"], "files": rel}) + "\n")
    os.replace(tmp, marker)
    elapsed = time.perf_counter() - t0
    echo(f"{label}: wrote {', '.join(rel)} in {elapsed:.1f} s")
    qa = product_qa(step.name, step.stage.name, files,
                    {str(f): _check_product(f) for f in files}, base["fingerprint"])
    qa_path = save_step_qa(run_dir / QA_DIR, _stem(step), qa)
    return {**base, "status": "ran", "start": start, "end": now_iso(),
            "duration_s": round(elapsed, 3), "n_tasks": 0,
            "bytes_written": sum(f.stat().st_size for f in files), "files": rel,
            "qa": {"score": qa.score, "reason": qa.reason,
                   "file": str(qa_path.relative_to(run_dir))}}


def run_qa_summary(run_dir: Path, record: dict[str, Any]) -> dict[str, Any]:
    """The run's overall score from its steps' QA files (see :func:`overall_score`)."""
    from daskcal.qa.collect import load_step_qa
    from daskcal.qa.metrics import overall_score

    steps = []
    for rec in record.get("steps", []):
        f = (rec.get("qa") or {}).get("file")
        qa = load_step_qa(run_dir / f) if f else None
        if qa is not None:
            steps.append(qa)
    return overall_score(steps)


#: Memory a worker needs below its pause threshold to draw weblog pages (matplotlib,
#: the figures, a step's QA summaries), bytes.
WEBLOG_WORKER_MEMORY = 128 * 2**20


def _room_for_pages(client: Any) -> bool:
    """Whether every worker has :data:`WEBLOG_WORKER_MEMORY` below its pause threshold."""
    import dask

    pause = dask.config.get("distributed.worker.memory.pause", 0.8) or 1.0
    try:
        workers = list(client.scheduler_info(n_workers=-1)["workers"].values())
    except Exception:
        return False
    return bool(workers) and all(
        not w.get("memory_limit")
        or w["memory_limit"] * pause - (w.get("metrics") or {}).get("memory", 0)
        >= WEBLOG_WORKER_MEMORY for w in workers)


def build_run_weblog(run_dir: Path, echo: Callable[[str], None], client: Any = None,
                     paused_timeout: float | None = PAUSED_TIMEOUT_S) -> str | None:
    """Build ``RUN_DIR/weblog`` (None and a logged warning if that fails).

    With a distributed ``client`` its workers draw the step pages in parallel, unless
    one of them has less than :data:`WEBLOG_WORKER_MEMORY` left below its pause
    threshold (the pages are then drawn here, one after another, as they are when the
    workers stay paused for ``paused_timeout`` seconds, see
    :func:`daskcal.pipeline.execute.gather_watched`).
    """
    import warnings
    from functools import partial

    from daskcal.pipeline.execute import WorkersPausedError, gather_watched

    try:
        from daskcal.qa.weblog import build_weblog

        with warnings.catch_warnings():
            # matplotlib's layout and legend advice is not a reason to lose the weblog
            warnings.filterwarnings("ignore", category=UserWarning)
            if client is not None and not _room_for_pages(client):
                log.info("weblog: drawn here, the workers are near their memory limit")
                client = None
            gather = None if client is None else partial(
                gather_watched, client, label="weblog", paused_timeout=paused_timeout)
            try:
                index = build_weblog(run_dir, client, gather=gather)
            except WorkersPausedError as exc:
                log.warning("%s: drawing it here", exc)
                index = build_weblog(run_dir)
    except Exception as exc:  # the weblog must not fail a finished run
        log.warning("weblog not built (%s: %s)", type(exc).__name__, exc)
        return None
    echo(f"weblog: {index}")
    return str(index.relative_to(run_dir))


__all__ = ["QA_DIR", "build_run_weblog", "lazy_step_qa", "published_step_qa",
           "run_product_step", "run_qa_summary", "save_qa"]
