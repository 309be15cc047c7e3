"""Faults during a survey: a killed worker, a killed scheduler, a dead site, a killed driver.

Each survey must still complete with products equal (value by value) to a plain threaded
``run_recipe`` of the same observation, and the database must show what happened: the
attempts, the disabled site, the resumed observations -- nothing lost, nothing run twice.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from daskcal.cluster import THREAD_LIMIT_ENV
from daskcal.survey.config import load_survey
from daskcal.survey.db import Database
from daskcal.survey.driver import SurveyDriver, summary_table


def _run_in_thread(survey) -> tuple[threading.Thread, list]:
    out: list = []

    def target():
        try:
            out.append(SurveyDriver(survey, echo=lambda line: None, poll_s=0.2).run())
        except BaseException as exc:  # reported by the test
            out.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, out


def _rows(thread, out, timeout: float) -> dict[str, dict]:
    thread.join(timeout)
    assert not thread.is_alive(), f"the survey did not finish within {timeout} s"
    assert not isinstance(out[0], BaseException), out[0]
    return {r["name"]: r for r in out[0]}


def _markers(run_dir: Path, step: str) -> int:
    return len(list((run_dir / "steps" / f"{step}.zarr.progress").glob("*.json")))


def test_killed_worker_mid_step(write_survey, local_sites, site_entry, observation, reference,
                                compare, wait, tmp_path):
    from distributed import Client

    address = local_sites["a"].scheduler_address
    survey = load_survey(write_survey(
        {"a": site_entry(address, tmp_path / "a")},
        [{"name": "long", "inputs": {"target": str(observation("long"))}, "location": "a"}]))
    run_dir = tmp_path / "a" / "runs" / "long"
    with Client(address) as client:
        before = client.run(os.getpid)
        thread, out = _run_in_thread(survey)
        # mid-step: some of the 20 regions of the flag step written, not all
        n = wait(lambda: _markers(run_dir, "01-flag"), 120, "the first region of step flag",
                 dt=0.02)
        (pid,) = before.values()
        os.kill(pid, signal.SIGKILL)
        rows = _rows(thread, out, 180)
        client.wait_for_workers(1, timeout=60)
        after = client.run(os.getpid)
    assert n < 20, f"the step had finished ({n} regions) before the worker was killed"
    assert set(after.values()) != {pid}, "the nanny did not restart the worker"
    row = rows["long"]
    assert (row["state"], row["attempt"], row["resumes"]) == ("done", 1, 0)
    prov = json.loads((survey.output / "long" / "provenance.json").read_text())
    flag = next(s for s in prov["steps"] if s["name"] == "flag")
    assert flag["status"] == "ran" and flag["regions"]["written"] == 20
    assert compare(reference("long"), survey.output / "long" / "products" / "average.zarr") == []


@pytest.fixture
def doomed_scheduler(tmp_path):
    """A scheduler (on 127.0.0.4) and one worker, as processes of their own to be killed."""
    file = tmp_path / "scheduler.json"
    env = {**os.environ, **THREAD_LIMIT_ENV}
    scheduler = subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.4",
         "--port", "0", "--no-dashboard", "--scheduler-file", str(file)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs = [scheduler]
    try:
        deadline = time.monotonic() + 60
        while not file.is_file() and time.monotonic() < deadline:
            time.sleep(0.1)
        address = json.loads(file.read_text())["address"]
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1",
             "--nworkers", "1", "--memory-limit", "1GiB", "--no-dashboard",
             "--death-timeout", "10"], env=env, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL))
        yield address, scheduler
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)


def test_killed_scheduler_mid_survey(write_survey, local_sites, site_entry, observation,
                                     reference, compare, wait, doomed_scheduler, tmp_path):
    address, scheduler = doomed_scheduler
    plan = {"d1": ("s1", "doomed"), "d2": ("s2", "doomed"), "x3": ("s3", "a")}
    survey = load_survey(write_survey(
        {"doomed": site_entry(address, tmp_path / "doomed", capacity=2, timeout="2s"),
         "a": site_entry(local_sites["a"].scheduler_address, tmp_path / "a")},
        [{"name": n, "inputs": {"target": str(observation(k))}, "location": w}
         for n, (k, w) in plan.items()], retries={"max_attempts": 4, "backoff_s": 0.2}))
    thread, out = _run_in_thread(survey)
    db = Database(survey.database)

    def computing_on_doomed():
        return [e for e in db.events() if e["site"] == "doomed" and e["kind"] == "run"
                and "regions to write" in e["message"]]

    wait(computing_on_doomed, 120, "a run computing on the doomed site")
    scheduler.send_signal(signal.SIGKILL)
    scheduler.wait(timeout=30)
    rows = _rows(thread, out, 240)
    table = summary_table(db)
    assert {r["state"] for r in rows.values()} == {"done"}, table
    doomed = next(s for s in db.sites() if s["name"] == "doomed")
    assert doomed["disabled"] == 1 and doomed["consecutive_failures"] >= 2, table
    for name in ("d1", "d2"):
        assert rows[name]["site"] == "a" and rows[name]["attempt"] >= 2, table
        # staged from the doomed site's storage to site a, after the retry
        assert any(t["direction"] == "in" and t["site"] == "a" for t in db.transfers(name))
    for name, (key, _) in plan.items():
        assert compare(reference(key), survey.output / name / "products" / "average.zarr") \
            == [], name
    db.close()


def _dead_address() -> str:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.5", 0))
        port = s.getsockname()[1]
    return f"tcp://127.0.0.5:{port}"


def test_failing_site_is_disabled_and_nothing_is_lost(write_survey, local_sites, site_entry,
                                                      observation, reference, compare,
                                                      tmp_path):
    plan = {"p1": ("s1", "dead"), "p2": ("s2", "dead"), "p3": ("s3", "b")}
    survey = load_survey(write_survey(
        {"dead": site_entry(_dead_address(), tmp_path / "dead", capacity=2, timeout="1s"),
         "a": site_entry(local_sites["a"].scheduler_address, tmp_path / "a"),
         "b": site_entry(local_sites["b"].scheduler_address, tmp_path / "b")},
        [{"name": n, "inputs": {"target": str(observation(k))}, "location": w}
         for n, (k, w) in plan.items()], site_failure_threshold=2))
    lines: list[str] = []
    rows = {r["name"]: r for r in
            SurveyDriver(survey, echo=lines.append, poll_s=0.2).run()}
    db = Database(survey.database)
    table = summary_table(db)
    assert {r["state"] for r in rows.values()} == {"done"}, table
    dead = next(s for s in db.sites() if s["name"] == "dead")
    assert (dead["disabled"], dead["consecutive_failures"]) == (1, 2), table
    assert "2 failed runs in a row" in dead["disabled_reason"]
    for name in ("p1", "p2"):
        assert rows[name]["site"] in ("a", "b") and rows[name]["attempt"] == 2, table
        retries = [e for e in db.events(name) if e["kind"] == "retry"]
        assert len(retries) == 1 and retries[0]["site"] == "dead"
    assert rows["p3"]["attempt"] == 1
    assert [e["site"] for e in db.events() if e["kind"] == "site-disabled"] == ["dead"]
    for name, (key, _) in plan.items():
        assert compare(reference(key), survey.output / name / "products" / "average.zarr") \
            == [], name
    db.close()


_WROTE = re.compile(r"^step \d+/\d+ (\S+) \(.*\): wrote ")


def test_killed_driver_resumes_without_running_anything_twice(
        write_survey, local_sites, site_entry, observation, reference, compare, wait, tmp_path):
    plan = {"k1": ("s1", "a"), "k2": ("s2", "b"), "k3": ("s3", None)}
    path = write_survey(
        {"a": site_entry(local_sites["a"].scheduler_address, tmp_path / "a"),
         "b": site_entry(local_sites["b"].scheduler_address, tmp_path / "b")},
        [{"name": n, "inputs": {"target": str(observation(k))}, "location": w}
         for n, (k, w) in plan.items()])
    for key in ("s1", "s2", "s3"):
        reference(key)  # computed before the driver runs, not while it does
    survey = load_survey(path)
    env = {**os.environ, **THREAD_LIMIT_ENV}
    cmd = [sys.executable, "-m", "daskcal.cli_survey", str(path), "--poll", "0.2"]
    log1 = (tmp_path / "driver1.log").open("w")
    first = subprocess.Popen(cmd, env=env, stdout=log1, stderr=subprocess.STDOUT)
    try:
        db = wait(lambda: Path(survey.database[len("sqlite:///"):]).is_file()
                  and Database(survey.database), 60, "the survey database")

        def mid_run():  # a step published, the observation not finished yet
            states = {r["name"]: r["state"] for r in db.observations()}
            return [e for e in db.events() if e["kind"] == "run" and _WROTE.match(e["message"])
                    and states.get(e["observation"]) == "running"]

        published = {(e["observation"], _WROTE.match(e["message"]).group(1))
                     for e in wait(mid_run, 120, "an observation between its steps")}
        first.send_signal(signal.SIGKILL)
        assert first.wait(timeout=30) == -signal.SIGKILL
    finally:
        if first.poll() is None:
            first.kill()
        log1.close()
    killed_at = {r["name"]: r["state"] for r in db.observations()}
    assert "running" in killed_at.values()

    second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert second.returncode == 0, second.stderr[-3000:]
    rows = {r["name"]: r for r in db.observations()}
    table = summary_table(db)
    assert {r["state"] for r in rows.values()} == {"done"}, table
    # nothing run twice: one attempt each; the interrupted ones resumed, not restarted
    assert {r["attempt"] for r in rows.values()} == {1}, table
    resumed = [n for n, r in rows.items() if r["resumes"]]
    assert resumed and all(killed_at[n] in ("staging", "running") for n in resumed), table
    assert all(rows[n]["resumes"] == 0 for n in rows if n not in resumed)
    for name, (key, _) in plan.items():
        wrote = [_WROTE.match(e["message"]).group(1) for e in db.events(name)
                 if e["kind"] == "run" and _WROTE.match(e["message"])]
        prov = json.loads((survey.output / name / "provenance.json").read_text())
        status = {s["name"]: s["status"] for s in prov["steps"]}
        # each step published once: a "wrote" event, or - when the driver was killed
        # between publishing a step and logging it - skipped by the resumed run
        assert len(wrote) == len(set(wrote)), (name, wrote)
        assert all(status[s] == "skipped" for s in {"average", "flag"} - set(wrote)), \
            (name, wrote, status)
        assert set(wrote) - {"average", "flag"} == set(), (name, wrote)
        for step in (step for obs, step in published if obs == name):
            assert name in resumed and status[step] == "skipped", (name, status)
        assert compare(reference(key), survey.output / name / "products" / "average.zarr") \
            == [], name
    takeover = [e for e in db.events() if e["kind"] == "driver" and "taking over" in
                e["message"]]
    assert len(takeover) == 1
    db.close()


def test_failed_observations_are_reported_then_retried(write_survey, local_sites, site_entry,
                                                       observation, reference, compare,
                                                       tmp_path, capsys):
    from daskcal.cli_survey import main

    obs = [{"name": "f1", "inputs": {"target": str(observation("s1"))}, "location": "dead"}]
    dead = site_entry(_dead_address(), tmp_path / "dead", timeout="1s")
    path = write_survey({"dead": dead}, obs, retries={"max_attempts": 1, "backoff_s": 0})
    assert main([str(path), "--poll", "0.1"]) == 1
    out, err = capsys.readouterr()
    assert re.search(r"^f1\s+failed\s+dead\s+1\s+0\s+\S+", out, re.M), out
    assert "1 observations failed: f1" in err
    assert main([str(path), "--status"]) == 0
    assert re.search(r"^f1\s+failed", capsys.readouterr().out, re.M)

    # a live site added: --retry-failed runs it there (not on the site it failed on)
    write_survey({"dead": dead, "a": site_entry(local_sites["a"].scheduler_address,
                                                tmp_path / "a")}, obs)
    assert main([str(path), "--retry-failed", "--poll", "0.1"]) == 0
    out, err = capsys.readouterr()
    assert "1 failed observations made pending again: f1" in err
    assert re.search(r"^f1\s+done\s+a\s+1\s+0", out, re.M), out
    survey = load_survey(path)
    assert compare(reference("s1"), survey.output / "f1" / "products" / "average.zarr") == []
