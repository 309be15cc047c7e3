"""``daskcal demo``: the LOFAR workflow end to end on simulated data, checked against the truth.

1. Simulate a LOFAR-HBA-like observation of a calibrator (a bright point source) in a
   simultaneous calibrator beam, and of a target field (point sources, an ionospheric
   TEC screen per direction, the station beam, the A-team and thermal noise), with the
   same station gains (:mod:`daskcal.testing`).
2. ``lofar-calibrator`` on the calibrator (flag, average, demix, solve against its model,
   smooth, H5parm).
3. ``lofar-target`` on the target with the calibrator's gains (transfer, flag, average,
   demix, apply, DI phase self-calibration, image).
4. ``lofar-facet`` on the DI-calibrated target (calibrator selection from the DI CLEAN
   model, facets, DD solves, facet imaging, primary-beam-corrected mosaic; three
   self-calibration rounds).
5. Compare with the truth: the brightest sources' fluxes and positions in the
   facet mosaic, and the residual rms of the DI-only and of the facet image.

Each run directory has its weblog (``RUN/weblog/index.html``) and products (FITS, PNG,
H5parm); ``OUTPUT/demo-report.json`` holds the comparison.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

RECIPES = Path(__file__).resolve().parents[2] / "configs" / "recipes"

#: What both observations share: 24 core stations, 64 integrations of 10 s, 16 channels near
#: 150 MHz, a Gaussian station beam (no elevation term), gains with slow amplitude and
#: faster phase variations, thermal noise. Same seed: same gains.
_COMMON: dict[str, Any] = {
    "lofar": {"n_core": 24, "n_remote": 0, "split_core": False},
    "duration_s": 640.0, "integration_s": 10.0, "n_chan": 16,
    "start_time": "2024-03-20T22:00:00",
    "gains": {"amplitude_rms": 0.05, "phase_rms_deg": 30.0, "time_scale_s": 1800.0,
              "freq_scale_hz": 30e6, "delay_rms_ns": 2.0},
    "beam": {"enabled": True, "sidelobe_level": 0.0, "elevation_exponent": 0.0},
    "noise": {"enabled": True}, "chunks": {"time": 16, "frequency": 16}, "seed": 7,
}

#: The brightest sources compared with the truth.
N_BRIGHTEST = 10


def demo_configs() -> tuple[dict, dict]:
    """Simulation configs of the calibrator and target observations."""
    cal = {**_COMMON, "name": "calibrator", "field_name": "3C196", "ra_deg": 123.40,
           "dec_deg": 48.22,
           "sky": {"preset": "none", "ateam": False, "components": [
               {"name": "3C196", "ra_deg": 123.40025, "dec_deg": 48.21731, "flux_jy": 80.0,
                "spectral_index": [-0.8]}]}}
    target = {**_COMMON, "name": "target", "field_name": "target", "ra_deg": 130.0,
              "dec_deg": 52.0,
              "sky": {"preset": "random-field", "n_sources": 16, "field_radius_deg": 1.2,
                      "flux_min_jy": 0.4, "flux_max_jy": 6.0, "gaussian_fraction": 0.0,
                      "ateam": False},
              "screens": {"enabled": True, "tec_rms_tecu": 0.02}}
    return cal, target


@dataclass
class DemoResult:
    """Where the demo wrote what, and how the images compare with the truth."""

    output: Path
    runs: dict[str, Path]
    report: dict[str, Any]


def _sky_file(truth: Path, path: Path, name_contains: str | None = None) -> Path:
    """A simulation's sky (its components whose name contains ``name_contains``, if
    given) as a BBS sky model file."""
    from daskcal.sky.bbs import write_bbs
    from daskcal.sky.model import SkyModel

    sky = SkyModel.from_dataset(xr.open_datatree(truth, engine="zarr")["sky"].to_dataset())
    if name_contains is not None:
        sky = sky.select(np.flatnonzero(np.char.find(sky.name.astype(str), name_contains) >= 0))
    write_bbs(sky, path)
    return path


def _image_of(run: Path, step: str) -> xr.Dataset:
    tree = xr.open_datatree(run / "products" / f"{step}.zarr", engine="zarr")
    (name,) = [k for k, v in tree.children.items() if "RESTORED" in v.data_vars]
    return tree[name].to_dataset().compute()


def _subpixel_peak(img: np.ndarray, i: int, j: int, r: int = 3) -> tuple[float, float, float]:
    """Peak near (i, j): a log-parabola through the 3 x 3 pixels around the maximum."""
    win = img[i - r:i + r + 1, j - r:j + r + 1]
    a, b = np.unravel_index(int(np.nanargmax(win)), win.shape)
    a, b = a + i - r, b + j - r
    ln = np.log(np.clip(img[a - 1:a + 2, b - 1:b + 2], 1e-30, None))

    def vertex(x0, x1, x2):
        d = 0.5 * (x0 - x2) / (x0 - 2 * x1 + x2)
        return d, x1 - 0.25 * (x0 - x2) * d

    da_, va = vertex(ln[0, 1], ln[1, 1], ln[2, 1])
    db, vb = vertex(ln[1, 0], ln[1, 1], ln[1, 2])
    return a + da_, b + db, float(np.exp(va + vb - ln[1, 1]))


def compare_with_truth(image: xr.Dataset, truth: Path, n: int = N_BRIGHTEST,
                       variable: str = "RESTORED_PBCOR") -> list[dict[str, float]]:
    """Fluxes and positions of the ``n`` brightest true sources in an image.

    Returns
    -------
    list of dict
        Per source: name, true flux (Jy, intrinsic at the image's reference frequency),
        measured peak (Jy/beam of ``variable``), ratio, position offset (pixels).
    """
    from daskcal.data.geometry import lmn_of
    from daskcal.sky.model import SkyModel

    sky = SkyModel.from_dataset(xr.open_datatree(truth, engine="zarr")["sky"].to_dataset())
    freq = float(image.attrs["ref_freq_hz"])
    cell = float(image.attrs["cell_rad"])
    ra0, dec0 = image.attrs["phase_centre_rad"]
    npix = image.sizes["l"]
    flux = sky.flux(np.array([freq]))[:, 0, 0]  # Stokes I at the image's frequency
    lmn = lmn_of(sky.ra, sky.dec, ra0, dec0)
    ii, jj = lmn[:, 0] / cell + npix // 2, lmn[:, 1] / cell + npix // 2
    inside = (lmn[:, 2] > 0) & (ii > 4) & (ii < npix - 5) & (jj > 4) & (jj < npix - 5)
    img = np.asarray(image[variable].values, dtype=np.float64)
    model = np.asarray(image["MODEL"].values, dtype=np.float64) if "MODEL" in image else None
    pb = np.asarray(image["PB"].values, dtype=np.float64) if "PB" in image else None
    rows = []
    for k in np.flatnonzero(inside)[np.argsort(-flux[inside])][:n]:
        i0, j0 = int(round(ii[k])), int(round(jj[k]))
        pi, pj, peak = _subpixel_peak(img, i0, j0)
        row = {"name": str(sky.name[k]), "true_jy": float(flux[k]), "measured_jy": peak,
               "ratio": peak / float(flux[k]),
               "offset_px": float(math.hypot(pi - ii[k], pj - jj[k]))}
        if model is not None:  # the CLEAN flux within 4 pixels, primary-beam corrected
            clean = model[i0 - 4:i0 + 5, j0 - 4:j0 + 5].sum() / (pb[i0, j0] if pb is not None
                                                                  else 1.0)
            row["clean_ratio"] = float(clean / flux[k])
        rows.append(row)
    return rows


def run_demo(output: str | Path = "daskcal-demo", *, site: str = "local",
             echo: Callable[[str], None] = print) -> DemoResult:
    """Simulate, run the three LOFAR recipes and compare with the truth (module notes).

    Parameters
    ----------
    output : path
        Directory of everything the demo writes (reruns skip finished steps).
    site : str
        Site profile of the runs (default: a local Dask cluster); ``threads``: no cluster.
    echo : callable
        Receives progress lines.

    Returns
    -------
    DemoResult
    """
    from astropy.utils import iers

    from daskcal.pipeline.runner import run_recipe
    from daskcal.testing import write_simulation

    iers.conf.auto_download = False
    output = Path(output)
    data = output / "data"
    data.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    cal_cfg, target_cfg = demo_configs()
    obs = {}
    for cfg in (cal_cfg, target_cfg):
        path = data / f"{cfg['name']}.zarr"
        truth = data / f"{cfg['name']}.truth.zarr"
        if not (path.exists() and truth.exists()):
            echo(f"demo: simulating {cfg['name']} -> {path}")
            write_simulation(cfg, path, overwrite=True)
        obs[cfg["name"]] = (path, truth)
    # the calibrator's model as a catalogue gives it: its own component, not the A-team
    sky = _sky_file(obs["calibrator"][1], data / "3C196.skymodel", "3C196")
    # the target's true sky: the image steps' QA compares its brightest sources (weblog)
    truth_sky = _sky_file(obs["target"][1], data / "target-truth.skymodel")
    runs = {k: output / k for k in ("calibrator", "target", "facet")}
    echo("demo: lofar-calibrator")
    run_recipe(RECIPES / "lofar-calibrator.yaml", {"calibrator": obs["calibrator"][0]},
               runs["calibrator"], site=site, overrides=[f"predict.sky_model={sky}"],
               echo=echo)
    echo("demo: lofar-target")
    run_recipe(RECIPES / "lofar-target.yaml",
               {"target": obs["target"][0],
                "calibrator_gains": runs["calibrator"] / "products" / "smooth.zarr"},
               runs["target"], site=site, echo=echo,
               overrides=[f"image_1.reference_sky_model={truth_sky}"])
    echo("demo: lofar-facet")
    run_recipe(RECIPES / "lofar-facet.yaml",
               {"target": runs["target"] / "products" / "apply_1.zarr"},
               runs["facet"], site=site, echo=echo,
               overrides=[f"{s}.reference_sky_model={truth_sky}"
                          for s in ("facet_image", "facet_image_2", "facet_image_3")])
    di, facet = _image_of(runs["facet"], "image_di"), _image_of(runs["facet"], "facet_image_3")
    from daskcal.stages.imaging.masks import robust_rms

    rows = compare_with_truth(facet, obs["target"][1])
    di_rms = robust_rms(di["RESIDUAL"].values)
    res = np.asarray(facet["RESIDUAL"].values)
    facet_rms = robust_rms(res[np.isfinite(res)])
    report = {
        "wall_s": round(time.perf_counter() - t0, 1),
        "brightest": rows,
        "max_flux_error": max(abs(r["ratio"] - 1) for r in rows),
        "max_offset_px": max(r["offset_px"] for r in rows),
        "di_residual_rms_jy": di_rms, "facet_residual_rms_jy": facet_rms,
        "weblogs": {k: str(v / "weblog" / "index.html") for k, v in runs.items()},
        "images": sorted(str(p) for r in runs.values() for p in (r / "products").glob("*.fits")
                         if "restored" in p.name),
    }
    tmp = output / ".demo-report.json.tmp"
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    tmp.replace(output / "demo-report.json")
    echo(f"demo: brightest {len(rows)} sources: flux error <= "
         f"{100 * report['max_flux_error']:.2f} %, position <= {report['max_offset_px']:.2f} px")
    echo(f"demo: residual rms DI-only {1e3 * di_rms:.3f} mJy/beam, facet-calibrated "
         f"{1e3 * facet_rms:.3f} mJy/beam")
    for k, v in report["weblogs"].items():
        echo(f"demo: weblog ({k}): {v}")
    echo(f"demo: report: {output / 'demo-report.json'} ({report['wall_s']} s)")
    return DemoResult(output, runs, report)


__all__ = ["DemoResult", "compare_with_truth", "demo_configs", "run_demo"]
