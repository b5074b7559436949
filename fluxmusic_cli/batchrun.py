"""Many clips in one run: planning, naming, sharding, the manifest, resuming, and the run loop.

Used by `batch` and `vary`. A run is a list of `Item`s, each one clip with all its settings
and its output name. Finished items are recorded in `OUT_DIR/manifest.jsonl`, one JSON line
each, appended and flushed to disk as each clip is written; a rerun skips what the manifest
and the folder both say is finished, so an interrupted run loses at most the forward batch in
flight. Nothing here prints: progress goes to an event callback.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fluxmusic_cli.errors import BadAudioError, OutOfMemoryError, UsageError
from fluxmusic_cli.prompts import PromptTable

MANIFEST = "manifest.jsonl"
MAX_NAME_BYTES = 200
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg")


@dataclass(frozen=True)
class Settings:
    """Command-level values; a row's own columns override the sampling ones."""

    steps: int
    guidance: float
    negative_prompt: str
    duration: float
    seed: int
    encoders: str = "both"
    fmt: str = "wav"
    sample_rate: int = 16000
    peak_normalize: bool = False


@dataclass(frozen=True)
class Item:
    """One clip to make: its place in the list, its output name and every sampling setting."""

    index: int  # 0-based position in the whole list (what sharding counts)
    row: int  # 1-based row number, as reported to the user
    name: str
    prompt: str
    seed: int
    steps: int
    guidance: float
    negative_prompt: str
    duration: float
    encoders: str
    fmt: str

    @property
    def filename(self) -> str:
        return f"{self.name}.{self.fmt}"

    @property
    def group(self) -> tuple:
        """Items with the same group can share one forward pass."""
        return (self.steps, self.guidance, self.negative_prompt, self.duration, self.encoders)


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
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        return f"name is longer than {MAX_NAME_BYTES} bytes"
    return None


def _strip_audio_suffix(name: str) -> str:
    for suffix in AUDIO_SUFFIXES:
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
            row=row.number,
            name=name,
            prompt=row.prompt,
            # Distinct seeds per row: a shared seed would give every clip of a benchmark set
            # the same starting noise.
            seed=row.seed if row.seed is not None else settings.seed + row.number - 1,
            steps=row.steps if row.steps is not None else settings.steps,
            guidance=row.guidance if row.guidance is not None else settings.guidance,
            negative_prompt=(
                row.negative_prompt if row.negative_prompt is not None else settings.negative_prompt
            ),
            duration=row.duration if row.duration is not None else settings.duration,
            encoders=settings.encoders,
            fmt=settings.fmt,
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


# -- the manifest --------------------------------------------------------------------------------


def read_manifest(out_dir: Path) -> dict[str, dict[str, Any]]:
    """Finished items by name (the last line of a name wins). A line cut short by a killed
    process is skipped, not fatal."""
    path = Path(out_dir) / MANIFEST
    entries: dict[str, dict[str, Any]] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return entries
    except OSError as exc:
        raise UsageError(f"Cannot read {path}: {exc.strerror or exc}") from None
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            entries[entry["name"]] = entry
    return entries


def append_manifest(out_dir: Path, entry: dict[str, Any]) -> None:
    """Add one line and fsync it. One `write` per line on an O_APPEND descriptor keeps lines
    whole when several shards share the folder; the lock covers file systems where that alone
    is not enough."""
    line = (json.dumps(entry, default=str, ensure_ascii=False) + "\n").encode("utf-8")
    fd = os.open(Path(out_dir) / MANIFEST, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        _lock(fd)
        size = os.fstat(fd).st_size
        # A process killed mid-write leaves a line without its newline; end it first so this
        # line is not glued onto it.
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def _lock(fd: int) -> None:
    try:
        import fcntl
    except ImportError:  # Windows: O_APPEND alone
        return
    # Some network file systems refuse flock; O_APPEND alone still holds there.
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_EX)


# -- resuming ------------------------------------------------------------------------------------


def expected_record(item: Item, identity: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """What a finished clip of `item` must have in its record to count as that item (device
    and dtype may differ: they change the numbers only slightly)."""
    return {
        "prompt": item.prompt,
        "seed": item.seed,
        "steps": item.steps,
        "guidance": item.guidance,
        "duration": item.duration,
        "negative_prompt": item.negative_prompt,
        "encoders": item.encoders,
        "conditioning": identity.get("conditioning"),
        "format": item.fmt,
        "output_sample_rate": settings.sample_rate,
        "peak_normalize": settings.peak_normalize,
        "model": identity.get("model"),
        "t5": identity.get("t5"),
        "clap": identity.get("clap"),
        "vae_vocoder": identity.get("vae_vocoder"),
    }


def differences(record: dict[str, Any], expected: dict[str, Any]) -> list[str]:
    """`field: had -> wants` for every compared field that differs."""
    out = []
    for key, want in expected.items():
        have = record.get(key)
        if key == "model" and isinstance(have, dict):
            have = have.get("source")
        if isinstance(want, float) and isinstance(have, (int, float)):
            same = float(have) == want
        else:
            same = have == want
        if not same:
            out.append(f"{key} {have!r} -> {want!r}")
    return out


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
    from fluxmusic_cli.metadata import read_record

    manifest = read_manifest(plan.out_dir) if manifest is None else manifest
    out = Sorted()
    for item in plan.items:
        path = plan.out_dir / item.filename
        want = expected_record(item, identity, settings)
        entry = manifest.get(item.name)
        if entry is not None and path.is_file() and path.stat().st_size == entry.get("bytes"):
            diff = differences(entry, want)
            if not diff:
                out.finished.append((item, entry))
            elif force:
                out.todo.append(item)
            else:
                out.conflicts.append(_conflict(item, path, f"was made with {', '.join(diff)}"))
            continue
        if entry is not None or not path.exists():
            # Listed but missing or changed since: ours to make again.
            out.todo.append(item)
            continue
        try:
            record = read_record(path.with_suffix(".json"))
        except UsageError:
            record = None
        if (
            record is not None
            and not differences(record, want)
            and audio_is_complete(path, item.duration, settings.sample_rate)
        ):
            out.adopted.append((item, _entry(item, path, record)))
        elif force:
            out.todo.append(item)
        else:
            out.conflicts.append(_conflict(item, path, "exists and is not in the manifest"))
    return out


def _conflict(item: Item, path: Path, why: str) -> Failure:
    return Failure(
        item.row,
        f"{path.name} {why}; pass --force to replace it, or choose another output folder",
        item.name,
        item.prompt,
    )


def remove_leftovers(plan: Plan) -> list[Path]:
    """Delete temporary files a killed run left for this plan's items, and only those, so
    shards sharing the folder never touch each other's files in flight."""
    mine = {i.filename for i in plan.items} | {f"{i.name}.json" for i in plan.items}
    removed = []
    with os.scandir(plan.out_dir) as entries:
        for entry in entries:
            # Temporary names are ".<final name>.<token>.part" (audio), ".<name>.json.<pid>.tmp".
            if entry.name.startswith(".") and entry.name.endswith((".part", ".tmp")):
                target = entry.name[1:].rsplit(".", 2)[0]
                if target in mine:
                    Path(entry.path).unlink(missing_ok=True)
                    removed.append(Path(entry.path))
    return removed


def _entry(item: Item, path: Path, record: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": item.name,
        "path": path.name,
        "row": item.row,
        "bytes": path.stat().st_size,
        **record,
    }


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
    """The engine's model sources and conditioning mode, as records store them."""
    return {
        "model": engine.refs["transformer"].identity,
        "t5": engine.refs["t5"].identity,
        "clap": engine.refs["clap"].identity,
        "vae_vocoder": engine.refs["audioldm2"].identity,
        "conditioning": engine.options.conditioning,
    }


# Items whose prompts are encoded (and held in memory) at a time: 256 T5 embeddings of
# 256 x 4096 floats take 1 GiB, so a 5,000-caption list never holds all of them at once.
ENCODE_WINDOW = 256


class BatchRunner:
    """Runs a plan on an engine: skips finished items, encodes prompts window by window,
    generates in forward batches and writes each clip as soon as its batch is decoded."""

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
        self.engine = engine
        self.plan = plan
        self.settings = settings
        self.batch_size = batch_size
        self.force = force
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

    def prepare(self) -> Sorted:
        """Check the folder, clear leftovers, report refused rows and finished items."""
        out_dir = self.plan.out_dir
        if out_dir.exists() and not out_dir.is_dir():
            raise UsageError(f"{out_dir} exists and is not a folder.")
        out_dir.mkdir(parents=True, exist_ok=True)
        if not os.access(out_dir, os.W_OK):
            raise UsageError(f"Folder {out_dir} is not writable.")
        remove_leftovers(self.plan)
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
        start = time.perf_counter()
        try:
            for lo in range(0, len(todo), ENCODE_WINDOW):
                window = todo[lo : lo + ENCODE_WINDOW]
                texts = self._encode(window)
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
            by_encoders.setdefault(item.encoders, []).extend([item.prompt, item.negative_prompt])
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
        request = GenerationRequest(
            prompts=tuple(i.prompt for i in chunk),
            seeds=tuple(i.seed for i in chunk),
            negative_prompt=first.negative_prompt,
            steps=first.steps,
            guidance=first.guidance,
            duration=first.duration,
        )
        try:
            result = self.engine.generate(request, encoders=first.encoders)
        except OutOfMemoryError:
            if len(chunk) == 1:
                raise
            half = len(chunk) // 2
            self._warn([f"Out of memory with {len(chunk)} clips per pass; retrying in halves."])
            self._generate(chunk[:half])
            self._generate(chunk[half:])
            return
        except UsageError as exc:
            for item in chunk:
                self._fail_row(item.row, item.name, item.prompt, exc.message)
            return
        self._warn(result.warnings)
        for item, clip in zip(chunk, result.clips, strict=True):
            self._write(item, clip)

    def _write(self, item: Item, clip) -> None:
        from fluxmusic_cli import audio, metadata, output

        path = self.plan.out_dir / item.filename
        try:
            samples, record, warnings = output.prepare(
                clip,
                sample_rate=self.settings.sample_rate,
                peak_normalize=self.settings.peak_normalize,
            )
        except BadAudioError as exc:
            self._fail_row(item.row, item.name, item.prompt, exc.message)
            return
        record["output"] = str(path.resolve())
        record["format"] = item.fmt
        # Record first, audio second, manifest last: a file present under its final name
        # always has its record beside it, so a rerun can recognise it.
        sidecar = metadata.write_sidecar(path, record)
        try:
            audio.write_audio(
                path, samples, self.settings.sample_rate, tags=metadata.tags_for(record)
            )
        except BaseException:
            if not path.exists():
                sidecar.unlink(missing_ok=True)
            raise
        entry = _entry(item, path, record)
        append_manifest(self.plan.out_dir, entry)
        self._emit(
            BatchEvent(
                "item_done",
                item.row,
                item.name,
                item.prompt,
                path=str(path),
                record=entry,
                warnings=warnings,
            )
        )
