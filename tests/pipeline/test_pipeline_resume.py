"""kill -9 of a running ``daskcal run``, then a rerun: it resumes without recomputing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import yaml
from tiny_observation import TINY

from daskcal.data.zarr_store import open_zarr
from daskcal.pipeline.runner import run_recipe

#: 40 integrations in chunks of one: 40 regions in the first step.
SLOW = {**TINY, "name": "slow", "duration_s": 400, "chunks": {"time": 1, "frequency": 4}}


def _recipe(path, log_dir):
    path.write_text(yaml.safe_dump({
        "name": "slow", "site": "threads", "inputs": ["target"],
        "steps": [
            {"name": "scale", "stage": "toy_scale", "input": "target",
             "config": {"factor": 2.0, "delay_s": 0.2, "log_dir": str(log_dir)}},
            {"name": "average", "stage": "average", "input": "scale",
             "config": {"time_factor": 2}},
        ]}))
    return path


def _computed(log_dir, pid):
    """Start times of the blocks the toy stage computed in process ``pid``."""
    return [int(p.name.split("-")[1]) for p in log_dir.iterdir()
            if p.name.startswith(f"{pid}-")]


def test_kill_9_then_resume(tmp_path, toy_plugin):
    from daskcal.testing import write_simulation

    obs, _ = write_simulation(SLOW, tmp_path / "slow.zarr")
    logs = tmp_path / "logs"
    logs.mkdir()
    recipe = _recipe(tmp_path / "slow.yaml", logs)
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "daskcal.cli", "run", str(recipe), "--input",
           f"target={obs}", "--output", str(run_dir), "--no-progress"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(toy_plugin), *filter(None, [os.environ.get("PYTHONPATH")])])}
    progress = run_dir / "steps" / "01-scale.zarr.progress"

    # 1. start, wait until some regions are marked, kill -9 the driver
    with open(tmp_path / "first.log", "w") as err:
        first = subprocess.Popen(cmd, env=env, stderr=err, stdout=err, cwd=tmp_path)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and first.poll() is None:
            if progress.is_dir() and len(list(progress.glob("*.json"))) >= 6:
                break
            time.sleep(0.05)
        assert first.poll() is None, (tmp_path / "first.log").read_text()
        first.kill()
        first.wait()
    marked = {p.name[:-5] for p in progress.glob("*.json")}
    assert 6 <= len(marked) < 40
    assert not (run_dir / "steps" / "01-scale.zarr").exists()       # nothing half-published
    assert (run_dir / "steps" / "01-scale.zarr.partial").is_dir()
    assert not (run_dir / "products").exists()
    assert json.loads((run_dir / "provenance.json").read_text())["status"] == "running"
    marked_starts = {int(k.rsplit("@", 1)[1].split("-")[0]) for k in marked}

    # 2. rerun to the end: the marked regions are neither recomputed nor rewritten
    second = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, cwd=tmp_path)
    _, stderr = second.communicate(timeout=300)
    assert second.returncode == 0, stderr
    assert "resuming" in stderr
    prov = json.loads((run_dir / "provenance.json").read_text())
    scale = prov["steps"][0]
    assert scale["status"] == "resumed"
    assert scale["regions"]["total"] == 40
    assert scale["regions"]["skipped"] == len(marked)
    assert scale["regions"]["written"] == 40 - len(marked)
    assert set(scale["regions"]["skipped_keys"]) == marked
    recomputed = _computed(logs, second.pid)
    assert sorted(recomputed) == sorted(set(range(40)) - marked_starts)
    assert not progress.exists()

    # 3. the result equals an uninterrupted run, bit for bit
    ref = run_recipe(recipe, {"target": obs}, tmp_path / "ref", site="threads",
                     overrides=["scale.delay_s=0", "scale.log_dir=null"], progress=False,
                     echo=lambda line: None)
    for step in ("01-scale.zarr", "02-average.zarr"):
        got = open_zarr(run_dir / "steps" / step)["slow_0"].to_dataset()
        want = open_zarr(tmp_path / "ref" / "steps" / step)["slow_0"].to_dataset()
        assert set(got.variables) == set(want.variables)
        for name in want.variables:
            np.testing.assert_array_equal(got[name].values, want[name].values, err_msg=name)
    assert ref.step_record("scale")["regions"]["written"] == 40
