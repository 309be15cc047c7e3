"""The step runner: executes a recipe step by step, resumably, with provenance.

Run directory layout::

    RUN_DIR/provenance.json              the run record (daskcal.pipeline.provenance)
    RUN_DIR/steps/01-flag.zarr           each step's output (visibilities or gains)
    RUN_DIR/steps/01-flag.zarr.partial   ... while it is being written
    RUN_DIR/steps/01-flag.zarr.progress  ... and its region markers
    RUN_DIR/products/NAME.zarr           symbolic links to the products' step outputs
    RUN_DIR/products/*.h5                files written by product steps (h5parm)
    RUN_DIR/steps/NN-name.json           a product step's record (fingerprint, files)
    RUN_DIR/qa/NN-name.json              each step's QA metrics and score (daskcal.qa)
    RUN_DIR/qa/NN-name.zarr              ... and the small summaries its plots show
    RUN_DIR/weblog/index.html            the weblog (daskcal.qa.weblog), built at the end

Each step reads its input from the previous step's published store (or the input
observation), builds its lazy graph with the stage, and writes it region by region
(:mod:`daskcal.pipeline.checkpoint`). A step whose published output carries its
current fingerprint is skipped; a step whose partial output carries it resumes from
the regions not yet written. Nothing is computed outside :func:`run_recipe`'s calls
to the scheduler. A step's QA summaries (:mod:`daskcal.qa.collect`: a few small
reductions) are computed in the same call as its writes; a resumed or skipped step
gets them from its published output.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import xarray as xr

from daskcal import DaskcalError
from daskcal._files import pid_alive
from daskcal.pipeline.checkpoint import STEP_ATTR, StepStore, store_bytes
from daskcal.pipeline.execute import (
    PAUSED_TIMEOUT_S,
    STEP_GRAPH_CONFIG,
    WorkersPausedError,
    compute_step,
    count_tasks,
)
from daskcal.pipeline.imagestep import (
    build_image_tree,
    image_partitions,
    image_qa,
    relpaths,
    selected_partitions,
    write_image_files,
)
from daskcal.pipeline.provenance import (
    PROVENANCE_FORMAT,
    canonical_hash,
    now_iso,
    package_versions,
    path_fingerprint,
    peak_memory,
    read_provenance,
    step_fingerprint,
    write_provenance,
)
from daskcal.pipeline.recipe import Recipe, RecipeError, Step, load_recipe
from daskcal.pipeline.registry import StageContext
from daskcal.pipeline.stepqa import (
    build_run_weblog,
    lazy_step_qa,
    published_step_qa,
    run_product_step,
    run_qa_summary,
    save_qa,
)

log = logging.getLogger(__name__)

#: Site names that run on Dask's threaded scheduler in this process (no cluster).
THREADED_SITES: tuple[str, ...] = ("threads", "sync", "synchronous")


class RunError(DaskcalError, RuntimeError):
    """A run that cannot start or continue (one line)."""


@dataclass
class RunResult:
    """What :func:`run_recipe` did.

    Attributes
    ----------
    run_dir : pathlib.Path
    provenance : dict
        The run record as written to ``provenance.json``.
    products : dict of str to pathlib.Path
        Product name (step) -> its published store.
    outputs : dict of str to pathlib.Path
        Every step's published store.
    """

    run_dir: Path
    provenance: dict[str, Any]
    products: dict[str, Path] = field(default_factory=dict)
    outputs: dict[str, Path] = field(default_factory=dict)

    def step_record(self, name: str) -> dict[str, Any]:
        """The provenance record of step ``name``."""
        for rec in self.provenance.get("steps", []):
            if rec["name"] == name:
                return rec
        raise KeyError(name)


def parse_inputs(items: Sequence[str]) -> dict[str, str]:
    """``["target=obs.zarr", ...]`` -> ``{"target": "obs.zarr"}``."""
    out = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise RunError(f"--input {item!r}: expected NAME=PATH")
        out[name.strip()] = path.strip()
    return out


@contextlib.contextmanager
def _lock(run_dir: Path) -> Iterator[None]:
    """Refuse a second live run on the same directory; take over a dead run's lock."""
    lock = run_dir / ".lock"
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                pid = int(lock.read_text().strip() or 0)
            except (OSError, ValueError):
                pid = 0
            if pid and pid != os.getpid() and pid_alive(pid):
                raise RunError(f"{run_dir}: another run (pid {pid}) is using it") from None
            lock.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        break
    else:  # pragma: no cover - a race with another starting run
        raise RunError(f"{run_dir}: cannot take the lock {lock}")
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


@contextlib.contextmanager
def _scheduler(site_name: str, echo: Callable[[str], None]) -> Iterator[Any]:
    """Yield a distributed client of the site, or None for the threaded scheduler."""
    if site_name in THREADED_SITES:
        echo("scheduler: Dask threads in this process (no dashboard)")
        yield None
        return
    from daskcal.cluster import load_site

    site = load_site(site_name)
    echo(f"site: {site.describe()}")
    with site.client() as client:
        echo(f"dashboard: {client.dashboard_link}")
        yield client


def _build_output(step: Step, obs: xr.DataTree, gains: xr.DataTree | None,
                  images: xr.DataTree | None = None) -> xr.DataTree:
    """The step's lazy output tree: the stage applied to every (selected) partition."""
    from daskcal.data.model import partition_names

    if not partition_names(obs):
        raise RunError(f"step {step.name}: its input has no visibility partitions")
    names = selected_partitions(step, obs)
    left_out = [n for n in partition_names(obs) if n not in names]
    datasets = {node.path: node.to_dataset(inherit=False) for node in obs.subtree
                if not any(node.path == f"/{n}" or node.path.startswith(f"/{n}/")
                           for n in left_out)}
    if step.stage.produces_gains:
        datasets = {"/": xr.Dataset(attrs={"type": "gain_set", "partitions": names})}
    for name in names:
        xds = obs[name].to_dataset(inherit=False)
        ctx = StageContext(step.name, name, obs[name])
        g = _pick(gains, name, "gains", step) if step.stage.needs_gains else None
        im = _pick(images, name, "image", step) if step.stage.needs_image else None
        result = step.stage(xds, step.config, ctx, g, im)
        if not isinstance(result, xr.Dataset):
            raise RunError(f"step {step.name}: stage {step.stage.name} returned a "
                           f"{type(result).__name__}, not an xarray.Dataset")
        datasets[f"/{name}"] = result
    tree = xr.DataTree.from_dict(datasets)
    if not step.stage.produces_gains:
        from daskcal.data.schema import SchemaError, check_observation

        problems = check_observation(tree)
        if problems:
            raise SchemaError(problems, f"step {step.name} output")
    return tree


def _gain_partitions(gains: xr.DataTree) -> list[str]:
    return [k for k, v in gains.children.items() if "GAIN" in v.data_vars]


def _pick(tree: xr.DataTree | None, name: str, what: str, step: Step) -> xr.Dataset:
    """The gains or image of partition ``name`` (or the only one there is, e.g. a
    calibrator's gains)."""
    parts = [] if tree is None else (
        _gain_partitions(tree) if what == "gains" else image_partitions(tree))
    if name not in parts and len(parts) == 1:
        name = parts[0]
    if tree is None or name not in parts:
        raise RunError(f"step {step.name}: no {what} for partition {name} in step "
                       f"{step.gains if what == 'gains' else step.image}")
    return tree[name].to_dataset(inherit=False)


def _build_gains_output(step: Step, gains: xr.DataTree, vis: xr.DataTree) -> xr.DataTree:
    """The lazy output of a ``gains->gains`` step (the stage applied to every partition)."""
    names = _gain_partitions(gains)
    if not names:
        raise RunError(f"step {step.name}: its input {step.input} holds no gains")
    datasets: dict[str, Any] = {"/": xr.Dataset(attrs={"type": "gain_set",
                                                       "partitions": names})}
    for name in names:
        node = vis[name] if name in vis.children else gains[name]
        result = step.stage(gains[name].to_dataset(inherit=False), step.config,
                            StageContext(step.name, name, node))
        if not isinstance(result, xr.Dataset):
            raise RunError(f"step {step.name}: stage {step.stage.name} returned a "
                           f"{type(result).__name__}, not an xarray.Dataset")
        datasets[f"/{name}"] = result
    return xr.DataTree.from_dict(datasets)


def _visibility_source(step: Step, recipe: Recipe, paths: dict[str, Path],
                       outputs: dict[str, Path]) -> Path:
    """The visibilities a step's (gains) input derives from (for metadata: antennas, field)."""
    current = step
    while True:
        if current.input in paths:
            return paths[current.input]
        up = recipe.step(current.input)
        if not up.stage.produces_gains:
            return outputs[up.name]
        current = up


def _open_visibilities(path: Path, chunks: Any) -> xr.DataTree:
    from daskcal.data.open import open_observation

    return open_observation(path, chunks=chunks)


def _open_source(path: Path) -> xr.DataTree:
    """The visibilities gains derive from, for their metadata (a gains input: itself)."""
    import json

    try:
        attrs = json.loads((Path(path) / "zarr.json").read_text()).get("attributes") or {}
    except (OSError, ValueError):
        attrs = {}
    if attrs.get("type") == "gain_set":
        return _open_gains(path)
    return _open_visibilities(path, None)


def _open_gains(path: Path) -> xr.DataTree:
    from daskcal.data.zarr_store import open_zarr

    return open_zarr(path, validate=False)


def run_recipe(
    recipe: Recipe | str | os.PathLike,
    inputs: Mapping[str, str | os.PathLike],
    output: str | os.PathLike,
    *,
    site: str | None = None,
    overrides: Sequence[str] = (),
    progress: bool | None = None,
    echo: Callable[[str], None] | None = None,
    paused_timeout: float | None = PAUSED_TIMEOUT_S,
) -> RunResult:
    """Run a recipe on named inputs into a run directory, skipping and resuming work.

    Parameters
    ----------
    recipe : Recipe or path
        A loaded recipe, or its YAML file (``overrides`` then apply).
    inputs : mapping of str to path
        Path of each of the recipe's inputs.
    output : path
        The run directory (created if needed; rerunning into it skips what is done).
    site : str, optional
        Site profile name or file (default: the recipe's ``site``); ``"threads"``:
        Dask's threaded scheduler in this process.
    overrides : sequence of str
        ``--set`` items, when ``recipe`` is a path.
    progress : bool, optional
        Progress bars per step (default: when stderr is a terminal).
    echo : callable, optional
        Receives one line per event (the dashboard address, each step's fate);
        default: the module's logger.
    paused_timeout : float or None
        On a distributed cluster, seconds the workers may stay paused for memory (at
        least one paused, no task executing anywhere, no task changing state) before the
        step fails (:class:`RunError`) instead of waiting forever, s; None or 0: wait
        forever.

    Returns
    -------
    RunResult

    Raises
    ------
    RecipeError, RunError, daskcal.DaskcalError
        Invalid recipe or inputs, a busy run directory, a step whose workers stayed
        paused for memory (one line).
    """
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe, overrides)
    echo = echo or log.info
    progress = sys.stderr.isatty() if progress is None else progress
    missing = [k for k in recipe.model.inputs if k not in inputs]
    unknown = [k for k in inputs if k not in recipe.model.inputs]
    if missing or unknown:
        raise RecipeError(f"{recipe.source}: " + "; ".join(
            [f"input {k!r} not given (--input {k}=PATH)" for k in missing]
            + [f"input {k!r} is not one of the recipe's ({', '.join(recipe.model.inputs)})"
               for k in unknown]))
    paths = {k: Path(v) for k, v in inputs.items()}
    for k, p in paths.items():
        if not p.exists():
            raise RunError(f"{p}: no such input (input {k!r})")
    run_dir = Path(output)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "steps").mkdir(exist_ok=True)
    site_name = site or recipe.model.site
    with _lock(run_dir):
        return _run(recipe, paths, run_dir, site_name, progress, echo, paused_timeout)


def _run(recipe: Recipe, paths: dict[str, Path], run_dir: Path, site_name: str,
         progress: bool, echo: Callable[[str], None],
         paused_timeout: float | None = PAUSED_TIMEOUT_S) -> RunResult:
    prov_path = run_dir / "provenance.json"
    previous = {r.get("fingerprint"): r for r in read_provenance(prov_path).get("steps", [])}
    input_fp = {k: path_fingerprint(p) for k, p in paths.items()}
    record: dict[str, Any] = {
        "format": PROVENANCE_FORMAT,
        "recipe": {"name": recipe.name, "source": str(recipe.source),
                   "config": recipe.defaulted(), "sha256": canonical_hash(recipe.defaulted())},
        "run_dir": str(run_dir.resolve()), "site": site_name, "status": "running",
        "started": now_iso(), "finished": None, "versions": package_versions(),
        "inputs": input_fp, "steps": [], "products": {},
    }
    attempt = uuid.uuid4().hex[:12]
    fps: dict[str, str] = {k: v["sha256"] for k, v in input_fp.items()}
    outputs: dict[str, Path] = {}
    result = RunResult(run_dir, record)
    write_provenance(prov_path, record)
    try:
        with _scheduler(site_name, echo) as client:
            for step in recipe.steps:
                rec = _run_step(step, recipe, paths, run_dir, fps, outputs, previous,
                                client, progress, echo, attempt, paused_timeout)
                record["steps"].append(rec)
                write_provenance(prov_path, record)
            _publish(recipe, record, result, outputs, run_dir, attempt)
            write_provenance(prov_path, record)
            # while the cluster is up: its workers draw the weblog's pages in parallel
            record["weblog"] = build_run_weblog(run_dir, echo, client, paused_timeout)
            write_provenance(prov_path, record)
    except BaseException:
        if record["status"] != "complete":
            record["status"] = "failed"
            record["finished"] = now_iso()
            write_provenance(prov_path, record)
        raise
    return result


def _publish(recipe: Recipe, record: dict[str, Any], result: RunResult,
             outputs: dict[str, Path], run_dir: Path, attempt: str) -> None:
    """Link the products into ``RUN_DIR/products``, summarise the QA, mark the run complete."""
    products_dir = run_dir / "products"
    products_dir.mkdir(exist_ok=True)
    for name in recipe.products:
        if recipe.step(name).stage.produces_product:
            files = next(r.get("files", []) for r in record["steps"] if r["name"] == name)
            record["products"][name] = files
            result.products[name] = run_dir / files[0] if files else products_dir
            continue
        link = products_dir / f"{name}.zarr"
        tmp = products_dir / f".{name}.zarr.{attempt}"
        os.symlink(os.path.relpath(outputs[name], products_dir), tmp)
        os.replace(tmp, link)
        result.products[name] = outputs[name]
        record["products"][name] = str(outputs[name].relative_to(run_dir))
    record["qa"] = run_qa_summary(run_dir, record)
    record["status"] = "complete"
    record["finished"] = now_iso()
    result.outputs = outputs


def _run_step(step: Step, recipe: Recipe, paths: dict[str, Path], run_dir: Path,
              fps: dict[str, str], outputs: dict[str, Path], previous: dict[str, Any],
              client: Any | None, progress: bool, echo: Callable[[str], None],
              attempt: str, paused_timeout: float | None = PAUSED_TIMEOUT_S
              ) -> dict[str, Any]:
    n = len(recipe.steps)
    label = f"step {step.index + 1}/{n} {step.name} ({step.stage.name})"
    config = step.config.model_dump(mode="json")
    upstream = {"input": fps[step.input]}
    if step.gains:
        upstream["gains"] = fps[step.gains]
    if step.image:
        upstream["image"] = fps[step.image]
    if step.select is not None:
        upstream["select"] = canonical_hash(step.select.model_dump(mode="json"))
    files = {}
    for key in step.stage.file_fields:
        value = config.get(key)
        if value:
            if not Path(value).exists():
                raise RunError(f"step {step.name}: config {key} names {value}, which does "
                               "not exist")
            files[key] = path_fingerprint(value)["sha256"]
    fingerprint = step_fingerprint(step.stage.name, step.stage.kind, config, upstream, files)
    out_path = run_dir / "steps" / step.output_name
    store = StepStore(out_path, fingerprint)
    fps[step.name] = fingerprint
    outputs[step.name] = out_path
    base = {"index": step.index + 1, "name": step.name, "stage": step.stage.name,
            "kind": step.stage.kind, "input": step.input, "gains": step.gains,
            "image": step.image,
            "config": config, "config_hash": canonical_hash(config),
            "upstream_fingerprints": upstream, "file_fingerprints": files,
            "fingerprint": fingerprint, "output": str(out_path.relative_to(run_dir))}
    vis_src = _visibility_source(step, recipe, paths, outputs)
    if step.stage.produces_product:
        return run_product_step(step, run_dir, base, previous.get(fingerprint, {}),
                                lambda: _open_gains(outputs.get(step.input)
                                                    or paths[step.input]),
                                lambda: _open_source(vis_src), label, echo)
    if store.is_done():
        echo(f"{label}: unchanged, skipped")
        for stale in (store.partial, store.progress):
            if stale.exists():
                shutil.rmtree(stale, ignore_errors=True)
        old = previous.get(fingerprint, {})
        rec = {**old, **base, "status": "skipped", "checked": now_iso()}
        if step.stage.produces_image:
            return _skipped_image_step(step, run_dir, rec, out_path,
                                       _input_opener(step, paths, outputs, recipe))
        rec["qa"] = published_step_qa(step, run_dir, rec, _input_opener(step, paths, outputs,
                                                                        recipe))
        return rec

    start, t0 = now_iso(), time.perf_counter()
    before = _input_opener(step, paths, outputs, recipe)()
    gains = _open_gains(outputs.get(step.gains) or paths[step.gains]) if step.gains else None
    images = _open_gains(outputs[step.image]) if step.image else None
    import dask

    # data steps' graphs with task-based rechunking (see daskcal.pipeline.execute)
    graph_config = {} if step.stage.produces_image else STEP_GRAPH_CONFIG
    with dask.config.set(graph_config):
        if step.stage.produces_image:
            echo(f"{label}: imaging")
            tree = build_image_tree(step, before, gains, images,
                                    lambda t, n, what: _pick(t, n, what, step))
        elif step.stage.gains_input:
            tree = _build_gains_output(step, before, _open_source(vis_src))
        else:
            tree = _build_output(step, before, gains, images)
        attrs = {STEP_ATTR: {"recipe": recipe.name, "step": step.name,
                             "stage": step.stage.name}}
        prepared, regions, done = store.prepare(tree, attrs)
        todo = [r for r in regions if r.key not in done]
        status = "resumed" if done else "ran"
        echo(f"{label}: {len(todo)} of {len(regions)} regions to write"
             + (f" ({len(done)} written before, resuming)" if done else ""))
        writes = store.region_writes(prepared, todo, attempt)
        lazy_qa = (lazy_step_qa(step, before, prepared)
                   if not done and not step.stage.produces_image else None)
    n_tasks = count_tasks(writes)
    try:
        summaries = compute_step(writes, client, progress, lazy_qa, label=f"step {step.name}",
                                 paused_timeout=paused_timeout)
    except WorkersPausedError as exc:
        raise RunError(str(exc)) from None
    left = [r.key for r in regions if r.key not in store.marked()]
    if left:
        raise RunError(f"step {step.name}: {len(left)} regions were not written "
                       f"(e.g. {left[0]})")
    store.publish()
    elapsed = time.perf_counter() - t0
    nbytes = store_bytes(out_path)
    echo(f"{label}: wrote {out_path.name} ({nbytes / 1e6:.1f} MB in {elapsed:.1f} s)")
    rec = {**base, "status": status, "attempt": attempt, "start": start, "end": now_iso(),
           "duration_s": round(elapsed, 3), "n_tasks": n_tasks, "bytes_written": nbytes,
           "regions": {"total": len(regions), "skipped": len(done), "written": len(todo),
                       "skipped_keys": sorted(done)},
           "peak_worker_memory_bytes": peak_memory(client)}
    if step.stage.produces_image:
        rec["files"] = relpaths(write_image_files(step, tree, run_dir / "products", before),
                                run_dir)
        rec["qa"] = image_qa(step, tree, run_dir, fingerprint)
    elif summaries is not None:
        rec["qa"] = save_qa(step, run_dir, rec, summaries)
    else:
        rec["qa"] = published_step_qa(step, run_dir, rec,
                                      _input_opener(step, paths, outputs, recipe))
    return rec


def _skipped_image_step(step: Step, run_dir: Path, rec: dict[str, Any], out_path: Path,
                        open_input: Callable[[], xr.DataTree]) -> dict[str, Any]:
    """A skipped image step: its product files rewritten if missing, its QA reused."""
    from daskcal.qa.collect import load_step_qa

    files = rec.get("files") or []
    tree = None
    if not files or not all((run_dir / f).is_file() for f in files):
        tree = _open_gains(out_path)
        rec["files"] = relpaths(write_image_files(step, tree, run_dir / "products",
                                                  open_input()), run_dir)
    qa_path = run_dir / "qa" / f"{step.output_name.removesuffix('.zarr')}.json"
    qa = load_step_qa(qa_path)
    if qa is not None and qa.fingerprint == rec["fingerprint"]:
        rec["qa"] = {"score": qa.score, "reason": qa.reason,
                     "file": str(qa_path.relative_to(run_dir))}
    else:
        tree = tree if tree is not None else _open_gains(out_path)
        rec["qa"] = image_qa(step, tree, run_dir, rec["fingerprint"])
    return rec


def _input_opener(step: Step, paths: dict[str, Path], outputs: dict[str, Path],
                  recipe: Recipe) -> Callable[[], xr.DataTree]:
    """A function opening the step's input (visibilities or gains), lazily."""
    if step.stage.gains_input:
        return lambda: _open_gains(outputs.get(step.input) or paths[step.input])
    src = paths.get(step.input) or outputs[step.input]
    chunks = recipe.model.chunks if step.input in paths else None
    return lambda: _open_visibilities(src, chunks)


__all__ = ["THREADED_SITES", "RunError", "RunResult", "parse_inputs", "run_recipe"]
