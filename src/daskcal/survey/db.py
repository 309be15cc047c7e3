"""The survey's state in a real database: sqlite3 (stdlib) or PostgreSQL (psycopg).

A tiny DB-API layer, no ORM: the SQL is written once, portably (``?`` placeholders,
``TEXT``/``BIGINT``/``DOUBLE PRECISION`` columns, text keys, ``ON CONFLICT``), and
the placeholders are rewritten to ``%s`` for psycopg. Every change of state happens
in one transaction (:meth:`Database.transaction`), so that a driver killed at any
point leaves a consistent database behind.

Tables
------
``observations``
    One row per observation: ``state`` (pending, staging, running, done, failed),
    the ``site`` it is placed on, ``attempt`` (attempts started; a resumption after a
    dead driver is counted in ``resumes`` instead), ``next_try_at`` (unix seconds of
    the earliest retry), ``run_dir``, ``error``, the driver owning it (``owner``,
    ``owner_pid``) and its ``heartbeat``.
``sites``
    Health of each site: ``consecutive_failures``, ``disabled`` (0/1) and why.
``transfers``
    One row per file copied (staging in, products out): its SHA-256, bytes, seconds.
``events``
    The log: one row per event (state changes, run_recipe's lines), with time and obs.
``driver``
    One row: the driver currently running the survey (its lease and heartbeat).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from daskcal import DaskcalError
from daskcal._files import pid_alive

#: States of an observation.
STATES: tuple[str, ...] = ("pending", "staging", "running", "done", "failed")
#: States in which a driver works on an observation.
ACTIVE_STATES: tuple[str, ...] = ("staging", "running")

SCHEMA: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS observations (
        name TEXT PRIMARY KEY,
        inputs TEXT NOT NULL,
        location TEXT,
        nbytes BIGINT NOT NULL DEFAULT 0,
        state TEXT NOT NULL DEFAULT 'pending',
        site TEXT,
        last_site TEXT,
        attempt INTEGER NOT NULL DEFAULT 0,
        resumes INTEGER NOT NULL DEFAULT 0,
        next_try_at DOUBLE PRECISION NOT NULL DEFAULT 0,
        run_dir TEXT,
        error TEXT,
        owner TEXT,
        owner_pid INTEGER,
        heartbeat DOUBLE PRECISION,
        started_at DOUBLE PRECISION,
        finished_at DOUBLE PRECISION)""",
    """CREATE TABLE IF NOT EXISTS sites (
        name TEXT PRIMARY KEY,
        health TEXT NOT NULL DEFAULT 'unknown',
        consecutive_failures INTEGER NOT NULL DEFAULT 0,
        total_failures INTEGER NOT NULL DEFAULT 0,
        disabled INTEGER NOT NULL DEFAULT 0,
        disabled_reason TEXT,
        updated_at DOUBLE PRECISION)""",
    """CREATE TABLE IF NOT EXISTS transfers (
        id TEXT PRIMARY KEY,
        observation TEXT NOT NULL,
        site TEXT,
        direction TEXT NOT NULL,
        file TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        nbytes BIGINT NOT NULL,
        seconds DOUBLE PRECISION NOT NULL,
        copies INTEGER NOT NULL,
        at DOUBLE PRECISION NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS events (
        id TEXT PRIMARY KEY,
        at DOUBLE PRECISION NOT NULL,
        observation TEXT,
        site TEXT,
        kind TEXT NOT NULL,
        message TEXT NOT NULL,
        owner TEXT)""",
    """CREATE TABLE IF NOT EXISTS driver (
        id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        started_at DOUBLE PRECISION NOT NULL,
        heartbeat DOUBLE PRECISION NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS events_obs ON events (observation)",
    "CREATE INDEX IF NOT EXISTS transfers_obs ON transfers (observation)",
)


class DatabaseError(DaskcalError, RuntimeError):
    """The survey database cannot be opened or is used by another live driver (one line)."""


def _sqlite_path(url: str) -> str:
    path = url[len("sqlite://"):]
    if path.startswith("/"):  # sqlite:///relative or sqlite:////absolute, as SQLAlchemy
        path = path[1:]
    return path or ":memory:"


class Database:
    """A connection to the survey database, shared by the driver's threads.

    Parameters
    ----------
    url : str
        ``sqlite:///path/to/survey.db`` (relative) or ``sqlite:////abs/path.db``;
        ``postgresql://user@host/db`` (psycopg 3).

    Notes
    -----
    One connection, used under a lock: every :meth:`transaction` is serialised, which
    the small write rate of a survey allows. sqlite runs in WAL mode, so that
    ``daskcal survey --status`` reads while a driver writes.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._lock = threading.RLock()
        if url.startswith("sqlite://"):
            import sqlite3

            path = _sqlite_path(url)
            if path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            try:
                self._conn = sqlite3.connect(path, timeout=30, isolation_level=None,
                                             check_same_thread=False)
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute("PRAGMA synchronous=NORMAL")
            except sqlite3.Error as exc:
                raise DatabaseError(f"{url}: cannot open: {exc}") from None
            self.paramstyle = "qmark"
            self._begin = "BEGIN IMMEDIATE"
        elif url.startswith(("postgresql://", "postgres://")):
            try:
                import psycopg
            except ImportError:
                raise DatabaseError(f"{url}: PostgreSQL needs psycopg (pip install "
                                    "'psycopg[binary]')") from None
            try:
                self._conn = psycopg.connect(url, autocommit=True)
            except psycopg.Error as exc:
                raise DatabaseError(f"{url}: cannot connect: "
                                    f"{' '.join(str(exc).split())}") from None
            self.paramstyle = "format"
            self._begin = "BEGIN"
        else:
            raise DatabaseError(f"{url}: not a database URL (sqlite:///... or postgresql://...)")
        with self.transaction() as tx:
            for statement in SCHEMA:
                tx.execute(statement)

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.paramstyle == "format" else sql

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """A transaction: committed on normal exit, rolled back on an exception.

        Yields
        ------
        Transaction
            ``execute(sql, params)``, ``one``, ``all``; ``?`` placeholders.
        """
        with self._lock:
            cur = self._conn.cursor()
            cur.execute(self._begin)
            try:
                yield Transaction(self, cur)
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            else:
                cur.execute("COMMIT")
            finally:
                cur.close()

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Rows of a query (in its own transaction) as dicts."""
        with self.transaction() as tx:
            return tx.all(sql, params)

    def one(self, sql: str, params: Sequence[Any] = ()) -> dict[str, Any] | None:
        """The first row of a query, or None."""
        rows = self.all(sql, params)
        return rows[0] if rows else None

    # ------------------------------------------------------------ conveniences

    def event(self, kind: str, message: str, *, observation: str | None = None,
              site: str | None = None, owner: str | None = None) -> None:
        """Append one event to the log (its own transaction)."""
        with self.transaction() as tx:
            tx.event(kind, message, observation=observation, site=site, owner=owner)

    def observations(self) -> list[dict[str, Any]]:
        """Every observation row, in name order."""
        return self.all("SELECT * FROM observations ORDER BY name")

    def sites(self) -> list[dict[str, Any]]:
        """Every site row, in name order."""
        return self.all("SELECT * FROM sites ORDER BY name")

    def events(self, observation: str | None = None) -> list[dict[str, Any]]:
        """The event log (of one observation), oldest first."""
        if observation is None:
            return self.all("SELECT * FROM events ORDER BY at, id")
        return self.all("SELECT * FROM events WHERE observation = ? ORDER BY at, id",
                        (observation,))

    def transfers(self, observation: str | None = None) -> list[dict[str, Any]]:
        """The transfer records (of one observation)."""
        if observation is None:
            return self.all("SELECT * FROM transfers ORDER BY at, id")
        return self.all("SELECT * FROM transfers WHERE observation = ? ORDER BY at, id",
                        (observation,))


class Transaction:
    """The statements of one transaction (see :meth:`Database.transaction`)."""

    def __init__(self, db: Database, cursor: Any) -> None:
        self._db = db
        self._cur = cursor

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run a statement; returns the number of rows it changed."""
        self._cur.execute(self._db._sql(sql), tuple(params))
        return self._cur.rowcount

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Rows of a query as dicts."""
        self._cur.execute(self._db._sql(sql), tuple(params))
        names = [d[0] for d in self._cur.description]
        return [dict(zip(names, row, strict=True)) for row in self._cur.fetchall()]

    def one(self, sql: str, params: Sequence[Any] = ()) -> dict[str, Any] | None:
        """The first row of a query, or None."""
        rows = self.all(sql, params)
        return rows[0] if rows else None

    def event(self, kind: str, message: str, *, observation: str | None = None,
              site: str | None = None, owner: str | None = None) -> None:
        """Append one event to the log."""
        self.execute("INSERT INTO events (id, at, observation, site, kind, message, owner) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?)",
                     (uuid.uuid4().hex, time.time(), observation, site, kind, message, owner))


def owner_token() -> str:
    """A token naming this driver: ``host:pid:random``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def acquire_driver(db: Database, owner: str, *, lease_s: float = 30.0) -> dict[str, Any] | None:
    """Become the survey's driver, taking over from a dead one.

    A driver is alive when its heartbeat is younger than ``lease_s`` and, on this
    host, its process exists. Taking over is one transaction.

    Parameters
    ----------
    db : Database
    owner : str
        This driver's token (:func:`owner_token`).
    lease_s : float
        Seconds after which a silent driver counts as dead (on another host).

    Returns
    -------
    dict or None
        The previous (dead) driver's row, or None if there was none.

    Raises
    ------
    DatabaseError
        If another live driver runs the survey.
    """
    host, now = socket.gethostname(), time.time()
    with db.transaction() as tx:
        row = tx.one("SELECT * FROM driver WHERE id = 'driver'")
        if row is not None and row["owner"] != owner:
            if row["host"] == host:  # a driver of this process that ended counts as dead
                alive = int(row["pid"]) != os.getpid() and pid_alive(int(row["pid"]))
            else:
                alive = now - float(row["heartbeat"]) < lease_s
            if alive:
                raise DatabaseError(f"{db.url}: another survey driver (pid {row['pid']} on "
                                    f"{row['host']}) is running this survey")
        tx.execute("DELETE FROM driver WHERE id = 'driver'")
        tx.execute("INSERT INTO driver (id, owner, host, pid, started_at, heartbeat) "
                   "VALUES ('driver', ?, ?, ?, ?, ?)", (owner, host, os.getpid(), now, now))
        tx.event("driver", f"driver {owner} started" + (
            f", taking over from {row['owner']}" if row is not None and row["owner"] != owner
            else ""), owner=owner)
    return row


def release_driver(db: Database, owner: str) -> None:
    """Give up the driver's lease (at a clean exit)."""
    with db.transaction() as tx:
        tx.execute("DELETE FROM driver WHERE id = 'driver' AND owner = ?", (owner,))
        tx.event("driver", f"driver {owner} stopped", owner=owner)


def heartbeat(db: Database, owner: str) -> None:
    """Renew the driver's lease and the heartbeat of the observations it works on."""
    now = time.time()
    with db.transaction() as tx:
        tx.execute("UPDATE driver SET heartbeat = ? WHERE id = 'driver' AND owner = ?",
                   (now, owner))
        tx.execute("UPDATE observations SET heartbeat = ? WHERE owner = ?", (now, owner))


def sync_observations(db: Database, rows: Sequence[dict[str, Any]], sites: Sequence[str]
                      ) -> list[str]:
    """Insert the survey file's observations and sites that the database does not hold yet.

    Parameters
    ----------
    rows : sequence of dict
        ``{"name", "inputs" (dict of str to str), "location", "nbytes"}`` per observation.
    sites : sequence of str
        The site names.

    Returns
    -------
    list of str
        Names of the observations added.
    """
    added = []
    with db.transaction() as tx:
        for name in sites:
            tx.execute("INSERT INTO sites (name, updated_at) VALUES (?, ?) "
                       "ON CONFLICT (name) DO NOTHING", (name, time.time()))
        for row in rows:
            n = tx.execute(
                "INSERT INTO observations (name, inputs, location, nbytes) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (name) DO NOTHING",
                (row["name"], json.dumps(row["inputs"], sort_keys=True), row["location"],
                 int(row["nbytes"])))
            if n:
                added.append(row["name"])
                tx.event("added", f"observation {row['name']} added ({row['nbytes']} bytes"
                         + (f" at {row['location']})" if row["location"] else ")"),
                         observation=row["name"])
    return added


__all__ = ["ACTIVE_STATES", "SCHEMA", "STATES", "Database", "DatabaseError", "Transaction",
           "acquire_driver", "heartbeat", "owner_token", "release_driver",
           "sync_observations"]
