"""The lofar-calibrator recipe end to end: H5parm product, gains against the truth, weblog."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from daskcal.data.h5parm import read_h5parm
from daskcal.pipeline.recipe import RecipeError, load_recipe, validate_recipe
from daskcal.pipeline.runner import run_recipe

# the recipes (from this file: workers unpickle test functions by module name, and
# another tests/ directory has a conftest of its own)
RECIPES = Path(__file__).resolve().parents[2] / "configs" / "recipes"


@pytest.fixture(scope="module")
def calibrator_run(tiny_store, tmp_path_factory):
    """One run of the recipe on the tiny calibrator observation (a 100 Jy point source)."""
    obs, truth, sky = tiny_store
    root = tmp_path_factory.mktemp("lofar-cal")
    shutil.copytree(obs, root / "cal.zarr")
    lines: list[str] = []
    result = run_recipe(RECIPES / "lofar-calibrator.yaml", {"calibrator": root / "cal.zarr"},
                        root / "run", site="threads", overrides=[f"predict.sky_model={sky}"],
                        progress=False, echo=lines.append)
    return result, truth, lines


def test_recipe_validates_and_demix_can_be_disabled():
    recipe = load_recipe(RECIPES / "lofar-calibrator.yaml", ["demix.enabled=false"])
    assert [s.stage.name for s in recipe.steps] == ["flag", "average", "demix", "predict",
                                                    "solve", "smooth", "h5parm"]
    assert recipe.step("demix").config.enabled is False
    assert recipe.step("smooth").stage.kind == "gains->gains"


def test_gains_input_kinds_are_checked():
    base = {"name": "r", "inputs": ["target"], "steps": [
        {"name": "s", "stage": "smooth", "input": "target"}]}
    with pytest.raises(RecipeError, match="needs an earlier step producing gains"):
        validate_recipe(base)


def test_h5parm_product_matches_the_true_gains(calibrator_run):
    result, truth_path, _ = calibrator_run
    prov = result.provenance
    assert prov["status"] == "complete"
    (h5,) = prov["products"]["h5parm"]
    path = result.run_dir / h5
    assert path.is_file() and path.suffix == ".h5"
    gains = read_h5parm(path)
    assert gains.attrs["mode"] == "diagonal_complex"
    assert gains["GAIN"].dims == ("gain_time", "gain_frequency", "antenna_name", "receptor")
    truth = xr.open_datatree(truth_path, engine="zarr")["gains"].to_dataset()
    true = truth["GAIN"].sel(antenna_name=gains["antenna_name"].values).values
    true = 0.5 * (true[0::2] + true[1::2])        # the recipe averages pairs of integrations
    solved = gains["GAIN"].values
    assert solved.shape == true.shape
    assert gains["GAIN_FLAG"].values.mean() < 0.1   # a few outliers of the smoothing at most

    def referenced(g):
        return g * np.exp(-1j * np.angle(g[:, :, :1, :]))

    err = np.abs(referenced(solved) - referenced(true))
    assert err.max() < 0.1 and np.median(err) < 0.03


def test_every_step_has_scored_metrics(calibrator_run):
    result, _, _ = calibrator_run
    run_dir = result.run_dir
    assert 0.0 <= result.provenance["qa"]["score"] <= 1.0
    for rec in result.provenance["steps"]:
        qa = json.loads((run_dir / rec["qa"]["file"]).read_text())
        assert qa["metrics"], rec["name"]
        for m in qa["metrics"]:
            assert 0.0 <= m["score"] <= 1.0 and m["reason"]
    names = {m["name"] for m in json.loads(
        (run_dir / "qa" / "05-solve.json").read_text())["metrics"]}
    assert {"chi2_excess", "flagged_solution_fraction", "unconverged_fraction",
            "gain_amplitude_scatter"} <= names


def test_weblog_pages_and_links_resolve(calibrator_run):
    result, _, _ = calibrator_run
    web = result.run_dir / "weblog"
    index = web / "index.html"
    assert result.provenance["weblog"] == "weblog/index.html" and index.is_file()
    pages = [index, *sorted(web.glob("0*.html"))]
    assert len(pages) == 1 + len(result.provenance["steps"])
    for page in pages:
        text = page.read_text()
        assert "<script" not in text
        for link in re.findall(r'(?:href|src)="([^"]+)"', text):
            assert (web / link).exists(), f"{page.name}: {link}"
    assert (web / "plots" / "05-solve-tiny_0-gains-time.png").is_file()
    assert (web / "plots" / "01-flag-tiny_0-uv.png").is_file()


def test_weblog_command_rebuilds_and_rerun_skips(calibrator_run):
    from daskcal.qa.weblog import build_weblog

    result, _, _ = calibrator_run
    shutil.rmtree(result.run_dir / "weblog")
    assert build_weblog(result.run_dir).is_file()
    lines: list[str] = []
    again = run_recipe(result.provenance["recipe"]["source"],
                       {"calibrator": result.provenance["inputs"]["calibrator"]["path"]},
                       result.run_dir, site="threads",
                       overrides=[f"predict.sky_model="
                                  f"{result.step_record('predict')['config']['sky_model']}"],
                       progress=False, echo=lines.append)
    assert {r["status"] for r in again.provenance["steps"]} == {"skipped"}
    assert again.provenance["qa"]["score"] == result.provenance["qa"]["score"]


def test_weblog_pages_drawn_by_cluster_workers_equal_the_serial_ones(calibrator_run):
    """With a distributed client the step pages are tasks on the workers (processes):
    the same pages and plots as drawn here one after another."""
    from distributed import Client, LocalCluster, get_task_stream

    from daskcal.qa.weblog import build_weblog

    result, _, _ = calibrator_run
    web = result.run_dir / "weblog"
    shutil.rmtree(web)
    build_weblog(result.run_dir)
    serial = {p.relative_to(web): p.read_bytes() for p in web.rglob("*") if p.is_file()}
    shutil.rmtree(web)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        with get_task_stream(client) as stream:
            build_weblog(result.run_dir, client)
    pages_drawn = [t for t in stream.data if str(t["key"]).startswith("weblog-page-")]
    got = {p.relative_to(web): p.read_bytes() for p in web.rglob("*") if p.is_file()}
    assert set(got) == set(serial) and any(str(k).endswith(".png") for k in got)
    pages = [k for k in serial if k.suffix == ".html"]
    assert all(got[k] == serial[k] for k in pages)
    assert len(pages) == len(result.provenance["steps"]) + 1
    assert len(pages_drawn) == len(result.provenance["steps"])  # one task per step page


def test_headless_chromium_renders_the_weblog(calibrator_run, tmp_path):
    import os
    import subprocess

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        if os.environ.get("DASKCAL_REQUIRE_BROWSER") == "1":
            pytest.fail("DASKCAL_REQUIRE_BROWSER=1 but chromium is not installed")
        pytest.skip("no chromium (deploy/test-prerequisites.sh installs it)")
    result, _, _ = calibrator_run
    png = tmp_path / "index.png"
    subprocess.run([chromium, "--headless", "--disable-gpu", "--no-sandbox", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,1600",
                    f"--screenshot={png}", (result.run_dir / "weblog" / "index.html").as_uri()],
                   check=True, timeout=120, capture_output=True)
    from PIL import Image

    with Image.open(png) as img:
        pixels = img.convert("L").getextrema()
    assert pixels[0] < pixels[1]  # not a blank page
