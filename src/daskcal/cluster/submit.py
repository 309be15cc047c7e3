"""Batch submission of a whole run: the driver job of ``daskcal submit`` and its status.

``daskcal run`` on a login node keeps a terminal busy for the whole reduction. A
submitted run instead is one small SLURM job, the *driver*, which runs
``daskcal run`` itself: the Dask scheduler and the step runner live in the driver
job, and the workers are further jobs that the driver submits through the same
site profile (dask-jobqueue), cancelled when the run ends::

    login node                   driver job (1 core)              worker jobs
    daskcal submit --> sbatch --> daskcal run --site site.yaml --> sbatch x jobs

Everything the driver needs is written into the run directory first::

    RUN_DIR/submit/site.yaml       the site profile, frozen (worker logs default to RUN_DIR/logs)
    RUN_DIR/submit/driver.sbatch   the driver's batch script (:func:`render_driver_script`)
    RUN_DIR/submit/job.json        the job id, once submitted
    RUN_DIR/logs/                  the driver's and the workers' stdout/stderr

The job carries ``--comment=daskcal-run:RUN_DIR`` so that :func:`run_status` finds
the run from a job id. The run directory must be on a file system shared by the
login node, the driver and the workers (as ``daskcal run`` on SLURM needs anyway).

This module knows the ``daskcal run`` command line and reads ``provenance.json``
as JSON, but imports nothing of :mod:`daskcal.pipeline` (which sits above it).
"""

from __future__ import annotations

import getpass
import json
import math
import os
import shlex
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from daskcal import DaskcalError
from daskcal.cluster.base import Site
from daskcal.cluster.slurm import SlurmSite

#: Sub-directory of the run directory holding the submission's files.
SUBMIT_DIR = "submit"
#: Sub-directory of the run directory receiving the jobs' logs.
LOG_DIR = "logs"
#: Prefix of the driver job's ``--comment``; the run directory follows.
COMMENT_PREFIX = "daskcal-run:"
#: SLURM job states of a job that has not finished yet.
ACTIVE_STATES: frozenset[str] = frozenset({
    "PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED",
    "REQUEUE_FED", "REQUEUE_HOLD", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED",
})
_TIMEOUT_S = 60


@dataclass(frozen=True)
class RunRequest:
    """A ``daskcal run`` to be run elsewhere: absolute paths only.

    Attributes
    ----------
    recipe : pathlib.Path
        The recipe file.
    inputs : dict of str to pathlib.Path
        The recipe's inputs by name.
    run_dir : pathlib.Path
        The run directory.
    overrides : tuple of str
        ``--set`` items, ``STEP.KEY=VALUE``.
    """

    recipe: Path
    inputs: dict[str, Path]
    run_dir: Path
    overrides: tuple[str, ...] = ()

    @classmethod
    def make(cls, recipe: str | os.PathLike[str], inputs: Mapping[str, str | os.PathLike[str]],
             run_dir: str | os.PathLike[str], overrides: Sequence[str] = ()) -> RunRequest:
        """A request with every path made absolute (the driver may start elsewhere).

        Raises
        ------
        daskcal.DaskcalError
            If the run directory's path holds whitespace (``#SBATCH`` lines cannot quote it).
        """
        run = Path(run_dir).expanduser().absolute()
        if any(ch.isspace() for ch in str(run)):
            raise DaskcalError(f"{run}: a submitted run needs a run directory without "
                               "whitespace in its path (#SBATCH lines cannot quote it)")
        return cls(Path(recipe).expanduser().absolute(),
                   {k: Path(v).expanduser().absolute() for k, v in inputs.items()},
                   run, tuple(overrides))

    def run_args(self, site_file: str | os.PathLike[str]) -> list[str]:
        """The arguments of ``daskcal`` that run this request on ``site_file``."""
        args = ["run", str(self.recipe)]
        for name, path in self.inputs.items():
            args += ["--input", f"{name}={path}"]
        args += ["--output", str(self.run_dir), "--site", os.fspath(site_file), "--no-progress"]
        for item in self.overrides:
            args += ["--set", item]
        return args


def _slurm_site(site: Site) -> SlurmSite:
    if not isinstance(site, SlurmSite):
        raise DaskcalError(f"site {site.name!r} is of kind {site.kind!r}: submitting a run "
                           "as a batch job needs a site of kind 'slurm'")
    return site


def driver_profile(site: Site, run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The profile the driver runs with: ``site``'s, frozen, worker logs in ``RUN_DIR/logs``.

    Parameters
    ----------
    site : SlurmSite
        The site the run is submitted to.
    run_dir : path
        The (absolute) run directory.

    Returns
    -------
    dict
        A complete profile (every default written out), as ``submit/site.yaml`` holds it.
    """
    site = _slurm_site(site)
    settings = site.config.model_dump(mode="json")
    if settings.get("log_directory") is None:
        settings["log_directory"] = str(Path(run_dir) / LOG_DIR)
    return {"name": site.name, "description": site.profile.description, "kind": "slurm",
            "slurm": settings}


def _mem_directive(memory: str) -> str:
    from dask.utils import parse_bytes

    return f"--mem={math.ceil(parse_bytes(memory) / 2**20)}M"


def render_driver_script(site: Site, request: RunRequest,
                         site_file: str | os.PathLike[str] | None = None) -> str:
    """The batch script of a run's driver job.

    Parameters
    ----------
    site : SlurmSite
        The site; its ``driver`` section sizes the job, and its ``python`` (or
        ``container``), ``setup`` and worker environment run the driver.
    request : RunRequest
        The run.
    site_file : path, optional
        The profile the driver's ``daskcal run`` loads; default
        ``RUN_DIR/submit/site.yaml`` (written by :func:`submit_run`).

    Returns
    -------
    str
        Shebang, ``#SBATCH`` lines, exports, setup, and ``exec python -m daskcal.cli run ...``.
    """
    site = _slurm_site(site)
    cfg, drv = site.config, site.config.driver
    run_dir = request.run_dir
    site_file = site_file or run_dir / SUBMIT_DIR / "site.yaml"
    directives = [f"-J {drv.job_name}"]
    if drv.queue or cfg.queue:
        directives.append(f"-p {drv.queue or cfg.queue}")
    if cfg.account:
        directives.append(f"-A {cfg.account}")
    directives += ["-n 1", f"--cpus-per-task={drv.cores}", _mem_directive(drv.memory),
                   f"-t {drv.walltime}", f"--output={run_dir / LOG_DIR}/{drv.job_name}-%j.out",
                   f"--comment={COMMENT_PREFIX}{run_dir}", *drv.job_extra_directives]
    directives = [d for d in directives
                  if not any(skip in d for skip in cfg.job_directives_skip)]
    python = shlex.quote(drv.python) if drv.python else site.python_command()
    command = " ".join(shlex.quote(word) for word in request.run_args(site_file))
    lines = [
        "#!/usr/bin/env bash",
        *(f"#SBATCH {d}" for d in directives),
        f"# daskcal run driver, site {site.name!r}: the scheduler and the step runner run here,",
        "# the workers in jobs this job submits (rendered by daskcal submit)",
        "set -eo pipefail",
        *site.job_script_prologue(),
        f"exec {python} -m daskcal.cli {command}",
    ]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class SubmittedRun:
    """A run submitted as a driver job.

    Attributes
    ----------
    job_id : str
        The driver's SLURM job id.
    run_dir : pathlib.Path
    script : pathlib.Path
        The batch script submitted.
    """

    job_id: str
    run_dir: Path
    script: Path


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise DaskcalError(f"{argv[0]} did not answer within {_TIMEOUT_S} s (is slurmctld "
                           "up?)") from None


def submit_run(site: Site, request: RunRequest, *, sbatch: str = "sbatch") -> SubmittedRun:
    """Write the driver's files into the run directory and submit the driver job.

    Parameters
    ----------
    site : SlurmSite
        The site the run goes to.
    request : RunRequest
        The run (recipe and inputs already checked by the caller).
    sbatch : str
        The ``sbatch`` command.

    Returns
    -------
    SubmittedRun

    Raises
    ------
    daskcal.DaskcalError
        Not a SLURM site, no ``sbatch``, the run directory busy with a live driver job, or
        ``sbatch`` refusing the job (its message, on one line).
    """
    site = _slurm_site(site)
    executable = shutil.which(sbatch)
    if executable is None:
        raise DaskcalError(f"{sbatch} is not on PATH: submitting needs a SLURM client "
                           "(run daskcal submit on the cluster's login node)")
    run_dir = request.run_dir
    previous = _read_json(run_dir / SUBMIT_DIR / "job.json").get("job_id")
    if previous:
        state = job_state(str(previous))[0]
        if state in ACTIVE_STATES:
            raise DaskcalError(f"{run_dir}: driver job {previous} is {state} on it already "
                               f"(scancel {previous} first)")
    import yaml

    (run_dir / SUBMIT_DIR).mkdir(parents=True, exist_ok=True)
    (run_dir / LOG_DIR).mkdir(exist_ok=True)
    site_file = run_dir / SUBMIT_DIR / "site.yaml"
    site_file.write_text(f"# site {site.name!r} as submitted from {site.source or 'a mapping'}\n"
                         + yaml.safe_dump(driver_profile(site, run_dir), sort_keys=False))
    script = run_dir / SUBMIT_DIR / "driver.sbatch"
    script.write_text(render_driver_script(site, request, site_file))
    out = _run([executable, "--parsable", str(script)])
    if out.returncode != 0:
        reason = _one_line(out.stderr) or f"exit status {out.returncode}"
        raise DaskcalError(f"sbatch {script}: {reason}")
    job_id = out.stdout.strip().split(";")[0]
    if not job_id:
        raise DaskcalError(f"sbatch {script}: printed no job id")
    (run_dir / SUBMIT_DIR / "job.json").write_text(json.dumps({
        "job_id": job_id, "submitted": datetime.now(UTC).isoformat(), "site": site.name,
        "site_source": site.source, "script": str(script), "user": getpass.getuser(),
    }, indent=2) + "\n")
    return SubmittedRun(job_id, run_dir, script)


# ---- status ------------------------------------------------------------------------------

def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def job_state(job_id: str) -> tuple[str | None, str | None, str]:
    """What SLURM says of a job: from ``squeue`` while it is known there, else ``sacct``.

    Parameters
    ----------
    job_id : str

    Returns
    -------
    state : str or None
        ``PENDING``, ``RUNNING``, ``COMPLETED``, ``FAILED``, ``CANCELLED``, ... or None
        when neither command knows the job (``sacct`` needs SLURM's accounting).
    comment : str or None
        The job's comment (``daskcal-run:RUN_DIR`` for driver jobs).
    source : str
        ``"squeue"``, ``"sacct"``, or why neither answered.
    """
    if shutil.which("squeue") is None:
        return None, None, "squeue is not on PATH"
    out = _run(["squeue", "--noheader", "--states=all", f"--jobs={job_id}", "--format=%T|%k"])
    if out.returncode == 0 and out.stdout.strip():
        state, _, comment = out.stdout.strip().splitlines()[0].partition("|")
        return state.strip(), comment.strip() or None, "squeue"
    if shutil.which("sacct") is not None:
        out = _run(["sacct", "--noheader", "--allocations", "--parsable2", f"--jobs={job_id}",
                    "--format=State,Comment"])
        if out.returncode == 0 and out.stdout.strip():
            state, _, comment = out.stdout.strip().splitlines()[0].partition("|")
            return state.split()[0], comment.strip() or None, "sacct"
        if out.returncode != 0:
            return None, None, f"not in squeue; sacct: {_one_line(out.stderr)}"
    return None, None, "not in squeue, nor in sacct"


@dataclass
class RunStatus:
    """The state of a submitted run: its driver job and its provenance.

    Attributes
    ----------
    job_id, job_state, job_source : str or None
        The driver job, its SLURM state and where it came from (see :func:`job_state`).
    run_dir : pathlib.Path or None
    run_status : str or None
        ``provenance.json``'s status (``running``, ``complete``, ``failed``), or
        ``interrupted`` when it says running but the driver job has ended.
    steps_total : int or None
    steps_done : list of [name, status]
        Steps finished (``ran``, ``resumed``, ``skipped``), in order.
    current_step : str or None
        The step running now.
    regions_written : int or None
        Regions of the current step written so far.
    products : dict of str to str
    log : str or None
        The driver's log file.
    """

    job_id: str | None = None
    job_state: str | None = None
    job_source: str | None = None
    run_dir: Path | None = None
    run_status: str | None = None
    steps_total: int | None = None
    steps_done: list[list[str]] = field(default_factory=list)
    current_step: str | None = None
    regions_written: int | None = None
    products: dict[str, str] = field(default_factory=dict)
    log: str | None = None

    @property
    def finished(self) -> bool:
        """The driver job has ended (or SLURM no longer knows it)."""
        return self.job_state not in ACTIVE_STATES

    def to_dict(self) -> dict[str, Any]:
        """JSON data of the status."""
        out = asdict(self)
        out["run_dir"] = None if self.run_dir is None else str(self.run_dir)
        return out

    def format(self) -> str:
        """Lines for people: the job, the run's progress, the log."""
        lines = []
        if self.job_id is not None:
            lines.append(f"job {self.job_id}: {self.job_state or 'unknown'} ({self.job_source})")
        if self.run_dir is not None:
            text = f"run {self.run_dir}: {self.run_status or 'not started'}"
            if self.steps_total is not None:
                text += f", {len(self.steps_done)}/{self.steps_total} steps done"
            if self.current_step:
                text += f", now {self.current_step}"
                if self.regions_written is not None:
                    text += f" ({self.regions_written} regions written)"
            lines.append(text)
            lines += [f"  step {name}: {status}" for name, status in self.steps_done]
            lines += [f"  product {name}: {self.run_dir / path}"
                      for name, path in self.products.items()]
        if self.log:
            lines.append(f"log {self.log}")
        return "\n".join(lines)


def _progress(status: RunStatus) -> None:
    """Fill in the run's part of ``status`` from its ``provenance.json``."""
    run_dir = status.run_dir
    if run_dir is None:
        return
    prov = _read_json(run_dir / "provenance.json")
    if not prov:
        return
    status.run_status = prov.get("status")
    names = [s.get("name") for s in (prov.get("recipe", {}).get("config", {}).get("steps") or [])]
    status.steps_total = len(names) or None
    status.steps_done = [[s.get("name"), s.get("status")] for s in prov.get("steps", [])]
    status.products = dict(prov.get("products") or {})
    if status.run_status == "running" and status.finished and status.job_id is not None:
        status.run_status = "interrupted"
    if status.run_status == "running" and len(status.steps_done) < len(names):
        index = len(status.steps_done)
        status.current_step = names[index]
        pattern = f"{index + 1:02d}-{names[index]}.zarr.progress"
        markers = list((run_dir / "steps").glob(f"{pattern}/*.json"))
        status.regions_written = len(markers)


def _log_file(run_dir: Path, job_id: str | None) -> str | None:
    if job_id is None:
        return None
    found = sorted((run_dir / LOG_DIR).glob(f"*-{job_id}.out"))
    return str(found[0]) if found else None


def run_status(target: str | os.PathLike[str]) -> RunStatus:
    """The status of a submitted run, given its driver's job id or its run directory.

    Parameters
    ----------
    target : str or path
        A job id (digits), or a run directory.

    Returns
    -------
    RunStatus

    Raises
    ------
    daskcal.DaskcalError
        If ``target`` is neither a known job nor a directory (one line).
    """
    text = os.fspath(target)
    status = RunStatus()
    if text.isdigit() and not Path(text).is_dir():
        status.job_id = text
        status.job_state, comment, status.job_source = job_state(text)
        if comment and comment.startswith(COMMENT_PREFIX):
            status.run_dir = Path(comment.removeprefix(COMMENT_PREFIX))
        elif status.job_state is None:
            raise DaskcalError(f"job {text}: unknown to SLURM ({status.job_source}); give its "
                               "run directory instead")
    else:
        run_dir = Path(text).expanduser().absolute()
        if not run_dir.is_dir():
            raise DaskcalError(f"{text}: neither a job id nor a run directory")
        status.run_dir = run_dir
        job_id = _read_json(run_dir / SUBMIT_DIR / "job.json").get("job_id")
        if job_id:
            status.job_id = str(job_id)
            status.job_state, _, status.job_source = job_state(status.job_id)
    if status.run_dir is not None:
        _progress(status)
        status.log = _log_file(status.run_dir, status.job_id)
    return status


def active_runs(user: str | None = None) -> list[RunStatus]:
    """The status of every driver job of ``user`` (default: you) that SLURM still lists.

    Returns
    -------
    list of RunStatus
        One per job whose comment names a run directory; empty without ``squeue``.
    """
    if shutil.which("squeue") is None:
        return []
    out = _run(["squeue", "--noheader", f"--user={user or getpass.getuser()}",
                "--format=%i|%T|%k"])
    runs = []
    for line in out.stdout.splitlines() if out.returncode == 0 else []:
        job_id, _, rest = line.strip().partition("|")
        state, _, comment = rest.partition("|")
        if comment.startswith(COMMENT_PREFIX):
            status = RunStatus(job_id=job_id, job_state=state, job_source="squeue",
                               run_dir=Path(comment.removeprefix(COMMENT_PREFIX)))
            _progress(status)
            status.log = _log_file(status.run_dir, job_id)
            runs.append(status)
    return runs


__all__ = ["ACTIVE_STATES", "COMMENT_PREFIX", "LOG_DIR", "SUBMIT_DIR", "RunRequest",
           "RunStatus", "SubmittedRun", "active_runs", "driver_profile", "job_state",
           "render_driver_script", "run_status", "submit_run"]
