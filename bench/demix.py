"""Benchmark: the demix stage beside DP3's demixer (runtime per GB, one core).

Usage::

    .venv/bin/python bench/demix.py [--size 200MB] [--workdir /tmp/demix-bench] [--skip-dp3]

Simulates a LOFAR-HBA-like observation (12 stations, 32 channels, Cyg A and Cas A in
the sidelobes, TEC screens and beam), times :func:`daskcal.stages.demix.demix` on one
thread (data in memory; the simulation is computed first and not timed), then writes
the observation as a Measurement Set and runs DP3's demixer on it (the ``dp3`` PyPI
package in /tmp/dp3-venv) with the same averaging and the A-team model in makesourcedb
text. GB counts VISIBILITY + FLAG + WEIGHT (13 bytes per sample).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import time
from pathlib import Path

import dask
import numpy as np

from daskcal.data.chunking import chunk_data_vars
from daskcal.sky.ateam import ateam_sky_model
from daskcal.stages.demix import DemixConfig, demix
from daskcal.testing.simulate import simulate_observation

DP3 = Path("/tmp/dp3-venv/bin/DP3.py")
PC_DEG = (240.0, 60.0)


def _sim_config(size: str) -> dict:
    return dict(array="lofar", lofar=dict(n_core=4, n_remote=4, split_core=True),
                ra_deg=PC_DEG[0], dec_deg=PC_DEG[1], start_time="2024-03-20T06:00:00",
                target_size=size, integration_s=10.0, n_chan=32, seed=2,
                chunks={"time": 60, "frequency": 32},
                sky=dict(preset="random-field", n_sources=5, flux_min_jy=3.0,
                         flux_max_jy=20.0, ateam=True),
                screens=dict(enabled=True, tec_rms_tecu=0.01), beam=dict(enabled=True),
                gains=dict(enabled=False))


def _skymodel_text(path: Path) -> None:
    """Cyg A and Cas A in makesourcedb format (one patch each)."""
    sky = ateam_sky_model(["CygA", "CasA"], epoch=2024.2)
    lines = ["FORMAT = Name, Type, Patch, Ra, Dec, I, MajorAxis, MinorAxis, Orientation, "
             "ReferenceFrequency='150e6', SpectralIndex='[]', LogarithmicSI='true'"]
    for patch in dict.fromkeys(sky.patch.tolist()):
        lines.append(f", , {patch}, 00:00:00, +00.00.00")
    for k in range(sky.n_source):
        ra_h = np.degrees(sky.ra[k]) / 15
        dec = np.degrees(sky.dec[k])
        h, m = int(ra_h), int((ra_h % 1) * 60)
        s = ((ra_h * 60) % 1) * 60
        sign = "+" if dec >= 0 else "-"
        d, dm = int(abs(dec)), int((abs(dec) % 1) * 60)
        ds = ((abs(dec) * 60) % 1) * 60
        si = ", ".join(f"{x:.4f}" for x in sky.spectral_index[k])
        lines.append(f"{sky.name[k]}, GAUSSIAN, {sky.patch[k]}, {h:02d}:{m:02d}:{s:07.4f}, "
                     f"{sign}{d:02d}.{dm:02d}.{ds:07.4f}, {sky.stokes[k, 0]:.3f}, "
                     f"{np.degrees(sky.major[k]) * 3600:.2f}, "
                     f"{np.degrees(sky.minor[k]) * 3600:.2f}, "
                     f"{np.degrees(sky.position_angle[k]):.2f}, 150e6, [{si}], true")
    path.write_text("\n".join(lines) + "\n")


def run_ours(obs, cfg: DemixConfig) -> tuple[float, float]:
    """(seconds, GB) for one threaded-scheduler run on a single worker thread."""
    name = next(iter(obs.children))
    node = obs[name]
    xds = node.to_dataset()
    with dask.config.set(scheduler="threads", num_workers=4):
        loaded = {k: xds[k].data.compute() for k in ("VISIBILITY", "FLAG", "WEIGHT", "UVW")}
    for k, v in loaded.items():
        xds[k] = (xds[k].dims, v)
    xds = chunk_data_vars(xds, {"time": 60, "frequency": -1})
    out = demix(xds, cfg, phase_centre_rad=np.radians(PC_DEG),
                antenna_itrf_m=node["antenna_xds"].ds["ANTENNA_POSITION"].values)
    gb = xds["VISIBILITY"].size * 13 / 1e9
    t0 = time.perf_counter()
    with dask.config.set(scheduler="threads", num_workers=1):
        out["VISIBILITY"].data.compute()
    return time.perf_counter() - t0, gb


def run_dp3(obs, workdir: Path, cfg: DemixConfig) -> tuple[float | None, str]:
    if not DP3.exists():
        return None, f"{DP3} not found"
    from daskcal.data.ms_write import write_ms

    msin = workdir / "in.ms"
    msout = workdir / "out.ms"
    for p in (msin, msout):
        shutil.rmtree(p, ignore_errors=True)
    write_ms(obs, msin, overwrite=True)
    sky = workdir / "ateam.skymodel"
    _skymodel_text(sky)
    env = {**os.environ, "HOME": "/tmp/dp3home", "OPENBLAS_NUM_THREADS": "1"}
    cmd = [str(DP3), f"msin={msin}", f"msout={msout}", "steps=[demix]", "numthreads=1",
           "demix.type=demixer", f"demix.skymodel={sky}", "demix.subtractsources=[CygA,CasA]",
           f"demix.demixtimestep={cfg.time_factor}", f"demix.demixfreqstep={cfg.freq_factor}",
           f"demix.timestep={1}", f"demix.freqstep={1}", "demix.ignoretarget=true",
           f"demix.instrumentmodel={workdir / 'instrument'}"]
    t0 = time.perf_counter()
    # DP3 writes its solutions table ("instrument") relative to the working directory
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600,
                          cwd=workdir)
    dt = time.perf_counter() - t0
    log = (proc.stdout + proc.stderr)[-3000:]
    return (dt if proc.returncode == 0 else None), log


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="200MB")
    ap.add_argument("--workdir", default="/tmp/demix-bench")
    ap.add_argument("--skip-dp3", action="store_true")
    args = ap.parse_args()
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    obs, _ = simulate_observation(_sim_config(args.size))
    cfg = DemixConfig(time_factor=6, freq_factor=8, solint_time=2, solint_freq=4,
                      elevation_limit_deg=10.0, flux_threshold_jy=1.0)
    # warm the numba caches
    run_ours(simulate_observation(_sim_config("5MB"))[0], cfg)
    sec, gb = run_ours(obs, cfg)
    print(f"daskcal demix: {gb:.3f} GB in {sec:.1f} s on 1 thread -> "
          f"{sec / gb / 3600:.3f} h/GB, {gb / sec * 3600:.2f} GB/hour per core")
    if not args.skip_dp3:
        dp3_sec, log = run_dp3(obs, workdir, cfg)
        if dp3_sec is None:
            print("DP3 demixer did not run:\n" + log)
        else:
            print(f"DP3 demixer: {gb:.3f} GB in {dp3_sec:.1f} s (incl. MS I/O) -> "
                  f"{gb / dp3_sec * 3600:.2f} GB/hour per core")


if __name__ == "__main__":
    main()
