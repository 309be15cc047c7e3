"""Out of core: a recipe on an observation several times larger than the cluster's memory.

Run: ``.venv/bin/python bench/out_of_core.py [--size-gb 16] [--memory-limit 2GiB] ...``

Issue #6: "a recipe on a simulated observation 4x larger than the cluster's total worker
memory (for example 2 workers x 2 GiB and 16 GB of data) completes with no worker killed
for memory; measure and record peak worker memory". The script

1. simulates a LOFAR-HBA-like calibrator observation (a 10 Jy point source at the phase
   centre, antenna gains, thermal noise, RFI; brighter sources make the flag stage flag
   most of the band, see :func:`simulation_config`) of ``--size-gb`` GB of visibility data
   (VISIBILITY + FLAG + WEIGHT in memory, as :class:`daskcal.testing.SimulationConfig`'s
   ``target_size`` counts it) and writes it chunk by chunk to a zarr store (the truth
   store is not written: it would double the disk space), with its sky model as a BBS
   file;
2. starts a Dask ``LocalCluster`` from daskcal's ``local`` site profile
   (``--n-workers`` x ``--threads-per-worker``, ``--memory-limit`` per worker,
   distributed's default spill/pause/terminate thresholds) and runs the recipe on it
   through an ``address`` site profile (default: ``configs/recipes/lofar-calibrator.yaml``
   with demixing disabled: flag, average, predict, solve, smooth, H5parm);
3. while the recipe runs, samples the resident memory of every worker process every
   ``--interval`` seconds (``psutil`` through ``Client.run``), and afterwards reads each
   worker's high-water mark (``VmHWM``; the run's provenance records ``ru_maxrss``,
   which Linux inherits from the spawning process, see :func:`worker_peak_rss`) and the
   scheduler's event log (workers removed or added during the run: a worker the nanny
   killed for memory appears as one removed and one added).

It prints a summary and writes a JSON record (``--json``, default ``out_of_core.json`` in
the current directory); the exit status is 1 if a worker died or the run failed.
Sizes: GB = 1e9 bytes, GiB = 2**30 bytes. Throughput is GB of input per hour of wall time
(the recipe only, not the simulation).

The default case is the issue's (16 GB, 2 workers x 2 GiB): about 35 GB of disk (the
observation and every step's output) and hours on a small machine. The recipe runs with
its own settings (``--set`` changes them). A case sized for ten minutes keeps a ratio
above 1 with the smallest workers that work (a worker process with daskcal's stages
imported holds about 0.25 GiB before any data: at 384 MiB the workers sit above
distributed's pause threshold, 80 %, and never resume); the flag stage's task budget
(``flag.rfi.memory_per_task``, 512 MB by default) and time window must then shrink with
them::

    .venv/bin/python bench/out_of_core.py --size-gb 1.3 --memory-limit 512MiB \
        --n-core 12 --n-remote 6 --n-chan 16 --integration-s 10 --chunks 16MB \
        --set flag.rfi.memory_per_task=32MB --set flag.rfi.time_window=256 \
        --set flag.rfi.time_overlap=32
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_RECIPE = REPO / "configs" / "recipes" / "lofar-calibrator.yaml"
GB = 1e9


def log(msg: str) -> None:
    print(f"[out-of-core] {msg}", flush=True)


# ----------------------------------------------------------------------------- simulation


def simulation_config(size_bytes: float, *, n_core: int = 24, n_remote: int = 14,
                      n_chan: int = 64, integration_s: float = 2.0, chunks: str = "64MB",
                      rfi: bool = True, flux_jy: float = 10.0, seed: int = 1,
                      name: str = "cal") -> dict[str, Any]:
    """A LOFAR-HBA-like calibrator observation of a given size (SimulationConfig data).

    Parameters
    ----------
    size_bytes : float
        VISIBILITY + FLAG + WEIGHT bytes (13 per sample); sets the number of integrations.
    n_core, n_remote : int
        Core (joined HBA ears) and remote stations: 38 stations (703 baselines) by default.
    n_chan : int
        Channels of 195.3 kHz from 120 MHz.
    integration_s : float
        Integration time, s.
    chunks : str
        Chunk size of the stored observation (VISIBILITY + FLAG + WEIGHT bytes per chunk).
    rfi : bool
        Add RFI (lines, a burst, spikes) for the flagger to find.
    flux_jy : float
        Flux of the point source at 150 MHz, Jy. With the simulator's default gains
        (5 % amplitude rms) the flag stage's defaults flag 8 % of a 32-channel, 10 s
        observation of 10 Jy (the injected RFI), but 41 % at 40 Jy and 75 % at 80 Jy.
    seed : int
    name : str
        Observation name (the partition is ``<name>_0``).

    Returns
    -------
    dict
        Accepted by :func:`daskcal.testing.simulate_observation`.
    """
    return {
        "name": name, "array": "lofar",
        "lofar": {"n_core": n_core, "n_remote": n_remote, "split_core": False},
        "n_chan": n_chan, "integration_s": integration_s, "target_size": str(int(size_bytes)),
        "sky": {"preset": "none", "components": [
            {"name": "calibrator", "ra_deg": 123.4, "dec_deg": 48.2, "flux_jy": flux_jy}]},
        "noise": {"enabled": True}, "rfi": {"enabled": rfi}, "seed": seed, "chunks": chunks,
    }


@dataclass
class Simulated:
    """A simulated observation on disk.

    Attributes
    ----------
    path : pathlib.Path
        The observation (zarr).
    sky_model : pathlib.Path
        Its sky model (BBS text file).
    nbytes : int
        VISIBILITY + FLAG + WEIGHT bytes in memory (the "size" of the data).
    disk_bytes : int
        Bytes of the store on disk (compressed).
    shape : dict of str to int
        Sizes of time, baseline_id, frequency and polarization.
    seconds : float
        Wall time of the simulation.
    """

    path: Path
    sky_model: Path
    nbytes: int
    disk_bytes: int
    shape: dict[str, int]
    seconds: float


def directory_bytes(path: str | os.PathLike) -> int:
    """Bytes of the files under ``path``."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.stat(os.path.join(root, name)).st_size
    return total


def simulate(config: dict[str, Any], path: Path, *, progress: bool = False) -> Simulated:
    """Write the observation of ``config`` (chunk by chunk) and its sky model next to it.

    Only the observation is written (no truth store). The computation runs on Dask's
    threaded scheduler in this process; memory stays bounded by a few chunks per thread.
    """
    from daskcal.data.zarr_store import write_zarr
    from daskcal.sky.bbs import write_bbs
    from daskcal.sky.model import SkyModel
    from daskcal.testing import simulate_observation

    t0 = time.perf_counter()
    obs, truth = simulate_observation(config)
    sky = path.with_name(path.stem + ".sky.txt")
    write_bbs(SkyModel.from_dataset(truth["sky"].to_dataset()), sky)
    (name, node), = ((k, v) for k, v in obs.children.items())
    xds = node.to_dataset(inherit=False)
    nbytes = int(sum(xds[v].nbytes for v in ("VISIBILITY", "FLAG", "WEIGHT")))
    shape = {d: int(xds.sizes[d]) for d in ("time", "baseline_id", "frequency", "polarization")}
    bar: contextlib.AbstractContextManager = contextlib.nullcontext()
    if progress:
        from dask.diagnostics import ProgressBar

        bar = ProgressBar(minimum=1.0, dt=1.0)
    with bar:
        write_zarr(obs, path, overwrite=True)
    return Simulated(path, sky, nbytes, directory_bytes(path), shape,
                     time.perf_counter() - t0)


# ----------------------------------------------------------------------------- cluster


def worker_rss() -> int:
    """Resident memory of this process, bytes (run on the workers)."""
    import psutil

    return int(psutil.Process().memory_info().rss)


def worker_peak_rss() -> int:
    """Peak resident memory of this process since it started, bytes (run on the workers):
    :func:`daskcal.pipeline.provenance.process_peak_rss` (``VmHWM`` on Linux)."""
    from daskcal.pipeline.provenance import process_peak_rss

    return process_peak_rss()


def worker_spilled(dask_worker: Any) -> int:
    """Bytes this worker wrote to its spill directory so far (0 if unknown)."""
    metrics = getattr(dask_worker.data, "cumulative_metrics", None) or {}
    return int(metrics.get(("disk-write", "bytes"), 0))


class MemorySampler:
    """Samples the resident memory of every worker in a background thread.

    Parameters
    ----------
    client : distributed.Client
    interval_s : float
        Time between samples, s (a sample is a ``Client.run`` round trip).

    Attributes
    ----------
    peak : dict of str to int
        Worker address -> largest resident memory sampled, bytes.
    samples : list of (float, dict)
        (seconds since start, {worker: bytes}).
    errors : int
        Samples that failed (a worker leaving in the middle of one).
    """

    def __init__(self, client: Any, interval_s: float = 0.25) -> None:
        self.client = client
        self.interval_s = interval_s
        self.peak: dict[str, int] = {}
        self.samples: list[tuple[float, dict[str, int]]] = []
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="memory-sampler", daemon=True)
        self._t0 = 0.0

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                values = self.client.run(worker_rss)
            except Exception:  # a worker leaving (restarted) in the middle of a sample
                self.errors += 1
            else:
                self.samples.append((time.perf_counter() - self._t0, values))
                for k, v in values.items():
                    self.peak[k] = max(self.peak.get(k, 0), int(v))
            self._stop.wait(self.interval_s)

    def __enter__(self) -> MemorySampler:
        self._t0 = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@contextlib.contextmanager
def local_cluster(n_workers: int, threads_per_worker: int, memory_limit: str,
                  local_directory: str | None = None) -> Iterator[tuple[Any, Any, dict]]:
    """A ``LocalCluster`` from daskcal's ``local`` site profile, and a client of it.

    Yields
    ------
    (cluster, client, address_profile)
        ``address_profile`` is the ``address`` site profile (a dict) of its scheduler:
        written to a YAML file, it lets :func:`daskcal.pipeline.runner.run_recipe` run
        on this cluster (which the caller can then watch).
    """
    from distributed import Client

    from daskcal.cluster import site_from_dict

    site = site_from_dict({"kind": "local", "description": "out-of-core benchmark",
                           "local": {"n_workers": n_workers,
                                     "threads_per_worker": threads_per_worker,
                                     "memory_limit": memory_limit,
                                     "local_directory": local_directory,
                                     "dashboard_address": ":0"}}, "<out-of-core>")
    with site.cluster() as cluster, Client(cluster) as client:
        client.wait_for_workers(n_workers, timeout=120)
        profile = {"kind": "address", "description": "the out-of-core benchmark's cluster",
                   "address": {"scheduler": cluster.scheduler_address}}
        yield cluster, client, profile


def worker_events(client: Any, since: float) -> dict[str, Any]:
    """Workers removed and added since ``since`` (a ``time.time()``), from the scheduler's log."""
    removed, added = [], []
    for stamp, msg in client.get_events("all"):
        if stamp < since or not isinstance(msg, dict):
            continue
        if msg.get("action") == "remove-worker":
            removed.append({"worker": msg.get("worker"), "time": stamp,
                            "expected": msg.get("expected"),
                            "stimulus_id": msg.get("stimulus_id"),
                            "processing_tasks": len(msg.get("processing-tasks") or ())})
        elif msg.get("action") == "add-worker":
            added.append({"worker": msg.get("worker"), "time": stamp})
    return {"removed": removed, "added": added}


# ----------------------------------------------------------------------------- recipe


def recipe_arguments(recipe_path: str | os.PathLike, observation: Path, sky_model: Path, *,
                     demix: bool = False, extra: Sequence[str] = (),
                     gains: Path | None = None) -> tuple[dict[str, Path], list[str]]:
    """The inputs and ``--set`` overrides that run ``recipe_path`` on one observation.

    Every visibility input of the recipe is given the observation (a recipe with a
    calibrator and a target input then calibrates the observation on itself), every
    gains input ``gains``; every config field that names a file
    (:attr:`StageSpec.file_fields`, e.g. ``predict.sky_model``) gets the sky model;
    every ``demix`` step is disabled unless ``demix``. ``extra`` overrides come last
    (and win).

    Raises
    ------
    SystemExit
        If the recipe has a gains input and ``gains`` is None.
    """
    from daskcal.pipeline.recipe import load_recipe

    recipe = load_recipe(recipe_path, list(extra))
    overrides = []
    for step in recipe.steps:
        overrides += [f"{step.name}.{key}={sky_model}" for key in step.stage.file_fields]
        if step.stage.name == "demix" and not demix:
            overrides.append(f"{step.name}.enabled=false")
    inputs = {}
    for name, spec in recipe.model.inputs.items():
        if getattr(spec, "kind", "visibility") == "gains":
            if gains is None:
                raise SystemExit(f"{recipe_path}: input {name!r} needs gains")
            inputs[name] = gains
        else:
            inputs[name] = observation
    return inputs, [*overrides, *extra]


def gains_inputs(recipe_path: str | os.PathLike) -> list[str]:
    """Names of the recipe's inputs of kind ``gains``."""
    from daskcal.pipeline.recipe import load_recipe

    inputs = load_recipe(recipe_path).model.inputs
    return [k for k, v in inputs.items() if getattr(v, "kind", "visibility") == "gains"]


@dataclass
class RunMeasurement:
    """What one recipe run on a watched cluster measured (see :func:`measure_run`)."""

    wall_s: float
    status: str
    run_dir: str
    steps: list[dict[str, Any]]
    peak_rss_sampled_bytes: dict[str, int]
    peak_rss_bytes: dict[str, int]
    spilled_bytes: dict[str, int]
    n_samples: int
    workers_initial: list[str]
    workers_removed: list[dict[str, Any]]
    workers_added: list[dict[str, Any]]
    error: str | None = None
    memory_timeline: list[tuple[float, dict[str, int]]] = field(default_factory=list)

    @property
    def n_deaths(self) -> int:
        """Workers lost during the run (killed, crashed or restarted)."""
        return len(self.workers_removed)


def measure_run(recipe_path: str | os.PathLike, inputs: dict[str, Path], overrides: list[str],
                run_dir: Path, client: Any, address_profile: dict, *,
                interval_s: float = 0.25, progress: bool = False) -> RunMeasurement:
    """Run a recipe on the cluster of ``client`` while sampling its workers' memory."""
    import yaml

    from daskcal.pipeline.runner import run_recipe

    site_file = run_dir.with_name(run_dir.name + ".site.yaml")
    site_file.write_text(yaml.safe_dump(address_profile))
    initial = sorted(client.scheduler_info()["workers"])
    since = time.time()
    error = None
    t0 = time.perf_counter()
    with MemorySampler(client, interval_s) as sampler:
        try:
            result = run_recipe(recipe_path, inputs, run_dir, site=str(site_file),
                                overrides=overrides, progress=progress,
                                echo=lambda line: log(line))
            prov = result.provenance
        except Exception as exc:  # record the failure (a KilledWorker ...), do not hide it
            error = f"{type(exc).__name__}: {exc}"
            log(f"run failed: {error}")
            from daskcal.pipeline.provenance import read_provenance

            prov = read_provenance(run_dir / "provenance.json")
    wall = time.perf_counter() - t0
    events = worker_events(client, since)
    try:
        max_rss = {k: int(v) for k, v in client.run(worker_peak_rss).items()}
        spilled = {k: int(v) for k, v in client.run(worker_spilled).items()}
    except Exception:  # pragma: no cover - workers gone
        max_rss, spilled = {}, {}
    steps = [{k: r.get(k) for k in ("name", "stage", "status", "duration_s", "n_tasks",
                                    "bytes_written", "peak_worker_memory_bytes")}
             for r in prov.get("steps", [])]
    return RunMeasurement(wall, prov.get("status", "unknown"), str(run_dir), steps,
                          dict(sampler.peak), max_rss, spilled, len(sampler.samples), initial,
                          events["removed"], events["added"], error, sampler.samples)


# ----------------------------------------------------------------------------- main


def _versions() -> dict[str, str | None]:
    from daskcal.pipeline.provenance import package_versions

    return package_versions()


def _host() -> dict[str, Any]:
    import psutil

    return {"node": platform.node(), "cpu_count": os.cpu_count(),
            "memory_bytes": int(psutil.virtual_memory().total),
            "load_average_1min": os.getloadavg()[0]}


def summarise(sim: Simulated, run: RunMeasurement, n_workers: int, threads: int,
              limit_bytes: int) -> dict[str, Any]:
    """The JSON-ready summary of one out-of-core run."""
    total_memory = n_workers * limit_bytes
    peak = max(run.peak_rss_bytes.values(), default=0)
    peak_sampled = max(run.peak_rss_sampled_bytes.values(), default=0)
    hours = run.wall_s / 3600.0
    ok = run.status == "complete" and run.n_deaths == 0 and not run.workers_added
    return {
        "data_bytes": sim.nbytes, "data_to_memory_ratio": round(sim.nbytes / total_memory, 3),
        "wall_s": round(run.wall_s, 2),
        "gb_per_h": round(sim.nbytes / GB / hours, 3) if hours else None,
        "gb_per_h_per_core": round(sim.nbytes / GB / hours / (n_workers * threads), 3)
        if hours else None,
        "peak_worker_rss_bytes": peak, "peak_worker_rss_sampled_bytes": peak_sampled,
        "peak_fraction_of_limit": round(peak / limit_bytes, 3),
        "worker_deaths": run.n_deaths, "worker_restarts": len(run.workers_added),
        "spilled_bytes": sum(run.spilled_bytes.values()), "ok": ok,
    }


def _timeline(samples: list[tuple[float, dict[str, int]]], every_s: float = 5.0) -> list:
    """Samples thinned to one per ``every_s`` (MiB) for the JSON record."""
    out, last = [], -every_s
    for t, values in samples:
        if t - last >= every_s:
            out.append([round(t, 1), {k: round(v / 2**20, 1) for k, v in values.items()}])
            last = t
    return out


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size-gb", type=float, default=16.0,
                   help="visibility data to simulate, GB (VISIBILITY+FLAG+WEIGHT in memory)")
    p.add_argument("--n-workers", type=int, default=2)
    p.add_argument("--threads-per-worker", type=int, default=1)
    p.add_argument("--memory-limit", default="2GiB", help="memory limit per worker")
    p.add_argument("--recipe", default=str(DEFAULT_RECIPE))
    p.add_argument("--demix", action="store_true", help="keep the recipe's demix step enabled")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="further recipe overrides (repeatable)")
    p.add_argument("--n-core", type=int, default=24, help="core stations (joined ears)")
    p.add_argument("--n-remote", type=int, default=14, help="remote stations")
    p.add_argument("--n-chan", type=int, default=64)
    p.add_argument("--integration-s", type=float, default=2.0)
    p.add_argument("--chunks", default="64MB", help="chunk size of the simulated store")
    p.add_argument("--observation", type=Path, default=None,
                   help="reuse an observation written by an earlier run (with its "
                   "NAME.sky.txt); --size-gb and the array options are then ignored")
    p.add_argument("--workdir", type=Path, default=None,
                   help="where the observation, run and spill go (default: a temporary "
                   "directory, removed at the end unless --keep)")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument("--interval", type=float, default=0.25, help="memory sampling period, s")
    p.add_argument("--json", type=Path, default=Path("out_of_core.json"),
                   help="where the JSON record goes")
    p.add_argument("--progress", action="store_true", help="progress bars")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    from dask.utils import format_bytes, parse_bytes

    args = parse_args(argv)
    limit = parse_bytes(args.memory_limit)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="daskcal-ooc-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        if args.observation is not None:
            from daskcal.data.open import open_observation

            obs_path = args.observation
            node = next(iter(open_observation(obs_path).children.values()))
            xds = node.to_dataset(inherit=False)
            sim = Simulated(obs_path, obs_path.with_name(obs_path.stem + ".sky.txt"),
                            int(sum(xds[v].nbytes for v in ("VISIBILITY", "FLAG", "WEIGHT"))),
                            directory_bytes(obs_path),
                            {d: int(xds.sizes[d]) for d in ("time", "baseline_id",
                                                            "frequency", "polarization")}, 0.0)
        else:
            cfg = simulation_config(args.size_gb * GB, n_core=args.n_core,
                                    n_remote=args.n_remote, n_chan=args.n_chan,
                                    integration_s=args.integration_s, chunks=args.chunks)
            log(f"simulating {args.size_gb:g} GB into {work / 'obs.zarr'}")
            sim = simulate(cfg, work / "obs.zarr", progress=args.progress)
            log(f"simulated {sim.shape} = {format_bytes(sim.nbytes)} "
                f"({format_bytes(sim.disk_bytes)} on disk) in {sim.seconds:.0f} s")
        inputs, overrides = recipe_arguments(args.recipe, sim.path, sim.sky_model,
                                             demix=args.demix, extra=args.overrides)
        total = args.n_workers * limit
        log(f"cluster: {args.n_workers} workers x {args.threads_per_worker} threads x "
            f"{format_bytes(limit)}; data / total worker memory = {sim.nbytes / total:.2f}")
        run_dir = work / "run"
        shutil.rmtree(run_dir, ignore_errors=True)
        with local_cluster(args.n_workers, args.threads_per_worker, args.memory_limit,
                           str(work / "dask-scratch")) as (_, client, profile):
            run = measure_run(args.recipe, inputs, overrides, run_dir, client, profile,
                              interval_s=args.interval, progress=args.progress)
        summary = summarise(sim, run, args.n_workers, args.threads_per_worker, limit)
        record = {
            "benchmark": "out_of_core", "date": _dt.datetime.now(_dt.UTC).isoformat(),
            "host": _host(), "versions": _versions(),
            "observation": {**asdict(sim), "path": str(sim.path),
                            "sky_model": str(sim.sky_model)},
            "cluster": {"n_workers": args.n_workers,
                        "threads_per_worker": args.threads_per_worker,
                        "memory_limit_bytes": limit, "total_memory_bytes": total},
            "recipe": {"source": str(args.recipe), "overrides": overrides},
            "summary": summary,
            "run": {**{k: v for k, v in asdict(run).items() if k != "memory_timeline"},
                    "memory_timeline_mib": _timeline(run.memory_timeline)},
        }
        out = args.json
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_text(json.dumps(record, indent=2, default=str) + "\n")
        os.replace(tmp, out)
        print()
        print(f"data           {format_bytes(sim.nbytes)} ({sim.shape['time']} x "
              f"{sim.shape['baseline_id']} x {sim.shape['frequency']} x "
              f"{sim.shape['polarization']}), {summary['data_to_memory_ratio']:.2f}x the "
              f"workers' {format_bytes(total)}")
        print(f"recipe         {Path(args.recipe).name}: {run.status}"
              + (f" ({run.error})" if run.error else ""))
        print(f"wall time      {run.wall_s:.1f} s = {summary['gb_per_h']} GB/h "
              f"({summary['gb_per_h_per_core']} GB/h/core)")
        for w in sorted(run.peak_rss_bytes):
            print(f"peak memory    {w}: {format_bytes(run.peak_rss_bytes[w])} (VmHWM), "
                  f"{format_bytes(run.peak_rss_sampled_bytes.get(w, 0))} sampled, "
                  f"limit {format_bytes(limit)}; spilled "
                  f"{format_bytes(run.spilled_bytes.get(w, 0))}")
        print(f"workers lost   {run.n_deaths} (restarted {len(run.workers_added)})")
        for s in run.steps:
            print(f"  step {s['name']:<10} {s['status']:<8} {s.get('duration_s') or 0:8.1f} s")
        print(f"record         {out}")
        return 0 if summary["ok"] else 1
    finally:
        if args.workdir is None and not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
