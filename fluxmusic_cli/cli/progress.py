"""Rich progress on stderr for the engine's events; silent when not a TTY or with --quiet."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from fluxmusic_cli.cli.console import err
from fluxmusic_cli.engine.pipeline import ProgressEvent

_LABELS = {
    "load": "loading {detail}",
    "encode": "encoding {detail}",
    "denoise": "denoising",
    "decode": "decoding audio",
}


class StepBars:
    """Turns `ProgressEvent`s into one bar per stage, reset for each new run of a stage.

    The display starts with the first bar, not before: whatever comes first (the download
    summary and its question on first use) is shown on a still terminal, not redrawn over.
    """

    def __init__(self, factory: Callable[[], Progress] | None) -> None:
        self._factory = factory
        self._live: Progress | None = None
        self._tasks: dict[str, int] = {}

    @property
    def progress(self) -> Progress | None:
        """The live display, started on first use (None when there is none)."""
        if self._live is None and self._factory is not None:
            self._live = self._factory()
            self._live.start()
        return self._live

    def stop(self) -> None:
        if self._live is not None:
            self._live.stop()

    def __call__(self, event: ProgressEvent) -> None:
        progress = self.progress
        if progress is None:
            return
        keyed = event.stage in ("load", "encode")
        key = f"{event.stage}:{event.detail}" if keyed else event.stage
        detail = event.detail or ("prompts" if event.stage == "encode" else "")
        label = _LABELS.get(event.stage, event.stage).format(detail=detail)
        if key not in self._tasks:
            self._tasks[key] = progress.add_task(label, total=event.total)
        task = self._tasks[key]
        if event.completed == 0:
            progress.reset(task, total=event.total, description=label)
        progress.update(task, completed=event.completed, total=event.total)

    def add_task(self, description: str, total: int) -> int | None:
        progress = self.progress
        if progress is None:
            return None
        return progress.add_task(description, total=total)

    def advance(self, task: int | None, amount: int = 1) -> None:
        if self._live is not None and task is not None:
            self._live.advance(task, amount)


@contextmanager
def step_bars(quiet: bool = False) -> Iterator[StepBars]:
    """Bars on stderr when it is a terminal and not `quiet`; a no-op callback otherwise."""
    if quiet or not err.is_terminal:
        yield StepBars(None)
        return

    def factory() -> Progress:
        return Progress(
            SpinnerColumn(),
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=err,
            transient=False,
        )

    bars = StepBars(factory)
    try:
        yield bars
    finally:
        bars.stop()
