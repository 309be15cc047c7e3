"""The survey's state in PostgreSQL (psycopg): the same SQL as with sqlite.

Marked ``postgres``: needs a server (``$DASKCAL_TEST_POSTGRES``, default the local socket's
``postgresql:///postgres``) where a throw-away database is created per test; skipped without
one, failed instead with ``DASKCAL_REQUIRE_POSTGRES=1``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from daskcal.survey.config import load_survey
from daskcal.survey.db import (
    Database,
    DatabaseError,
    acquire_driver,
    release_driver,
    sync_observations,
)
from daskcal.survey.driver import SurveyDriver, summary_table

pytestmark = pytest.mark.postgres


def test_transactions_sync_and_driver_lease(postgres_url):
    db = Database(postgres_url)
    assert db.paramstyle == "format"
    Database(postgres_url).close()  # the schema is created once, idempotently
    rows = [{"name": "o1", "inputs": {"target": "x"}, "location": "a", "nbytes": 10},
            {"name": "o2", "inputs": {"target": "y?"}, "location": None, "nbytes": 2**40}]
    assert sync_observations(db, rows, ["a"]) == ["o1", "o2"]
    assert sync_observations(db, rows, ["a"]) == []
    with pytest.raises(RuntimeError), db.transaction() as tx:
        tx.execute("UPDATE observations SET state = 'running' WHERE name = ?", ("o1",))
        raise RuntimeError("killed half way")
    got = {r["name"]: (r["state"], r["nbytes"], r["inputs"]) for r in db.observations()}
    assert got == {"o1": ("pending", 10, '{"target": "x"}'),
                   "o2": ("pending", 2**40, '{"target": "y?"}')}
    with db.transaction() as tx:
        assert tx.execute("UPDATE observations SET attempt = attempt + 1 WHERE state = ?",
                          ("pending",)) == 2
    # the lease: a live driver in another process holds it; a dead one is taken over
    with db.transaction() as tx:
        tx.execute("INSERT INTO driver (id, owner, host, pid, started_at, heartbeat) "
                   "VALUES ('driver', 'other', ?, ?, 0, 0)",
                   (socket.gethostname(), os.getppid()))
    with pytest.raises(DatabaseError, match="another survey driver"):
        acquire_driver(db, "me")
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True).stdout)
    with db.transaction() as tx:
        tx.execute("UPDATE driver SET pid = ?", (dead,))
    assert acquire_driver(db, "me")["owner"] == "other"
    release_driver(db, "me")
    assert db.one("SELECT * FROM driver") is None
    assert [e["kind"] for e in db.events()].count("driver") == 2
    db.close()


def test_survey_with_its_state_in_postgres(postgres_url, write_survey, local_sites, site_entry,
                                           observation, reference, compare, tmp_path):
    plan = {"g1": ("s1", "a"), "g2": ("s2", None)}
    survey = load_survey(write_survey(
        {"a": site_entry(local_sites["a"].scheduler_address, tmp_path / "a"),
         "b": site_entry(local_sites["b"].scheduler_address, tmp_path / "b")},
        [{"name": n, "inputs": {"target": str(observation(k))}, "location": w}
         for n, (k, w) in plan.items()], database=postgres_url))
    assert survey.database == postgres_url
    rows = {r["name"]: r for r in SurveyDriver(survey, echo=lambda line: None,
                                               poll_s=0.2).run()}
    db = Database(postgres_url)
    assert {r["state"] for r in rows.values()} == {"done"}, summary_table(db)
    assert rows["g1"]["site"] == "a" and rows["g2"]["site"] == "b"
    assert not (tmp_path / "out" / "survey.db").exists()
    staged = [t for t in db.transfers("g2") if t["direction"] == "in"]
    assert staged and all(len(t["sha256"]) == 64 for t in staged)
    for name, (key, _) in plan.items():
        assert compare(reference(key), survey.output / name / "products" / "average.zarr") \
            == [], name
    db.close()
