"""Jobs' changes as server-sent events (`text/event-stream`): one job's, and every job's.

On a job's own stream each event is the job's view as `GET /v1/jobs/{id}` gives it, with the
job's version as its `id:`; the stream ends after the event with the final status. A client
that reconnects with `Last-Event-ID` gets what changed since that version (the latest state,
not every step in between). The stream of every job (`all_events`, for the page) numbers the
changes of all jobs in one `Journal` instead. A client going away ends only its stream, never
a job.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import secrets
import threading
from collections.abc import AsyncIterator, Callable

KEEP_ALIVE_S = 15.0  # a comment line this often keeps proxies from closing a quiet stream
POLL_S = 0.5  # how often a waiting stream looks at the server's stop flag
RETRY_MS = 1000  # how soon a browser reconnects after the stream breaks


def last_event_id(header: str | None) -> int:
    """The version a reconnecting client saw last (0: none, or not one of ours)."""
    try:
        return max(0, int((header or "").strip()))
    except ValueError:
        return 0


def frame(version: int, data: dict) -> str:
    return f"id: {version}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


async def job_events(service, job_id: str, after: int = 0) -> AsyncIterator[str]:
    """The events of one job after version `after`, until its final status (or until it is
    deleted or the server stops)."""
    loop = asyncio.get_running_loop()
    changed = asyncio.Event()

    def listener(changed_id: str, status: str) -> None:
        if changed_id == job_id:
            with contextlib.suppress(RuntimeError):  # the loop closed while a job ran
                loop.call_soon_threadsafe(changed.set)

    unsubscribe = service.subscribe(listener)
    try:
        yield f"retry: {RETRY_MS}\n\n"
        sent = after
        quiet = 0.0
        while True:
            changed.clear()
            row = service.find(job_id)
            if row is None:
                return
            if row.version > sent:
                yield frame(row.version, service.view(row))
                sent = row.version
                quiet = 0.0
            if row.final or service.stopping:
                return
            quiet, ping = await _idle(changed, quiet)
            if ping:
                yield ping
    finally:
        unsubscribe()


# -- every job's changes in one stream (GET /v1/events) ------------------------------------------

JOURNAL_SIZE = 4096  # changes remembered for clients that reconnect with Last-Event-ID


class Journal:
    """Every change of any job, numbered in the order the service reported them; the last
    `size` are kept, so a client that reconnects is told what changed while it was away.

    An event id is "BOOT-SEQ": BOOT is drawn when the server starts, so an id from an earlier
    run (or one never given) is not mistaken for a place in this run's changes.
    """

    def __init__(self, service, size: int = JOURNAL_SIZE) -> None:
        self.boot = secrets.token_hex(4)
        self._entries: collections.deque[tuple[int, str]] = collections.deque(maxlen=size)
        self._seq = 0
        self._lock = threading.Lock()
        self._watchers: list[Callable[[], None]] = []
        service.subscribe(self._record)

    def _record(self, job_id: str, status: str) -> None:
        with self._lock:
            self._seq += 1
            self._entries.append((self._seq, job_id))
            watchers = list(self._watchers)
        for wake in watchers:
            wake()

    @property
    def seq(self) -> int:
        with self._lock:
            return self._seq

    def watch(self, wake: Callable[[], None]) -> Callable[[], None]:
        """Call `wake()` after each change (from any thread); returns the function that stops."""
        with self._lock:
            self._watchers.append(wake)

        def stop() -> None:
            with self._lock, contextlib.suppress(ValueError):
                self._watchers.remove(wake)

        return stop

    def since(self, after: int) -> list[tuple[int, str]] | None:
        """(seq, job id) of every change after `after`; None when those are not all known
        (an `after` from the future, or older than the changes kept)."""
        with self._lock:
            if after > self._seq:
                return None
            if after < self._seq and self._entries[0][0] > after + 1:
                return None
            return [(s, job_id) for s, job_id in self._entries if s > after]

    def event_id(self, seq: int) -> str:
        return f"{self.boot}-{seq}"

    def parse(self, header: str | None) -> int | None:
        """The place a reconnecting client's Last-Event-ID names in this run (None: none)."""
        boot, _, seq = (header or "").strip().partition("-")
        if boot != self.boot or not seq.isdigit():
            return None
        return int(seq)


def named_frame(event: str, event_id: str, data: dict) -> str:
    return f"event: {event}\nid: {event_id}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


async def all_events(service, journal: Journal, after: int | None) -> AsyncIterator[str]:
    """Every job's changes, until the server stops.

    Without a place to resume from (`after` None, or not known any more), the stream starts
    with `event: jobs`, the whole list as `GET /v1/jobs` gives it; then each change is
    `event: job` with the job's view (the latest state, as on a job's own stream) or
    `event: deleted` with `{"id"}`. Each event's id resumes after it.
    """
    loop = asyncio.get_running_loop()
    changed = asyncio.Event()

    def wake() -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed while a job ran
            loop.call_soon_threadsafe(changed.set)

    stop = journal.watch(wake)
    try:
        yield f"retry: {RETRY_MS}\n\n"
        sent = after if after is not None and journal.since(after) is not None else None
        quiet = 0.0
        while True:
            changed.clear()
            entries = None if sent is None else journal.since(sent)
            if entries is None:  # a fresh start, or this client fell too far behind
                sent = journal.seq
                yield named_frame("jobs", journal.event_id(sent), {"jobs": service.jobs()})
                quiet = 0.0
            elif entries:
                last = {job_id: seq for seq, job_id in entries}  # each job once, latest state
                for job_id, seq in sorted(last.items(), key=lambda kv: kv[1]):
                    row = service.find(job_id)
                    if row is None:
                        yield named_frame("deleted", journal.event_id(seq), {"id": job_id})
                    else:
                        yield named_frame("job", journal.event_id(seq), service.view(row))
                sent = entries[-1][0]
                quiet = 0.0
            if service.stopping:
                return
            quiet, ping = await _idle(changed, quiet)
            if ping:
                yield ping
    finally:
        stop()


async def _idle(changed: asyncio.Event, quiet: float) -> tuple[float, str | None]:
    """Wait up to POLL_S for a change; (the quiet time so far, a keep-alive comment when one is
    due: proxies close a stream that says nothing for long)."""
    try:
        await asyncio.wait_for(changed.wait(), timeout=POLL_S)
        return quiet, None
    except asyncio.TimeoutError:
        quiet += POLL_S
        if quiet >= KEEP_ALIVE_S:
            return 0.0, ": keep-alive\n\n"
        return quiet, None
