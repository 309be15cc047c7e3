"""``daskcal submit`` / ``daskcal status``: the driver's batch script, rendered and asserted on
without a cluster; failures to submit as one line; and a real submission on the test cluster."""

from __future__ import annotations

import json
import os
import shlex
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from daskcal import DaskcalError
from daskcal.cli import main
from daskcal.cluster import THREAD_LIMIT_ENV, load_site, site_from_dict
from daskcal.cluster.submit import (
    RunRequest,
    driver_profile,
    render_driver_script,
    run_status,
)


def _slurm(**settings):
    return site_from_dict({"name": "hpc", "kind": "slurm", "slurm": settings})


def _request(tmp_path, **kw) -> RunRequest:
    return RunRequest.make(kw.get("recipe", "configs/recipes/preprocess.yaml"),
                           {"target": tmp_path / "obs.zarr"}, tmp_path / "run",
                           kw.get("overrides", ()))


def test_driver_script_header_env_and_command(tmp_path):
    site = _slurm(queue="compute", account="radio", cores=4, processes=2,
                  python="/shared/env/bin/python", setup=["module load python/3.11"],
                  worker_env={"DASKCAL_LOG": "debug info"},
                  job_extra_directives=["--constraint=skylake"],
                  driver={"cores": 2, "memory": "3GiB", "walltime": "12:00:00",
                          "job_name": "dc-driver", "job_extra_directives": ["--qos=long"]})
    request = _request(tmp_path, overrides=["average.time_factor=4"])
    script = render_driver_script(site, request)
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)
    lines = script.splitlines()
    run = tmp_path / "run"
    assert lines[0] == "#!/usr/bin/env bash"
    sbatch = [line for line in lines if line.startswith("#SBATCH")]
    assert sbatch == ["#SBATCH -J dc-driver", "#SBATCH -p compute", "#SBATCH -A radio",
                      "#SBATCH -n 1", "#SBATCH --cpus-per-task=2", "#SBATCH --mem=3072M",
                      "#SBATCH -t 12:00:00", f"#SBATCH --output={run}/logs/dc-driver-%j.out",
                      f"#SBATCH --comment=daskcal-run:{run}", "#SBATCH --qos=long"]
    exports = [line for line in lines if line.startswith("export ")]
    assert exports == [f"export {k}={v}" for k, v in THREAD_LIMIT_ENV.items()] + [
        "export DASKCAL_LOG='debug info'"]
    assert lines.index("module load python/3.11") > lines.index(exports[-1])
    words = shlex.split(lines[-1])
    assert words[:4] == ["exec", "/shared/env/bin/python", "-m", "daskcal.cli"]
    assert words[4:] == [
        "run", str(Path("configs/recipes/preprocess.yaml").absolute()),
        "--input", f"target={tmp_path / 'obs.zarr'}", "--output", str(run),
        "--site", str(run / "submit" / "site.yaml"), "--no-progress",
        "--set", "average.time_factor=4"]


def test_driver_script_defaults_skip_and_container(tmp_path):
    lines = render_driver_script(_slurm(job_directives_skip=["--mem"]),
                                 _request(tmp_path)).splitlines()
    assert "#SBATCH --cpus-per-task=1" in lines and "#SBATCH -t 1-00:00:00" in lines
    assert "#SBATCH -J daskcal-driver" in lines
    assert not [line for line in lines if line.startswith(("#SBATCH --mem", "#SBATCH -p",
                                                           "#SBATCH -A"))]
    assert shlex.split(lines[-1])[1] == sys.executable  # the interpreter running daskcal

    boxed = _slurm(container={"image": "/img/daskcal.sif", "binds": ["/data"]})
    command = render_driver_script(boxed, _request(tmp_path)).splitlines()[-1]
    assert command.startswith("exec apptainer exec --bind /data /img/daskcal.sif python -m "
                              "daskcal.cli run ")
    host = _slurm(container={"image": "/img/daskcal.sif"}, driver={"python": "/opt/py"})
    assert render_driver_script(host, _request(tmp_path)).splitlines()[-1].startswith(
        "exec /opt/py -m daskcal.cli run ")


def test_driver_profile_freezes_the_site_and_keeps_logs_in_the_run(tmp_path, write_profile):
    site = load_site(write_profile({"kind": "slurm", "slurm": {
        "queue": "debug", "jobs": 2, "dashboard_address": None}}, name="hpc"))
    frozen = driver_profile(site, tmp_path / "run")
    assert frozen["slurm"]["log_directory"] == str(tmp_path / "run" / "logs")
    again = load_site(write_profile(frozen, name="frozen"))
    assert again.name == "hpc" and again.config.jobs == 2
    assert again.config.dashboard_address is None  # an explicit null survives
    assert again.render_job_script().splitlines()[1:] != []
    logged = _slurm(log_directory="/shared/logs")
    assert driver_profile(logged, tmp_path)["slurm"]["log_directory"] == "/shared/logs"


@pytest.fixture
def fake_bin(tmp_path, monkeypatch):
    """``fake_bin(name, script)``: a command on a PATH holding nothing else."""
    directory = tmp_path / "bin"
    directory.mkdir()
    monkeypatch.setenv("PATH", str(directory))

    def make(name: str, body: str) -> Path:
        path = directory / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
        return path

    return make


def _submit(tiny_obs, run_dir, site) -> list[str]:
    return ["submit", str(Path("configs/recipes/preprocess.yaml").absolute()),
            "--input", f"target={tiny_obs}", "--output", str(run_dir), "--site", str(site)]


def _error(capsys, status: int, *needles: str) -> str:
    err = capsys.readouterr().err
    assert status == 2, err
    assert len(err.strip().splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err
    return err


def test_submit_failures_are_one_line(tmp_path, tiny_obs, write_profile, fake_bin, capsys):
    slurm = write_profile({"kind": "slurm", "slurm": {"queue": "debug"}}, name="hpc")
    run = tmp_path / "run"
    _error(capsys, main(_submit(tiny_obs, run, slurm)), "sbatch is not on PATH")
    assert not run.exists()

    local = write_profile({"kind": "local"}, name="laptop")
    _error(capsys, main(_submit(tiny_obs, run, local)), "site 'laptop' is of kind 'local'",
           "needs a site of kind 'slurm'")
    bad = write_profile({"kind": "slurm", "slurm": {"cores": 0}}, name="bad")
    _error(capsys, main(_submit(tiny_obs, run, bad)), "bad.yaml: slurm.cores: must be >= 1")
    _error(capsys, main(_submit(tiny_obs, run, "nowhere")), "site 'nowhere'")
    args = _submit(tmp_path / "missing.zarr", run, slurm)
    _error(capsys, main(args), "input 'target': no such file or directory")
    _error(capsys, main([*_submit(tiny_obs, tmp_path / "a b", slurm)]), "without whitespace")

    fake_bin("sbatch", 'echo "sbatch: error: invalid partition specified: debug" >&2; exit 1')
    _error(capsys, main(_submit(tiny_obs, run, slurm)),
           "driver.sbatch: sbatch: error: invalid partition specified: debug")


def test_submit_with_a_fake_sbatch_writes_the_run_files(tmp_path, tiny_obs, write_profile,
                                                        fake_bin, capsys):
    seen = tmp_path / "sbatch-args"
    fake_bin("sbatch", f'echo "$@" > {seen}; echo "4242;daskcal-test"')
    fake_bin("squeue", 'echo "RUNNING|daskcal-run:/elsewhere"')
    slurm = write_profile({"kind": "slurm", "slurm": {"queue": "debug"}}, name="hpc")
    run = tmp_path / "run"
    assert main(_submit(tiny_obs, run, slurm)) == 0
    out = capsys.readouterr()
    assert out.out == "4242\n" and f"daskcal status {run}" in out.err
    script = run / "submit" / "driver.sbatch"
    assert seen.read_text().split() == ["--parsable", str(script)]
    assert f"--site {run / 'submit' / 'site.yaml'}" in script.read_text()
    assert json.loads((run / "submit" / "job.json").read_text())["job_id"] == "4242"
    assert load_site(run / "submit" / "site.yaml").config.log_directory == str(run / "logs")
    assert (run / "logs").is_dir()
    # the job is still RUNNING (says the fake squeue): a second submission is refused
    _error(capsys, main(_submit(tiny_obs, run, slurm)), "driver job 4242 is RUNNING on it")


def test_status_reads_job_and_provenance(tmp_path, fake_bin, capsys):
    run = tmp_path / "run"
    (run / "submit").mkdir(parents=True)
    (run / "steps" / "02-average.zarr.progress").mkdir(parents=True)
    for name in ("initialised", "r0.json", "r1.json"):
        (run / "steps" / "02-average.zarr.progress" / name).write_text("{}")
    (run / "submit" / "job.json").write_text(json.dumps({"job_id": "77"}))
    (run / "logs").mkdir()
    (run / "logs" / "daskcal-driver-77.out").write_text("")
    (run / "provenance.json").write_text(json.dumps({
        "status": "running", "recipe": {"config": {"steps": [{"name": "flag"},
                                                             {"name": "average"}]}},
        "steps": [{"name": "flag", "status": "ran"}], "products": {}}))
    fake_bin("squeue", f'echo "RUNNING|daskcal-run:{run}"')
    status = run_status(run)
    assert (status.job_id, status.job_state, status.run_status) == ("77", "RUNNING", "running")
    assert status.current_step == "average" and status.regions_written == 2
    assert main(["status", "77"]) == 0
    text = capsys.readouterr().out
    assert "job 77: RUNNING (squeue)" in text
    assert "1/2 steps done, now average (2 regions written)" in text
    assert f"log {run / 'logs' / 'daskcal-driver-77.out'}" in text

    # the driver is gone but the record says running: the run was interrupted
    fake_bin("squeue", "exit 1")
    fake_bin("sacct", 'echo "sacct: error: Slurm accounting storage is disabled" >&2; exit 1')
    status = run_status(run)
    assert status.job_state is None and status.run_status == "interrupted"
    assert "accounting storage is disabled" in status.job_source
    with pytest.raises(DaskcalError, match=r"job 78: unknown to SLURM"):
        run_status("78")
    assert main(["status", "--json", str(run)]) == 0
    assert json.loads(capsys.readouterr().out)["run_status"] == "interrupted"
    _error(capsys, main(["status", str(tmp_path / "nope")]), "neither a job id nor a run "
           "directory")


# ---- the real thing ---------------------------------------------------------------------

def _wait(run_dir: Path, timeout_s: float) -> tuple[object, list[str]]:
    seen: list[str] = []
    deadline = time.monotonic() + timeout_s
    while True:
        status = run_status(run_dir)
        if not seen or seen[-1] != status.job_state:
            seen.append(status.job_state)
        if status.finished or time.monotonic() > deadline:
            return status, seen
        time.sleep(0.5)


@pytest.mark.slurm
def test_submit_runs_the_recipe_in_a_driver_job(slurm_test_profile, tiny_obs, local_preprocess,
                                                compare_stores, tmp_path, capsys, monkeypatch):
    # driver 1 core + 1 worker job fit a 2-core node; worker logs default to RUN_DIR/logs
    site = slurm_test_profile(jobs=1, log_directory=None)
    run = tmp_path / "run"
    t0 = time.monotonic()
    assert main(_submit(tiny_obs, run, site)) == 0
    job_id = capsys.readouterr().out.strip()
    assert job_id.isdigit()

    status, seen = _wait(run, timeout_s=120)
    elapsed = time.monotonic() - t0
    log = Path(status.log).read_text() if status.log else "(no driver log)"
    if not status.finished:
        subprocess.run(["scancel", job_id], check=False)
        pytest.fail(f"job {job_id} still {status.job_state} after 120 s; states {seen}; "
                    f"log:\n{log}")
    assert status.run_status == "complete", log
    assert status.job_state in ("COMPLETED", "COMPLETING", None), seen
    assert [s for _, s in status.steps_done] == ["ran", "ran"]
    assert compare_stores(local_preprocess, run / "products" / "average.zarr") == []

    logs = sorted(p.name for p in (run / "logs").iterdir())
    assert f"{load_site(site).config.driver.job_name}-{job_id}.out" in logs
    assert len([n for n in logs if n.endswith(".err")]) == 1, logs  # the one worker job
    assert "step 2/2 average (average): wrote 02-average.zarr" in log

    assert main(["status", str(run)]) == 0
    text = capsys.readouterr().out
    assert "complete, 2/2 steps done" in text and "product average" in text
    print(f"\nsubmit -> complete in {elapsed:.1f} s; job states {seen}; "
          f"{os.cpu_count()} CPUs")
