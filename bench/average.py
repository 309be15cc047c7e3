"""Time/channel averaging: the daskcal ``average`` stage beside DP3's averager, MS to MS.

Run: ``.venv/bin/python bench/average.py [--size 200MB] [--timestep 4] [--freqstep 4]``

Simulates a LOFAR-like Measurement Set (with RFI flags applied so that flagged samples
matter), then averages it

1. with DP3 (PyPI ``dp3``, in its own virtual environment, default ``/tmp/dp3-venv``; it is
   created if missing) — ``steps=[avg] avg.type=averager``;
2. with daskcal: ``open_observation`` -> ``average`` -> ``write_ms`` (1 and 2 threads).

Both read and write a Measurement Set, so I/O is on equal terms. Prints wall times, MB/s of
input and the ratio, and compares the two outputs sample by sample (visibilities, flags,
weights, UVW) as an independent check of the averaging rules.
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

import numpy as np

DP3_VENV = Path("/tmp/dp3-venv")
CASACORE_DATA = Path(sys.prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" \
    / "site-packages" / "casacore" / "data"


def ensure_dp3() -> Path | None:
    exe = DP3_VENV / "bin" / "DP3.py"
    if not exe.exists():
        print(f"creating {DP3_VENV} with the dp3 package ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(DP3_VENV)], check=True)
        subprocess.run([str(DP3_VENV / "bin" / "pip"), "install", "-q", "dp3", "numpy"],
                       check=False)
    return exe if exe.exists() else None


def dp3_env(workdir: Path) -> dict:
    home = workdir / "dp3home"
    home.mkdir(exist_ok=True)
    (home / ".casarc").write_text(f"measures.directory: {CASACORE_DATA}\n")
    return {**os.environ, "HOME": str(home), "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="200MB")
    parser.add_argument("--timestep", type=int, default=4)
    parser.add_argument("--freqstep", type=int, default=4)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)

    import dask

    from daskcal.data.model import iter_partitions, make_observation, make_partition
    from daskcal.data.ms import read_ms
    from daskcal.data.ms_write import write_ms
    from daskcal.data.open import open_observation
    from daskcal.stages.average import AverageConfig, average
    from daskcal.testing import SimulationConfig, write_simulation

    work = args.workdir or Path(tempfile.mkdtemp(prefix="daskcal-bench-avg-"))
    work.mkdir(parents=True, exist_ok=True)
    ms = work / f"in-{args.size}.ms"
    if not ms.exists():
        print(f"simulating {args.size} into {ms} ...", flush=True)
        cfg = SimulationConfig.model_validate({
            "array": "lofar", "target_size": args.size, "integration_s": 2.0, "n_chan": 64,
            "seed": 2, "rfi": {"enabled": True}})
        write_simulation(cfg, ms, fmt="ms")
        # flag part of the data (band edges and every 7th integration) so flags matter
        from casacore.tables import table

        with table(str(ms), readonly=False, ack=False) as t:
            flags = t.getcol("FLAG")
            flags[:, :2, :] = True
            time_col = t.getcol("TIME")
            steps = np.unique(time_col)
            flags[np.isin(time_col, steps[::7])] = True
            t.putcol("FLAG", flags)
    mb = sum(p.stat().st_size for p in ms.rglob("*") if p.is_file()) / 1e6
    print(f"input {ms.name}: {mb:.0f} MB, averaging {args.timestep} x {args.freqstep}")

    results = {}
    dp3 = ensure_dp3()
    if dp3 is None:
        print("DP3: not available (pip install dp3 into /tmp/dp3-venv failed)")
    else:
        out = work / "dp3.ms"
        shutil.rmtree(out, ignore_errors=True)
        cmd = [str(dp3), f"msin={ms}", f"msout={out}", "steps=[avg]", "numthreads=1",
               "avg.type=averager", f"avg.timestep={args.timestep}",
               f"avg.freqstep={args.freqstep}"]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=dp3_env(work), cwd=work)
        results["DP3 averager (1 thread)"] = time.perf_counter() - t0
        if proc.returncode != 0:
            print("DP3 failed:\n" + (proc.stdout + proc.stderr)[-2000:])
            results.pop("DP3 averager (1 thread)")

    cfg = AverageConfig(time_factor=args.timestep, freq_factor=args.freqstep)
    for threads in (1, 2):
        out = work / f"daskcal-{threads}.ms"
        shutil.rmtree(out, ignore_errors=True)
        with dask.config.set(scheduler="threads", num_workers=threads):
            t0 = time.perf_counter()
            obs = open_observation(ms, chunks="64MB")
            parts = {}
            for name, xds in iter_partitions(obs):
                node = obs[name]
                parts[name] = make_partition(average(xds, cfg),
                                             node["antenna_xds"].to_dataset(inherit=False),
                                             node["field_and_source_base_xds"].to_dataset(
                                                 inherit=False))
            write_ms(make_observation(parts), out)
            results[f"daskcal average ({threads} threads)"] = time.perf_counter() - t0

    print(f"\n{'':32}{'wall s':>9}{'MB/s':>9}")
    for name, t in results.items():
        print(f"{name:32}{t:9.2f}{mb / t:9.1f}")
    if "DP3 averager (1 thread)" in results:
        ratio = results["DP3 averager (1 thread)"] / results["daskcal average (1 threads)"]
        print(f"daskcal (1 thread) is {ratio:.2f}x DP3's speed")
        (_, a), = iter_partitions(read_ms(work / "daskcal-1.ms"))
        (_, b), = iter_partitions(read_ms(work / "dp3.ms"))
        a, b = dask.compute(a, b)
        same_shape = a.VISIBILITY.shape == b.VISIBILITY.shape
        print(f"outputs: daskcal {a.VISIBILITY.shape}, DP3 {b.VISIBILITY.shape}")
        if same_shape:
            good = ~a.FLAG.values & ~b.FLAG.values
            dv = np.abs(a.VISIBILITY.values - b.VISIBILITY.values)[good]
            scale = np.abs(b.VISIBILITY.values[good]).max()
            print(f"  flags equal: {np.mean(a.FLAG.values == b.FLAG.values):.6f} of samples")
            print(f"  max |V_daskcal - V_DP3| / max|V| (unflagged): {dv.max() / scale:.2e}")
            print(f"  weights: max rel diff {np.nanmax(np.abs(a.WEIGHT.values - b.WEIGHT.values)[good] / b.WEIGHT.values[good]):.2e}")
            print(f"  UVW: max |diff| {np.nanmax(np.abs(a.UVW.values - b.UVW.values)):.3e} m")
    return 0


if __name__ == "__main__":
    sys.exit(main())
