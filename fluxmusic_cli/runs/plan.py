"""What a run makes: items (one clip each, with everything that makes and writes it), the plan
of a prompt list (names, seeds, shards, refused rows), and forward batches.

An `Item` is a whole request for one clip: its prompt, seed and sampling settings, the edit it
makes of a recording (if any), and where and how its clip is written. The run service needs
nothing else, so `generate`, `batch`, `vary`, the editing commands and the server's worker all
hand it items.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from fluxmusic_cli.engine.requests import (
    DEFAULT_CONTEXT,
    DEFAULT_CROSSFADE,
    DEFAULT_SEAM,
    DEFAULT_STRENGTH,
    ClipSettings,
    EditRequest,
    EditSource,
    GenerateSettings,
    GenerationRequest,
)
from fluxmusic_cli.errors import UsageError
from fluxmusic_cli.formats import SUPPORTED_SUFFIXES
from fluxmusic_cli.output import ClipWriter
from fluxmusic_cli.prompts import PromptTable

MAX_NAME_BYTES = 200
# Device names Windows reserves in every folder, with or without an extension.
_RESERVED = frozenset(
    ["CON", "PRN", "AUX", "NUL"] + [f"{d}{i}" for d in ("COM", "LPT") for i in range(1, 10)]
)


@dataclass(frozen=True)
class Edit:
    """What makes an item an edit of a recording: the operation, the recording, and the
    operation's own values (those it does not use keep their defaults)."""

    operation: str  # remix, repaint, extend or loop
    source: EditSource = field(compare=False)
    strength: float = DEFAULT_STRENGTH
    regions: tuple[tuple[float, float | None], ...] = ()
    add: float | None = None
    to: float | None = None
    context: float = DEFAULT_CONTEXT
    seam: float | None = DEFAULT_SEAM  # None: chosen to fit the loop
    crossfade: float = DEFAULT_CROSSFADE


@dataclass(frozen=True)
class Item:
    """One clip to make: its place in the whole list, its name, its prompt and seed, how it is
    sampled, what recording it edits, and where (`path`; None: stdout) and how it is written."""

    index: int  # 0-based position in the whole list (what sharding counts)
    name: str
    prompt: str
    seed: int
    settings: GenerateSettings  # an edit reads only the sampling part (ClipSettings)
    path: Path | None
    writer: ClipWriter = field(default_factory=ClipWriter)
    edit: Edit | None = None

    @property
    def row(self) -> int:
        """The 1-based row number, as reported to the user."""
        return self.index + 1

    @property
    def fmt(self) -> str:
        return self.path.suffix.lower().lstrip(".") if self.path is not None else "wav"

    def edit_request(self) -> EditRequest:
        """The engine's request for this item's edit (an item with an `edit`)."""
        if self.edit is None:
            raise ValueError(f"item {self.name!r} is not an edit")
        return EditRequest(
            **_values(self.settings, ClipSettings),
            **_values(self.edit, Edit),
            prompt=self.prompt,
            seed=self.seed,
        )

    @property
    def group(self) -> tuple[Any, ...]:
        """Items with the same group can share one forward pass (an edit goes alone)."""
        if self.edit is not None:
            return ("edit", self.index)
        return ("generate", self.settings)


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


@dataclass(frozen=True)
class Settings:
    """What every row of a folder run starts from: the clip settings (a row's own columns
    override them), the first seed, the format, and how clips are written."""

    clip: GenerateSettings
    seed: int
    fmt: str = "wav"
    writer: ClipWriter = field(default_factory=ClipWriter)


@dataclass
class Plan:
    out_dir: Path
    items: list[Item]
    failures: list[Failure] = field(default_factory=list)
    total: int = 0  # rows in the whole list, before sharding
    shard: Shard | None = None


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
    if name.startswith(("/", "\\")) or (len(name) > 2 and name[1] == ":" and name[2] in "/\\"):
        return f"name {name!r} is an absolute path; names must stay inside the output folder"
    if name in (".", "..") or "/" in name or "\\" in name:
        return f"name {name!r} contains a path separator or '..'; it would leave the output folder"
    if name.startswith("."):
        return f"name {name!r} starts with '.', which would make a hidden file"
    if ":" in name:
        drive = name[:2] if name[0].isalpha() and name[1] == ":" else None
        drive = f" (on Windows {drive!r} names a drive)" if drive else ""
        return (
            f"name {name!r} contains ':', which Windows and macOS do not allow in a file name"
            f"{drive}"
        )
    refused = sorted({c for c in name if ord(c) < 32 or c in '*?"<>|'})
    if refused:
        shown = " ".join(repr(c) for c in refused)
        return f"name {name!r} contains {shown}, which Windows does not allow in a file name"
    if name.split(".", 1)[0].upper() in _RESERVED:
        return f"name {name!r} is reserved on Windows (a device name), so the file could not exist"
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        return f"name is longer than {MAX_NAME_BYTES} bytes"
    return None


def _strip_audio_suffix(name: str) -> str:
    for suffix in SUPPORTED_SUFFIXES:
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

    out_dir = Path(out_dir)
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
            prompt=row.prompt,
            # Distinct seeds per row: a shared seed would give every clip of a benchmark set
            # the same starting noise.
            seed=row.seed if row.seed is not None else settings.seed + row.number - 1,
            settings=_row_settings(settings.clip, row),
            path=out_dir / f"{name}.{settings.fmt}",
            writer=settings.writer,
        )
        for (row, _), name in zip(candidates, names, strict=True)
    ]
    if shard is not None:
        items = [i for i in items if shard.owns(i.index)]
        failures = [f for f in failures if shard.owns(f.row - 1)]
    failures.sort(key=lambda f: f.row)
    return Plan(out_dir=out_dir, items=items, failures=failures, total=table.count, shard=shard)


# Prompt-list columns that override the command's clip settings for their row.
_ROW_COLUMNS = ("negative_prompt", "steps", "guidance", "duration")


def _row_settings(defaults: GenerateSettings, row: Any) -> GenerateSettings:
    """The command's clip settings with the row's own columns in their place."""
    own = {k: getattr(row, k) for k in _ROW_COLUMNS if getattr(row, k) is not None}
    return replace(defaults, **own)


def generation_request(items: list[Item]) -> GenerationRequest:
    """One engine call for items made from noise with the same settings."""
    return GenerationRequest(
        **_values(items[0].settings, GenerateSettings),
        prompts=tuple(i.prompt for i in items),
        seeds=tuple(i.seed for i in items),
    )


def _values(obj: Any, cls: type) -> dict[str, Any]:
    """The fields `cls` declares, read off `obj` (an instance of it or of a subclass)."""
    return {f.name: getattr(obj, f.name) for f in fields(cls)}


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
