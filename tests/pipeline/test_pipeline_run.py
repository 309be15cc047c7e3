"""Running recipes: results, provenance, skipping on rerun, rerunning what a change touches."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from daskcal.data.zarr_store import open_zarr
from daskcal.pipeline.runner import RunError, run_recipe

# the recipes (from this file: workers unpickle test functions by module name, and
# another tests/ directory has a conftest of its own)
RECIPES = Path(__file__).resolve().parents[2] / "configs" / "recipes"


def _run(tmp_path, tiny, recipe="preprocess", sets=(), out="run", **kw):
    lines = []
    result = run_recipe(RECIPES / f"{recipe}.yaml", {"target": tiny}, tmp_path / out,
                        site=kw.pop("site", "threads"), overrides=list(sets), progress=False,
                        echo=lines.append, **kw)
    return result, lines


def _mtimes(path):
    return {p: p.stat().st_mtime_ns for p in sorted(path.rglob("*")) if p.is_file()}


def test_preprocess_equals_the_stages_and_records_provenance(tmp_path, tiny):
    from daskcal.stages.average import AverageConfig, average
    from daskcal.stages.flag import FlagConfig, flag

    result, lines = _run(tmp_path, tiny)
    out = open_zarr(result.products["average"])
    (name,) = out.children
    got = out[name].to_dataset(inherit=False)

    obs = open_zarr(tiny)
    recipe = result.provenance["recipe"]["config"]["steps"]
    ref = average(flag(obs[name].to_dataset(inherit=False),
                       FlagConfig.model_validate(recipe[0]["config"])),
                  AverageConfig.model_validate(recipe[1]["config"]))
    for var in ("VISIBILITY", "FLAG", "WEIGHT", "UVW"):
        np.testing.assert_array_equal(got[var].values, ref[var].values)
    assert got.sizes["time"] == 10 and got.sizes["frequency"] == 2

    prov = json.loads((tmp_path / "run" / "provenance.json").read_text())
    assert prov == result.provenance
    assert prov["status"] == "complete" and prov["products"] == {"average": "steps/02-average.zarr"}
    assert set(prov["versions"]) >= {"daskcal", "dask", "numpy", "numba", "xarray", "zarr"}
    assert prov["inputs"]["target"]["kind"] == "zarr"
    for rec in prov["steps"]:
        assert rec["status"] == "ran"
        assert len(rec["fingerprint"]) == len(rec["config_hash"]) == 64
        assert rec["n_tasks"] > 0 and rec["bytes_written"] > 0
        assert rec["regions"]["written"] == rec["regions"]["total"] > 1
        assert rec["start"] <= rec["end"]
        assert rec["peak_worker_memory_bytes"]["driver"] > 0
    assert prov["steps"][1]["upstream_fingerprints"]["input"] == prov["steps"][0]["fingerprint"]
    assert (tmp_path / "run" / "products" / "average.zarr").resolve() == \
        (tmp_path / "run" / "steps" / "02-average.zarr").resolve()
    assert not list((tmp_path / "run" / "steps").glob("*.partial"))
    assert not list((tmp_path / "run" / "steps").glob("*.progress"))
    assert any("scheduler" in line for line in lines)


def test_rerun_skips_and_a_change_reruns_only_what_depends_on_it(tmp_path, tiny):
    first, _ = _run(tmp_path, tiny)
    steps = tmp_path / "run" / "steps"
    before = {p.name: _mtimes(p) for p in steps.iterdir()}

    again, lines = _run(tmp_path, tiny)
    assert [r["status"] for r in again.provenance["steps"]] == ["skipped", "skipped"]
    assert {p.name: _mtimes(p) for p in steps.iterdir()} == before
    assert again.step_record("flag")["n_tasks"] == first.step_record("flag")["n_tasks"]
    assert sum("skipped" in line for line in lines) == 2

    changed, _ = _run(tmp_path, tiny, sets=["average.time_factor=4"])
    assert [r["status"] for r in changed.provenance["steps"]] == ["skipped", "ran"]
    assert _mtimes(steps / "01-flag.zarr") == before["01-flag.zarr"]
    assert open_zarr(changed.products["average"])["tiny_0"].sizes["time"] == 5

    upstream, _ = _run(tmp_path, tiny, sets=["average.time_factor=4",
                                              "flag.preflag.band_edge_channels=1"])
    assert [r["status"] for r in upstream.provenance["steps"]] == ["ran", "ran"]


def test_calibrate_di_recovers_the_true_gains(tmp_path, tiny_store, tiny):
    _, truth_path, sky = tiny_store
    result, _ = _run(tmp_path, tiny, "calibrate-di", [f"predict.sky_model={sky}"])
    assert set(result.products) == {"solve", "apply"}
    gains = open_zarr(result.products["solve"], validate=False)["tiny_0"].to_dataset()
    truth = xr.open_datatree(truth_path, engine="zarr")["gains"].to_dataset()
    true = truth["GAIN"].sel(antenna_name=gains["antenna_name"].values).values
    true = 0.5 * (true[0::2] + true[1::2])        # the recipe averages pairs of integrations
    solved = gains["GAIN"].values
    assert solved.shape == true.shape
    assert not gains["GAIN_FLAG"].values.any()

    def referenced(g):  # the phase of each receptor relative to the reference antenna
        return g * np.exp(-1j * np.angle(g[:, :, :1, :]))

    err = np.abs(referenced(solved) - referenced(true))
    assert err.max() < 0.05 and np.median(err) < 0.01

    cal = open_zarr(result.products["apply"])["tiny_0"].to_dataset()
    cal = cal.sel(polarization=["XX", "YY"])      # the cross hands hold noise only
    ok = ~cal["FLAG"].values
    resid = np.abs(cal["VISIBILITY_CORRECTED"].values - cal["VISIBILITY_MODEL"].values)[ok]
    raw = np.abs(cal["VISIBILITY"].values - cal["VISIBILITY_MODEL"].values)[ok]
    assert np.median(resid) < 0.05 * np.median(raw)
    rec = result.step_record("apply")
    assert rec["gains"] == "solve" and rec["upstream_fingerprints"]["gains"] == \
        result.step_record("solve")["fingerprint"]
    assert result.step_record("predict")["file_fingerprints"]["sky_model"]


def test_inputs_are_checked(tmp_path, tiny):
    with pytest.raises(Exception, match="input 'target' not given"):
        run_recipe(RECIPES / "preprocess.yaml", {}, tmp_path / "r", site="threads")
    with pytest.raises(RunError, match="no such input"):
        run_recipe(RECIPES / "preprocess.yaml", {"target": tmp_path / "nope.zarr"},
                   tmp_path / "r", site="threads")


def test_distributed_site_reports_dashboard_and_worker_memory(tmp_path, tiny):
    site = tmp_path / "one.yaml"
    site.write_text("kind: local\nlocal:\n  n_workers: 1\n  threads_per_worker: 1\n"
                    "  dashboard_address: ':0'\n")
    result, lines = _run(tmp_path, tiny, sets=["flag.rfi.enabled=false"], site=str(site))
    assert any(line.startswith("dashboard: http") for line in lines)
    rec = result.step_record("average")
    assert rec["status"] == "ran"
    (peak,) = rec["peak_worker_memory_bytes"].values()
    assert peak > 10_000_000
