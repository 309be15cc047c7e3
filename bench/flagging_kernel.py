"""Benchmark: daskcal's RFI flagging kernel beside AOFlagger, on the same simulated block.

One baseline x ``n_time`` x ``n_chan`` x 4 polarisations (default 10 000 x 1 000),
simulated by :func:`daskcal.testing.rfi_planes.simulate_plane` (noise of sigma 1,
a smooth 100-sigma source, narrowband / broadband / impulsive / weak RFI and its
truth mask). Both flaggers run single-threaded on the same visibilities; the script
prints wall and CPU time, throughput in visibilities per second per core (one
visibility = one complex sample of one polarisation), recall per RFI kind, the
false-positive rate on RFI-free samples and the speed ratio.

AOFlagger (``pip install aoflagger``) runs in whatever Python has it: this one if
``import aoflagger`` works, else ``--aoflagger-python`` (default
``/tmp/aoflagger-venv/bin/python``) in a subprocess, the block passed as an ``.npy``
file in a temporary directory. Usage::

    .venv/bin/python bench/flagging_kernel.py            # full size
    .venv/bin/python bench/flagging_kernel.py --small    # 2 000 x 500, for a busy machine
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from daskcal.kernels.flagging import rfi_flag
from daskcal.testing.rfi_planes import RFI_KINDS, detection_scores, simulate_plane

#: Runs AOFlagger's generic strategy on ``vis.npy`` (n_time, n_chan, 4) in argv[1];
#: writes ``flags.npy`` (n_time, n_chan) and prints timings as JSON.
AOFLAGGER_SCRIPT = r"""
import json, sys, time
from pathlib import Path
import numpy as np
import aoflagger

work = Path(sys.argv[1])
vis = np.load(work / "vis.npy")
n_time, n_chan, n_pol = vis.shape
flagger = aoflagger.AOFlagger()
strategy = flagger.load_strategy_file(flagger.find_strategy_file(aoflagger.TelescopeId.Generic))
data = flagger.make_image_set(n_time, n_chan, 2 * n_pol)
for p in range(n_pol):
    # image buffers are (height = channels, width = times), float32
    data.set_image_buffer(2 * p, np.ascontiguousarray(vis[:, :, p].real.T, dtype=np.float32))
    data.set_image_buffer(2 * p + 1, np.ascontiguousarray(vis[:, :, p].imag.T, dtype=np.float32))
wall0, cpu0 = time.perf_counter(), time.process_time()
flags = strategy.run(data)
wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
np.save(work / "flags.npy", np.ascontiguousarray(flags.get_buffer().T.astype(bool)))
print(json.dumps({"wall_s": wall, "cpu_s": cpu, "version": flagger.get_version_string()}))
"""


def run_daskcal(vis: np.ndarray, repeat: int) -> tuple[np.ndarray, float, float]:
    """Flags (n_time, n_chan) and the best wall / CPU seconds of ``repeat`` runs."""
    rfi_flag(vis[:64, None, :64])  # compile (or load the numba cache) outside the timing
    best_wall, best_cpu, flags = np.inf, np.inf, None
    for _ in range(repeat):
        wall0, cpu0 = time.perf_counter(), time.process_time()
        flags = rfi_flag(vis[:, None])[:, 0].any(axis=-1)
        best_wall = min(best_wall, time.perf_counter() - wall0)
        best_cpu = min(best_cpu, time.process_time() - cpu0)
    return flags, best_wall, best_cpu


def aoflagger_python(requested: str | None) -> str | None:
    """The Python executable that can ``import aoflagger``, or None."""
    candidates = [requested] if requested else [sys.executable, "/tmp/aoflagger-venv/bin/python"]
    for exe in candidates:
        if exe and Path(exe).exists():
            probe = subprocess.run([exe, "-c", "import aoflagger"], capture_output=True)
            if probe.returncode == 0:
                return exe
    return None


def run_aoflagger(vis: np.ndarray, python: str) -> tuple[np.ndarray, float, float, str]:
    """Flags (n_time, n_chan), wall / CPU seconds and version of AOFlagger's generic strategy."""
    with tempfile.TemporaryDirectory(prefix="daskcal-bench-") as tmp:
        work = Path(tmp)
        np.save(work / "vis.npy", vis)
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        proc = subprocess.run([python, "-c", AOFLAGGER_SCRIPT, str(work)], capture_output=True,
                              text=True, env=env, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"AOFlagger failed:\n{proc.stderr}")
        timing = json.loads(proc.stdout.strip().splitlines()[-1])
        flags = np.load(work / "flags.npy")
    return flags, timing["wall_s"], timing["cpu_s"], timing["version"]


def report(name: str, flags: np.ndarray, sim, n_vis: int, wall: float, cpu: float) -> dict:
    scores = detection_scores(flags, sim)
    rate = n_vis / cpu / 1e6
    kinds = "  ".join(f"{k}={scores[f'recall_{k}']:.4f}" for k in RFI_KINDS)
    print(f"{name:10s} wall {wall:7.2f} s  cpu {cpu:7.2f} s  {rate:6.2f} Mvis/s/core  "
          f"recall {scores['recall']:.4f}  FPR {scores['fpr']:.4f}  flagged {scores['flagged']:.4f}")
    print(f"{'':10s} recall per kind: {kinds}")
    return {"rate": rate, **scores}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-time", type=int, default=10_000)
    parser.add_argument("--n-chan", type=int, default=1_000)
    parser.add_argument("--small", action="store_true", help="2 000 times x 500 channels")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=2, help="daskcal runs (best is kept)")
    parser.add_argument("--aoflagger-python", default=None,
                        help="Python with the aoflagger package (default: this one, or "
                             "/tmp/aoflagger-venv/bin/python)")
    parser.add_argument("--skip-aoflagger", action="store_true")
    args = parser.parse_args(argv)
    n_time, n_chan = (2_000, 500) if args.small else (args.n_time, args.n_chan)

    sim = simulate_plane(n_time, n_chan, 4, seed=args.seed)
    n_vis = sim.visibility.size
    print(f"block: 1 baseline x {n_time} times x {n_chan} channels x 4 pol = {n_vis / 1e6:.1f} M "
          f"visibilities; RFI on {sim.truth.mean():.2%} of the samples")

    flags, wall, cpu = run_daskcal(sim.visibility, args.repeat)
    ours = report("daskcal", flags, sim, n_vis, wall, cpu)

    python = None if args.skip_aoflagger else aoflagger_python(args.aoflagger_python)
    if python is None:
        print("aoflagger: not available (pip install aoflagger into a venv and pass "
              "--aoflagger-python)")
        return 0
    flags, wall, cpu, version = run_aoflagger(sim.visibility, python)
    theirs = report("aoflagger", flags, sim, n_vis, wall, cpu)
    print(f"{'':10s} ({version}, generic strategy, run by {python})")
    print(f"speed ratio daskcal / aoflagger (per core): {ours['rate'] / theirs['rate']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
