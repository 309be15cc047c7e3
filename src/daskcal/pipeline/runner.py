"""The step runner: executes a recipe step by step, resumably, with provenance.

Run directory layout::

    RUN_DIR/provenance.json              the run record (daskcal.pipeline.provenance)
    RUN_DIR/steps/01-flag.zarr           each step's output (visibilities or gains)
    RUN_DIR/steps/01-flag.zarr.partial   ... while it is being written
    RUN_DIR/steps/01-flag.zarr.progress  ... and its region markers
    RUN_DIR/products/NAME.zarr           symbolic links to the products' step outputs

Each step reads its input from the previous step's published store (or the input
observation), builds its lazy graph with the stage, and writes it region by region
(:mod:`daskcal.pipeline.checkpoint`). A step whose published output carries its
current fingerprint is skipped; a step whose partial output carries it resumes from
the regions not yet written. Nothing is computed outside :func:`run_recipe`'s calls
to the scheduler.
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
from daskcal.pipeline.checkpoint import STEP_ATTR, StepStore, store_bytes
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
            if pid and pid != os.getpid() and _alive(pid):
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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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


def _n_tasks(writes: list[Any]) -> int:
    import dask

    if not writes:
        return 0
    joined = dask.delayed(list)(writes)
    graph = joined.__dask_graph__()
    return len(graph.cull(set(joined.__dask_keys__())))


def _execute(writes: list[Any], client: Any | None, progress: bool) -> None:
    """Compute the region writes on the client or the threaded scheduler."""
    import dask

    if not writes:
        return
    if client is None:
        bar: contextlib.AbstractContextManager = contextlib.nullcontext()
        if progress:
            from dask.diagnostics import ProgressBar

            bar = ProgressBar(minimum=0.5, dt=0.5, out=sys.stderr)
        with bar:
            dask.compute(*writes, scheduler="threads")
        return
    futures = client.compute(writes)
    if progress:
        from distributed import progress as show_progress

        show_progress(futures)
    client.gather(futures)


def _build_output(step: Step, obs: xr.DataTree, gains: xr.DataTree | None,
                  recipe: Recipe) -> xr.DataTree:
    """The step's lazy output tree: the stage applied to every partition."""
    from daskcal.data.model import partition_names

    names = partition_names(obs)
    if not names:
        raise RunError(f"step {step.name}: its input has no visibility partitions")
    datasets = {node.path: node.to_dataset(inherit=False) for node in obs.subtree}
    if step.stage.produces_gains:
        datasets = {"/": xr.Dataset(attrs={"type": "gain_set", "partitions": names})}
    for name in names:
        xds = obs[name].to_dataset(inherit=False)
        ctx = StageContext(step.name, name, obs[name])
        g = None
        if step.stage.needs_gains:
            if gains is None or name not in gains.children:
                raise RunError(f"step {step.name}: no gains for partition {name} in step "
                               f"{step.gains}")
            g = gains[name].to_dataset(inherit=False)
        result = step.stage(xds, step.config, ctx, g)
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


def _open_visibilities(path: Path, chunks: Any) -> xr.DataTree:
    from daskcal.data.open import open_observation

    return open_observation(path, chunks=chunks)


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

    Returns
    -------
    RunResult

    Raises
    ------
    RecipeError, RunError, daskcal.DaskcalError
        Invalid recipe or inputs, a busy run directory (one line).
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
        return _run(recipe, paths, run_dir, site_name, progress, echo)


def _run(recipe: Recipe, paths: dict[str, Path], run_dir: Path, site_name: str,
         progress: bool, echo: Callable[[str], None]) -> RunResult:
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
                                client, progress, echo, attempt)
                record["steps"].append(rec)
                write_provenance(prov_path, record)
    except BaseException:
        record["status"] = "failed"
        record["finished"] = now_iso()
        write_provenance(prov_path, record)
        raise
    products_dir = run_dir / "products"
    products_dir.mkdir(exist_ok=True)
    for name in recipe.products:
        link = products_dir / f"{name}.zarr"
        tmp = products_dir / f".{name}.zarr.{attempt}"
        os.symlink(os.path.relpath(outputs[name], products_dir), tmp)
        os.replace(tmp, link)
        result.products[name] = outputs[name]
        record["products"][name] = str(outputs[name].relative_to(run_dir))
    record["status"] = "complete"
    record["finished"] = now_iso()
    write_provenance(prov_path, record)
    result.outputs = outputs
    return result


def _run_step(step: Step, recipe: Recipe, paths: dict[str, Path], run_dir: Path,
              fps: dict[str, str], outputs: dict[str, Path], previous: dict[str, Any],
              client: Any | None, progress: bool, echo: Callable[[str], None],
              attempt: str) -> dict[str, Any]:
    n = len(recipe.steps)
    label = f"step {step.index + 1}/{n} {step.name} ({step.stage.name})"
    config = step.config.model_dump(mode="json")
    upstream = {"input": fps[step.input]}
    if step.gains:
        upstream["gains"] = fps[step.gains]
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
            "config": config, "config_hash": canonical_hash(config),
            "upstream_fingerprints": upstream, "file_fingerprints": files,
            "fingerprint": fingerprint, "output": str(out_path.relative_to(run_dir))}
    if store.is_done():
        echo(f"{label}: unchanged, skipped")
        for stale in (store.partial, store.progress):
            if stale.exists():
                shutil.rmtree(stale, ignore_errors=True)
        old = previous.get(fingerprint, {})
        return {**old, **base, "status": "skipped", "checked": now_iso()}

    start, t0 = now_iso(), time.perf_counter()
    src = paths.get(step.input) or outputs[step.input]
    chunks = recipe.model.chunks if step.input in paths else None
    obs = _open_visibilities(src, chunks)
    gains = _open_gains(outputs[step.gains]) if step.gains else None
    tree = _build_output(step, obs, gains, recipe)
    attrs = {STEP_ATTR: {"recipe": recipe.name, "step": step.name, "stage": step.stage.name}}
    prepared, regions, done = store.prepare(tree, attrs)
    todo = [r for r in regions if r.key not in done]
    status = "resumed" if done else "ran"
    echo(f"{label}: {len(todo)} of {len(regions)} regions to write"
         + (f" ({len(done)} written before, resuming)" if done else ""))
    writes = store.region_writes(prepared, todo, attempt)
    n_tasks = _n_tasks(writes)
    _execute(writes, client, progress)
    left = [r.key for r in regions if r.key not in store.marked()]
    if left:
        raise RunError(f"step {step.name}: {len(left)} regions were not written "
                       f"(e.g. {left[0]})")
    store.publish()
    elapsed = time.perf_counter() - t0
    nbytes = store_bytes(out_path)
    echo(f"{label}: wrote {out_path.name} ({nbytes / 1e6:.1f} MB in {elapsed:.1f} s)")
    return {**base, "status": status, "attempt": attempt, "start": start, "end": now_iso(),
            "duration_s": round(elapsed, 3), "n_tasks": n_tasks, "bytes_written": nbytes,
            "regions": {"total": len(regions), "skipped": len(done), "written": len(todo),
                        "skipped_keys": sorted(done)},
            "peak_worker_memory_bytes": peak_memory(client)}


__all__ = ["THREADED_SITES", "RunError", "RunResult", "parse_inputs", "run_recipe"]
