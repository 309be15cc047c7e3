"""Benchmark: daskcal's ``image`` stage beside WSClean and CASA ``tclean`` on the same MS.

Usage::

    .venv/bin/python bench/imaging.py [--case ngc5921 lofar] [--weighting briggs natural]
                                      [--skip-casa] [--lofar-npix 1200 --lofar-cell 7.5 ...]

Cases (each written once as a Measurement Set that all three tools read):

* ``ngc5921``: the 3C 286 field (``1331+305``) of the VLA NGC 5921 demonstration data
  (``daskcal.testing.realdata.fetch_dataset("ngc5921_uvfits")``, read with daskcal and
  written with :func:`daskcal.data.ms_write.write_ms`): 12 integrations x 378 baselines
  (27 antennas and their autocorrelations) x 63 channels, RR and LL. The demonstration data
  are raw (no tool images them sensibly), so the bench calibrates ``DATA`` on a 14.9 Jy
  point at the phase centre first (per integration, channel and hand, see
  :func:`calibrate_point`); every tool then reads the same calibrated MS.
* ``lofar``: a simulated LOFAR-HBA-like observation (``--lofar-core`` core ears' stations,
  ``--lofar-remote`` remote stations: baselines to ~15 km by default), point sources spread
  over ~2.5 degrees (up to 1.15 deg from the centre, where ``w (n - 1)`` reaches several
  turns), thermal noise, no gains, beam or aberration, so that the truth is the sky.

Every tool images Stokes I (``(RR + LL) / 2``, ``(XX + YY) / 2``) with the same pixel size,
image size, weighting (Briggs robust 0 or natural), loop gain, major-cycle gain (0.8),
``niter`` and absolute threshold (point-component CLEAN: daskcal Clark by default, WSClean
Hogbom with its sub-minor loop, CASA Hogbom): daskcal ``image(..., backend="dask")``
on ``open_observation(ms)``; WSClean (Debian package ``wsclean``: w-stacking gridder, its
default; ``apt-get install -y wsclean``); CASA ``tclean`` (``casatasks`` in its own
virtual environment ``--casa-venv``, created here with the ``casadata`` wheel of daskcal's
real-data cache, offline: ``measurespath`` points at that wheel's data and every automatic
update is off; gridder ``standard`` for ngc5921, ``widefield`` with automatic w-projection
planes for lofar). CASA's major cycles are triggered by its ``cyclefactor`` rule, not by a
major-cycle gain: its cycles differ (the final threshold is the same).

Conventions. CASA's own predictor (``ft`` of a component list, exact per component) on
these UVW gives ``V = S exp(+2 pi i (u l + v m + w (n - 1)) f / c)``, and real MSs store
``uvw ~ X(antenna1) - X(antenna2)`` (checked on the VLA ``vla_day2_ms``): that is daskcal's
data model, so all three tools read the same Measurement Set. (This bench found daskcal's
model to be the complex conjugate, imaging real data point-reflected; fixed since.)

Threads: ``--threads`` (2) for every tool: WSClean ``-j``, daskcal's Dask scheduler and
its minor-cycle FFTs (``scipy.fft.set_workers``); CASA runs serially (``OMP_NUM_THREADS=1``
for its environment, as casatasks is not built for OpenMP parallel gridding here).

Measured per tool: process wall time (imports, reading and writing included; daskcal
also reports the time inside ``image()``), the peak of the restored image, a free
elliptical Gaussian fit to each bright source on the restored image (peak and position;
pixel positions are converted to RA/Dec with each tool's FITS WCS (SIN projection) --
daskcal's ``(l, m)`` images are written as FITS with the same convention: RA increasing
to the left), the sum of the clean components within 5 pixels of each source (the
model images, Jy/pixel: a flux comparison that does not depend on the restoring beam,
which each tool fits differently), the robust (MAD) rms of the residual image, and the
restoring beam. The table gives differences to daskcal and, for ``lofar``, to the
simulated truth (fluxes and positions; positions in pixels). Row ``dc@ws-beam`` is
daskcal's model and residual restored with WSClean's beam: the restored peak of a source
that is not a point (smeared, or CLEANed into a few pixels) depends on the beam, which
each tool fits its own way (daskcal's main-lobe fit equals CASA's to 0.1"; on the LOFAR
natural-weighting PSF WSClean's is 2.6 times wider), so peaks compare like for like there.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

CASA_SCRIPT = textwrap.dedent("""
    import json, sys, time
    t0 = time.perf_counter()
    from casatasks import exportfits, tclean
    a = json.loads(sys.argv[1])
    kw = dict(vis=a["ms"], imagename=a["name"], imsize=[a["npix"], a["npix"]],
              cell=f'{a["cell_arcsec"]}arcsec', specmode="mfs", stokes="I",
              deconvolver="hogbom", niter=a["niter"], gain=a["gain"],
              threshold=f'{a["threshold_jy"]}Jy', weighting=a["weighting"],
              gridder=a["gridder"], interactive=False, pbcor=False, datacolumn="data")
    if a["weighting"] == "briggs":
        kw["robust"] = a["robust"]
    if a["gridder"] == "widefield":
        kw["wprojplanes"] = -1
    tclean(**kw)
    t1 = time.perf_counter()
    for ext in ("image", "residual", "model"):
        exportfits(a["name"] + "." + ext, a["name"] + "-" + ext + ".fits", overwrite=True)
    print("RESULT" + json.dumps({"tclean_s": t1 - t0}))
""")


#: radius (pixels) within which clean components are summed per source
MODEL_RADIUS_PX = 5
#: 3C 286 at 1.4135 GHz (Perley & Butler 2013), Jy
NGC5921_3C286_JY = 14.9


def log(msg: str) -> None:
    print(f"[bench] {msg}", flush=True)


# ----------------------------------------------------------------------------- data


def make_ngc5921_ms(workdir: Path) -> Path:
    """The 3C 286 partition of NGC5921.fits written as an MS (once)."""
    from daskcal.data import open_observation
    from daskcal.data.ms_write import write_ms
    from daskcal.testing.realdata import fetch_dataset

    ms = workdir / "ngc5921_3c286.ms"
    if ms.exists():
        return ms
    obs = open_observation(fetch_dataset("ngc5921_uvfits"))
    name = next(k for k, n in obs.children.items()
                if "field_and_source_base_xds" in n.children
                and "1331+305" in str(n["field_and_source_base_xds"]["field_name"].values[0]))
    tmp = workdir / "ngc5921_3c286.ms.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    write_ms(obs[name], tmp, overwrite=True)
    from casacore.tables import table

    with table(str(tmp), readonly=False, ack=False) as t:
        calibrate_point(t, flux_jy=NGC5921_3C286_JY)
    os.replace(tmp, ms)
    log(f"wrote {ms} (partition {name}), calibrated on a {NGC5921_3C286_JY} Jy point")
    return ms


def calibrate_point(t, flux_jy: float, n_iter: int = 100) -> None:
    """Calibrate DATA in place on a point source at the phase centre (the raw demo data).

    Per integration, channel and correlation (RR, LL), antenna gains ``g`` minimising
    ``sum |V_ab - g_a S g_b^*|^2`` over unflagged cross-correlations (StEFCal-like
    alternating updates); ``DATA`` becomes ``V_ab / (g_a g_b^*)`` (samples of antennas
    without a solution are flagged).
    """
    data, flag = t.getcol("DATA"), t.getcol("FLAG")
    a1, a2, tm = t.getcol("ANTENNA1"), t.getcol("ANTENNA2"), t.getcol("TIME")
    ut, ti = np.unique(tm, return_inverse=True)
    n_ant = int(max(a1.max(), a2.max())) + 1
    nt, nf, npol = ut.size, data.shape[1], data.shape[2]
    v = np.zeros((nt, nf, npol, n_ant, n_ant), complex)
    w = np.zeros(v.shape)
    cross = a1 != a2
    for r in np.nonzero(cross)[0]:
        ok = ~flag[r]
        v[ti[r], :, :, a1[r], a2[r]] = np.where(ok, data[r], 0)
        v[ti[r], :, :, a2[r], a1[r]] = np.where(ok, np.conj(data[r]), 0)
        w[ti[r], :, :, a1[r], a2[r]] = w[ti[r], :, :, a2[r], a1[r]] = ok
    g = np.ones(v.shape[:-1], complex)
    for it in range(n_iter):
        z = flux_jy * np.conj(g)[..., None, :] * w
        num = np.sum(v * np.conj(z), axis=-1)
        den = np.sum(np.abs(z) ** 2, axis=-1)
        new = np.where(den > 0, num / np.where(den > 0, den, 1), 0)
        g = new if it % 2 else 0.5 * (g + new)
    bad = np.abs(g) < 1e-6
    gi = np.where(bad, 0, 1 / np.where(bad, 1, g))
    for r in range(data.shape[0]):
        ga, gb = gi[ti[r], :, :, a1[r]], gi[ti[r], :, :, a2[r]]
        data[r] *= ga * np.conj(gb)
        flag[r] |= bad[ti[r], :, :, a1[r]] | bad[ti[r], :, :, a2[r]]
    t.putcol("DATA", data)
    t.putcol("FLAG", flag)


def lofar_sources(seed: int) -> list[tuple[float, float, float]]:
    """(dl_deg, dm_deg, flux_jy) offsets of the simulated sources from the centre."""
    rng = np.random.default_rng(seed)
    out = [(0.0, 0.0, 5.0)]
    for k, r in enumerate((0.15, 0.35, 0.55, 0.75, 0.9, 1.05, 1.15)):
        a = rng.uniform(0, 2 * np.pi) + k
        out.append((r * math.cos(a), r * math.sin(a), float(rng.uniform(0.5, 4.0))))
    return out


def make_lofar_ms(args, workdir: Path) -> tuple[Path, dict]:
    """Simulate and write the wide-field MS; returns (ms, truth) with RA/Dec/flux/noise."""
    from daskcal.data.geometry import radec_of_lm
    from daskcal.data.ms_write import write_ms
    from daskcal.testing import simulate_observation

    ms = workdir / f"lofar_{args.lofar_core}c{args.lofar_remote}r{args.lofar_ntime}t.ms"
    truth_json = ms.with_suffix(".json")
    ra0, dec0 = 123.4, 48.2
    offs = lofar_sources(args.seed)
    ra, dec = radec_of_lm(np.radians([o[0] for o in offs]), np.radians([o[1] for o in offs]),
                          math.radians(ra0), math.radians(dec0))
    comps = [dict(name=f"s{k}", ra_deg=math.degrees(a), dec_deg=math.degrees(d), flux_jy=o[2],
                  spectral_index=[0.0], ref_freq_hz=150e6)
             for k, (a, d, o) in enumerate(zip(ra, dec, offs, strict=True))]
    if ms.exists() and truth_json.exists():
        return ms, json.loads(truth_json.read_text())
    cfg = dict(array="lofar", lofar=dict(n_core=args.lofar_core, n_remote=args.lofar_remote),
               ra_deg=ra0, dec_deg=dec0, duration_s=args.lofar_ntime * 60.0,
               integration_s=60.0, n_chan=4, freq_start_hz=144e6, channel_width_hz=2e6,
               polarizations=["XX", "YY"], gains=dict(enabled=False), aberration=False,
               beam=dict(enabled=False), sky=dict(preset="none", components=comps),
               chunks={"time": 30, "frequency": 4}, seed=args.seed)
    obs, truth = simulate_observation(cfg)
    node = obs[next(iter(obs.children))]
    sigma = np.asarray(truth["noise"]["NOISE_SIGMA"].values, dtype=np.float64)
    n = node.sizes["time"] * node.sizes["frequency"]
    # natural-weighting Stokes I noise: sigma / sqrt(2) per real part and sample
    s_i = sigma / math.sqrt(2.0)
    noise = math.sqrt(float(np.sum(n / s_i**2))) ** -1
    tmp = ms.with_suffix(".ms.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    t0 = time.perf_counter()
    write_ms(obs, tmp, overwrite=True)
    os.replace(tmp, ms)
    info = dict(ra0_deg=ra0, dec0_deg=dec0, noise_natural_jy=noise,
                sources=[(c["ra_deg"], c["dec_deg"], c["flux_jy"]) for c in comps])
    truth_json.write_text(json.dumps(info))
    log(f"wrote {ms} ({node.sizes['time']} times x {node.sizes['baseline_id']} baselines x "
        f"4 channels) in {time.perf_counter() - t0:.1f} s; natural-weighting noise "
        f"{noise * 1e3:.3f} mJy/beam")
    return ms, info


# ----------------------------------------------------------------------------- tools


def run_daskcal_child(args) -> None:
    """Child process: open the MS, image, save FITS (RA to the left); print JSON."""
    import dask
    import scipy.fft

    from daskcal.data import open_observation
    from daskcal.pipeline.imagingsteps import ImageStepConfig, choose_backend
    from daskcal.stages.imaging import image

    p = json.loads(args.params)
    obs = open_observation(p["ms"], chunks=p["chunks"])
    node = obs[next(k for k, n in obs.children.items() if "antenna_xds" in n.children)]
    cfg = dict(npix=p["npix"], cell_arcsec=p["cell_arcsec"], weighting=p["weighting"],
               robust=p["robust"], niter=p["niter"], gain=p["gain"], mgain=0.8,
               threshold_jy=p["threshold_jy"], auto_threshold=None,
               deconvolver=p["deconvolver"],
               max_major=p["max_major"], epsilon=p["epsilon"])
    # the backend a recipe's image step picks ('auto': in memory below in_memory_mb)
    backend = choose_backend(node.to_dataset(inherit=False), p["backend"],
                             ImageStepConfig.model_fields["in_memory_mb"].default)
    t0 = time.perf_counter()
    # the threads serve the Dask graph (gridding) and the FFTs (scipy.fft: the minor cycle's,
    # and the in-memory backend's gridding FFTs)
    with dask.config.set(scheduler="threads", num_workers=p["threads"]), \
            scipy.fft.set_workers(p["threads"]):
        out = image(node, cfg, backend=backend)
    t_image = time.perf_counter() - t0
    ra0, dec0 = out.attrs["phase_centre_rad"]
    for var, suffix in (("RESTORED", "image"), ("RESIDUAL", "residual"), ("MODEL", "model")):
        write_fits(out[var].values, p["name"] + f"-{suffix}.fits", math.degrees(ra0),
                   math.degrees(dec0), p["cell_arcsec"], out.attrs)
    print("RESULT" + json.dumps({"image_s": t_image, "backend": backend,
                                 "n_iter": out.attrs["n_iter"],
                                 "n_major": out.attrs["n_major"],
                                 "theoretical_noise_jy": out.attrs["theoretical_noise_jy"]}))


def write_fits(img_lm: np.ndarray, path: str, ra0_deg: float, dec0_deg: float,
               cell_arcsec: float, attrs: dict) -> None:
    """A daskcal ``(l, m)`` image as a FITS image (x = -l: RA to the left, y = m).

    ``fits[y, x] = img[npix - 1 - x, y]``: pixel ``i = npix/2`` (l = 0) is ``x = npix/2 - 1``
    (0-based), i.e. ``CRPIX1 = npix/2``; ``CRPIX2 = npix/2 + 1``.
    """
    from astropy.io import fits

    npix = img_lm.shape[0]
    h = fits.Header()
    h.update(CTYPE1="RA---SIN", CRVAL1=ra0_deg, CDELT1=-cell_arcsec / 3600.0,
             CRPIX1=npix / 2, CUNIT1="deg", CTYPE2="DEC--SIN", CRVAL2=dec0_deg,
             CDELT2=cell_arcsec / 3600.0, CRPIX2=npix / 2 + 1, CUNIT2="deg", BUNIT="JY/BEAM",
             BMAJ=math.degrees(attrs["bmaj_rad"]), BMIN=math.degrees(attrs["bmin_rad"]),
             BPA=math.degrees(attrs["bpa_rad"]), EQUINOX=2000.0, RADESYS="FK5")
    tmp = path + ".tmp"
    fits.PrimaryHDU(np.ascontiguousarray(img_lm[::-1, :].T, dtype=np.float32),
                    header=h).writeto(tmp, overwrite=True)
    os.replace(tmp, path)


def run_daskcal(ms: Path, name: str, p: dict, threads: int) -> dict:
    params = dict(p, ms=str(ms), name=name, threads=threads)
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, __file__, "--daskcal-child",
                          f"--params={json.dumps(params)}"], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if res.returncode:
        raise RuntimeError("daskcal failed:\n" + res.stderr[-3000:])
    info = json.loads(res.stdout.split("RESULT", 1)[1])
    return dict(info, wall_s=wall, image=name + "-image.fits", residual=name + "-residual.fits",
                model=name + "-model.fits")


def run_wsclean(ms: Path, name: str, p: dict, threads: int) -> dict | None:
    exe = shutil.which("wsclean")
    if exe is None:
        log("WSClean is not installed (apt-get install -y wsclean): skipped")
        return None
    weight = ["-weight", "briggs", str(p["robust"])] if p["weighting"] == "briggs" else \
        ["-weight", "natural"]
    cmd = [exe, "-name", name, "-size", str(p["npix"]), str(p["npix"]), "-scale",
           f"{p['cell_arcsec']}asec", *weight, "-niter", str(p["niter"]), "-threshold",
           str(p["threshold_jy"]), "-gain", str(p["gain"]), "-mgain", "0.8", "-pol", "I",
           "-j", str(threads), "-no-update-model-required", "-nmiter", str(p["max_major"]),
           "-data-column", "DATA", *p.get("wsclean_extra", []), str(ms)]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if res.returncode:
        log("WSClean failed:\n  " + "\n  ".join(res.stdout.splitlines()[-10:]
                                                + res.stderr.splitlines()[-10:]))
        return None
    found = re.findall(r"(\d+) major iterations were performed", res.stdout)
    n_major = int(found[-1]) if found else -1
    its = re.findall(r"Performed (\d+) iterations in total", res.stdout)
    return dict(wall_s=wall, image=name + "-image.fits", residual=name + "-residual.fits",
                model=name + "-model.fits", n_major=n_major,
                n_iter=int(its[-1]) if its else -1)


def ensure_casa(venv: Path, casadata_wheel: Path) -> Path:
    """The python of ``venv`` with casatasks and casadata, installing them if missing."""
    py = venv / "bin" / "python"
    ok = py.exists() and subprocess.run([str(py), "-c", "import casatasks, casadata"],
                                        capture_output=True, env=casa_env(venv)).returncode == 0
    if ok:
        return py
    log(f"installing casatasks and casadata into {venv} (casadata from {casadata_wheel}; "
        "a few minutes)")
    subprocess.run(["python3", "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "casatasks",
                    str(casadata_wheel)], check=True)
    return py


def casa_env(venv: Path) -> dict:
    """Environment with an offline CASA configuration (HOME/.casa/config.py)."""
    home = venv / "home"
    (home / ".casa").mkdir(parents=True, exist_ok=True)
    site = next((venv / "lib").glob("python3*/site-packages"), venv)
    data = site / "casadata" / "__data__"
    (home / ".casa" / "config.py").write_text(
        f"measurespath = {str(data)!r}\nmeasures_auto_update = False\n"
        "data_auto_update = False\nnologfile = True\n")
    return {**os.environ, "HOME": str(home), "OMP_NUM_THREADS": "1"}


def run_casa(py: Path, venv: Path, ms: Path, name: str, p: dict) -> dict | None:
    for old in Path(name).parent.glob(Path(name).name + ".*"):  # tclean would restart
        shutil.rmtree(old, ignore_errors=True)
    a = dict(ms=str(ms), name=name, npix=p["npix"], cell_arcsec=p["cell_arcsec"],
             niter=p["niter"], gain=p["gain"], threshold_jy=p["threshold_jy"],
             weighting=p["weighting"], robust=p["robust"], gridder=p["casa_gridder"])
    t0 = time.perf_counter()
    res = subprocess.run([str(py), "-c", CASA_SCRIPT, json.dumps(a)], capture_output=True,
                         text=True, env=casa_env(venv), cwd=Path(name).parent)
    wall = time.perf_counter() - t0
    if res.returncode or "RESULT" not in res.stdout:
        log("CASA tclean failed:\n  " + "\n  ".join((res.stdout + res.stderr)
                                                   .splitlines()[-15:]))
        return None
    info = json.loads(res.stdout.split("RESULT", 1)[1])
    return dict(info, wall_s=wall, image=name + "-image.fits",
                residual=name + "-residual.fits", model=name + "-model.fits")


# ----------------------------------------------------------------------------- analysis


def load(path: str):
    """(2-d image [y, x], celestial WCS, beam (bmaj, bmin) arcsec) of a FITS image."""
    from astropy.io import fits
    from astropy.wcs import WCS

    with fits.open(path) as hdul:
        h = hdul[0].header
        data = np.asarray(hdul[0].data, dtype=np.float64)
    while data.ndim > 2:
        data = data[0]
    beam = (h.get("BMAJ", float("nan")) * 3600, h.get("BMIN", float("nan")) * 3600)
    return data, WCS(h).celestial, beam


def fit_source(img, x, y, half: int):
    """Free elliptical Gaussian (+ offset) about pixel (x, y): (x, y, peak) fitted."""
    from scipy import optimize

    xi, yi = int(round(x)), int(round(y))
    ny, nx = img.shape
    y0, y1, x0, x1 = max(0, yi - half), min(ny, yi + half + 1), max(0, xi - half), \
        min(nx, xi + half + 1)
    sub = img[y0:y1, x0:x1]
    yy, xx = np.mgrid[y0:y1, x0:x1]
    j = np.unravel_index(int(np.argmax(sub)), sub.shape)
    p0 = [sub[j], xx[j], yy[j], half / 3, half / 3, 0.0, 0.0]

    def model(q):
        a, cx, cy, sx, sy, th, c = q
        ct, st = math.cos(th), math.sin(th)
        u = (xx - cx) * ct + (yy - cy) * st
        v = -(xx - cx) * st + (yy - cy) * ct
        return a * np.exp(-0.5 * ((u / sx) ** 2 + (v / sy) ** 2)) + c

    # fit the core of the main lobe (above half the peak), as the image fitters do
    w = (sub > 0.5 * sub[j]).astype(float)
    sol = optimize.least_squares(lambda q: ((model(q) - sub) * w).ravel(), p0)
    return (float(sol.x[1]), float(sol.x[2]), float(sol.x[0]),
            float(2 * math.pi * abs(sol.x[3] * sol.x[4]) * sol.x[0]))


def robust_rms(x) -> float:
    x = np.asarray(x, dtype=np.float64).ravel()
    x = x[np.isfinite(x)]
    return float(1.4826 * np.median(np.abs(x - np.median(x))))


def analyse(runs: dict, sources, cell_arcsec: float, fit_half: int) -> dict:
    """Per tool: peak, fitted sources (RA, Dec, peak), residual rms, beam."""
    out = {}
    for tool, r in runs.items():
        img, wcs, beam = load(r["image"])
        res, _, _ = load(r["residual"])
        model, mwcs, _ = load(r["model"])
        yy, xx = np.mgrid[:model.shape[0], :model.shape[1]]
        fits_ = []
        for ra, dec in sources:
            x, y = wcs.world_to_pixel_values(ra, dec)
            fx, fy, amp, vol = fit_source(img, float(x), float(y), fit_half)
            fra, fdec = wcs.pixel_to_world_values(fx, fy)
            mx, my = mwcs.world_to_pixel_values(ra, dec)
            near = (xx - float(mx)) ** 2 + (yy - float(my)) ** 2 <= MODEL_RADIUS_PX**2
            fits_.append((float(fra), float(fdec), amp, fx, fy, float(model[near].sum())))
        out[tool] = dict(peak=float(np.nanmax(img)), fits=fits_, rms=robust_rms(res),
                         beam=beam, wall=r["wall_s"], extra=r)
    return out


def restore_with_beam_of(run: dict, peer_image: str, name: str) -> dict:
    """daskcal's model and residual restored with a peer's restoring beam (a new FITS).

    Each tool fits its own restoring beam (daskcal's main-lobe fit equals CASA's; WSClean
    fits a wider Gaussian to a natural-weighting LOFAR PSF), and the restored peak of a
    source that is not a point (smeared, or CLEANed into a few pixels) depends on it;
    restored with the same beam the peaks compare like for like.

    Returns
    -------
    dict
        ``run`` with ``image`` replaced by the re-restored image.
    """
    from astropy.io import fits

    from daskcal.kernels.deconvolution.beamfit import Beam, restore

    with fits.open(run["model"]) as hm, fits.open(run["residual"]) as hr, \
            fits.open(peer_image) as hp, fits.open(run["image"]) as hi:
        model = np.asarray(hm[0].data, dtype=np.float64).squeeze()
        resid = np.asarray(hr[0].data, dtype=np.float64).squeeze()
        hp0, header = hp[0].header, hi[0].header.copy()
    cell = math.radians(abs(header["CDELT2"]))
    beam = Beam(math.radians(hp0["BMAJ"]), math.radians(hp0["BMIN"]), math.radians(hp0["BPA"]))
    # FITS [y, x] with x = -l: restore on (l, m) = (x reversed, y) and back
    img = restore(model[:, ::-1].T, resid[:, ::-1].T, beam, cell, cell).T[:, ::-1]
    header.update(BMAJ=hp0["BMAJ"], BMIN=hp0["BMIN"], BPA=hp0["BPA"])
    path = name + "-image.fits"
    fits.PrimaryHDU(np.ascontiguousarray(img, dtype=np.float32), header=header).writeto(
        path + ".tmp", overwrite=True, output_verify="silentfix")
    os.replace(path + ".tmp", path)
    return dict(run, image=path)


def offset_px(ra1, dec1, ra2, dec2, cell_arcsec):
    """(dRA cos dec, dDec) of 1 - 2 in pixels."""
    dra = ((ra1 - ra2 + 180.0) % 360.0 - 180.0) * math.cos(math.radians(dec2))
    return dra * 3600 / cell_arcsec, (dec1 - dec2) * 3600 / cell_arcsec


def report(title: str, res: dict, cell: float, truth=None) -> None:
    print(f"\n=== {title}")
    base = res.get("daskcal")
    print(f"{'tool':<10} {'wall s':>7} {'ratio':>6} {'peak Jy/b':>10} {'d peak %':>9} "
          f"{'rms mJy/b':>10} {'rms ratio':>9}  notes")
    for tool, r in res.items():
        ratio = r["wall"] / base["wall"] if base else float("nan")
        dpk = 100 * (r["peak"] / base["peak"] - 1) if base else float("nan")
        rr = r["rms"] / base["rms"] if base else float("nan")
        e = r["extra"]
        note = ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                         for k, v in e.items() if k in ("backend", "image_s", "tclean_s", "n_iter",
                                                        "n_major"))
        note += f", beam {r['beam'][0]:.1f}x{r['beam'][1]:.1f}\""
        print(f"{tool:<10} {r['wall']:>7.1f} {ratio:>6.2f} {r['peak']:>10.4f} {dpk:>9.3f} "
              f"{r['rms'] * 1e3:>10.4f} {rr:>9.3f}  {note}")
    if truth is not None and "noise" in truth:
        print(f"theoretical noise (radiometer, this weighting): {truth['noise'] * 1e3:.4f} "
              "mJy/beam")
    print(f"sources: fitted Gaussian peak Jy/beam (clean-component flux within "
          f"{MODEL_RADIUS_PX} px, Jy); position differences in pixels, (dRA cos dec, dDec):")
    for k in range(len(next(iter(res.values()))["fits"])):
        row = f"  #{k}"
        if truth is not None:
            ra_t, dec_t, s_t = truth["sources"][k]
            row += f" truth {s_t:.4f} Jy r={truth['radius_deg'][k]:.2f}d |"
        for tool, r in res.items():
            ra, dec, amp, _, _, integ = r["fits"][k]
            row += f" {tool} {amp:.4f} (model {integ:.4f})"
            if tool != "daskcal" and base:
                bra, bdec, bamp = base["fits"][k][:3]
                dx, dy = offset_px(ra, dec, bra, bdec, cell)
                row += f" ({100 * (amp / bamp - 1):+.2f}% vs dc, d=({dx:+.3f},{dy:+.3f}))"
            if tool == "wsclean" and "dc@ws-beam" in res:
                same = res["dc@ws-beam"]["fits"][k][2]
                row += f" ({100 * (amp / same - 1):+.2f}% vs dc@ws-beam)"
            if truth is not None:
                dx, dy = offset_px(ra, dec, ra_t, dec_t, cell)
                row += f" [{100 * (amp / s_t - 1):+.2f}% vs truth, d=({dx:+.3f},{dy:+.3f})]"
            row += " |"
        print(row)


# ----------------------------------------------------------------------------- main


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--case", nargs="+", default=["ngc5921", "lofar"],
                   choices=["ngc5921", "lofar"])
    p.add_argument("--weighting", nargs="+", default=["briggs", "natural"],
                   choices=["briggs", "natural"])
    p.add_argument("--niter", type=int, default=20000)
    p.add_argument("--gain", type=float, default=0.1)
    p.add_argument("--max-major", type=int, default=20)
    p.add_argument("--epsilon", type=float, default=1e-5, help="daskcal gridding accuracy")
    p.add_argument("--daskcal-deconvolver", default="clark", choices=["clark", "hogbom"],
                   help="daskcal minor cycle (clark: Hogbom on the brightest pixels with "
                        "exact FFT subtraction, as WSClean's sub-minor loop)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--daskcal-backend", default="auto", choices=["auto", "dask", "numpy"],
                   help="daskcal's image() backend (auto: as a recipe's image step picks)")
    p.add_argument("--ngc-npix", type=int, default=256)
    p.add_argument("--ngc-cell", type=float, default=8.0, help="arcsec")
    p.add_argument("--ngc-threshold", type=float, default=0.02, help="Jy")
    p.add_argument("--lofar-core", type=int, default=12, help="core stations (two ears each)")
    p.add_argument("--lofar-remote", type=int, default=8,
                   help="remote stations (8: baselines to ~15 km; 9: ~23 km; 14: ~60 km)")
    p.add_argument("--lofar-ntime", type=int, default=60, help="1-minute integrations")
    p.add_argument("--lofar-npix", type=int, default=1500)
    p.add_argument("--lofar-cell", type=float, default=6.0,
                   help="arcsec (6: >= 3 pixels across the Briggs beam's minor axis)")
    p.add_argument("--lofar-threshold-sigma", type=float, default=5.0,
                   help="threshold in units of the natural-weighting radiometer noise")
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--workdir", type=Path, default=Path("/tmp/daskcal-bench-imaging"))
    p.add_argument("--casa-venv", type=Path, default=Path("/tmp/casa-venv"))
    p.add_argument("--skip-casa", action="store_true")
    p.add_argument("--skip-wsclean", action="store_true")
    p.add_argument("--daskcal-child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--params", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.daskcal_child:
        run_daskcal_child(args)
        return
    args.workdir.mkdir(parents=True, exist_ok=True)
    casa_py = None
    if not args.skip_casa:
        from daskcal.testing.realdata import CASADATA, fetch_wheel

        try:
            casa_py = ensure_casa(args.casa_venv, fetch_wheel(CASADATA))
        except (subprocess.CalledProcessError, OSError) as err:
            log(f"CASA cannot run here: installing it failed ({err})")
    for case in args.case:
        if case == "ngc5921":
            ms = make_ngc5921_ms(args.workdir)
            truth = None
            geo = dict(npix=args.ngc_npix, cell_arcsec=args.ngc_cell,
                       threshold_jy=args.ngc_threshold, casa_gridder="standard",
                       chunks="time=12,frequency=63")
            from daskcal.data import open_observation

            obs = open_observation(ms)
            node = obs[next(k for k, n in obs.children.items() if "antenna_xds" in n.children)]
            pc = node["field_and_source_base_xds"]["FIELD_PHASE_CENTER_DIRECTION"].values
            sources = [(math.degrees(float(pc.ravel()[0])), math.degrees(float(pc.ravel()[1])))]
        else:
            ms, info = make_lofar_ms(args, args.workdir)
            geo = dict(npix=args.lofar_npix, cell_arcsec=args.lofar_cell,
                       threshold_jy=args.lofar_threshold_sigma * info["noise_natural_jy"],
                       casa_gridder="widefield", chunks="time=30,frequency=4")
            sources = [(s[0], s[1]) for s in info["sources"]]
            truth = dict(sources=info["sources"], radius_deg=[
                math.hypot(*lofar_sources(args.seed)[k][:2]) for k in range(len(sources))])
        for weighting in args.weighting:
            par = dict(geo, weighting=weighting, robust=0.0, niter=args.niter, gain=args.gain,
                       max_major=args.max_major, epsilon=args.epsilon,
                       deconvolver=args.daskcal_deconvolver, backend=args.daskcal_backend)
            stem = str(args.workdir / f"{case}-{weighting}")
            runs = {"daskcal": run_daskcal(ms, stem + "-daskcal", par, args.threads)}
            ext_ms = ms
            if not args.skip_wsclean:
                w = run_wsclean(ext_ms, stem + "-wsclean", par, args.threads)
                if w:
                    runs["wsclean"] = w
            if casa_py is not None:
                c = run_casa(casa_py, args.casa_venv, ext_ms, stem + "-casa", par)
                if c:
                    runs["casa"] = c
            if "wsclean" in runs:  # like for like: daskcal restored with WSClean's beam
                runs["dc@ws-beam"] = restore_with_beam_of(
                    runs["daskcal"], runs["wsclean"]["image"], stem + "-daskcal-wsbeam")
            beam_px = max(load(runs["daskcal"]["image"])[2][0] / par["cell_arcsec"], 2.0)
            res = analyse(runs, sources, par["cell_arcsec"], int(round(1.5 * beam_px)))
            if truth is not None:
                truth["noise"] = runs["daskcal"]["theoretical_noise_jy"]
            report(f"{case}, {weighting} weighting, {par['npix']}^2 x {par['cell_arcsec']}\", "
                   f"threshold {par['threshold_jy'] * 1e3:.3f} mJy, niter {par['niter']}, "
                   f"gain {par['gain']}", res, par["cell_arcsec"], truth)


if __name__ == "__main__":
    main()
