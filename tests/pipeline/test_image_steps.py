"""Image steps in recipes: image, predict_image (self-calibration), select, FITS products."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

from daskcal.pipeline.recipe import RecipeError, validate_recipe
from daskcal.pipeline.runner import run_recipe

#: 16 LOFAR-like core stations, 30 x 10 s, 4 channels; two point sources (fluxes at
#: 150 MHz, spectral index -0.7), random station phases plus 30 degrees rms that vary in
#: time (amplitudes exact), noise.
SELFCAL_SIM = {
    "name": "selfcal", "lofar": {"n_core": 16, "n_remote": 0, "split_core": False},
    "n_chan": 4, "duration_s": 300, "integration_s": 10,
    "chunks": {"time": 10, "frequency": 4},
    "sky": {"preset": "none", "components": [
        {"name": "a", "ra_deg": 123.4, "dec_deg": 48.2, "flux_jy": 10.0},
        {"name": "b", "ra_deg": 123.9, "dec_deg": 48.5, "flux_jy": 4.0}]},
    "gains": {"amplitude_rms": 0.0, "phase_rms_deg": 30.0, "time_scale_s": 300.0,
              "delay_rms_ns": 0.0},
    "noise": {"enabled": True}, "seed": 11,
}

IMAGE_CFG = {"npix": 128, "fov_deg": 2.4, "weighting": "natural", "niter": 200,
             "auto_threshold": 3.0, "epsilon": 1e-5}


def _recipe(sky: str) -> dict:
    """Phase calibration on an incomplete sky model (source a only, as with a survey
    catalogue), then one round of self-calibration on the CLEAN model."""
    return {
        "name": "selfcal-test", "site": "threads", "inputs": ["target"],
        "steps": [
            {"name": "predict", "stage": "predict", "input": "target",
             "config": {"sky_model": sky}},
            {"name": "phase0", "stage": "solve", "input": "predict",
             "config": {"mode": "diagonal_phase", "solint_time": 1, "solint_freq": 4}},
            {"name": "apply0", "stage": "apply", "input": "target", "gains": "phase0"},
            {"name": "image0", "stage": "image", "input": "apply0",
             "config": {**IMAGE_CFG, "data_group": "corrected"}},
            {"name": "model1", "stage": "predict_image", "input": "target", "image": "image0"},
            {"name": "phase1", "stage": "solve", "input": "model1",
             "config": {"mode": "diagonal_phase", "solint_time": 1, "solint_freq": 4}},
            {"name": "apply1", "stage": "apply", "input": "target", "gains": "phase1"},
            {"name": "image1", "stage": "image", "input": "apply1",
             "config": {**IMAGE_CFG, "data_group": "corrected"}},
        ],
        "products": ["image0", "image1"],
    }


@pytest.fixture(scope="module")
def selfcal_run(tmp_path_factory):
    from daskcal.sky.bbs import write_bbs
    from daskcal.sky.model import SkyModel
    from daskcal.testing import write_simulation

    root = tmp_path_factory.mktemp("selfcal")
    obs, truth = write_simulation(SELFCAL_SIM, root / "target.zarr")
    sky = SkyModel.from_dataset(xr.open_datatree(truth, engine="zarr")["sky"].to_dataset())
    sky_file = root / "a.skymodel"
    write_bbs(sky.select([0]), sky_file)
    recipe = validate_recipe(_recipe(str(sky_file)), "selfcal-test")
    lines: list[str] = []
    result = run_recipe(recipe, {"target": obs}, root / "run", progress=False,
                        echo=lines.append)
    return result, str(sky_file), obs, truth


def _pixel(xds: xr.Dataset, ra_deg: float, dec_deg: float) -> tuple[int, int]:
    """The pixel nearest to (ra, dec) (SIN projection about the image's phase centre)."""
    ra, dec = np.radians(ra_deg), np.radians(dec_deg)
    ra0, dec0 = xds.attrs["phase_centre_rad"]
    l = np.cos(dec) * np.sin(ra - ra0)
    m = np.sin(dec) * np.cos(dec0) - np.cos(dec) * np.sin(dec0) * np.cos(ra - ra0)
    cell = xds.attrs["cell_rad"]
    n = xds.sizes["l"]
    return int(round(l / cell)) + n // 2, int(round(m / cell)) + n // 2


def _clean_flux(xds: xr.Dataset, ra_deg: float, dec_deg: float, r: int = 4) -> float:
    """Sum of the CLEAN components within ``r`` pixels of (ra, dec), Jy."""
    i, j = _pixel(xds, ra_deg, dec_deg)
    return float(xds["MODEL"].values[i - r:i + r + 1, j - r:j + r + 1].sum())


def test_phase_selfcal_recovers_the_fluxes(selfcal_run):
    result, _, _, _ = selfcal_run
    assert result.provenance["status"] == "complete"
    before = xr.open_datatree(result.outputs["image0"], engine="zarr")
    after = xr.open_datatree(result.outputs["image1"], engine="zarr")
    (part,) = [k for k in after.children if "RESTORED" in after[k].data_vars]
    b, a = before[part].to_dataset(), after[part].to_dataset()
    scale = (a.attrs["ref_freq_hz"] / 150e6) ** -0.7
    for ra, dec, flux in ((123.4, 48.2, 10.0 * scale), (123.9, 48.5, 4.0 * scale)):
        assert abs(_clean_flux(a, ra, dec) / flux - 1) < 0.03
        i, j = _pixel(a, ra, dec)
        peak = np.unravel_index(np.argmax(a["RESTORED"].values[i - 3:i + 4, j - 3:j + 4]), (7, 7))
        assert max(abs(peak[0] - 3), abs(peak[1] - 3)) <= 1
    # the CLEAN model (both sources) fits the data better than the one-source sky model
    chi2 = {}
    for step in ("phase0", "phase1"):
        g = xr.open_datatree(result.outputs[step], engine="zarr")[part].to_dataset()
        chi2[step] = float(np.median(g["CHI2"].values))
    assert chi2["phase1"] < 0.5 * chi2["phase0"] and chi2["phase1"] < 1.5
    assert float(np.std(a["RESIDUAL"].values)) <= float(np.std(b["RESIDUAL"].values))


def test_image_products_fits_wcs_and_qa(selfcal_run):
    from astropy.io import fits
    from astropy.wcs import WCS

    result, _, _, _ = selfcal_run
    rec = result.step_record("image1")
    files = rec["files"]
    restored = [f for f in files if f.endswith("-restored.fits")]
    assert restored and any(f.endswith(".png") for f in files) \
        and any(f.endswith(".jpg") for f in files)
    with fits.open(result.run_dir / restored[0]) as hdul:
        hdr, data = hdul[0].header, hdul[0].data
    assert hdr["BUNIT"].upper() == "JY/BEAM" and hdr["BMAJ"] > 0
    w = WCS(hdr).celestial
    y, x = np.unravel_index(np.nanargmax(data[0, 0]), data[0, 0].shape)
    ra, dec = w.pixel_to_world_values(x, y)
    assert abs((ra - 123.4) * np.cos(np.radians(48.2))) < 0.01 and abs(dec - 48.2) < 0.01
    qa = json.loads((result.run_dir / rec["qa"]["file"]).read_text())
    names = {m["name"] for m in qa["metrics"]}
    assert {"image_rms", "dynamic_range", "restoring_beam"} <= names
    web = result.run_dir / "weblog"
    assert any(web.glob("plots/*image1*-image.png"))


def test_rerun_skips_and_a_changed_image_config_reruns_only_it(selfcal_run):
    result, sky, obs, _ = selfcal_run
    data = _recipe(sky)
    again = run_recipe(validate_recipe(data, "selfcal-test"), {"target": obs}, result.run_dir,
                       progress=False, echo=lambda _: None)
    assert {r["status"] for r in again.provenance["steps"]} == {"skipped"}
    data["steps"][-1]["config"] = {**data["steps"][-1]["config"], "niter": 100}
    changed = run_recipe(validate_recipe(data, "selfcal-test"), {"target": obs},
                         result.run_dir, progress=False, echo=lambda _: None)
    status = {r["name"]: r["status"] for r in changed.provenance["steps"]}
    assert status == {**{r: "skipped" for r in status}, "image1": "ran"}


def test_wiring_of_image_steps_is_validated():
    bad = _recipe("sky")
    bad["steps"][4]["image"] = "target"
    with pytest.raises(RecipeError, match="not an earlier step producing images"):
        validate_recipe(bad)
    bad = _recipe("sky")
    bad["steps"][5]["input"] = "image0"
    with pytest.raises(RecipeError, match="produces images"):
        validate_recipe(bad)
    bad = _recipe("sky")
    del bad["steps"][4]["image"]
    with pytest.raises(RecipeError, match="image: required"):
        validate_recipe(bad)


def test_select_restricts_a_step_to_fields(tmp_path):
    from daskcal.data.open import open_observation
    from daskcal.data.zarr_store import write_zarr
    from daskcal.testing import random_observation

    obs = random_observation(1, fields=("CAL", "TARGET"), n_time=4, n_ant=4)
    path = write_zarr(obs, tmp_path / "two.zarr")
    recipe = validate_recipe({
        "name": "sel", "site": "threads", "inputs": ["obs"],
        "steps": [{"name": "flag", "stage": "preflag", "input": "obs",
                   "select": {"fields": ["TARGET"]}, "config": {"autocorrelations": True}}]})
    result = run_recipe(recipe, {"obs": path}, tmp_path / "run", progress=False,
                        echo=lambda _: None)
    out = open_observation(result.outputs["flag"])
    from daskcal.pipeline.imagestep import partition_field

    kept = [partition_field(out[n]) for n in out.children
            if out[n].attrs.get("type") == "visibility"]
    assert kept == ["TARGET"]
    with pytest.raises(Exception, match="matches no partition"):
        run_recipe(validate_recipe({
            "name": "sel2", "site": "threads", "inputs": ["obs"],
            "steps": [{"name": "flag", "stage": "preflag", "input": "obs",
                       "select": {"fields": ["NOPE"]}}]}),
            {"obs": path}, tmp_path / "run2", progress=False, echo=lambda _: None)
