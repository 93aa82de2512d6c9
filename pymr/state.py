"""The coordinator's durable state: one SQLite database in the state dir (``--state-dir``).

It exists so that a coordinator that restarts (a reboot, ``kill -9``) resumes the jobs
that were running instead of losing them. What it holds, and when each row is written:

* ``jobs``: one row per submitted job, written before the client hears ACCEPTED: its
  spec (JSON), its code blob (cloudpickled, only ever forwarded to workers), the
  submitting client's id (its submit's request id: a SUBMIT resent to a restarted
  coordinator is then matched to its job, not run twice), and its state. ``running`` until ``end_job`` sets
  ``succeeded``/``failed``/``cancelled`` with the error and the job's report; the code
  is then dropped, and the row is kept for ``pymr jobs --all`` and the status page
  while it is among the newest ``keep_jobs`` ended jobs and younger than ``keep_s``.
* ``task_commits``: one row per committed task of a running job (the winning
  attempt and its worker, and the worker's result: for a map its output location
  ``{"path", "host", "address"}`` and partition sizes, for a reduce its committed
  files, with counters either way). A task committed again (a map rerun after its
  worker was lost) replaces its row. The rows go when the job ends.

Schema (``PRAGMA user_version`` = ``SCHEMA_VERSION``)::

    jobs(job_id TEXT PRIMARY KEY, name, spec JSON, code BLOB NULL, client_id,
         submitted_unix_s REAL, state TEXT, error TEXT NULL, report JSON NULL, ended_unix_s REAL NULL,
         restarts INTEGER)
    task_commits(job_id, kind 'map'|'reduce', task_index INTEGER, attempt_id, worker_id,
                 result JSON, committed_unix_s REAL, PRIMARY KEY (job_id, kind, task_index))

Write-ahead rule: every method that writes returns only once its transaction is
durable (WAL mode with ``synchronous=FULL``: the WAL is fsynced at each commit), so
the caller may then tell a worker or client. Every write here is such a commit point,
which is why FULL is kept for the whole connection rather than NORMAL (which in WAL
mode can lose the last commits on power loss). The price is one fsync per
transaction: ``commit_tasks`` takes a batch so that many task commits arriving
together share one (``scripts/state_commit_rate.py`` measures it).

Only one coordinator may use a state dir: ``StateStore`` holds an exclusive
``flock`` on ``coordinator.lock`` (holding the owner's pid and host) for as long as it
is open. The kernel releases it when the process dies, however it dies. The state
dir must be on a local disk: neither WAL nor ``flock`` are safe on network filesystems.

A database this pymr cannot use (a newer schema, not a pymr database, corrupt,
unreadable) raises ``StateError`` (exit 2) naming the file; nothing is ever deleted or
rewritten to "repair" it.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from .errors import StateError

SCHEMA_VERSION = 1
DATABASE_NAME = "coordinator.sqlite"
LOCK_NAME = "coordinator.lock"
KEEP_JOBS = 1000
KEEP_S = 30 * 24 * 3600.0
ENDED_STATES = ("succeeded", "failed", "cancelled")
BUSY_TIMEOUT_S = 5.0

_SCHEMA = f"""
CREATE TABLE jobs (
    job_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    spec TEXT NOT NULL,
    code BLOB,
    client_id TEXT NOT NULL,
    submitted_unix_s REAL NOT NULL,
    state TEXT NOT NULL,
    error TEXT,
    report TEXT,
    ended_unix_s REAL,
    restarts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX jobs_by_end ON jobs (ended_unix_s) WHERE ended_unix_s IS NOT NULL;
CREATE TABLE task_commits (
    job_id TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('map', 'reduce')),
    task_index INTEGER NOT NULL,
    attempt_id TEXT NOT NULL,
    worker_id TEXT NOT NULL,
    result TEXT NOT NULL,
    committed_unix_s REAL NOT NULL,
    PRIMARY KEY (job_id, kind, task_index)
) WITHOUT ROWID;
PRAGMA user_version = {SCHEMA_VERSION};
"""


@dataclass(frozen=True)
class TaskCommit:
    """A task's winning attempt, as the coordinator committed it."""

    kind: str  # "map" or "reduce"
    index: int
    attempt_id: str
    worker_id: str
    result: dict[str, Any]  # what the worker reported: map_output or files, counters, ...

    @property
    def map_output(self) -> dict[str, Any] | None:
        """Where a map's output lives: ``{"path", "host", "address"}`` on ``worker_id``."""
        return self.result.get("map_output")

    @property
    def files(self) -> list[str]:
        """A reduce's (or a map-only map's) files committed into the output's ``_temporary``."""
        return list(self.result.get("files", []))


@dataclass
class StoredJob:
    """A job that was running when the state was last written: what recovery needs."""

    job_id: str
    spec: dict[str, Any]
    code: bytes
    client_id: str
    submitted_unix_s: float
    tasks: list[TaskCommit] = field(default_factory=list)


class StateStore:
    """The state database of one state dir, open and locked by this process until ``close``."""

    def __init__(self, state_dir: str, keep_jobs: int = KEEP_JOBS, keep_s: float = KEEP_S):
        self.state_dir = os.path.abspath(state_dir)
        self.path = os.path.join(self.state_dir, DATABASE_NAME)
        self.keep_jobs, self.keep_s = keep_jobs, keep_s
        self._mutex = threading.Lock()  # one connection, shared with readers such as a status page
        self._lock_fd = _lock_state_dir(self.state_dir)
        try:
            self._db = _open_database(self.path)
        except BaseException:
            os.close(self._lock_fd)
            raise

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Close the database and release the state dir (idempotent)."""
        if self._lock_fd < 0:
            return
        with self._mutex:
            self._db.close()
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = -1

    # -- writes: each is durable when it returns ------------------------------------------------
    def add_job(self, job_id: str, spec: dict[str, Any], code: bytes, client_id: str,
                submitted_unix_s: float) -> None:
        """Record a submitted job, before its client is told it was accepted."""
        with self._transaction() as db:
            db.execute("INSERT INTO jobs (job_id, name, spec, code, client_id, submitted_unix_s, state) "
                       "VALUES (?, ?, ?, ?, ?, ?, 'running')",
                       (job_id, str(spec.get("name", "job")), json.dumps(spec), code, client_id, submitted_unix_s))

    def commit_tasks(self, job_id: str, commits: list[TaskCommit]) -> None:
        """Record task commits in one transaction, before any of them counts as done."""
        if not commits:
            return
        now = time.time()
        rows = [(job_id, c.kind, c.index, c.attempt_id, c.worker_id, json.dumps(c.result), now) for c in commits]
        with self._transaction() as db:
            if db.execute("SELECT state FROM jobs WHERE job_id = ?", (job_id,)).fetchone() != ("running",):
                raise ValueError(f"job {job_id} is not a running job in {self.path}")
            db.executemany("INSERT OR REPLACE INTO task_commits VALUES (?, ?, ?, ?, ?, ?, ?)", rows)

    def count_restart(self, job_id: str) -> int:
        """Count one more coordinator start that resumed the job; returns the new count
        (the resumed job numbers its attempts past any the earlier coordinators made)."""
        with self._transaction() as db:
            db.execute("UPDATE jobs SET restarts = restarts + 1 WHERE job_id = ?", (job_id,))
            return db.execute("SELECT restarts FROM jobs WHERE job_id = ?", (job_id,)).fetchone()[0]

    def end_job(self, job_id: str, state: str, error: str | None, report: dict[str, Any]) -> None:
        """Record how a job ended, before its client is told; drop what only recovery needed,
        and prune ended jobs beyond ``keep_jobs`` or older than ``keep_s``."""
        if state not in ENDED_STATES:
            raise ValueError(f"a job ends {', '.join(ENDED_STATES)}, not {state!r}")
        now = time.time()
        with self._transaction() as db:
            updated = db.execute("UPDATE jobs SET state = ?, error = ?, report = ?, ended_unix_s = ?, code = NULL "
                                 "WHERE job_id = ?", (state, error, json.dumps(report), now, job_id))
            if updated.rowcount != 1:
                raise ValueError(f"no job {job_id} in {self.path}")
            db.execute("DELETE FROM task_commits WHERE job_id = ?", (job_id,))
            db.execute("DELETE FROM jobs WHERE ended_unix_s IS NOT NULL AND (ended_unix_s < ? OR job_id IN "
                       "(SELECT job_id FROM jobs WHERE ended_unix_s IS NOT NULL "
                       " ORDER BY ended_unix_s DESC LIMIT -1 OFFSET ?))", (now - self.keep_s, self.keep_jobs))

    # -- reads ------------------------------------------------------------------------------------
    def running_jobs(self) -> list[StoredJob]:
        """Every job not yet ended, oldest first, with its committed tasks: what to resume."""
        with self._mutex:
            jobs = [StoredJob(job_id, json.loads(spec), bytes(code), client_id, submitted)
                    for job_id, spec, code, client_id, submitted in self._db.execute(
                        "SELECT job_id, spec, code, client_id, submitted_unix_s FROM jobs "
                        "WHERE state = 'running' ORDER BY submitted_unix_s, job_id")]
            for job in jobs:
                job.tasks = [TaskCommit(kind, index, attempt_id, worker_id, json.loads(result))
                             for kind, index, attempt_id, worker_id, result in self._db.execute(
                                 "SELECT kind, task_index, attempt_id, worker_id, result FROM task_commits "
                                 "WHERE job_id = ? ORDER BY kind, task_index", (job.job_id,))]
        return jobs

    def finished_jobs(self, limit: int = KEEP_JOBS) -> list[dict[str, Any]]:
        """Ended jobs, newest first (for ``pymr jobs --all`` and the status page)."""
        with self._mutex:
            rows = self._db.execute(f"SELECT {_RECORD_COLUMNS} FROM jobs WHERE ended_unix_s IS NOT NULL "
                                    "ORDER BY ended_unix_s DESC, job_id LIMIT ?", (limit,)).fetchall()
        return [_record(row) for row in rows]

    def job(self, job_id: str) -> dict[str, Any] | None:
        """One job's record, running or ended (``report`` is None while it runs), or None."""
        with self._mutex:
            row = self._db.execute(f"SELECT {_RECORD_COLUMNS} FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return _record(row) if row else None

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._mutex:
            if self._lock_fd < 0:
                raise StateError(f"the state database {self.path} is closed")
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                    self._db.execute("COMMIT")
                except BaseException:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:  # disk full, I/O error, ...: nothing may be told as done
                raise StateError(f"cannot write the state database {self.path}: {exc}") from exc


_RECORD_COLUMNS = "job_id, name, spec, client_id, submitted_unix_s, state, error, report, ended_unix_s"


def _record(row: tuple) -> dict[str, Any]:
    job_id, name, spec, client_id, submitted, state, error, report, ended = row
    return {"job_id": job_id, "name": name, "spec": json.loads(spec), "client_id": client_id,
            "submitted_unix_s": submitted, "state": state, "error": error,
            "report": json.loads(report) if report is not None else None, "ended_unix_s": ended}


def _lock_state_dir(state_dir: str) -> int:
    """Take the state dir's lock, or raise StateError naming the process that holds it."""
    if os.path.exists(state_dir) and not os.path.isdir(state_dir):
        raise StateError(f"the state dir {state_dir} is a file, not a folder")
    try:
        os.makedirs(state_dir, mode=0o700, exist_ok=True)
        fd = os.open(os.path.join(state_dir, LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise StateError(f"cannot use the state dir {state_dir}: {exc.strerror or exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 512, 0).decode("utf-8", "replace").strip() or "a process that is still starting"
        os.close(fd)
        raise StateError(f"the state dir {state_dir} is in use by another coordinator ({holder}); "
                         "only one coordinator may use a state dir") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on host {socket.gethostname()}\n".encode(), 0)
    return fd


def _open_database(path: str) -> sqlite3.Connection:
    """Open (or create) the database and check it is a pymr state database we can use."""
    if not os.path.exists(path):
        try:  # created here, so the file (and its -wal and -shm, which copy its mode) is 0600:
            os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))  # it holds job code
        except OSError as exc:
            raise StateError(f"cannot create the state database {path}: {exc.strerror or exc}") from None
    try:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_S)
    except sqlite3.Error as exc:
        raise StateError(f"cannot open the state database {path}: {exc}") from None
    try:
        _check_and_prepare(db, path)
    except sqlite3.Error as exc:
        db.close()
        raise StateError(f"the state database {path} is unreadable or corrupt ({exc}); it was left as it is: "
                         "move it aside to start with no state, or restore it from a backup") from None
    except BaseException:
        db.close()
        raise
    return db


def _check_and_prepare(db: sqlite3.Connection, path: str) -> None:
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise StateError(f"the state database {path} was written by a newer pymr (schema version {version}; this "
                         f"pymr reads up to {SCHEMA_VERSION}): run that pymr, or give this one another --state-dir")
    tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if version == 0 and tables:
        raise StateError(f"{path} is an SQLite database but not a pymr state database (it has tables "
                         f"{', '.join(sorted(tables))} and no pymr schema version); give another --state-dir")
    problems = [row[0] for row in db.execute("PRAGMA quick_check")]
    if problems != ["ok"]:
        raise sqlite3.DatabaseError("; ".join(" ".join(p.split()) for p in problems[:3])[:300])
    if db.execute("PRAGMA journal_mode = WAL").fetchone()[0] != "wal":
        raise StateError(f"the state database {path} cannot use WAL mode (is the state dir on a network filesystem?)")
    db.execute("PRAGMA synchronous = FULL")
    if version == 0:
        db.executescript(f"BEGIN IMMEDIATE; {_SCHEMA} COMMIT;")
