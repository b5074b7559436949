"""A job's changes as server-sent events (`text/event-stream`).

Each event is the job's view as `GET /v1/jobs/{id}` gives it, with the job's version as its
`id:`; the stream ends after the event with the final status. A client that reconnects with
`Last-Event-ID` gets what changed since that version (the latest state, not every step in
between). A client going away ends only its stream, never the job.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

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
            try:
                await asyncio.wait_for(changed.wait(), timeout=POLL_S)
            except asyncio.TimeoutError:
                quiet += POLL_S
                if quiet >= KEEP_ALIVE_S:
                    yield ": keep-alive\n\n"
                    quiet = 0.0
    finally:
        unsubscribe()
