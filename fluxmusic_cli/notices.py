"""Notes from deep inside a run that a user should see once, without stopping the run.

A cache that cannot be written, a damaged cache entry that was recomputed, a manifest line
cut short by a killed writer: the code that meets them calls `note(message)`; the CLI sets
the sink that shows them (on stderr). Each message is shown once per run. The engine still
never prints: without a sink, notes are only collected.
"""

from __future__ import annotations

from collections.abc import Callable

_seen: list[str] = []
_sink: Callable[[str], None] | None = None


def set_sink(sink: Callable[[str], None] | None) -> None:
    """Where notes go from now on; starts a new run (every message may be shown again)."""
    global _sink
    _sink = sink
    _seen.clear()


def note(message: str) -> None:
    """Show `message` once per run."""
    if message in _seen:
        return
    _seen.append(message)
    if _sink is not None:
        _sink(message)


def seen() -> list[str]:
    """The notes of this run so far, in order."""
    return list(_seen)
