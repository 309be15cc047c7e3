"""Gridding / degridding throughput beside ``ducc0.wgridder`` at matched measured accuracy.

Run: ``.venv/bin/python bench/gridding.py [--scale 0.05] [--npix 4096] [--eps 1e-3 1e-5]``
(needs the ``bench`` extra: ``pip install -e .[bench]``).

The issue's LOFAR-like case: 60 stations with baselines to 69 km (46 core stations within
2 km, 14 remote), 1770 baselines x 600 times x 64 channels (130-170 MHz), a field at
declination +35 deg observed over hour angles -2 h .. +2 h from latitude 52.9 deg, imaged on
4096^2 pixels over 2.5 degrees. ``--scale`` keeps the hour-angle span and the w range but
uses ``round(600 * scale)`` times, so the run finishes in a few minutes.

For each requested ``epsilon`` both codes run on the same data (complex64 visibilities,
weights 1, no flags): ducc0 ``vis2dirty``/``dirty2vis`` (``do_wgridding=True``,
``nthreads=1`` and ``2``) and daskcal's ``dirty_image``/``predict_vis`` with
``method="wstack"`` and ``"wproject"`` (single-threaded kernels). Rates are *per core*:
samples divided by the process CPU time (user + system, all threads), which on a shared
machine is far more stable than wall time; wall times are printed too. W-projection is
timed on the first ``--wproject-rows`` rows only (its kernels grow with |w|: it is far
slower here), its accuracy measured on that subset.

Accuracy is *measured* for every run against a direct Fourier transform: the dirty image at
``--n-pix-check`` random pixels (L2 error relative to the DFT), the predicted visibilities of
a model of ``--n-src`` point sources at ``--n-vis-check`` random samples (L2 error and
worst error relative to the rms). daskcal runs over a ladder of epsilons; each ducc0 row is
matched with the fastest daskcal run whose measured errors are not worse (both the L2 and,
for degridding, the worst error).
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

C = 299_792_458.0


def lofar_like_uvw(n_time: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """UVW (n_time * 1770, 3) metres and the maximum baseline length.

    Rows are time-major (all baselines of a time, then the next time).
    """
    rng = np.random.default_rng(seed)
    core = rng.uniform(-1.0, 1.0, (46, 2)) * 1400.0
    ang = rng.uniform(0, 2 * np.pi, 14)
    rad = np.geomspace(3.5e3, 36e3, 14)
    remote = np.stack([rad * np.cos(ang), rad * np.sin(ang)], axis=1)
    en = np.concatenate([core, remote])
    a1, a2 = np.triu_indices(60, k=1)
    b = en[a2] - en[a1]
    b *= 69e3 / np.linalg.norm(b, axis=1).max()
    lat, dec = np.radians(52.9), np.radians(35.0)
    # local (east, north, up=0) -> equatorial X (meridian), Y (east), Z (pole)
    lx, ly, lz = -np.sin(lat) * b[:, 1], b[:, 0], np.cos(lat) * b[:, 1]
    ha = np.linspace(-2.0, 2.0, n_time) * (np.pi / 12.0)
    sh, ch = np.sin(ha)[:, None], np.cos(ha)[:, None]
    u = sh * lx + ch * ly
    v = -np.sin(dec) * ch * lx + np.sin(dec) * sh * ly + np.cos(dec) * lz
    w = np.cos(dec) * ch * lx - np.cos(dec) * sh * ly + np.sin(dec) * lz
    uvw = np.stack([u, v, w], axis=-1).reshape(-1, 3)
    return np.ascontiguousarray(uvw), float(np.linalg.norm(b, axis=1).max())


def dft_pixels(uvw, freq, vis, ix, iy, npix, pix):
    """Dirty image (ducc0 convention, divided by n) at pixels ``(ix, iy)`` by DFT."""
    l = (ix - npix // 2) * pix
    m = (iy - npix // 2) * pix
    n = np.sqrt(1 - l * l - m * m)
    out = np.zeros(ix.size)
    for c in range(freq.size):
        s = 2j * np.pi * freq[c] / C
        for lo in range(0, uvw.shape[0], 200_000):
            sl = slice(lo, lo + 200_000)
            ph = s * (np.outer(l, uvw[sl, 0]) + np.outer(m, uvw[sl, 1])
                      - np.outer(n - 1, uvw[sl, 2]))
            out += (np.exp(ph) @ vis[sl, c]).real
    return out / n


def dft_predict(uvw, freq, flux, ix, iy, npix, pix):
    """Visibilities (n_sample,) of point pixels at the given rows/chans by DFT."""
    l = (ix - npix // 2) * pix
    m = (iy - npix // 2) * pix
    n = np.sqrt(1 - l * l - m * m)
    s = -2j * np.pi * freq[:, None] / C
    ph = s * (uvw[:, 0:1] * l + uvw[:, 1:2] * m - uvw[:, 2:3] * (n - 1))
    return np.exp(ph) @ (flux / n)


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _time(fn, repeat):
    """(best CPU seconds, wall seconds of that run, result)."""
    best, wall, out = float("inf"), 0.0, None
    for _ in range(repeat):
        t0, w0 = _cpu(), time.perf_counter()
        out = fn()
        t = _cpu() - t0
        if t < best:
            best, wall = t, time.perf_counter() - w0
    return best, wall, out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", type=float, default=0.05, help="fraction of the 600 times")
    p.add_argument("--npix", type=int, default=4096)
    p.add_argument("--fov-deg", type=float, default=2.5)
    p.add_argument("--n-chan", type=int, default=64)
    p.add_argument("--eps", type=float, nargs="+", default=[1e-3, 1e-5])
    p.add_argument("--ladder", type=float, nargs="+",
                   default=[1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5, 3e-6])
    p.add_argument("--methods", nargs="+", default=["wstack", "wproject"])
    p.add_argument("--single-accum-below", type=float, default=1e-4,
                   help="also run w-stacking with complex64 grids (double_accum=False) for "
                        "ladder epsilons below this (the default plans accumulate in "
                        "complex128 there); 0 disables")
    p.add_argument("--wproject-rows", type=int, default=3540,
                   help="w-projection is timed on at most this many rows (it is slow)")
    p.add_argument("--n-pix-check", type=int, default=96)
    p.add_argument("--n-vis-check", type=int, default=3000)
    p.add_argument("--n-src", type=int, default=50)
    p.add_argument("--repeat", type=int, default=1)
    args = p.parse_args(argv)

    import ducc0

    from daskcal.kernels.gridding import dirty_image, make_plan, predict_vis, w_range

    n_time = max(2, round(600 * args.scale))
    uvw, bmax = lofar_like_uvw(n_time)
    freq = np.linspace(130e6, 170e6, args.n_chan)
    npix, pix = args.npix, np.radians(args.fov_deg) / args.npix
    rng = np.random.default_rng(1)
    vis = (rng.normal(size=(uvw.shape[0], freq.size))
           + 1j * rng.normal(size=(uvw.shape[0], freq.size))).astype(np.complex64)
    n_vis = vis.size
    wl = w_range(uvw, freq)
    print(f"{n_time} times x 1770 baselines x {freq.size} channels = {n_vis / 1e6:.1f} M "
          f"visibilities; {npix}^2 pixels of {np.degrees(pix) * 3600:.2f} arcsec; "
          f"max baseline {bmax / 1e3:.1f} km; w in [{wl[0]:.0f}, {wl[1]:.0f}] wavelengths")

    # accuracy references (full data; the w-projection subset separately)
    ix, iy = rng.integers(0, npix, args.n_pix_check), rng.integers(0, npix, args.n_pix_check)
    sx, sy = rng.integers(0, npix, args.n_src), rng.integers(0, npix, args.n_src)
    model = np.zeros((npix, npix))
    model[sx, sy] = rng.uniform(0.5, 2.0, args.n_src)
    flux = model[sx, sy]
    n_wp = min(uvw.shape[0], args.wproject_rows)
    t0 = time.perf_counter()
    refs = {}
    for name, n_rows in (("full", uvw.shape[0]), ("wproject", n_wp)):
        rows = rng.integers(0, n_rows, args.n_vis_check)
        chans = rng.integers(0, freq.size, args.n_vis_check)
        refs[name] = (dft_pixels(uvw[:n_rows], freq, vis[:n_rows], ix, iy, npix, pix), rows,
                      chans, dft_predict(uvw[rows], freq[chans], flux, sx, sy, npix, pix))
    print(f"DFT references: {time.perf_counter() - t0:.1f} s")

    def err_img(d, ref):
        e = d[ix, iy] - ref[0]
        return float(np.linalg.norm(e) / np.linalg.norm(ref[0]))

    def err_vis(v, ref):
        e = v[ref[1], ref[2]] - ref[3]
        rms = np.sqrt(np.mean(np.abs(ref[3]) ** 2))
        return float(np.linalg.norm(e) / np.linalg.norm(ref[3])), float(np.abs(e).max() / rms)

    results = []  # (who, eps, direction, cpu_s, wall_s, n_vis_timed, l2, worst)
    for eps in args.eps:
        for nt in (1, 2):
            kw = dict(uvw=uvw, freq=freq, pixsize_x=pix, pixsize_y=pix, epsilon=eps,
                      do_wgridding=True, nthreads=nt)
            t, wall, d = _time(lambda kw=kw: ducc0.wgridder.vis2dirty(
                vis=vis, npix_x=npix, npix_y=npix, **kw), args.repeat)
            results.append((f"ducc0 {nt}thr", eps, "grid", t, wall, n_vis,
                            err_img(d, refs["full"]), None))
            t, wall, v = _time(lambda kw=kw: ducc0.wgridder.dirty2vis(
                dirty=model.astype(np.float32), **kw), args.repeat)
            results.append((f"ducc0 {nt}thr", eps, "degrid", t, wall, n_vis,
                            *err_vis(v, refs["full"])))
            print(results[-2], results[-1], flush=True)
    for method in args.methods:
        ref = refs["full"] if method == "wstack" else refs["wproject"]
        n_rows = uvw.shape[0] if method == "wstack" else n_wp
        sub = slice(0, n_rows)
        w_lo, w_hi = w_range(uvw[sub], freq)
        runs = [(eps, None) for eps in args.ladder]
        if method == "wstack":
            runs += [(eps, False) for eps in args.ladder if eps < args.single_accum_below]
        for eps, accum in runs:
            try:
                plan = make_plan(npix, npix, pix, pix, eps, w_min=w_lo, w_max=w_hi,
                                 n_vis=n_rows * freq.size, method=method, double_accum=accum)
            except ValueError as exc:
                print(method, eps, "no plan:", exc)
                continue
            label = method if accum is None else f"{method} c64-grid"
            t, wall, d = _time(lambda plan=plan, sub=sub: dirty_image(
                uvw[sub], freq, vis[sub], plan=plan), args.repeat)
            results.append((label, eps, "grid", t, wall, n_rows * freq.size, err_img(d, ref),
                            None))
            t, wall, v = _time(lambda plan=plan, sub=sub: predict_vis(
                model, uvw[sub], freq, plan=plan), args.repeat)
            results.append((label, eps, "degrid", t, wall, n_rows * freq.size,
                            *err_vis(v, ref)))
            print(results[-2], results[-1], f"plan: {_describe(plan)}", flush=True)
    _report(results, args.eps)
    return 0


def _describe(plan) -> str:
    if plan.method == "wstack":
        return (f"grid {plan.nu}, W={plan.kernel.support}, Ww={plan.kernel_w.support}, "
                f"{plan.n_planes} planes, grid64={plan.double_accum}, fft128={plan.fft_double}")
    return (f"grid {plan.nu}, W0={plan.wp_u.support0}..{plan.wp_u.support_table[-1]}, "
            f"{plan.n_taylor} Taylor terms")


def _report(results, eps_list) -> None:
    print("\n| direction | ducc0 eps | code | Mvis/s per core | wall s | measured L2 | "
          "worst/rms | per-core ratio to ducc0 1thr |")
    print("|---|---|---|---|---|---|---|---|")
    for direction in ("grid", "degrid"):
        for eps in eps_list:
            ref = [r for r in results if r[0] == "ducc0 1thr" and r[1] == eps
                   and r[2] == direction][0]
            ref_rate = ref[5] / ref[3] / 1e6
            for who in ("ducc0 1thr", "ducc0 2thr"):
                r = [r for r in results if r[0] == who and r[1] == eps and r[2] == direction][0]
                rate = r[5] / r[3] / 1e6
                print(f"| {direction} | {eps:g} | {who} | {rate:.2f} | {r[4]:.1f} | {r[6]:.1e} "
                      f"| {_fmt(r[7])} | {rate / ref_rate:.2f} |")
            for method in ("wstack", "wstack c64-grid", "wproject"):
                ok = [r for r in results if r[0] == method and r[2] == direction
                      and r[6] <= ref[6] and (r[7] is None or r[7] <= ref[7])]
                if not ok:
                    continue
                best = max(ok, key=lambda r: r[5] / r[3])
                rate = best[5] / best[3] / 1e6
                print(f"| {direction} | {eps:g} | {method} (eps {best[1]:g}) | {rate:.2f} | "
                      f"{best[4]:.1f} | {best[6]:.1e} | {_fmt(best[7])} | "
                      f"{rate / ref_rate:.2f} |")


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.1e}"


if __name__ == "__main__":
    raise SystemExit(main())
