"""The survey driver: observations run concurrently on their sites, resumably, with retries.

One driver process runs a survey::

    driver (this process)                       site A scheduler      site B scheduler
      main loop: place -> claim -> thread  ---> run_recipe(obs1) ---> workers
      one thread per observation           ---> run_recipe(obs2) ------------------> workers
      heartbeat thread (lease, in the DB)

Every observation goes ``pending -> staging -> running -> done`` (or back to
``pending`` to be retried after a failure, or ``failed`` after ``max_attempts``); each
change is one database transaction (:mod:`daskcal.survey.db`). A thread stages the
inputs into the site's ``DATA_ROOT/staged/OBS`` (unless the site holds them,
:mod:`daskcal.survey.staging`), runs :func:`~daskcal.pipeline.runner.run_recipe` into
``DATA_ROOT/runs/OBS`` on the site's scheduler, and copies the run's ``products/``,
``weblog/`` and ``provenance.json`` back to ``OUTPUT/OBS``, all checksummed.

Crash safety: the driver holds a lease (:func:`~daskcal.survey.db.acquire_driver`); a
new driver takes over from a dead one, and every observation the dead one was staging
or running is *resumed* on the same site into the same run directory (``resumes``
counts this; ``attempt`` does not change): staging skips verified files,
``run_recipe`` skips finished steps and resumes half-written ones, returning products
skips intact copies. So nothing is lost and nothing runs twice.

Failures: a failed attempt waits ``backoff_s * 2**(attempt - 1)`` seconds and is placed
again; after ``max_attempts`` the observation is ``failed`` and reported. A failure that
is the site's (not a :class:`~daskcal.DaskcalError` about the observation's data or
recipe) counts against the site; ``site_failure_threshold`` of them in a row disable
it, and its waiting observations are placed elsewhere at once.

Sites: an ``address`` site is used as it is; for any other kind the driver starts the
site's cluster (``Site.cluster()``) when first needed and keeps it for the survey, and
the runs connect to its scheduler (each ``run_recipe`` gets an ``address`` profile of
it, in ``OUTPUT/.survey/sites/``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from daskcal import DaskcalError
from daskcal.survey.config import Survey, site_profile
from daskcal.survey.db import (
    ACTIVE_STATES,
    Database,
    acquire_driver,
    heartbeat,
    owner_token,
    release_driver,
    sync_observations,
)
from daskcal.survey.placement import SiteLoad, Waiting, any_site_left, place
from daskcal.survey.staging import CopyFile, StagingError, Transfer, copy_verified, tree_bytes

log = logging.getLogger(__name__)

#: Sub-directory of the output directory holding the driver's own files.
STATE_DIR = ".survey"


class SiteRuntime:
    """A survey site while the driver runs: its profile and, once started, its cluster.

    Parameters
    ----------
    survey : Survey
    name : str
        The site's name in the survey.
    """

    def __init__(self, survey: Survey, name: str) -> None:
        self.survey = survey
        self.name = name
        self.profile = site_profile(survey, name)
        self._lock = threading.Lock()
        self._stack: contextlib.ExitStack | None = None
        self._profile_file: Path | None = None
        self.started_s: float | None = None

    def _write(self, data: dict[str, Any]) -> Path:
        path = self.survey.output / STATE_DIR / "sites" / f"{self.name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(yaml.safe_dump(data, sort_keys=False))
        os.replace(tmp, path)
        return path

    def run_profile(self) -> Path:
        """A profile file for ``run_recipe``: the site itself, or its running scheduler.

        Starts the site's cluster on first call (sites other than ``address``).
        """
        with self._lock:
            if self._profile_file is not None:
                return self._profile_file
            if self.profile.kind == "address":
                data = self.profile.model_dump(mode="json", exclude_none=True)
                self._profile_file = self._write(data)
                return self._profile_file
            from daskcal.cluster.sites import site_from_profile

            site = site_from_profile(self.profile, f"survey site {self.name}")
            t0 = time.perf_counter()
            stack = contextlib.ExitStack()
            cluster = stack.enter_context(site.cluster())
            self._stack = stack
            self.started_s = time.perf_counter() - t0
            self._profile_file = self._write({
                "name": self.name, "kind": "address",
                "description": f"{site.describe()} (started by the survey driver)",
                "address": {"scheduler": cluster.scheduler_address, "timeout": "30s"}})
            return self._profile_file

    def reset(self) -> None:
        """Close a cluster the driver started (after a failure): the next use starts anew."""
        with self._lock:
            if self._stack is not None:
                with contextlib.suppress(Exception):
                    self._stack.close()
                self._stack = None
                self._profile_file = None

    def close(self) -> None:
        """Close the cluster, if the driver started one."""
        self.reset()


def _site_fault(exc: BaseException) -> bool:
    """Whether a failure counts against the site (not the observation's data or recipe)."""
    return not isinstance(exc, DaskcalError) or isinstance(exc, StagingError | OSError)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or "(no message)"
    return f"{type(exc).__name__}: {text}"[:500]


class SurveyDriver:
    """Runs a survey to the end (or until interrupted; a later driver resumes it).

    Parameters
    ----------
    survey : Survey
        The validated survey (:func:`~daskcal.survey.config.load_survey`).
    echo : callable, optional
        Receives one line per event (placements, state changes, failures); default: the
        module's logger.
    poll_s : float
        Seconds between scheduling rounds (a finishing observation wakes the loop early).
    heartbeat_s : float
        Seconds between renewals of the driver's lease.
    copy_file : callable, optional
        Copies one file while staging (see :func:`~daskcal.survey.staging.copy_verified`).
    """

    def __init__(self, survey: Survey, *, echo: Callable[[str], None] | None = None,
                 poll_s: float = 0.5, heartbeat_s: float = 2.0,
                 copy_file: CopyFile = shutil.copyfile) -> None:
        from daskcal.pipeline.recipe import load_recipe

        self.survey = survey
        self.cfg = survey.config
        self.echo = echo or log.info
        self.poll_s = poll_s
        self.heartbeat_s = heartbeat_s
        self.copy_file = copy_file
        self.recipe = load_recipe(survey.recipe, self.cfg.overrides)
        self.owner = owner_token()
        self.db: Database | None = None
        self.sites = {name: SiteRuntime(survey, name) for name in self.cfg.sites}
        self._threads: dict[str, threading.Thread] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()

    # ------------------------------------------------------------------ main loop

    def run(self) -> list[dict[str, Any]]:
        """Run every observation to ``done`` or ``failed``.

        Returns
        -------
        list of dict
            The observation rows at the end.

        Raises
        ------
        daskcal.survey.db.DatabaseError
            If another live driver runs the survey.
        """
        import dask

        self.survey.output.mkdir(parents=True, exist_ok=True)
        # concurrent runs open and close distributed clients in threads; each client sets
        # and restores the global default scheduler, so their restores interleave: put it
        # back as it was once the survey is over
        scheduler = dask.config.get("scheduler", None)
        try:
            return self._run()
        finally:
            dask.config.set(scheduler=scheduler)

    def _run(self) -> list[dict[str, Any]]:
        self.db = db = Database(self.survey.database)
        beat = None
        try:
            previous = acquire_driver(db, self.owner, lease_s=max(10.0, 5 * self.heartbeat_s))
            if previous is not None and previous["owner"] != self.owner:
                self.echo(f"taking over from driver {previous['owner']}")
            self._sync()
            beat = threading.Thread(target=self._beat, name="survey-heartbeat", daemon=True)
            beat.start()
            while True:
                self._threads = {k: t for k, t in self._threads.items() if t.is_alive()}
                rows = self._rows()
                if not self._threads and not any(
                        r["state"] in ("pending", *ACTIVE_STATES) for r in rows):
                    break
                self._schedule(rows)
                self._wake.wait(self.poll_s)
                self._wake.clear()
            return self._rows()
        finally:
            self._stop.set()
            if beat is not None:
                beat.join(timeout=5)
            for site in self.sites.values():
                site.close()
            with contextlib.suppress(Exception):
                release_driver(db, self.owner)
            db.close()

    def _rows(self) -> list[dict[str, Any]]:
        """The observation rows of this survey file (the database may hold others)."""
        names = {o.name for o in self.cfg.observations}
        return [r for r in self.db.observations() if r["name"] in names]

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                heartbeat(self.db, self.owner)
            except Exception:  # pragma: no cover - a closed database at exit
                log.debug("heartbeat failed", exc_info=True)

    def _sync(self) -> None:
        rows = []
        for obs in self.cfg.observations:
            inputs = self.survey.inputs(obs.name)
            rows.append({"name": obs.name, "location": obs.location,
                         "inputs": {k: str(v) for k, v in inputs.items()},
                         "nbytes": sum(tree_bytes(p) for p in inputs.values())})
        for name in sync_observations(self.db, rows, list(self.cfg.sites)):
            self.echo(f"{name}: added")

    def _loads(self, rows: list[dict[str, Any]]) -> dict[str, SiteLoad]:
        disabled = {r["name"] for r in self.db.sites() if r["disabled"]}
        loads = {}
        for name, entry in self.cfg.sites.items():
            mine = [r for r in rows if r["site"] == name and r["state"] in ACTIVE_STATES]
            queued = sum(int(r["nbytes"]) for r in mine
                         if r["state"] == "staging" and r["location"] != name)
            loads[name] = SiteLoad(name, entry.capacity, self.survey.bandwidth(name),
                                   len(mine), queued, name in disabled)
        return loads

    def _schedule(self, rows: list[dict[str, Any]]) -> None:
        db, now = self.db, time.time()
        loads = self._loads(rows)
        # observations a dead driver was working on: resume them where they were
        for r in rows:
            if r["state"] not in ACTIVE_STATES or r["owner"] == self.owner:
                continue
            site = loads.get(r["site"])
            if site is None or site.disabled:
                with db.transaction() as tx:
                    tx.execute("UPDATE observations SET state = 'pending', last_site = site, "
                               "site = NULL, owner = NULL, owner_pid = NULL, next_try_at = ? "
                               "WHERE name = ? AND state = ?", (now, r["name"], r["state"]))
                    tx.event("replaced", f"left by a dead driver on disabled site {r['site']}; "
                             "placed again", observation=r["name"], site=r["site"])
                continue
            with db.transaction() as tx:
                n = tx.execute("UPDATE observations SET owner = ?, owner_pid = ?, heartbeat = ?, "
                               "resumes = resumes + 1 WHERE name = ? AND state = ? AND "
                               "(owner IS NULL OR owner = ?)",
                               (self.owner, os.getpid(), now, r["name"], r["state"], r["owner"]))
                if n:
                    tx.event("resume", f"resumed on {r['site']} in {r['run_dir'] or 'staging'} "
                             f"(left {r['state']} by driver {r['owner']})",
                             observation=r["name"], site=r["site"], owner=self.owner)
            if n:
                self.echo(f"{r['name']}: resuming on {r['site']} (its driver died)")
                self._start(r["name"], r["site"])
        # waiting observations: place them on free slots
        rows = self._rows()
        loads = self._loads(rows)
        order = {o.name: i for i, o in enumerate(self.cfg.observations)}
        waiting = [Waiting(r["name"], int(r["nbytes"]), r["location"],
                           r["last_site"] if r["error"] else None) for r in
                   sorted(rows, key=lambda r: order.get(r["name"], len(order)))
                   if r["state"] == "pending" and float(r["next_try_at"]) <= now]
        if waiting and not any_site_left(list(loads.values())):
            self._fail_all(waiting, "no site left: every site is disabled after failures")
            return
        for name, site in place(waiting, list(loads.values())).items():
            with db.transaction() as tx:
                n = tx.execute("UPDATE observations SET state = 'staging', site = ?, owner = ?, "
                               "owner_pid = ?, heartbeat = ?, attempt = attempt + 1, "
                               "started_at = ?, run_dir = NULL WHERE name = ? AND "
                               "state = 'pending'",
                               (site, self.owner, os.getpid(), now, now, name))
                if n:
                    row = tx.one("SELECT attempt FROM observations WHERE name = ?", (name,))
                    tx.event("placed", f"placed on {site} (attempt {row['attempt']})",
                             observation=name, site=site, owner=self.owner)
            if n:
                self.echo(f"{name}: placed on {site} (attempt {row['attempt']})")
                self._start(name, site)

    def _fail_all(self, waiting: list[Waiting], reason: str) -> None:
        with self.db.transaction() as tx:
            for obs in waiting:
                tx.execute("UPDATE observations SET state = 'failed', error = ?, "
                           "finished_at = ? WHERE name = ? AND state = 'pending'",
                           (reason, time.time(), obs.name))
                tx.event("failed", reason, observation=obs.name)
        for obs in waiting:
            self.echo(f"{obs.name}: failed: {reason}")

    def _start(self, name: str, site: str) -> None:
        try:  # clusters start in the main thread (they install signal handlers)
            profile = self.sites[site].run_profile()
        except Exception as exc:
            log.debug("site %s did not start", site, exc_info=True)
            self._failed(name, site, exc)
            return
        thread = threading.Thread(target=self._work, args=(name, site, profile), daemon=True,
                                  name=f"survey-{name}")
        self._threads[name] = thread
        thread.start()

    # ------------------------------------------------------------------ one observation

    def _work(self, name: str, site: str, profile: Path) -> None:
        try:
            self._process(name, site, profile)
        except BaseException as exc:  # every failure is recorded
            log.debug("observation %s failed on %s", name, site, exc_info=True)
            if self._stop.is_set():  # the driver is stopping: a later driver resumes it
                return
            self._failed(name, site, exc)
        finally:
            self._wake.set()

    def _process(self, name: str, site: str, profile: Path) -> None:
        db, root = self.db, self.survey.data_root(site)
        inputs = self._stage_in(name, site, root)
        run_dir = root / "runs" / name
        with db.transaction() as tx:
            tx.execute("UPDATE observations SET state = 'running', run_dir = ? WHERE name = ? "
                       "AND owner = ?", (str(run_dir), name, self.owner))
            tx.event("running", f"run_recipe into {run_dir}", observation=name, site=site,
                     owner=self.owner)
        from daskcal.pipeline.runner import run_recipe

        def echo(line: str) -> None:
            db.event("run", line, observation=name, site=site, owner=self.owner)

        run_recipe(self.recipe, inputs, run_dir, site=str(profile), progress=False, echo=echo)
        self._return_products(name, site, run_dir)
        with db.transaction() as tx:
            tx.execute("UPDATE observations SET state = 'done', error = NULL, owner = NULL, "
                       "owner_pid = NULL, finished_at = ? WHERE name = ? AND owner = ?",
                       (time.time(), name, self.owner))
            tx.execute("UPDATE sites SET consecutive_failures = 0, health = 'ok', "
                       "updated_at = ? WHERE name = ?", (time.time(), site))
            tx.event("done", f"done; products in {self.survey.output / name}",
                     observation=name, site=site, owner=self.owner)
        self.echo(f"{name}: done on {site}")

    def _record(self, name: str, site: str, direction: str, transfer: Transfer) -> None:
        now = time.time()
        with self.db.transaction() as tx:
            for f in transfer.files:
                tx.execute("INSERT INTO transfers (id, observation, site, direction, file, "
                           "sha256, nbytes, seconds, copies, at) VALUES "
                           "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           (f"{os.urandom(8).hex()}", name, site, direction,
                            f"{transfer.dst}/{f.path}" if transfer.dst.is_dir()
                            else str(transfer.dst), f.sha256, f.nbytes, f.seconds, f.copies,
                            now))
            if transfer.recopied:
                tx.event("repaired", f"{len(transfer.recopied)} corrupt files of "
                         f"{transfer.dst} copied again", observation=name, site=site)
            tx.event(f"stage-{direction}",
                     f"{transfer.src} -> {transfer.dst}: "
                     + (f"{len(transfer.files)} files, {transfer.nbytes} bytes in "
                        f"{transfer.seconds:.2f} s" if transfer.files else "intact, skipped"),
                     observation=name, site=site, owner=self.owner)

    def _stage_in(self, name: str, site: str, root: Path) -> dict[str, Path]:
        obs = next(o for o in self.cfg.observations if o.name == name)
        inputs = self.survey.inputs(name)
        if obs.location == site:
            return inputs
        staged = {}
        for key, src in inputs.items():
            dst = root / "staged" / name / f"{key}-{src.name}"
            transfer = copy_verified(src, dst, copy_file=self.copy_file)
            self._record(name, site, "in", transfer)
            staged[key] = dst
        return staged

    def _return_products(self, name: str, site: str, run_dir: Path) -> None:
        out = self.survey.output / name
        for part in ("products", "weblog", "provenance.json"):
            src = run_dir / part
            if src.exists():
                self._record(name, site, "out",
                             copy_verified(src, out / part, copy_file=self.copy_file))

    def _failed(self, name: str, site: str, exc: BaseException) -> None:
        cfg, now, error = self.cfg, time.time(), _one_line(exc)
        blame = _site_fault(exc)
        disabled = False
        with self.db.transaction() as tx:
            row = tx.one("SELECT attempt FROM observations WHERE name = ?", (name,))
            attempt = int(row["attempt"]) if row else 0
            if attempt >= cfg.retries.max_attempts:
                tx.execute("UPDATE observations SET state = 'failed', error = ?, owner = NULL, "
                           "owner_pid = NULL, last_site = site, finished_at = ? "
                           "WHERE name = ? AND owner = ?", (error, now, name, self.owner))
                tx.event("failed", f"failed after {attempt} attempts: {error}",
                         observation=name, site=site, owner=self.owner)
                verdict = f"failed after {attempt} attempts"
            else:
                wait = cfg.retries.backoff_s * 2 ** max(0, attempt - 1)
                tx.execute("UPDATE observations SET state = 'pending', error = ?, owner = NULL, "
                           "owner_pid = NULL, last_site = site, site = NULL, next_try_at = ? "
                           "WHERE name = ? AND owner = ?", (error, now + wait, name, self.owner))
                tx.event("retry", f"attempt {attempt} failed ({error}); retry in {wait:g} s",
                         observation=name, site=site, owner=self.owner)
                verdict = f"attempt {attempt} failed, retry in {wait:g} s"
            if blame:
                tx.execute("UPDATE sites SET consecutive_failures = consecutive_failures + 1, "
                           "total_failures = total_failures + 1, health = 'failing', "
                           "updated_at = ? WHERE name = ?", (now, site))
                srow = tx.one("SELECT * FROM sites WHERE name = ?", (site,))
                if (not srow["disabled"]
                        and srow["consecutive_failures"] >= cfg.site_failure_threshold):
                    disabled = True
                    reason = (f"{srow['consecutive_failures']} failed runs in a row, the last: "
                              f"{error}")
                    tx.execute("UPDATE sites SET disabled = 1, health = 'disabled', "
                               "disabled_reason = ? WHERE name = ?", (reason, site))
                    tx.execute("UPDATE observations SET next_try_at = ? WHERE state = 'pending' "
                               "AND last_site = ?", (now, site))
                    tx.event("site-disabled", reason, site=site, owner=self.owner)
        self.echo(f"{name}: {verdict} on {site}: {error}")
        if disabled:
            self.sites[site].reset()
            self.echo(f"site {site}: disabled; its waiting observations are placed elsewhere")


def retry_failed(db: Database) -> list[str]:
    """Make failed observations pending again (attempts counted afresh) and re-enable sites.

    Returns
    -------
    list of str
        The observations made pending.
    """
    now = time.time()
    with db.transaction() as tx:
        names = [r["name"] for r in tx.all("SELECT name FROM observations WHERE state = "
                                           "'failed' ORDER BY name")]
        tx.execute("UPDATE observations SET state = 'pending', attempt = 0, next_try_at = 0, "
                   "site = NULL WHERE state = 'failed'")
        tx.execute("UPDATE sites SET disabled = 0, consecutive_failures = 0, health = 'unknown', "
                   "disabled_reason = NULL, updated_at = ?", (now,))
        for name in names:
            tx.event("retry-failed", "failed observation made pending again", observation=name)
    return names


def summary_table(db: Database) -> str:
    """The survey's state as a text table: one line per observation, then the sites."""
    rows = db.observations()
    head = ("observation", "state", "site", "attempt", "resumes", "error")
    body = [(r["name"], r["state"], r["site"] or r["last_site"] or "-", str(r["attempt"]),
             str(r["resumes"]), (r["error"] or "")[:70]) for r in rows]
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(len(head) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
             for row in [head, *body]]
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    lines.append("total: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    driver = db.one("SELECT * FROM driver WHERE id = 'driver'")
    if driver is not None:
        lines.append(f"driver: {driver['owner']}, last heartbeat "
                     f"{time.time() - float(driver['heartbeat']):.0f} s ago")
    lines.append("")
    for s in db.sites():
        state = "DISABLED" if s["disabled"] else s["health"]
        lines.append(f"site {s['name']}: {state}, {s['consecutive_failures']} failures in a "
                     f"row ({s['total_failures']} in all)"
                     + (f": {s['disabled_reason']}" if s["disabled_reason"] else ""))
    return "\n".join(lines)


def run_survey(survey: Survey, **kwargs: Any) -> list[dict[str, Any]]:
    """Run a survey with a :class:`SurveyDriver` (keyword arguments go to it).

    Returns
    -------
    list of dict
        The observation rows at the end.
    """
    return SurveyDriver(survey, **kwargs).run()


def observation_inputs(row: dict[str, Any]) -> dict[str, str]:
    """The inputs recorded for an observation row."""
    return json.loads(row["inputs"])


__all__ = ["STATE_DIR", "SiteRuntime", "SurveyDriver", "observation_inputs", "retry_failed",
           "run_survey", "summary_table"]
