"""Scaling of one recipe over sites: 1 and 2 local workers, and SLURM workers if available.

Run: ``.venv/bin/python bench/scaling.py [--n-time 120] [--n-chan 16] [--chunk-time 6]
[--recipe configs/recipes/preprocess.yaml] [--slurm-jobs 1] [--no-slurm]``

The default observation is small (a few MB, ~1-2 minutes in all on 2 cores); larger cases:
``--n-time 1200 --n-chan 64 --chunk-time 20`` (~100 MB), ``--n-core 24 --n-remote 12``.

For each site it measures

- **workers up**: from starting the cluster (``Site.cluster()``: a ``LocalCluster``, or a
  ``SLURMCluster`` submitting its jobs) to every worker connected to the scheduler -- for
  SLURM that is batch-job start plus worker start;
- **wall**: ``run_recipe`` into a fresh run directory on that scheduler (graph building,
  computing, QA and the weblog included);
- from the scheduler's task stream (``distributed.get_task_stream``): the **tasks** run,
  their summed **compute** time, the **busy** fraction of the worker threads over the
  computing span, the **overhead per task** -- the median idle gap between consecutive
  tasks on one worker thread (gaps over 1 s, the driver's work between steps, excluded):
  the scheduler's and the workers' time per task -- and **tasks per GB** of input.

Prints one table; every run's products are compared value by value with the first's.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]


def _simulation(args: argparse.Namespace) -> dict:
    return {
        "name": "scaling", "lofar": {"n_core": args.n_core, "n_remote": args.n_remote,
                                     "split_core": False},
        "n_chan": args.n_chan, "duration_s": 10 * args.n_time, "integration_s": 10,
        "chunks": {"time": args.chunk_time, "frequency": args.n_chan},
        "sky": {"preset": "none", "components": [
            {"name": "cal", "ra_deg": 123.4, "dec_deg": 48.2, "flux_jy": 100.0}]},
        "noise": {"enabled": True}, "seed": 7,
    }


def _slurm_ok() -> str | None:
    if shutil.which("sinfo") is None:
        return "no sinfo on PATH"
    out = subprocess.run(["sinfo", "--noheader", "--format=%t"], capture_output=True,
                         text=True, timeout=20)
    if out.returncode != 0 or not {s.rstrip("*") for s in out.stdout.split()} & {
            "idle", "mix", "alloc"}:
        return "SLURM not up (deploy/slurm/start-test-cluster.sh)"
    return None


def _stream_stats(records: list[dict], n_threads: int) -> dict:
    """Compute time, busy fraction and median inter-task gap from task-stream records."""
    compute, spans = 0.0, []
    per_thread: dict[tuple, list[tuple[float, float]]] = {}
    for rec in records:
        starts = [s["start"] for s in rec["startstops"]]
        stops = [s["stop"] for s in rec["startstops"]]
        compute += sum(s["stop"] - s["start"] for s in rec["startstops"]
                       if s["action"] == "compute")
        spans.append((min(starts), max(stops)))
        per_thread.setdefault((rec["worker"], rec.get("thread")), []).append(
            (min(starts), max(stops)))
    gaps = []
    for intervals in per_thread.values():
        intervals.sort()
        gaps += [b[0] - a[1] for a, b in zip(intervals, intervals[1:], strict=False)
                 if 0 <= b[0] - a[1] < 1.0]
    busy_span = 0.0
    if spans:  # union of the busy intervals (the steps' computing phases)
        spans.sort()
        cur_a, cur_b = spans[0]
        for a, b in spans[1:]:
            if a > cur_b + 1.0:
                busy_span += cur_b - cur_a
                cur_a, cur_b = a, b
            else:
                cur_b = max(cur_b, b)
        busy_span += cur_b - cur_a
    return {"tasks": len(records), "compute_s": compute,
            "busy": compute / (busy_span * n_threads) if busy_span else float("nan"),
            "gap_ms": 1e3 * statistics.median(gaps) if gaps else float("nan")}


def run_site(name: str, profile: dict, n_workers: int, recipe: Path, obs: Path,
             workdir: Path) -> dict:
    """Start the site, run the recipe on it, and measure (see the module notes)."""
    from distributed import Client, get_task_stream

    from daskcal.cluster import site_from_dict
    from daskcal.pipeline.runner import run_recipe

    site = site_from_dict({"name": name, **profile}, f"bench site {name}")
    t0 = time.perf_counter()
    with site.cluster() as cluster, Client(cluster) as client:
        t_started = time.perf_counter() - t0
        client.wait_for_workers(n_workers, timeout=300)
        t_up = time.perf_counter() - t0
        threads = sum(w["nthreads"] for w in client.scheduler_info()["workers"].values())
        address = workdir / f"{name}-address.yaml"
        address.write_text(yaml.safe_dump({"name": name, "kind": "address", "address": {
            "scheduler": cluster.scheduler_address}}))
        run_dir = workdir / f"run-{name}"
        t1 = time.perf_counter()
        with get_task_stream(client) as ts:
            result = run_recipe(recipe, {"target": obs}, run_dir, site=str(address),
                                progress=False, echo=lambda line: None)
        wall = time.perf_counter() - t1
        stats = _stream_stats(ts.data, threads)
    return {"site": name, "workers": n_workers, "threads": threads, "cluster_s": t_started,
            "up_s": t_up, "wall_s": wall, **stats,
            "product": next(iter(result.products.values()))}


def _equal(a: Path, b: Path) -> bool:
    import xarray as xr

    ta = xr.open_datatree(a.resolve(), engine="zarr", chunks=None)
    tb = xr.open_datatree(b.resolve(), engine="zarr", chunks=None)
    for node in ta.subtree:
        xa, xb = node.to_dataset(inherit=False), tb[node.path].to_dataset(inherit=False)
        for name, var in xa.variables.items():
            if not np.array_equal(var.values, xb[name].values,
                                  equal_nan=var.dtype.kind in "fc"):
                return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", type=Path, default=REPO / "configs" / "recipes" /
                        "preprocess.yaml")
    parser.add_argument("--n-time", type=int, default=120, help="10 s integrations")
    parser.add_argument("--n-chan", type=int, default=16)
    parser.add_argument("--chunk-time", type=int, default=6)
    parser.add_argument("--n-core", type=int, default=6, help="LOFAR core stations")
    parser.add_argument("--n-remote", type=int, default=2, help="LOFAR remote stations")
    parser.add_argument("--slurm-jobs", type=int, default=1, help="1-core worker jobs")
    parser.add_argument("--no-slurm", action="store_true")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    for key in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS"):
        os.environ.setdefault(key, "1")
    from astropy.utils import iers

    iers.conf.auto_download = False

    from daskcal.pipeline.runner import run_recipe
    from daskcal.survey.staging import tree_bytes
    from daskcal.testing import write_simulation

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="daskcal-scaling-"))
    workdir.mkdir(parents=True, exist_ok=True)
    obs, _ = write_simulation(_simulation(args), workdir / "obs.zarr", overwrite=True)
    nbytes = tree_bytes(obs)
    print(f"observation {obs}: {nbytes / 1e6:.1f} MB, recipe {args.recipe}", flush=True)
    # warm the numba caches and imports once, outside the measurements
    run_recipe(args.recipe, {"target": obs}, workdir / "warm", site="threads", progress=False,
               echo=lambda line: None)

    local = {"memory_limit": "2GiB", "dashboard_address": None, "threads_per_worker": 1}
    sites = [("local-1", {"kind": "local", "local": {**local, "n_workers": 1}}, 1),
             ("local-2", {"kind": "local", "local": {**local, "n_workers": 2}}, 2)]
    why = "--no-slurm" if args.no_slurm else _slurm_ok()
    if why is None:
        profile = yaml.safe_load((REPO / "configs" / "sites" / "slurm-test.yaml").read_text())
        profile["slurm"].update({"jobs": args.slurm_jobs, "dashboard_address": None,
                                 "log_directory": str(workdir / "slurm-logs"),
                                 "job_name": f"daskcal-bench-{os.getpid()}"})
        profile.pop("description", None)
        sites.append((f"slurm-{args.slurm_jobs}", profile, args.slurm_jobs))
    rows = []
    for name, profile, n in sites:
        print(f"running on {name} ...", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            rows.append(run_site(name, profile, n, args.recipe, obs, workdir))
    gb = nbytes / 1e9
    head = (f"{'site':<10} {'workers':>7} {'up s':>6} {'wall s':>7} {'tasks':>6} "
            f"{'compute s':>9} {'busy':>5} {'gap ms':>7} {'tasks/GB':>9} {'same':>5}")
    print("\n" + head + "\n" + "-" * len(head))
    for r in rows:
        same = _equal(rows[0]["product"], r["product"])
        print(f"{r['site']:<10} {r['workers']:>7} {r['up_s']:>6.1f} {r['wall_s']:>7.1f} "
              f"{r['tasks']:>6} {r['compute_s']:>9.2f} {r['busy']:>5.0%} "
              f"{r['gap_ms']:>7.1f} {r['tasks'] / gb:>9.0f} {'yes' if same else 'NO':>5}")
    if why is not None:
        print(f"(no SLURM row: {why})")
    print(f"input {nbytes / 1e6:.1f} MB; 'up s': cluster start to all workers connected; "
          "'gap ms': median idle time between tasks on a worker thread")
    return 0


if __name__ == "__main__":
    sys.exit(main())
