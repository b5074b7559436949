"""The job store: jobs and uploads in SQLite (WAL) under the data folder, so they outlive the
process, even a kill -9.

Every change is one committed transaction. A job's `version` grows with each change (status or
progress), so an event stream can say which state a client last saw (`Last-Event-ID`), across
restarts too. What a restart cannot finish is said: a job found `running` at start becomes
`interrupted`, never run again and never `succeeded` without its file.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

QUEUED, RUNNING = "queued", "running"
SUCCEEDED, FAILED, CANCELLED, INTERRUPTED = "succeeded", "failed", "cancelled", "interrupted"
FINAL = (SUCCEEDED, FAILED, CANCELLED, INTERRUPTED)
STATUSES = (QUEUED, RUNNING, *FINAL)
INTERRUPTED_ERROR = (
    "The server stopped while this job ran; it was not finished and will not run again "
    "(submit it again to make it)."
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    command TEXT NOT NULL,
    request TEXT NOT NULL,
    status TEXT NOT NULL,
    step INTEGER NOT NULL DEFAULT 0,
    steps INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    record TEXT,
    warnings TEXT,
    output TEXT,
    created TEXT NOT NULL,
    started TEXT,
    finished TEXT,
    version INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, seq);
CREATE TABLE IF NOT EXISTS uploads (
    id TEXT PRIMARY KEY,
    bytes INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    created TEXT NOT NULL
);
"""


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class JobRow:
    seq: int
    id: str
    command: str
    request: dict[str, Any]
    status: str
    step: int
    steps: int
    error: str | None
    record: dict[str, Any] | None
    warnings: list[str]
    output: str | None  # the audio file's name in the outputs folder
    created: str
    started: str | None
    finished: str | None
    version: int

    @property
    def final(self) -> bool:
        return self.status in FINAL

    def view(self, position: int | None = None) -> dict[str, Any]:
        """The job as the API shows it."""
        out: dict[str, Any] = {
            "id": self.id,
            "command": self.command,
            "status": self.status,
            "progress": {"step": self.step, "steps": self.steps},
            "error": self.error,
            "record": self.record,
            "created": self.created,
            "started": self.started,
            "finished": self.finished,
            "request": self.request,
            "warnings": self.warnings,
        }
        if position is not None:
            out["position"] = position
        return out


@dataclass(frozen=True)
class UploadRow:
    id: str
    bytes: int
    sha256: str
    created: str


class JobStore:
    """Thread-safe: one connection, one lock; each method is one transaction."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # in WAL, a process crash loses nothing
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # -- jobs -----------------------------------------------------------------------------

    def add(
        self, job_id: str, command: str, request: dict[str, Any], *, limit: int
    ) -> JobRow | None:
        """A new queued job, or None when `limit` jobs are unfinished already."""
        with self._tx() as db:
            (unfinished,) = db.execute(
                "SELECT COUNT(*) FROM jobs WHERE status IN (?, ?)", (QUEUED, RUNNING)
            ).fetchone()
            if unfinished >= limit:
                return None
            db.execute(
                "INSERT INTO jobs (id, command, request, status, created) VALUES (?, ?, ?, ?, ?)",
                (job_id, command, json.dumps(request), QUEUED, now()),
            )
            return _row(db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone())

    def get(self, job_id: str) -> JobRow | None:
        with self._lock:
            found = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _row(found) if found else None

    def jobs(self) -> list[JobRow]:
        """Every job, newest first."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM jobs ORDER BY seq DESC").fetchall()
        return [_row(r) for r in rows]

    def position(self, row: JobRow) -> int | None:
        """How many unfinished jobs run before a queued one (the running one included)."""
        if row.status != QUEUED:
            return None
        with self._lock:
            (ahead,) = self._db.execute(
                "SELECT COUNT(*) FROM jobs WHERE status IN (?, ?) AND (status = ? OR seq < ?)",
                (QUEUED, RUNNING, RUNNING, row.seq),
            ).fetchone()
        return ahead

    def unfinished(self) -> int:
        with self._lock:
            (n,) = self._db.execute(
                "SELECT COUNT(*) FROM jobs WHERE status IN (?, ?)", (QUEUED, RUNNING)
            ).fetchone()
        return n

    def queued(self, limit: int) -> list[JobRow]:
        """The first `limit` queued jobs, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM jobs WHERE status = ? ORDER BY seq LIMIT ?", (QUEUED, limit)
            ).fetchall()
        return [_row(r) for r in rows]

    def start(self, job_ids: Iterable[str]) -> list[str]:
        """Mark queued jobs running; returns those that still were queued."""
        started = []
        stamp = now()  # jobs started together (one forward pass) say so
        with self._tx() as db:
            for job_id in job_ids:
                changed = db.execute(
                    "UPDATE jobs SET status = ?, started = ?, version = version + 1 "
                    "WHERE id = ? AND status = ?",
                    (RUNNING, stamp, job_id, QUEUED),
                ).rowcount
                if changed:
                    started.append(job_id)
        return started

    def progress(self, job_ids: Iterable[str], step: int, steps: int) -> None:
        with self._tx() as db:
            for job_id in job_ids:
                db.execute(
                    "UPDATE jobs SET step = ?, steps = ?, version = version + 1 "
                    "WHERE id = ? AND status = ?",
                    (step, steps, job_id, RUNNING),
                )

    def finish(
        self,
        job_id: str,
        status: str,
        *,
        error: str | None = None,
        record: dict[str, Any] | None = None,
        output: str | None = None,
        warnings: list[str] | None = None,
    ) -> bool:
        """A running (or, for a cancel, queued) job's last state; False when it is not there
        or finished already."""
        with self._tx() as db:
            return bool(
                db.execute(
                    "UPDATE jobs SET status = ?, error = ?, record = ?, output = ?, warnings = ?, "
                    "finished = ?, version = version + 1 WHERE id = ? AND status IN (?, ?)",
                    (
                        status,
                        error,
                        None if record is None else json.dumps(record),
                        output,
                        json.dumps(warnings or []),
                        now(),
                        job_id,
                        QUEUED,
                        RUNNING,
                    ),
                ).rowcount
            )

    def requeue(self, job_ids: Iterable[str]) -> None:
        """Running jobs back to the queue, in their old places (a group stopped for another's
        cancel)."""
        with self._tx() as db:
            for job_id in job_ids:
                db.execute(
                    "UPDATE jobs SET status = ?, step = 0, steps = 0, started = NULL, "
                    "version = version + 1 WHERE id = ? AND status = ?",
                    (QUEUED, job_id, RUNNING),
                )

    def delete(self, job_id: str) -> JobRow | None:
        """Remove a finished job; returns it (None when it is unknown or not finished)."""
        with self._tx() as db:
            found = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if found is None or found["status"] not in FINAL:
                return None
            db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
        return _row(found)

    def recover(self) -> list[JobRow]:
        """At start: every job a stopped server left running becomes interrupted."""
        with self._tx() as db:
            rows = db.execute("SELECT * FROM jobs WHERE status = ?", (RUNNING,)).fetchall()
            db.execute(
                "UPDATE jobs SET status = ?, error = ?, finished = ?, version = version + 1 "
                "WHERE status = ?",
                (INTERRUPTED, INTERRUPTED_ERROR, now(), RUNNING),
            )
        return [_row(r) for r in rows]

    def outputs(self) -> set[str]:
        """The output file names of every job that has one."""
        with self._lock:
            rows = self._db.execute("SELECT output FROM jobs WHERE output IS NOT NULL").fetchall()
        return {r["output"] for r in rows}

    # -- uploads ----------------------------------------------------------------------------

    def add_upload(self, upload_id: str, size: int, sha256: str) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO uploads (id, bytes, sha256, created) VALUES (?, ?, ?, ?)",
                (upload_id, size, sha256, now()),
            )

    def upload(self, upload_id: str) -> UploadRow | None:
        with self._lock:
            found = self._db.execute("SELECT * FROM uploads WHERE id = ?", (upload_id,)).fetchone()
        return UploadRow(**dict(found)) if found else None


def _row(r: sqlite3.Row) -> JobRow:
    data = dict(r)
    data["request"] = json.loads(data["request"])
    data["record"] = json.loads(data["record"]) if data["record"] else None
    data["warnings"] = json.loads(data["warnings"]) if data["warnings"] else []
    return JobRow(**data)
