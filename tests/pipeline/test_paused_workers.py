"""Steps on a cluster: region-ordered priorities, results gathered chunk by chunk, and a
step whose workers stay paused for memory fails with one line instead of hanging
(issue #6)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from daskcal.pipeline.execute import region_ranks
from daskcal.pipeline.runner import RunError, run_recipe

#: The shipped recipes (not imported from conftest: the workers unpickle this module's
#: functions by reference, and ``conftest`` there may be another directory's)
RECIPES = Path(__file__).resolve().parents[2] / "configs" / "recipes"

#: Limit of each worker; paused at half of it (no spilling, no termination), so that a
#: worker holding :data:`BALLAST` bytes outside any task stays paused for good, and one
#: running the recipe without it (about 0.3 GiB with daskcal's stages) does not pause.
LIMIT = 2**30
BALLAST = 600 * 2**20
MEMORY_CONFIG = {"distributed.worker.memory.target": False,
                 "distributed.worker.memory.spill": False,
                 "distributed.worker.memory.pause": 0.5,
                 "distributed.worker.memory.terminate": False}


def test_region_ranks_follow_the_first_region_that_needs_a_task():
    from dask._task_spec import Task, TaskRef

    def t(key, *deps):
        return Task(key, max, 0, *[TaskRef(d) for d in deps])

    # load0..2 -> window a (0,1), b (1,2) -> write0 (a), write1 (a, b), write2 (b);
    # qa reads load1 and write0's input a; qa-sum reduces qa and load2; const feeds qa
    dsk = {k: t(k, *d) for k, d in {
        "load0": (), "load1": (), "load2": (), "const": (),
        "a": ("load0", "load1"), "b": ("load1", "load2"),
        "write0": ("a",), "write1": ("a", "b"), "write2": ("b",),
        "qa": ("load1", "a", "const"), "qa-sum": ("qa", "load2")}.items()}
    ranks = region_ranks(dsk, ["write0", "write1", "write2"])
    assert ranks == {"write0": 0, "write1": 1, "write2": 2, "a": 0, "b": 1, "load0": 0,
                     "load1": 0, "load2": 1, "qa": 0, "qa-sum": 1, "const": 0}


def _hold(nbytes: int, dask_worker=None) -> int:
    """Keep ``nbytes`` of touched memory in the worker, outside any task (unspillable)."""
    dask_worker._daskcal_test_ballast = np.ones(nbytes, np.uint8)
    return nbytes


def _drop(dask_worker=None) -> None:
    dask_worker._daskcal_test_ballast = None


def _statuses(client) -> set[str]:
    return {w["status"] for w in client.scheduler_info(n_workers=-1)["workers"].values()}


def _wait_for(client, status: str) -> None:
    deadline = time.monotonic() + 30
    while _statuses(client) != {status} and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _statuses(client) == {status}


@pytest.fixture(scope="module")
def cluster():
    """2 workers x 1 thread of the ``local`` site, LIMIT each, paused at 50 %."""
    import dask

    from daskcal.cluster import site_from_dict

    with dask.config.set(MEMORY_CONFIG):
        site = site_from_dict({"kind": "local", "local": {
            "n_workers": 2, "threads_per_worker": 1, "memory_limit": str(LIMIT),
            "dashboard_address": ":0"}})
        with site.cluster() as cluster:
            yield cluster


def _address_site(tmp_path, cluster):
    import yaml

    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump({"kind": "address", "address": {
        "scheduler": cluster.scheduler_address}}))
    return path


def _n_tasks(dask_scheduler) -> int:
    return len(dask_scheduler.tasks)


def test_a_step_whose_workers_stay_paused_fails_with_one_line(tmp_path, tiny, cluster):
    from distributed import Client

    from daskcal.pipeline.provenance import read_provenance

    site = _address_site(tmp_path, cluster)
    with Client(cluster) as client:
        client.run(_hold, BALLAST)
        try:
            _wait_for(client, "paused")
            t0 = time.monotonic()
            with pytest.raises(RunError) as err:
                run_recipe(RECIPES / "preprocess.yaml", {"target": tiny}, tmp_path / "run",
                           site=str(site), progress=False, echo=lambda line: None,
                           paused_timeout=3.0)
            waited = time.monotonic() - t0
            # the computation was cancelled: nothing is left on the scheduler
            deadline = time.monotonic() + 10
            while client.run_on_scheduler(_n_tasks) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert client.run_on_scheduler(_n_tasks) == 0
        finally:
            client.run(_drop)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("step flag: every worker paused for memory"), message
    assert "give the workers more memory or lower the chunk sizes" in message
    assert 3.0 <= waited < 30, waited
    prov = read_provenance(tmp_path / "run" / "provenance.json")
    assert prov["status"] == "failed" and prov["steps"] == []


def test_the_command_exits_non_zero_and_a_resumed_worker_lets_the_run_finish(
        tmp_path, tiny, cluster, capsys):
    from distributed import Client

    from daskcal.cli import main

    site = _address_site(tmp_path, cluster)
    args = ["run", str(RECIPES / "preprocess.yaml"), "--input", f"target={tiny}",
            "--output", str(tmp_path / "run"), "--site", str(site), "--no-progress",
            "--paused-timeout", "2"]
    with Client(cluster) as client:
        client.run(_hold, BALLAST)
        try:
            _wait_for(client, "paused")
            assert main(args) == 2
        finally:
            client.run(_drop)
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert err.startswith("daskcal run: error: step flag: every worker paused for memory")
        _wait_for(client, "running")
    # with the memory back, the same command completes
    assert main(args) == 0


def test_a_cluster_run_writes_and_scores_what_a_threaded_run_does(tmp_path, tiny, cluster):
    """Outputs and QA summaries gathered chunk by chunk equal those computed at once."""
    import json

    import xarray as xr

    from daskcal.data.zarr_store import open_zarr

    site = _address_site(tmp_path, cluster)
    runs = {}
    for name, where in (("cluster", str(site)), ("threads", "threads")):
        runs[name] = run_recipe(RECIPES / "preprocess.yaml", {"target": tiny},
                                tmp_path / name, site=where, progress=False,
                                echo=lambda line: None)
    for step in ("flag", "average"):
        a, b = (open_zarr(runs[n].outputs[step])["tiny_0"].to_dataset() for n in runs)
        xr.testing.assert_identical(a.drop_attrs(), b.drop_attrs())
    for stem in ("01-flag", "02-average"):
        qa = [json.loads((tmp_path / n / "qa" / f"{stem}.json").read_text()) for n in runs]
        assert qa[0]["metrics"] == qa[1]["metrics"] and qa[0]["score"] == qa[1]["score"]
        summaries = [xr.open_datatree(tmp_path / n / "qa" / f"{stem}.zarr", engine="zarr")
                     for n in runs]
        xr.testing.assert_allclose(summaries[0], summaries[1])


def test_the_weblog_is_drawn_here_when_the_workers_are_paused(tmp_path, tiny, cluster):
    from distributed import Client

    from daskcal.pipeline.execute import WorkersPausedError, gather_watched
    from daskcal.pipeline.stepqa import build_run_weblog

    result = run_recipe(RECIPES / "preprocess.yaml", {"target": tiny}, tmp_path / "run",
                        site="threads", progress=False, echo=lambda line: None)
    weblog = result.run_dir / "weblog"
    for page in weblog.glob("*.html"):
        page.unlink()
    with Client(cluster) as client:
        client.run(_hold, BALLAST)
        try:
            _wait_for(client, "paused")
            future = client.submit(sum, [1, 2], key="paused-sum")
            with pytest.raises(WorkersPausedError, match="^probe: every worker paused"):
                gather_watched(client, [future], label="probe", paused_timeout=2.0)
            assert future.cancelled()
            lines = []
            index = build_run_weblog(result.run_dir, lines.append, client, paused_timeout=2.0)
        finally:
            client.run(_drop)
    assert index == "weblog/index.html" and lines == [f"weblog: {weblog / 'index.html'}"]
    assert {p.name for p in weblog.glob("*.html")} >= {"index.html", "01-flag.html",
                                                        "02-average.html"}
