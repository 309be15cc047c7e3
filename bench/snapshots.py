"""Snapshot imaging throughput (images per second per core) beside WSClean ``-intervals-out``.

Run: ``.venv/bin/python bench/snapshots.py [--stations 54] [--snapshots 30] [--subbands 2]
[--chan-per-subband 4] [--npix 128 256] [--threads 1 2] [--no-wsclean]``.

The case: a LOFAR-HBA-like array (``--stations``: 48 core ears plus the nearest remote
stations; 54 by default, baselines to ~15 km), ``--snapshots`` one-second integrations,
``--subbands`` x ``--chan-per-subband`` channels of 195 kHz at 120 MHz, a random field
(no noise, no gains), Stokes I, Briggs 0, dirty images (``niter=0``), the same field of
view (64 arcmin) at every image size. One image = one (1 s interval, subband).

daskcal: the simulated data are first loaded into memory (so that the simulation is not
timed), then :func:`daskcal.stages.imaging.snapshots.snapshot_images` builds the graph
and it is computed with the threaded scheduler and ``--threads`` workers (single-threaded
kernels); the timing includes graph building and planning. WSClean (if ``wsclean`` is on
PATH): the same data written as a Measurement Set, imaged with ``-intervals-out N
-channels-out n_subbands -niter 0 -weight briggs 0 -j threads`` (WSClean also grids a
PSF per image and reorders the MS first; both are in its time). Rates are images per
wall-clock second divided by the threads; on a shared machine also look at the CPU
rates (images per CPU second, user + system of the process or the child).

A larger case (the solar pipeline's shape, ~10 minutes): ``--snapshots 600 --subbands 4
--npix 256 --threads 1 2``.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NUMBA_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

FOV_ARCMIN = 64.0


def sim_config(args) -> dict:
    n_remote = max(0, min(14, args.stations - 48))
    return dict(array="lofar", lofar=dict(n_core=24, split_core=True, n_remote=n_remote),
                ra_deg=123.4, dec_deg=48.2, duration_s=float(args.snapshots),
                integration_s=1.0, n_chan=args.subbands * args.chan_per_subband,
                polarizations=["XX", "YY"], gains=dict(enabled=False),
                noise=dict(enabled=False), sky=dict(preset="random-field", n_sources=10),
                chunks={"time": 16, "frequency": args.chan_per_subband})


def cpu_self() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def cpu_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_daskcal(node, npix: int, threads: int, args) -> tuple[int, float, float]:
    import dask

    from daskcal.stages.imaging.snapshots import snapshot_images

    cfg = dict(npix=npix, cell_arcsec=FOV_ARCMIN * 60.0 / npix, interval_s=1.0,
               chan_per_subband=args.chan_per_subband, weighting="briggs", robust=0.0,
               epsilon=args.epsilon)
    c0, t0 = cpu_self(), time.perf_counter()
    ds = snapshot_images(node, cfg)
    with dask.config.set(scheduler="threads", num_workers=threads):
        img = ds.DIRTY.data.compute()
    wall, cpu = time.perf_counter() - t0, cpu_self() - c0
    return img.shape[0] * img.shape[1], wall, cpu


def run_wsclean(ms: Path, npix: int, threads: int, args, work: Path) -> tuple[int, float, float]:
    name = work / f"ws-{npix}-{threads}"
    cmd = ["wsclean", "-quiet", "-intervals-out", str(args.snapshots), "-channels-out",
           str(args.subbands), "-size", str(npix), str(npix), "-scale",
           f"{FOV_ARCMIN * 60.0 / npix}asec", "-niter", "0", "-weight", "briggs", "0",
           "-j", str(threads), "-no-update-model-required", "-name", str(name), str(ms)]
    c0, t0 = cpu_children(), time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall, cpu = time.perf_counter() - t0, cpu_children() - c0
    n = len(list(work.glob(f"{name.name}-t*-dirty.fits")))
    return n, wall, cpu


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stations", type=int, default=54, help="48 core ears + remotes (40-62)")
    p.add_argument("--snapshots", type=int, default=30, help="number of 1 s snapshots")
    p.add_argument("--subbands", type=int, default=2)
    p.add_argument("--chan-per-subband", type=int, default=4)
    p.add_argument("--npix", type=int, nargs="+", default=[128, 256])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--epsilon", type=float, default=1e-4)
    p.add_argument("--no-wsclean", action="store_true", help="skip WSClean even if found")
    args = p.parse_args(argv)

    from daskcal.testing import simulate_observation, write_simulation

    obs, _ = simulate_observation(sim_config(args))
    part = next(iter(obs.children))
    node = obs[part].compute()
    print(f"{node.sizes['baseline_id']} baselines, {args.snapshots} x 1 s, "
          f"{args.subbands} subbands x {args.chan_per_subband} channels")
    has_ws = shutil.which("wsclean") is not None and not args.no_wsclean
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-snap-") as tmp:
        work = Path(tmp)
        ms = None
        if has_ws:
            ms, _ = write_simulation(sim_config(args), work / "sim.ms", fmt="ms")
        for npix in args.npix:
            run_daskcal(node, npix, 1, args)  # warm-up: JIT caches, plan code paths
            for threads in args.threads:
                n, wall, cpu = run_daskcal(node, npix, threads, args)
                row = dict(npix=npix, threads=threads, n=n, wall=wall, cpu=cpu)
                if has_ws:
                    row["ws"] = run_wsclean(ms, npix, threads, args, work)
                rows.append(row)
    head = (f"{'npix':>5} {'thr':>3} {'images':>6} {'daskcal img/s/core':>19} "
            f"{'img/cpu-s':>10}")
    if has_ws:
        head += f" {'wsclean img/s/core':>19} {'img/cpu-s':>10} {'ratio (wall)':>12}"
    print(head)
    for r in rows:
        rate = r["n"] / r["wall"] / r["threads"]
        line = (f"{r['npix']:>5} {r['threads']:>3} {r['n']:>6} {rate:>19.2f} "
                f"{r['n'] / r['cpu']:>10.2f}")
        if has_ws:
            n, wall, cpu = r["ws"]
            ws_rate = n / wall / r["threads"]
            line += f" {ws_rate:>19.2f} {n / cpu:>10.2f} {rate / ws_rate:>12.2f}"
        print(line)
    if not has_ws:
        print("wsclean not on PATH (or --no-wsclean): no comparison")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
