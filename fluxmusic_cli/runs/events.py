"""What a run tells whoever runs it: one event per item as it starts, is written, is skipped or
fails, and the summary at the end. Nothing here prints; `to_json()` gives the form a program
reads (the `--json` lines of batch and vary, the server's job events)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from fluxmusic_cli.manifest import MANIFEST

if TYPE_CHECKING:
    from fluxmusic_cli.errors import FluxMusicError
    from fluxmusic_cli.output import WrittenClip
    from fluxmusic_cli.runs.plan import Failure, Item, Plan


@dataclass(frozen=True)
class ItemStarted:
    kind: ClassVar[str] = "item_started"
    item: Item

    @property
    def row(self) -> int:
        return self.item.row

    def to_json(self) -> dict[str, Any]:
        return _head(self.kind, self.item.row, self.item.name, self.item.prompt)


@dataclass(frozen=True)
class ItemDone:
    """A clip written whole; `run_warnings` are what the engine call that made it said (the
    clip's own are the written clip's); `listed` is its manifest line when a folder run listed
    it."""

    kind: ClassVar[str] = "item_done"
    item: Item
    written: WrittenClip
    run_warnings: tuple[str, ...] = ()
    listed: dict[str, Any] | None = None

    @property
    def row(self) -> int:
        return self.item.row

    def to_json(self) -> dict[str, Any]:
        data = _head(self.kind, self.item.row, self.item.name, self.item.prompt)
        if self.written.path is not None:
            data["path"] = str(self.written.path)
        data["record"] = self.listed if self.listed is not None else self.written.record.to_json()
        if self.written.warnings:
            data["warnings"] = list(self.written.warnings)
        return data


@dataclass(frozen=True)
class ItemSkipped:
    kind: ClassVar[str] = "item_skipped"
    item: Item
    path: Path
    reason: str

    @property
    def row(self) -> int:
        return self.item.row

    def to_json(self) -> dict[str, Any]:
        data = _head(self.kind, self.item.row, self.item.name, self.item.prompt)
        data.update(path=str(self.path), reason=self.reason)
        return data


@dataclass(frozen=True)
class ItemFailed:
    """A row refused before the run, or an item the engine or writer could not make;
    `error` is the exception when there was one (a caller may re-raise it)."""

    kind: ClassVar[str] = "item_failed"
    failure: Failure
    error: FluxMusicError | None = None

    @property
    def row(self) -> int:
        return self.failure.row

    @property
    def name(self) -> str | None:
        return self.failure.name

    @property
    def reason(self) -> str:
        return self.failure.reason

    def to_json(self) -> dict[str, Any]:
        f = self.failure
        data = _head(self.kind, f.row, f.name, f.prompt)
        data["reason"] = f.reason
        return data


RunEvent = ItemStarted | ItemDone | ItemSkipped | ItemFailed
EventSink = Callable[[RunEvent], None]


def _head(kind: str, row: int, name: str | None, prompt: str | None) -> dict[str, Any]:
    data: dict[str, Any] = {"event": kind, "row": row, "name": name}
    if prompt is not None:
        data["prompt"] = prompt
    return data


@dataclass
class Summary:
    done: list[ItemDone] = field(default_factory=list)
    skipped: list[ItemSkipped] = field(default_factory=list)
    failed: list[ItemFailed] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    def tell(self, event: RunEvent, on_event: EventSink | None) -> None:
        """Count `event`, then hand it to `on_event` (a sink that raises stops the run)."""
        self.count(event)
        if on_event is not None:
            on_event(event)

    def count(self, event: RunEvent) -> None:
        """File an event under its outcome."""
        if isinstance(event, ItemDone):
            self.done.append(event)
        elif isinstance(event, ItemSkipped):
            self.skipped.append(event)
        elif isinstance(event, ItemFailed):
            self.failed.append(event)

    def warn(self, warnings: list[str]) -> None:
        for w in warnings:
            if w not in self.warnings:
                self.warnings.append(w)

    def to_json(self, plan: Plan) -> dict[str, Any]:
        return {
            "event": "summary",
            "rows": plan.total,
            "shard": str(plan.shard) if plan.shard else None,
            "done": len(self.done),
            "skipped": len(self.skipped),
            "failed": len(self.failed),
            "failures": [{"row": e.row, "name": e.name, "reason": e.reason} for e in self.failed],
            "manifest": str(plan.out_dir / MANIFEST),
            "elapsed_s": round(self.elapsed_s, 3),
        }
