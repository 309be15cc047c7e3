"""I/O throughput: MS -> dataset -> zarr, beside a plain ``cp`` and a raw dask-ms read.

Run: ``.venv/bin/python bench/io.py [--size 1GB] [--workdir DIR] [--threads N]``

Simulates a LOFAR-like Measurement Set of the requested size (once per workdir), then times,
in one run and on the same bytes:

1. ``cp -r`` of the MS (the floor any reader has to beat: pure file I/O);
2. a raw dask-ms read of DATA, FLAG and WEIGHT (reduced to a checksum, nothing written);
3. ``daskcal`` MS -> regular-grid dataset -> compressed zarr v3 (``open_observation`` +
   ``write_zarr``).

All three run with a warm page cache (each is repeated and the best time kept, after one
warm-up read), so the numbers compare CPU and code paths, not the disk. Throughput is in MB of
the MS's main table data columns per second; ratios are printed relative to ``cp``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _best(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="500MB", help="simulated MS size (default %(default)s)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where to keep the simulated MS (default: a temporary directory)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--chunks", default="64MB")
    args = parser.parse_args(argv)

    import dask
    import dask.array as da
    from daskms import xds_from_ms

    from daskcal.data.open import open_observation
    from daskcal.data.zarr_store import write_zarr
    from daskcal.testing.simulate import SimulationConfig, write_simulation

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="daskcal-bench-io-"))
    workdir.mkdir(parents=True, exist_ok=True)
    ms = workdir / f"lofar-{args.size}.ms"
    if not ms.exists():
        print(f"simulating {args.size} into {ms} ...", flush=True)
        cfg = SimulationConfig.model_validate({"array": "lofar", "target_size": args.size,
                                               "seed": 1})
        write_simulation(cfg, ms, fmt="ms")
    nbytes = _du(ms)
    print(f"MS: {ms} ({nbytes / 1e6:.1f} MB on disk), {args.threads} threads, "
          f"best of {args.repeat}, warm page cache")

    dask.config.set(scheduler="threads", num_workers=args.threads)

    def run_cp():
        dest = workdir / "cp-copy.ms"
        shutil.rmtree(dest, ignore_errors=True)
        subprocess.run(["cp", "-r", str(ms), str(dest)], check=True)
        shutil.rmtree(dest)

    def run_daskms():
        parts = xds_from_ms(str(ms), columns=["DATA", "FLAG", "WEIGHT"],
                            group_cols=["FIELD_ID", "DATA_DESC_ID"], chunks={"row": 100_000})
        sums = []
        for x in parts:
            sums += [da.absolute(x.DATA.data).sum(), x.FLAG.data.sum(), x.WEIGHT.data.sum()]
        dask.compute(*sums)

    def run_daskcal():
        out = workdir / "daskcal-out.zarr"
        shutil.rmtree(out, ignore_errors=True)
        obs = open_observation(ms, chunks=args.chunks)
        write_zarr(obs, out)
        shutil.rmtree(out)

    run_daskms()  # warm-up: page cache and numba/dask imports
    results = {}
    for name, fn in (("cp -r", run_cp), ("dask-ms raw read", run_daskms),
                     ("daskcal MS->zarr", run_daskcal)):
        t = _best(fn, args.repeat)
        results[name] = t
        print(f"  {name:<20} {t:8.2f} s  {nbytes / 1e6 / t:9.1f} MB/s", flush=True)
    base = results["cp -r"]
    print("ratios (time / cp time): " + ", ".join(
        f"{k}: {v / base:.2f}x" for k, v in results.items()))
    print(f"daskcal MS->zarr vs raw dask-ms read: "
          f"{results['daskcal MS->zarr'] / results['dask-ms raw read']:.2f}x the time")
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
