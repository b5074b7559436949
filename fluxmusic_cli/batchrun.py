"""Many clips in one run: planning, naming, sharding, the manifest, resuming, and the run loop.

Used by `batch` and `vary`. A run is a list of `Item`s, each one clip with all its settings
and its output name. Finished items are recorded in `OUT_DIR/manifest.jsonl`, one JSON line
each, appended and flushed to disk as each clip is written; a rerun skips what the manifest
and the folder both say is finished, so an interrupted run loses at most the forward batch in
flight. Nothing here prints: progress goes to an event callback. `generate` runs its few
clips through the same `RunLoop`, without the folder layer (manifest, lock, resume).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fluxmusic_cli import manifest
from fluxmusic_cli.engine.pipeline import ClipSettings
from fluxmusic_cli.errors import BadAudioError, OutOfMemoryError, UsageError
from fluxmusic_cli.formats import BUNDLED_SUFFIXES
from fluxmusic_cli.metadata import GenerationRecord, read_record
from fluxmusic_cli.prompts import PromptTable

if TYPE_CHECKING:
    from fluxmusic_cli.output import ClipWriter, WrittenClip

MAX_NAME_BYTES = 200
# Device names Windows reserves in every folder, with or without an extension.
_RESERVED = frozenset(
    ["CON", "PRN", "AUX", "NUL"] + [f"{d}{i}" for d in ("COM", "LPT") for i in range(1, 10)]
)


@dataclass(frozen=True, kw_only=True)
class Settings(ClipSettings):
    """Command-level values: the clip settings every row starts from (a row's own columns
    override them), the first seed, and how the clips are written."""

    encoders: str = "both"
    seed: int
    fmt: str = "wav"
    sample_rate: int = 16000
    peak_normalize: bool = False
    save_latent: bool = False
    source: Any = None  # EditSource: items with a strength remix this recording


@dataclass(frozen=True)
class Item:
    """One clip to make: its place in the whole list, its output name and format, its prompt
    and seed, and how it is sampled."""

    index: int  # 0-based position in the whole list (what sharding counts)
    name: str
    fmt: str
    prompt: str
    seed: int
    settings: ClipSettings
    strength: float | None = None  # a remix of the run's recording at this strength

    @property
    def row(self) -> int:
        """The 1-based row number, as reported to the user."""
        return self.index + 1

    @property
    def filename(self) -> str:
        return f"{self.name}.{self.fmt}"

    @property
    def group(self) -> tuple[ClipSettings, float | None]:
        """Items with the same group can share one forward pass."""
        return self.settings, self.strength


@dataclass(frozen=True)
class Failure:
    row: int
    reason: str
    name: str | None = None
    prompt: str | None = None


@dataclass(frozen=True)
class Shard:
    index: int
    count: int

    def owns(self, position: int) -> bool:
        return position % self.count == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


@dataclass
class Plan:
    out_dir: Path
    items: list[Item]
    failures: list[Failure] = field(default_factory=list)
    total: int = 0  # rows in the whole list, before sharding
    shard: Shard | None = None


# -- planning ------------------------------------------------------------------------------------


def parse_shard(text: str) -> Shard:
    """`K/N` -> Shard(K, N): this process renders positions K, K + N, K + 2N, ... (K from 0)."""
    parts = text.strip().split("/")
    try:
        if len(parts) != 2:
            raise ValueError
        index, count = int(parts[0]), int(parts[1])
    except ValueError:
        raise UsageError(
            f"--shard takes K/N (e.g. 0/4 for the first of four), got {text!r}."
        ) from None
    if count < 1 or not 0 <= index < count:
        raise UsageError(
            f"--shard {text}: N must be 1 or more and K from 0 to N - 1 (shards count from 0)."
        )
    return Shard(index, count)


def name_problem(name: str) -> str | None:
    """Why `name` cannot be an output name inside OUT_DIR, or None when it can."""
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return f"name {name!r} is an absolute path; names must stay inside the output folder"
    if name in (".", "..") or "/" in name or "\\" in name:
        return f"name {name!r} contains a path separator or '..'; it would leave the output folder"
    if name.startswith("."):
        return f"name {name!r} starts with '.', which would make a hidden file"
    if any(ord(c) < 32 or c in ':*?"<>|' for c in name):
        return f"name {name!r} contains a character that file systems refuse"
    if name.split(".", 1)[0].upper() in _RESERVED:
        return f"name {name!r} is reserved on Windows (a device name), so the file could not exist"
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        return f"name is longer than {MAX_NAME_BYTES} bytes"
    return None


def _strip_audio_suffix(name: str) -> str:
    for suffix in BUNDLED_SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def unique_names(names: Iterable[str]) -> list[str]:
    """Append -2, -3, ... to repeats; compared case-insensitively for macOS and Windows."""
    used: set[str] = set()
    out = []
    for name in names:
        candidate, k = name, 2
        while candidate.lower() in used:
            candidate = f"{name}-{k}"
            k += 1
        used.add(candidate.lower())
        out.append(candidate)
    return out


def plan_batch(
    table: PromptTable, out_dir: Path, settings: Settings, shard: Shard | None = None
) -> Plan:
    """Items and refused rows of a prompt list; names are fixed over the whole list, so every
    shard and every rerun agrees on them."""
    from fluxmusic_cli.audio import slugify

    failures = [Failure(e.number, e.reason, e.name) for e in table.errors]
    candidates: list[tuple[Any, str]] = []
    for row in table.rows:
        if row.name is not None:
            name = _strip_audio_suffix(row.name)
            problem = name_problem(name)
            if problem:
                failures.append(Failure(row.number, problem, row.name, row.prompt))
                continue
        else:
            name = f"{slugify(row.prompt, max_len=40)}-{row.number:04d}"
        candidates.append((row, name))
    names = unique_names(n for _, n in candidates)
    items = [
        Item(
            index=row.number - 1,
            name=name,
            fmt=settings.fmt,
            prompt=row.prompt,
            # Distinct seeds per row: a shared seed would give every clip of a benchmark set
            # the same starting noise.
            seed=row.seed if row.seed is not None else settings.seed + row.number - 1,
            settings=_row_settings(settings.clip_settings, row),
        )
        for (row, _), name in zip(candidates, names, strict=True)
    ]
    if shard is not None:
        items = [i for i in items if shard.owns(i.index)]
        failures = [f for f in failures if shard.owns(f.row - 1)]
    failures.sort(key=lambda f: f.row)
    return Plan(
        out_dir=Path(out_dir), items=items, failures=failures, total=table.count, shard=shard
    )


# Prompt-list columns that override the command's clip settings for their row.
_ROW_COLUMNS = ("negative_prompt", "steps", "guidance", "duration")


def _row_settings(defaults: ClipSettings, row: Any) -> ClipSettings:
    """The command's clip settings with the row's own columns in their place."""
    own = {k: getattr(row, k) for k in _ROW_COLUMNS if getattr(row, k) is not None}
    return replace(defaults, **own)


def forward_batches(items: Iterable[Item], batch_size: int) -> list[list[Item]]:
    """Items grouped by shared sampling settings (first-seen order), cut into `batch_size`."""
    if batch_size < 1:
        raise UsageError(f"--batch-size must be 1 or more, got {batch_size}.")
    groups: dict[tuple, list[Item]] = {}
    for item in items:
        groups.setdefault(item.group, []).append(item)
    return [
        members[i : i + batch_size]
        for members in groups.values()
        for i in range(0, len(members), batch_size)
    ]


# -- the manifest (see `fluxmusic_cli.manifest`) ----------------------------------------------

MANIFEST = manifest.MANIFEST
read_manifest = manifest.read_manifest
append_manifest = manifest.append_manifest


# -- resuming ------------------------------------------------------------------------------------


def expected_record(item: Item, identity: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """What a finished clip of `item` must have in its record to count as that item (device
    and dtype may differ: they change the numbers only slightly); compared by
    `GenerationRecord.differences`."""
    return {
        "prompt": item.prompt,
        "seed": item.seed,
        **asdict(item.settings),
        **({} if item.strength is None else {"strength": item.strength}),
        "format": item.fmt,
        "output_sample_rate": settings.sample_rate,
        "peak_normalize": settings.peak_normalize,
        **identity,  # the sources, conditioning mode, LoRAs and pass options (engine_identity)
    }


def _differences(data: dict[str, Any], expected: dict[str, Any]) -> list[str]:
    """How a manifest line (its record, of any schema) differs from `expected`."""
    try:
        return GenerationRecord.from_json(data).differences(expected)
    except ValueError:
        return ["no prompt or seed"]


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
    settings: Settings,
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
        path = plan.out_dir / item.filename
        want = expected_record(item, identity, settings)
        entry = manifest.get(item.name)
        listed = plan.out_dir / str(entry.get("path") or item.filename) if entry else None
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
            record = GenerationRecord.from_json(read_record(path.with_suffix(".json")))
        except UsageError:
            record = None
        if (
            record is not None
            and not record.differences(want)
            and audio_is_complete(path, item.settings.duration, settings.sample_rate)
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
        record = json.loads(sidecar.read_text(encoding="utf-8"))
        return Path(str(record["output"])).name
    except (OSError, ValueError, KeyError, TypeError):
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

    mine = {i.filename for i in plan.items} | {f"{i.name}.json" for i in plan.items}
    return atomic.clean_leftovers(plan.out_dir, mine | {MANIFEST})


def _entry(item: Item, path: Path, record: GenerationRecord | dict[str, Any]) -> dict[str, Any]:
    """The manifest line of a finished clip: where it is, and its whole record (typed, or as
    the writer returns it, already JSON)."""
    return {
        "name": item.name,
        "path": path.name,
        "row": item.row,
        "bytes": path.stat().st_size,
        **(record if isinstance(record, dict) else record.to_json()),
    }


class FolderLock:
    """Keeps two runs from rendering the same rows into one folder at once.

    A run without `--shard` holds `.fluxmusic-batch.lock` exclusively; a shard holds it shared
    plus its own `.fluxmusic-batch-K-of-N.lock` exclusively, so distinct shards work side by
    side. The locks are the kernel's (flock): a killed run never leaves a stale one, and the
    last run out removes the files. Where the file system refuses flock (some network
    mounts), runs are not kept apart.
    """

    NAME = ".fluxmusic-batch.lock"

    def __init__(self, out_dir: Path, shard: Shard | None) -> None:
        self.out_dir = Path(out_dir)
        self.shard = shard
        self._fds: list[tuple[int, Path]] = []

    def acquire(self) -> None:
        try:
            import fcntl
        except ImportError:  # Windows
            return
        if self._fds:
            return
        try:
            if self.shard is None:
                self._take(self.NAME, fcntl.LOCK_EX)
            else:
                self._take(self.NAME, fcntl.LOCK_SH)
                self._take(f".fluxmusic-batch-{self.shard.index}-of-{self.shard.count}.lock",
                           fcntl.LOCK_EX)  # fmt: skip
        except BaseException:
            self.release()
            raise

    def _take(self, name: str, mode: int) -> None:
        import fcntl

        path = self.out_dir / name
        while True:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError:
                return  # an unwritable folder is reported elsewhere
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise UsageError(
                    f"Another fluxmusic run is writing the same rows into {self.out_dir}; "
                    "wait for it to finish, or give each run its own rows with --shard K/N."
                ) from None
            except OSError:
                os.close(fd)
                return
            # The last run out removes the file; a lock on a removed file holds nothing.
            try:
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self._fds.append((fd, path))
                return
            os.close(fd)

    def __del__(self) -> None:
        self.release()

    def release(self) -> None:
        """Unlock; the last run out removes the lock file, so the folder keeps no litter."""
        import fcntl

        while self._fds:
            fd, path = self._fds.pop()
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # only when no one else holds it
                os.unlink(path)
            with contextlib.suppress(OSError):
                os.close(fd)


# -- the run -------------------------------------------------------------------------------------


@dataclass
class BatchEvent:
    """`kind`: item_started, item_done, item_skipped or item_failed."""

    kind: str
    row: int
    name: str | None
    prompt: str | None = None
    path: str | None = None
    record: dict[str, Any] | None = None
    reason: str | None = None
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"event": self.kind, "row": self.row, "name": self.name}
        for key in ("prompt", "path", "record", "reason"):
            value = getattr(self, key)
            if value is not None:
                data[key] = value
        if self.warnings:
            data["warnings"] = self.warnings
        return data


EventCallback = Callable[[BatchEvent], None]


@dataclass
class Summary:
    done: list[BatchEvent] = field(default_factory=list)
    skipped: list[BatchEvent] = field(default_factory=list)
    failed: list[BatchEvent] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

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


def engine_identity(engine) -> dict[str, Any]:
    """The engine's model sources, conditioning mode and the options that change the numbers
    (fewer forward passes), as records store them."""
    interval = engine.options.guidance_interval
    return {
        "guidance_interval": list(interval) if interval else None,
        "cache": engine.options.cache,
        "model": engine.refs["transformer"].identity,
        "t5": engine.refs["t5"].identity,
        "clap": engine.refs["clap"].identity,
        "vae_vocoder": engine.refs["audioldm2"].identity,
        "conditioning": engine.options.conditioning,
        "loras": [
            f"{Path(f).resolve()}:{scale:g}" for f, scale in getattr(engine.options, "loras", ())
        ],
    }


# Items whose prompts are encoded (and held in memory) at a time: 256 T5 embeddings of
# 256 x 4096 floats take 1 GiB, so a 5,000-caption list never holds all of them at once.
ENCODE_WINDOW = 256


class RunLoop:
    """The run every command that makes clips shares (`generate`, `batch`, `vary`): encodes
    the prompts window by window, generates in forward batches (halving a batch that runs out
    of memory), and writes each clip through one `ClipWriter` as soon as its batch is decoded.

    `target(item)` says where an item's clip goes (None: WAV on the writer's stdout).
    `request` holds run-wide request fields no Item carries (generate's loop, seam, context).
    With `keep_going`, a refused or broken item is reported and the run goes on (a batch);
    without, its error is raised (generate). With `encode_ahead`, each window's distinct texts
    are encoded in one pass before its first forward batch (a batch: the encoders can go before
    the transformer loads); without, each engine call encodes its own, as `generate` always
    has, so its clips keep their bits (a text encoded among others can differ in the last bit).
    """

    def __init__(
        self,
        engine,
        writer: ClipWriter,
        target: Callable[[Item], Path | None],
        *,
        batch_size: int = 4,
        source: Any = None,
        request: dict[str, Any] | None = None,
        keep_going: bool = True,
        encode_ahead: bool = True,
        on_event: EventCallback | None = None,
    ) -> None:
        self.engine = engine
        self.writer = writer
        self.target = target
        self.batch_size = batch_size
        self.source = source  # EditSource: items with a strength remix this recording
        self.request = request or {}
        self.keep_going = keep_going
        self.encode_ahead = encode_ahead
        self._on_event = on_event
        self.summary = Summary()

    def _emit(self, event: BatchEvent) -> None:
        bucket = {
            "item_done": self.summary.done,
            "item_skipped": self.summary.skipped,
            "item_failed": self.summary.failed,
        }.get(event.kind)
        if bucket is not None:
            bucket.append(event)
        if self._on_event is not None:
            self._on_event(event)

    def _fail_row(self, row: int, name: str | None, prompt: str | None, reason: str) -> None:
        self._emit(BatchEvent("item_failed", row, name, prompt, reason=reason))

    def _fail(self, chunk: list[Item], exc: UsageError | BadAudioError) -> None:
        if not self.keep_going:
            raise exc
        for item in chunk:
            self._fail_row(item.row, item.name, item.prompt, exc.message)

    def run(self, todo: list[Item]) -> Summary:
        start = time.perf_counter()
        try:
            for lo in range(0, len(todo), ENCODE_WINDOW):
                window = todo[lo : lo + ENCODE_WINDOW]
                texts = self._encode(window) if self.encode_ahead else {}
                for chunk in forward_batches(window, self.batch_size):
                    self._generate(chunk)
                for encoders, prompts in texts.items():
                    self.engine.forget(prompts, encoders=encoders)
        finally:
            self.summary.elapsed_s = time.perf_counter() - start
        return self.summary

    def _encode(self, todo: list[Item]) -> dict[str, list[str]]:
        by_encoders: dict[str, list[str]] = {}
        for item in todo:
            by_encoders.setdefault(item.settings.encoders, []).extend(
                [item.prompt, item.settings.negative_prompt]
            )
        texts = {enc: list(dict.fromkeys(t)) for enc, t in by_encoders.items()}
        for encoders, prompts in texts.items():
            _, _, warnings = self.engine.encode(prompts, encoders=encoders)
            self._warn(warnings)
        return texts

    def _warn(self, warnings: Iterable[str]) -> None:
        for w in warnings:
            if w not in self.summary.warnings:
                self.summary.warnings.append(w)

    def _generate(self, chunk: list[Item]) -> None:
        from fluxmusic_cli.engine.pipeline import GenerationRequest

        first = chunk[0]
        for item in chunk:
            self._emit(BatchEvent("item_started", item.row, item.name, item.prompt))
        if first.strength is not None:
            self._remix(chunk)
            return
        request = GenerationRequest(
            prompts=tuple(i.prompt for i in chunk),
            seeds=tuple(i.seed for i in chunk),
            **asdict(first.settings.clip_settings),  # the items' shared sampling settings
            **self.request,
        )
        try:
            result = self.engine.generate(request)
        except OutOfMemoryError:
            # Halves help only when a forward pass held more than one clip.
            if min(len(chunk), self.engine.options.forward_batch) == 1:
                raise
            half = len(chunk) // 2
            self._warn([f"Out of memory with {len(chunk)} clips per pass; retrying in halves."])
            self._generate(chunk[:half])
            self._generate(chunk[half:])
            return
        except UsageError as exc:
            self._fail(chunk, exc)
            return
        self._warn(result.warnings)
        for item, clip in zip(chunk, result.clips, strict=True):
            self._write(item, clip)

    def _remix(self, chunk: list[Item]) -> None:
        """Items with a strength: remixes of the run's recording, one at a time."""
        from fluxmusic_cli.engine.editing import EditRequest

        for item in chunk:
            s = item.settings
            request = EditRequest(
                operation="remix", source=self.source, prompt=item.prompt,
                seed=item.seed, negative_prompt=s.negative_prompt, steps=s.steps,
                guidance=s.guidance, strength=item.strength, encoders=s.encoders,
            )  # fmt: skip
            try:
                result = self.engine.edit(request)
            except UsageError as exc:
                self._fail([item], exc)
                continue
            self._warn(result.warnings)
            self._write(item, result.clips[0])

    def _write(self, item: Item, clip) -> None:
        try:
            written = self.writer.write(clip, self.target(item))
        except BadAudioError as exc:
            self._fail([item], exc)
            return
        self._done(item, written)

    def _done(self, item: Item, written: WrittenClip) -> None:
        path = None if written.path is None else str(written.path)
        self._emit_done(item, path, written.record, written.warnings)

    def _emit_done(self, item: Item, path: str | None, record, warnings) -> None:
        event = BatchEvent(
            "item_done", item.row, item.name, item.prompt, path=path, record=record,
            warnings=warnings,
        )  # fmt: skip
        self._emit(event)


class BatchRunner(RunLoop):
    """The run loop over a folder plan (`batch`, `vary`): holds the folder's lock, skips
    finished items, and lists each written clip in the manifest."""

    def __init__(
        self,
        engine,
        plan: Plan,
        settings: Settings,
        *,
        batch_size: int = 4,
        force: bool = False,
        on_event: EventCallback | None = None,
    ) -> None:
        from fluxmusic_cli.output import ClipWriter

        writer = ClipWriter(
            sample_rate=settings.sample_rate,
            peak_normalize=settings.peak_normalize,
            save_latent=settings.save_latent,
        )
        super().__init__(
            engine, writer, lambda item: plan.out_dir / item.filename,
            batch_size=batch_size, source=settings.source, on_event=on_event,
        )  # fmt: skip
        self.plan = plan
        self.settings = settings
        self.force = force
        self._lock = FolderLock(plan.out_dir, plan.shard)

    def __enter__(self) -> BatchRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Let another run into the folder."""
        self._lock.release()

    def prepare(self) -> Sorted:
        """Check the folder, clear leftovers, report refused rows and finished items."""
        from fluxmusic_cli import atomic

        out_dir = self.plan.out_dir
        atomic.make_folder(out_dir)
        if not os.access(out_dir, os.W_OK):
            raise UsageError(f"Folder {out_dir} is not writable.")
        self._lock.acquire()
        remove_leftovers(self.plan)
        manifest.repair(out_dir)
        sorted_ = sort_items(
            self.plan, engine_identity(self.engine), self.settings, force=self.force
        )
        for failure in sorted(self.plan.failures + sorted_.conflicts, key=lambda f: f.row):
            self._fail_row(failure.row, failure.name, failure.prompt, failure.reason)
        for _, entry in sorted_.adopted:
            append_manifest(out_dir, entry)
        for item, _ in sorted_.finished + sorted_.adopted:
            path = str(out_dir / item.filename)
            self._emit(
                BatchEvent(
                    "item_skipped",
                    item.row,
                    item.name,
                    item.prompt,
                    path=path,
                    reason="already finished",
                )
            )
        return sorted_

    def run(self, todo: list[Item]) -> Summary:
        try:
            return super().run(todo)
        finally:
            self.close()

    def _done(self, item: Item, written: WrittenClip) -> None:
        """The manifest line last: a clip is finished once both files and its line exist."""
        path = self.plan.out_dir / item.filename
        entry = _entry(item, path, written.record)
        append_manifest(self.plan.out_dir, entry)
        self._emit_done(item, str(path), entry, written.warnings)
