"""Throughput of the gain-solver kernel alone, in visibilities per second per core.

Run: ``.venv/bin/python bench/solver_kernel.py [--n-ant 60] [--t-int 60] [--f-int 64]
[--n-t-sol 1] [--n-f-sol 2] [--repeat 3]``

Builds one chunk of a LOFAR-like problem (``n_ant`` antennas, all cross-correlations,
four correlations, complex64 data and model, float32 weights, 1 % of the samples
flagged, thermal noise) holding ``n_t_sol x n_f_sol`` solution intervals of
``t_int x f_int`` samples, corrupts the model with known gains and times
:func:`daskcal.kernels.solvers.solve_gains` for each mode on one thread (best of
``--repeat`` in CPU time of the process, so that other work on a shared machine
does not count, after a compiling warm-up). A *visibility* is one (time, baseline,
channel) sample with all its correlations. The columns split the time into the
pre-reduction of the samples and the iterations (which do not depend on the
number of samples per interval).
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import numpy as np


def _problem(n_ant, n_time, n_chan, seed=0):
    """Model, noise, weights, flags and baselines of one chunk (gains are applied per mode)."""
    rng = np.random.default_rng(seed)
    a1, a2 = np.triu_indices(n_ant, 1)
    n_bl = a1.size
    shape = (n_time, n_bl, n_chan, 4)
    # a few polarised point sources with random baseline coordinates, per baseline and channel
    model = np.zeros(shape, np.complex64)
    uv = rng.normal(scale=300.0, size=(n_bl, 2))
    freq = 1.2e8 + 1.95e5 * np.arange(n_chan)
    for _ in range(3):
        lm = rng.normal(scale=0.02, size=2)
        stokes = rng.uniform(1, 5) * np.array([1.0, *rng.uniform(-0.1, 0.1, 3)])
        brightness = np.array([stokes[0] + stokes[1], stokes[2] + 1j * stokes[3],
                               stokes[2] - 1j * stokes[3], stokes[0] - stokes[1]])
        rot = 2 * np.pi * np.arange(n_time)[:, None] / 2000.0
        phase = np.exp(-2j * np.pi * (uv[None, :, 0] * np.cos(rot) * lm[0]
                                      + uv[None, :, 1] * np.sin(rot + 1) * lm[1]))
        model += (phase[:, :, None, None] * (freq / 1.5e8)[None, None, :, None]
                  * brightness).astype(np.complex64)
    sigma = 0.5
    noise = (sigma * (rng.standard_normal(shape, np.float32)
                      + 1j * rng.standard_normal(shape, np.float32))).astype(np.complex64)
    weight = np.full(shape, 1 / sigma**2, np.float32)
    flag = rng.random(shape, np.float32) < 0.01
    return model, noise, weight, flag, a1, a2


def _corrupt(mode, model, noise, a1, a2, n_ant, seed=1):
    """``G_p M G_q^H + noise`` with gains of the kind ``mode`` solves for."""
    rng = np.random.default_rng(seed)
    amp = 1 + 0.1 * rng.normal(size=(n_ant, 2))
    phase = rng.uniform(-np.pi, np.pi, (n_ant, 2))
    if mode.startswith("scalar"):
        amp[:, 1], phase[:, 1] = amp[:, 0], phase[:, 0]
    if mode.endswith("phase"):
        amp[:] = 1.0
    jones = np.zeros((n_ant, 2, 2), np.complex64)
    jones[:, 0, 0], jones[:, 1, 1] = (amp * np.exp(1j * phase)).T
    if mode == "full_jones":
        jones[:, 0, 1], jones[:, 1, 0] = 0.05 * (rng.normal(size=(2, n_ant))
                                                 + 1j * rng.normal(size=(2, n_ant)))
    gp, gq = jones[a1][None, :, None], jones[a2][None, :, None]
    data = noise.copy()
    for i in range(2):
        for j in range(2):
            for k in range(2):
                for m in range(2):
                    data[..., 2 * i + j] += gp[..., i, k] * model[..., 2 * k + m] * gq[..., j, m].conj()
    return data


def _best(fn, repeat):
    best = np.inf
    for _ in range(repeat):
        t0 = time.process_time()
        out = fn()
        best = min(best, time.process_time() - t0)
    return best, out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-ant", type=int, default=60)
    parser.add_argument("--t-int", type=int, default=60, help="integrations per interval")
    parser.add_argument("--f-int", type=int, default=64, help="channels per interval")
    parser.add_argument("--n-t-sol", type=int, default=1, help="intervals along time")
    parser.add_argument("--n-f-sol", type=int, default=2, help="intervals along frequency")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--max-iter", type=int, default=50)
    parser.add_argument("--tolerance", type=float, default=1e-6)
    args = parser.parse_args(argv)

    import numba

    numba.set_num_threads(1)
    from daskcal.kernels.solvers import MODES, _diag, _full, _reduce, solve_gains

    n_time, n_chan = args.t_int * args.n_t_sol, args.f_int * args.n_f_sol
    model, noise, weight, flag, a1, a2 = _problem(args.n_ant, n_time, n_chan)
    n_vis = n_time * a1.size * n_chan
    print(f"{args.n_ant} antennas, {a1.size} baselines, {args.n_t_sol} x {args.n_f_sol} intervals "
          f"of {args.t_int} x {args.f_int} samples: {n_vis / 1e6:.1f} M visibilities x 4 "
          f"correlations ({model.nbytes / 2**20:.0f} MiB of data), one thread")

    # warm-up: compile every specialisation on a small problem
    small = tuple(x[:2, :, :2] for x in (noise, model, weight, flag))
    for mode in ("scalar_phase", "diagonal_complex", "full_jones"):
        solve_gains(*small, a1, a2, args.n_ant, 1, 1, mode=mode, max_iter=2)

    a1i, a2i = a1.astype(np.int64), a2.astype(np.int64)
    nt = np.minimum(args.t_int, n_time - args.t_int * np.arange(args.n_t_sol))
    nf = np.minimum(args.f_int, n_chan - args.f_int * np.arange(args.n_f_sol))
    n_samp = np.outer(nt, nf).astype(np.float64)
    opts = (args.max_iter, args.tolerance, 0.5, 2, 0, 0.0)
    rows = []
    for mode in ("scalar_phase", "diagonal_phase", "diagonal_complex", "full_jones"):
        data = _corrupt(mode, model, noise, a1, a2, args.n_ant)
        t_all, sol = _best(lambda mode=mode, data=data: solve_gains(
            data, model, weight, flag, a1, a2, args.n_ant, args.t_int, args.f_int, mode=mode,
            max_iter=args.max_iter, tolerance=args.tolerance), args.repeat)
        # the two parts of the kernel alone: reduction, then iterations on the sums
        args_red = (data, model, weight, flag, a1i, a2i, args.t_int, args.f_int)
        if mode == "full_jones":
            t_red, sums = _best(lambda a=args_red: _reduce._reduce_full(*a), args.repeat)
            g0 = np.ones((1, 1, 1, 1, 1), np.complex128)
            t_it, _ = _best(lambda s=sums, g0=g0: _full._solve_full(
                *s, a1i, a2i, args.n_ant, n_samp, g0, False, *opts), args.repeat)
        else:
            t_red, sums = _best(lambda a=args_red: _reduce._reduce_diag(*a, 0, 3), args.repeat)
            g0 = np.ones((1, 1, 1, 1), np.complex128)
            t_it, _ = _best(lambda s=sums, g0=g0, m=MODES[mode]: _diag._solve_diag(
                *s, a1i, a2i, args.n_ant, n_samp, m, g0, False, *opts), args.repeat)
        rows.append((mode, n_vis / t_all / 1e6, t_all, t_red, t_it, int(sol.n_iter.max()),
                     float(np.nanmean(sol.chi2)), bool(sol.converged.all())))

    print(f"{'mode':<18}{'Mvis/s/core':>12}{'total s':>10}{'reduce s':>10}{'iterate s':>10}"
          f"{'n_iter':>8}{'chi2':>8}{'conv':>6}")
    for mode, rate, t_all, t_red, t_it, n_iter, chi2, conv in rows:
        print(f"{mode:<18}{rate:>12.1f}{t_all:>10.3f}{t_red:>10.3f}{t_it:>10.4f}"
              f"{n_iter:>8d}{chi2:>8.3f}{conv!s:>6}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
