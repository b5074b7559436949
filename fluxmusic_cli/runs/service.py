"""The run service: items in, clips written, events out.

Every command that makes clips (`generate`, `batch`, `vary`, the editing commands) and the
server's worker hand their items to `RunService.run`, which encodes the prompts window by
window, generates in forward batches (halving a batch that runs out of memory), edits
recordings one at a time, and writes each clip through its item's writer as soon as it is
decoded. It knows nothing of terminals or folders: what happened goes to an event sink, and a
sink that raises (a `generate` stopping at its first failure, a cancelled server job) stops
the run there.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

from fluxmusic_cli.errors import BadAudioError, OutOfMemoryError, UsageError
from fluxmusic_cli.runs.events import (
    EventSink,
    ItemDone,
    ItemFailed,
    ItemStarted,
    RunEvent,
    Summary,
)
from fluxmusic_cli.runs.plan import Failure, Item, forward_batches, generation_request

# Items whose prompts are encoded (and held in memory) at a time: 256 T5 embeddings of
# 256 x 4096 floats take 1 GiB, so a 5,000-caption list never holds all of them at once.
ENCODE_WINDOW = 256


class RunService:
    """Makes and writes the clips of items with one engine, `batch_size` clips per forward
    pass (1 keeps every clip bit-identical whatever else runs beside it)."""

    def __init__(self, engine, *, batch_size: int = 1) -> None:
        self.engine = engine
        self.batch_size = batch_size

    def run(self, items: Sequence[Item], on_event: EventSink | None = None) -> Summary:
        """Make every item, reporting each through `on_event`; returns what happened."""
        return _Run(self, on_event).run(items)


class _Run:
    """One call of `RunService.run`: its summary and where its events go."""

    def __init__(self, service: RunService, on_event: EventSink | None) -> None:
        self.engine = service.engine
        self.batch_size = service.batch_size
        self.on_event = on_event
        self.summary = Summary()

    def run(self, items: Sequence[Item]) -> Summary:
        start = time.perf_counter()
        try:
            for lo in range(0, len(items), ENCODE_WINDOW):
                window = items[lo : lo + ENCODE_WINDOW]
                texts = self._encode(window)
                for chunk in forward_batches(window, self.batch_size):
                    self._make(chunk)
                for encoders, prompts in texts.items():
                    self.engine.forget(prompts, encoders=encoders)
        finally:
            self.summary.elapsed_s = time.perf_counter() - start
        return self.summary

    def _emit(self, event: RunEvent) -> None:
        self.summary.tell(event, self.on_event)

    def _fail(self, items: Iterable[Item], exc: UsageError | BadAudioError) -> None:
        for item in items:
            failure = Failure(item.row, exc.message, item.name, item.prompt)
            self._emit(ItemFailed(failure, exc))

    def _encode(self, items: Sequence[Item]) -> dict[str, list[str]]:
        """Each distinct text of the window once, before its first forward batch (so the
        encoders can be released before the transformer loads)."""
        by_encoders: dict[str, list[str]] = {}
        for item in items:
            encoders = item.settings.encoders or self.engine.options.encoders
            by_encoders.setdefault(encoders, []).extend(
                [item.prompt, item.settings.negative_prompt]
            )
        texts = {enc: list(dict.fromkeys(t)) for enc, t in by_encoders.items()}
        for encoders, prompts in texts.items():
            _, _, warnings = self.engine.encode(prompts, encoders=encoders)
            self.summary.warn(warnings)
        return texts

    def _make(self, chunk: list[Item]) -> None:
        for item in chunk:
            self._emit(ItemStarted(item))
        if chunk[0].edit is not None:
            for item in chunk:
                self._edit(item)
            return
        self._generate(chunk)

    def _generate(self, chunk: list[Item]) -> None:
        try:
            result = self.engine.generate(generation_request(chunk))
        except OutOfMemoryError:
            # Halves help only when a forward pass held more than one clip.
            if min(len(chunk), self.engine.options.forward_batch) == 1:
                raise
            half = len(chunk) // 2
            self.summary.warn(
                [f"Out of memory with {len(chunk)} clips per pass; retrying in halves."]
            )
            self._generate(chunk[:half])
            self._generate(chunk[half:])
            return
        except UsageError as exc:
            self._fail(chunk, exc)
            return
        self.summary.warn(result.warnings)
        for item, clip in zip(chunk, result.clips, strict=True):
            self._write(item, clip, result.warnings)

    def _edit(self, item: Item) -> None:
        """An edit of a recording: one clip, one engine call."""
        try:
            result = self.engine.edit(item.edit_request())
        except UsageError as exc:
            self._fail([item], exc)
            return
        self.summary.warn(result.warnings)
        self._write(item, result.clips[0], result.warnings)

    def _write(self, item: Item, clip, warnings: list[str]) -> None:
        try:
            written = item.writer.write(clip, item.path)
        except (BadAudioError, UsageError) as exc:
            self._fail([item], exc)
            return
        self._emit(ItemDone(item, written, run_warnings=tuple(warnings)))
