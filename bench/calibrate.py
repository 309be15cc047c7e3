"""Benchmark: daskcal's DI diagonal-complex solve beside QuartiCal's, on one simulated MS.

Usage::

    .venv/bin/python bench/calibrate.py [--n-core 12 --n-remote 8 --n-chan 32 ...]

The script simulates a LOFAR-HBA observation (random field, smooth time- and
frequency-variable antenna gains, thermal noise), writes it to a Measurement Set with
the true sky model in ``MODEL_DATA``, and solves it with

* daskcal: :func:`daskcal.stages.solve.solve` (``diagonal_complex``), and
* QuartiCal (``goquartical``, gain term ``G`` of type ``diag_complex``),

with the same solution intervals, iteration limit, convergence threshold, reference
antenna and number of threads. QuartiCal pins dask 2024.10, zarr < 3 and pydantic 1,
so it lives in its own virtual environment (``--quartical-venv``, default
``/tmp/quartical-venv``), created here with ``python3 -m venv`` and ``pip install
quartical`` when missing. Each tool runs as its own process (``--repeat`` times; the
first run includes numba compilation unless cached); the table gives process wall
times (imports included) and the time spent solving as the tool reports it (daskcal:
read + solve + gather; QuartiCal: not separable, its total), and the accuracy of
both solutions against the true gains averaged over each solution cell, and their
agreement, all after referencing the phases to antenna 0.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

QC_READER = textwrap.dedent("""
    import sys, numpy as np, xarray as xr
    from daskms.experimental.zarr import xds_from_zarr
    xdsl = xds_from_zarr(sys.argv[1] + "::G")
    xds = xr.concat(xdsl, dim="gain_time") if len(xdsl) > 1 else xdsl[0]
    xds = xds.compute()
    np.savez(sys.argv[2], gains=xds.gains.values, flags=xds.gain_flags.values,
             time=xds.gain_time.values, freq=xds.gain_freq.values,
             antenna=np.asarray(xds.antenna.values, dtype=str))
""")


def log(msg: str) -> None:
    print(f"[bench] {msg}", flush=True)


def ensure_quartical(venv: Path) -> Path:
    """The ``goquartical`` executable of ``venv``, installing QuartiCal there if missing."""
    exe = venv / "bin" / "goquartical"
    if exe.exists():
        return exe
    log(f"QuartiCal is not installed in {venv}: creating that virtual environment and "
        "running 'pip install quartical' (it pins dask 2024.10, zarr<3 and pydantic 1, "
        "so it cannot share daskcal's environment); this takes a few minutes")
    subprocess.run(["python3", "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "quartical"], check=True)
    if not exe.exists():
        raise SystemExit(f"QuartiCal installed into {venv} but {exe} is missing")
    return exe


def make_ms(args, workdir: Path) -> tuple[Path, Path]:
    """Simulate, write DATA and MODEL_DATA; returns (ms path, truth gains npz)."""
    import dask

    from daskcal.data.model import (
        add_data_group,
        antenna_xds_of,
        field_xds_of,
        make_observation,
        make_partition,
        partition_names,
    )
    from daskcal.data.ms_write import write_ms
    from daskcal.testing import SimulationConfig, simulate_observation

    ms = workdir / "bench.ms"
    truth_npz = workdir / "truth_gains.npz"
    cfg = SimulationConfig(
        name="bench", lofar={"n_core": args.n_core, "n_remote": args.n_remote},
        n_chan=args.n_chan, duration_s=args.n_time * 10.0, integration_s=10.0,
        sky={"preset": "random-field", "n_sources": 10, "flux_min_jy": 0.5,
             "flux_max_jy": 20.0},
        gains={"phase_rms_deg": 30.0, "time_scale_s": 1800.0}, seed=args.seed,
        chunks={"time": args.time_chunk, "frequency": args.n_chan})
    obs, truth = simulate_observation(cfg)
    name = partition_names(obs)[0]
    node = obs[name]
    vis = add_data_group(node.to_dataset(inherit=False), "model", "VISIBILITY_MODEL",
                         data=truth["model"]["VISIBILITY_MODEL"].data)
    obs2 = make_observation({name: make_partition(vis, antenna_xds_of(node),
                                                  field_xds_of(node))})
    t0 = time.perf_counter()
    write_ms(obs2, ms, overwrite=True)
    write_ms(obs2, ms, data_group="model", column="MODEL_DATA")
    (gains,) = dask.compute(truth["gains"]["GAIN"])
    np.savez(truth_npz, gains=gains.values, time=gains["time"].values,
             freq=gains["frequency"].values, antenna=gains["antenna_name"].values.astype(str))
    log(f"wrote {ms} ({vis.sizes['time']} x {vis.sizes['baseline_id']} baselines x "
        f"{vis.sizes['frequency']} channels x {vis.sizes['polarization']} correlations) "
        f"in {time.perf_counter() - t0:.1f} s")
    return ms, truth_npz


def run_daskcal(args) -> None:
    """Child process: read the MS, solve, save the gains; print timings as JSON."""
    import dask

    from daskcal.data.ms import read_ms
    from daskcal.stages.solve import SolveConfig, solve

    t0 = time.perf_counter()
    obs = read_ms(args.ms, chunks={"time": args.time_chunk, "frequency": -1},
                  columns=["MODEL_DATA"])
    xds = next(iter(obs.children.values())).to_dataset(inherit=False)
    cfg = SolveConfig(mode="diagonal_complex", solint_time=args.solint_time,
                      solint_freq=args.solint_freq, max_iter=args.max_iter,
                      tolerance=args.tolerance, ref_antenna=None)
    gains = solve(xds, config=cfg)
    with dask.config.set(scheduler="threads", num_workers=args.threads):
        (g,) = dask.compute(gains)
    elapsed = time.perf_counter() - t0
    np.savez(args.out, gains=g["GAIN"].values, flags=g["GAIN_FLAG"].values,
             time=g["gain_time"].values, freq=g["gain_frequency"].values,
             antenna=g["antenna_name"].values.astype(str), n_iter=g["N_ITER"].values)
    print(json.dumps({"solve_s": elapsed, "mean_iter": float(g["N_ITER"].mean())}))


def quartical_config(args, ms: Path, outdir: Path) -> Path:
    import yaml

    cfg = {
        "input_ms": {"path": str(ms), "data_column": "DATA",
                     "weight_column": "WEIGHT_SPECTRUM", "time_chunk": str(args.time_chunk),
                     "freq_chunk": "0", "group_by": ["FIELD_ID", "DATA_DESC_ID"]},
        "input_model": {"recipe": "MODEL_DATA"},
        "solver": {"terms": ["G"], "iter_recipe": [args.max_iter],
                   "convergence_criteria": args.tolerance, "convergence_fraction": 1.0,
                   "reference_antenna": 0, "threads": 1, "propagate_flags": False},
        "output": {"gain_directory": str(outdir / "gains.qc"),
                   "log_directory": str(outdir / "logs.qc"), "overwrite": True,
                   "flags": False, "log_to_terminal": False},
        "dask": {"threads": args.threads, "scheduler": "threads"},
        "G": {"type": "diag_complex", "time_interval": str(args.solint_time),
              "freq_interval": str(args.solint_freq)},
    }
    path = outdir / "quartical.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def referenced(g: np.ndarray) -> np.ndarray:
    """(t, f, ant, 2) gains with antenna 0 real and positive per receptor."""
    z = g[:, :, :1]
    return g * np.conj(z) / np.where(np.abs(z) > 0, np.abs(z), 1.0)


def cell_mean(truth: np.ndarray, st: int, sf: int) -> np.ndarray:
    """True gains (time, freq, ant, 2) averaged over solution cells of st x sf samples."""
    nt, nf = truth.shape[:2]
    out = np.empty((-(-nt // st), -(-nf // sf)) + truth.shape[2:], complex)
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = truth[i * st:(i + 1) * st, j * sf:(j + 1) * sf].mean(axis=(0, 1))
    return out


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.abs(x) ** 2)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n-core", type=int, default=12, help="LOFAR core stations (two ears each)")
    p.add_argument("--n-remote", type=int, default=8, help="LOFAR remote stations")
    p.add_argument("--n-chan", type=int, default=32)
    p.add_argument("--n-time", type=int, default=60, help="10 s integrations")
    p.add_argument("--time-chunk", type=int, default=20, help="integrations per chunk")
    p.add_argument("--solint-time", type=int, default=4)
    p.add_argument("--solint-freq", type=int, default=4)
    p.add_argument("--max-iter", type=int, default=50)
    p.add_argument("--tolerance", type=float, default=1e-6)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--seed", type=int, default=5)
    p.add_argument("--workdir", type=Path, default=Path("/tmp/daskcal-bench-calibrate"))
    p.add_argument("--quartical-venv", type=Path, default=Path("/tmp/quartical-venv"))
    p.add_argument("--skip-quartical", action="store_true")
    p.add_argument("--daskcal-child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--ms", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.time_chunk % args.solint_time:
        p.error("--time-chunk must be a multiple of --solint-time")
    if args.daskcal_child:
        run_daskcal(args)
        return

    args.workdir.mkdir(parents=True, exist_ok=True)
    ms, truth_npz = make_ms(args, args.workdir)
    truth = np.load(truth_npz)
    g_true = referenced(cell_mean(truth["gains"].astype(complex), args.solint_time,
                                  args.solint_freq))
    common = [f"--{k}={getattr(args, k.replace('-', '_'))}" for k in (
        "time-chunk", "solint-time", "solint-freq", "max-iter", "tolerance", "threads")]
    rows, sols = {}, {}

    dc_out = args.workdir / "daskcal_gains.npz"
    times, solve_s = [], []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        res = subprocess.run([sys.executable, __file__, "--daskcal-child", f"--ms={ms}",
                              f"--out={dc_out}", *common], check=True, capture_output=True,
                             text=True)
        times.append(time.perf_counter() - t0)
        info = json.loads(res.stdout.strip().splitlines()[-1])
        solve_s.append(info["solve_s"])
    d = np.load(dc_out)
    sols["daskcal"] = referenced(d["gains"])
    rows["daskcal"] = (times, solve_s, f"mean iterations {info['mean_iter']:.1f}")

    if not args.skip_quartical:
        try:
            exe = ensure_quartical(args.quartical_venv)
        except (subprocess.CalledProcessError, OSError) as err:
            log(f"QuartiCal cannot run here: installing it failed ({err})")
            exe = None
        if exe is not None:
            qc_dir = args.workdir / "quartical"
            shutil.rmtree(qc_dir, ignore_errors=True)
            qc_dir.mkdir()
            cfg = quartical_config(args, ms, qc_dir)
            times = []
            env = {**os.environ, "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                res = subprocess.run([str(exe), str(cfg)], cwd=qc_dir, capture_output=True,
                                     text=True, env=env)
                times.append(time.perf_counter() - t0)
                if res.returncode:
                    tail = (res.stderr or res.stdout).strip().splitlines()[-15:]
                    log("QuartiCal failed:\n  " + "\n  ".join(tail))
                    break
            else:
                qc_npz = qc_dir / "gains.npz"
                subprocess.run([str(args.quartical_venv / "bin" / "python"), "-c", QC_READER,
                                str(qc_dir / "gains.qc"), str(qc_npz)], check=True)
                q = np.load(qc_npz)
                gq = q["gains"][:, :, :, 0, :]  # (time, freq, ant, corr): the direction
                gq = gq[..., [0, -1]] if gq.shape[-1] == 4 else gq
                sols["QuartiCal"] = referenced(gq)
                rows["QuartiCal"] = (times, [float("nan")] * len(times), "")

    print()
    print(f"{'tool':<10} {'wall first':>11} {'wall best':>10} {'solve best':>11} "
          f"{'rms |g - g_true|':>17} {'rms |g - g_daskcal|':>20}  notes")
    for tool, (times, solve_t, note) in rows.items():
        g = sols[tool]
        err = rms(g - g_true)
        agree = rms(g - sols["daskcal"])
        st = min(solve_t)
        print(f"{tool:<10} {times[0]:>10.1f}s {min(times):>9.1f}s "
              f"{(f'{st:.1f}s' if st == st else '-'):>11} {err:>17.2e} {agree:>20.2e}  {note}")
    if "QuartiCal" in rows:
        ratio = min(rows["QuartiCal"][0]) / min(rows["daskcal"][0])
        print(f"\nwall-time ratio QuartiCal / daskcal (best of {args.repeat}): {ratio:.2f}")
    print(f"gains: {g_true.shape[0]} x {g_true.shape[1]} cells x {g_true.shape[2]} antennas x "
          f"2 receptors; threads {args.threads}")


if __name__ == "__main__":
    main()
