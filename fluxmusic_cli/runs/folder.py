"""A folder of clips that a run fills and a rerun resumes (`batch`, `vary`).

Finished items are listed in `OUT_DIR/manifest.jsonl`, one JSON line each, appended and flushed
as each clip is written; a rerun skips what the manifest and the folder both say is finished,
so an interrupted run loses at most the forward batch in flight. The folder is locked against a
second run writing the same rows, and temporary files a killed run left are cleaned.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from fluxmusic_cli import manifest
from fluxmusic_cli.errors import UsageError
from fluxmusic_cli.locks import FileLocks
from fluxmusic_cli.manifest import MANIFEST, append_manifest, read_manifest
from fluxmusic_cli.metadata import GenerationRecord, read_record
from fluxmusic_cli.runs.events import (
    EventSink,
    ItemDone,
    ItemFailed,
    ItemSkipped,
    RunEvent,
    Summary,
)
from fluxmusic_cli.runs.plan import Failure, Item, Plan, Shard
from fluxmusic_cli.textfiles import read_json


def engine_identity(engine) -> dict[str, Any]:
    """The engine's model sources, conditioning mode and LoRAs, as records store them."""
    return {
        "model": engine.refs["transformer"].identity,
        "t5": engine.refs["t5"].identity,
        "clap": engine.refs["clap"].identity,
        "vae_vocoder": engine.refs["audioldm2"].identity,
        "conditioning": engine.options.conditioning,
        "loras": [f"{Path(f).resolve()}:{scale:g}" for f, scale in engine.options.loras],
    }


def expected_record(item: Item, identity: dict[str, Any]) -> dict[str, Any]:
    """What a finished clip of `item` must have in its record to count as that item (device
    and dtype may differ: they change the numbers only slightly); compared by
    `GenerationRecord.differences`."""
    s = item.settings
    interval = s.guidance_interval
    return {
        "prompt": item.prompt,
        "seed": item.seed,
        "negative_prompt": s.negative_prompt,
        "steps": s.steps,
        "guidance": s.guidance,
        "duration": s.duration,
        "encoders": s.encoders,
        **({} if item.edit is None else {"strength": item.edit.strength}),
        "format": item.fmt,
        "output_sample_rate": item.writer.sample_rate,
        "peak_normalize": item.writer.peak_normalize,
        "guidance_interval": list(interval) if interval else None,
        "cache": s.cache,
        **identity,  # the sources, conditioning mode and LoRAs (engine_identity)
    }


def _differences(data: dict[str, Any], expected: dict[str, Any]) -> list[str]:
    """How a manifest line (its record, of any schema) differs from `expected`."""
    try:
        return GenerationRecord.from_json(data).differences(expected)
    except ValueError as exc:
        return [f"a damaged record ({exc})"]


def audio_is_complete(path: Path, duration: float, sample_rate: int) -> bool:
    """Whether `path` decodes to the end and holds (nearly) `duration` seconds."""
    import soundfile as sf

    try:
        with sf.SoundFile(path) as f:
            frames = 0
            for block in f.blocks(blocksize=65536):
                frames += len(block)
    except (sf.LibsndfileError, OSError, RuntimeError):
        return False
    # Lossy codecs pad or trim a few milliseconds at the ends.
    return frames >= 0.98 * duration * sample_rate


@dataclass
class Sorted:
    todo: list[Item] = field(default_factory=list)
    finished: list[tuple[Item, dict[str, Any]]] = field(default_factory=list)
    adopted: list[tuple[Item, dict[str, Any]]] = field(default_factory=list)
    conflicts: list[Failure] = field(default_factory=list)


def sort_items(
    plan: Plan,
    identity: dict[str, Any],
    *,
    force: bool,
    manifest: dict[str, dict[str, Any]] | None = None,
) -> Sorted:
    """Split the plan into finished items (manifest line + whole file), files to adopt (a whole
    clip and matching record left by a run killed before its manifest line), conflicts (a file
    made otherwise; replaced only with `force`) and the rest, to make."""
    manifest = read_manifest(plan.out_dir) if manifest is None else manifest
    out = Sorted()
    for item in plan.items:
        path = plan.out_dir / item.path.name
        want = expected_record(item, identity)
        entry = manifest.get(item.name)
        listed = plan.out_dir / str(entry.get("path") or path.name) if entry else None
        if listed is not None and listed.is_file() and listed.stat().st_size == entry.get("bytes"):
            # A finished clip of this name, in whatever format: other settings are a conflict.
            diff = _differences(entry, want)
            if not diff:
                out.finished.append((item, entry))
            elif force:
                out.todo.append(item)
            else:
                out.conflicts.append(_conflict(item, listed, f"was made with {', '.join(diff)}"))
            continue
        if not path.exists():
            # NAME.json is shared by every format of NAME: another file's record is not ours.
            owner = _record_owner(path.with_suffix(".json"))
            gone = bool(owner) and not (plan.out_dir / str(owner)).exists()
            if owner is None or owner == path.name or force or gone:
                out.todo.append(item)
            else:
                why = (
                    f"is the record of {owner}" if owner else "exists and is not this clip's record"
                )
                out.conflicts.append(_conflict(item, path.with_suffix(".json"), why))
            continue
        if entry is not None:
            # Listed but changed since: ours to make again.
            out.todo.append(item)
            continue
        try:
            record = read_record(path.with_suffix(".json"))
        except UsageError:
            record = None
        if (
            record is not None
            and not record.differences(want)
            and audio_is_complete(path, item.settings.duration, item.writer.sample_rate)
        ):
            out.adopted.append((item, _entry(item, path, record)))
        elif force:
            out.todo.append(item)
        else:
            out.conflicts.append(_conflict(item, path, "exists and is not in the manifest"))
    return out


def _record_owner(sidecar: Path) -> str | None:
    """The file name a record describes; None when there is no record; "" when the file is
    not one of our records (a user's own JSON)."""
    if not sidecar.exists():
        return None
    try:
        record = read_json(sidecar)
        return Path(str(record["output"])).name
    except (UsageError, KeyError, TypeError):
        return ""


def _conflict(item: Item, path: Path, why: str) -> Failure:
    return Failure(
        item.row,
        f"{path.name} {why}; pass --force to replace it, or choose another output folder",
        item.name,
        item.prompt,
    )


def remove_leftovers(plan: Plan) -> list[Path]:
    """Delete temporary files a killed run left for this plan's items, and only those whose
    writer is gone, so another run or shard in the folder never loses a file in flight."""
    from fluxmusic_cli import atomic

    mine = {i.path.name for i in plan.items} | {f"{i.name}.json" for i in plan.items}
    return atomic.clean_leftovers(plan.out_dir, mine | {MANIFEST})


def _entry(item: Item, path: Path, record: GenerationRecord) -> dict[str, Any]:
    """The manifest line of a finished clip: where it is, and its whole record."""
    return {
        "name": item.name,
        "path": path.name,
        "row": item.row,
        "bytes": path.stat().st_size,
        **record.to_json(),
    }


class FolderLock:
    """Keeps two runs from rendering the same rows into one folder at once.

    A run without `--shard` holds `.fluxmusic-batch.lock` exclusively; a shard holds it shared
    plus its own `.fluxmusic-batch-K-of-N.lock` exclusively, so distinct shards work side by
    side. The locks are the kernel's (`fluxmusic_cli.locks`): a killed run never leaves a
    stale one, and the last run out removes the files.
    """

    NAME = ".fluxmusic-batch.lock"

    def __init__(self, out_dir: Path, shard: Shard | None) -> None:
        self.out_dir = Path(out_dir)
        self.shard = shard
        self._locks = FileLocks()

    def acquire(self) -> None:
        if self._locks.held:
            return
        try:
            free = self._locks.take(self.out_dir / self.NAME, shared=self.shard is not None)
            if free and self.shard is not None:
                own = f".fluxmusic-batch-{self.shard.index}-of-{self.shard.count}.lock"
                free = self._locks.take(self.out_dir / own)
            if not free:
                raise UsageError(
                    f"Another fluxmusic run is writing the same rows into {self.out_dir}; "
                    "wait for it to finish, or give each run its own rows with --shard K/N."
                )
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        """Unlock; the last run out removes the lock file, so the folder keeps no litter."""
        self._locks.release()


class FolderRun:
    """A plan's run into its folder: holds the folder's lock, skips finished items, and lists
    each written clip in the manifest before the clip counts as done. `identity` is the
    engine's that makes the clips (`engine_identity`, or a server's): a finished clip counts
    only when its record names the same models."""

    def __init__(self, identity: dict[str, Any], plan: Plan, *, force: bool = False) -> None:
        self.identity = identity
        self.plan = plan
        self.force = force
        self.summary = Summary()
        self._lock = FolderLock(plan.out_dir, plan.shard)

    def __enter__(self) -> FolderRun:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Let another run into the folder."""
        self._lock.release()

    def prepare(self, on_event: EventSink | None = None) -> Sorted:
        """Check the folder, clear leftovers, report refused rows and finished items; returns
        the plan's items sorted (`todo`: still to make)."""
        from fluxmusic_cli import atomic

        out_dir = self.plan.out_dir
        atomic.writable_folder(out_dir)
        self._lock.acquire()
        remove_leftovers(self.plan)
        manifest.repair(out_dir, force=self.force)
        sorted_ = sort_items(self.plan, self.identity, force=self.force)
        events: list[RunEvent] = [
            ItemFailed(failure)
            for failure in sorted(self.plan.failures + sorted_.conflicts, key=lambda f: f.row)
        ]
        for _, entry in sorted_.adopted:
            append_manifest(out_dir, entry)
        for item, _ in sorted_.finished + sorted_.adopted:
            events.append(ItemSkipped(item, out_dir / item.path.name, "already finished"))
        for event in events:
            self._emit(event, on_event)
        return sorted_

    def run(self, service, todo: list[Item], on_event: EventSink | None = None) -> Summary:
        """Make `todo` through the run service (or its twin for a server), listing each clip
        as it is written; the summary counts what `prepare` reported too."""
        try:

            def listed(event: RunEvent) -> None:
                if isinstance(event, ItemDone):
                    # The manifest line last: a clip is finished once its files and line exist.
                    entry = _entry(event.item, event.written.path, event.written.record)
                    append_manifest(self.plan.out_dir, entry)
                    event = replace(event, listed=entry)
                self._emit(event, on_event)

            made = service.run(todo, listed)
            self.summary.warn(made.warnings)
            self.summary.elapsed_s = made.elapsed_s
            return self.summary
        finally:
            self.close()

    def _emit(self, event: RunEvent, on_event: EventSink | None) -> None:
        self.summary.tell(event, on_event)
