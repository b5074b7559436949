"""Reading prompt lists: plain text, CSV (including MusicCaps and Song Describer), JSON lines.

A file that cannot be read at all raises UsageError; a row that is wrong (empty prompt, a seed
that is not a whole number, ...) becomes a `RowError` and the other rows go on, so one bad
caption never stops a 5,000-clip run. Only the standard library and the engine's limits are
imported here.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from fluxmusic_cli.engine.requests import MAX_SEED, MAX_STEPS
from fluxmusic_cli.engine.sampling import MAX_SECONDS
from fluxmusic_cli.errors import UsageError
from fluxmusic_cli.textfiles import read_text

FORMATS: tuple[str, ...] = ("txt", "csv", "jsonl")
PROMPT_COLUMNS: tuple[str, ...] = ("prompt", "caption")
OVERRIDE_COLUMNS: tuple[str, ...] = ("seed", "duration", "negative_prompt", "guidance", "steps")
# A recording the row describes (read by `train`; Song Describer's own column is `path`).
AUDIO_COLUMNS: tuple[str, ...] = ("file", "path", "audio")

# Evaluation sets whose rows carry an id to name outputs by, so generated clips pair with the
# reference recordings; `ignored` columns mean something else there than a per-row override.
DATASETS: dict[str, dict[str, Any]] = {
    "musiccaps": {"id": "ytid", "ignored": ()},
    # Song Describer's `duration` is the length of the original recording, not a request.
    "song-describer": {"id": "caption_id", "ignored": ("duration",)},
}


@dataclass(frozen=True)
class PromptRow:
    """One usable row; `number` counts rows from 1 (comments and blank lines not counted)."""

    number: int
    line: int
    prompt: str
    name: str | None = None
    seed: int | None = None
    duration: float | None = None
    negative_prompt: str | None = None
    guidance: float | None = None
    steps: int | None = None
    audio: str | None = None


@dataclass(frozen=True)
class RowError:
    number: int
    line: int
    reason: str
    name: str | None = None


@dataclass
class PromptTable:
    source: str
    kind: str  # txt | csv | jsonl | musiccaps | song-describer
    rows: list[PromptRow] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.rows) + len(self.errors)


def read_prompts(
    source: str | Path, *, fmt: str | None = None, stdin: TextIO | None = None
) -> PromptTable:
    """Read a prompt list from a file or, for `-`, from stdin.

    `fmt` (txt, csv, jsonl) overrides the guess from the extension; stdin is taken as JSON
    lines when its first non-blank line starts with `{`, else as text.
    """
    if fmt is not None and fmt not in FORMATS:
        raise UsageError(f"Unknown prompt list format {fmt!r}; use one of {', '.join(FORMATS)}.")
    if str(source) == "-":
        stream = stdin if stdin is not None else sys.stdin
        if stream.isatty():
            raise UsageError("'-' reads the prompt list from stdin, but stdin is a terminal.")
        text = stream.read()
        return parse_prompts(text, fmt or _sniff(text), source="stdin")
    path = Path(source)
    if path.is_dir():
        raise UsageError(
            f"{path} is a folder, not a prompt list; give a .txt, .csv or .jsonl file."
        )
    if not path.is_file():
        raise UsageError(f"No such prompt list: {path}")
    kind = fmt or _format_of(path)
    text = read_text(path, "prompt list")
    return parse_prompts(text, kind, source=str(path))


def parse_prompts(text: str, fmt: str, *, source: str = "<text>") -> PromptTable:
    """Parse the text of a prompt list in format `fmt` (txt, csv or jsonl)."""
    if fmt == "txt":
        table = _parse_txt(text, source)
    elif fmt == "csv":
        table = _parse_csv(text, source)
    elif fmt == "jsonl":
        table = _parse_jsonl(text, source)
    else:
        raise UsageError(f"Unknown prompt list format {fmt!r}; use one of {', '.join(FORMATS)}.")
    if table.count == 0:
        raise UsageError(f"{source} holds no prompts.")
    return table


def _format_of(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".txt", ".text", ".prompts", ""):
        return "txt"
    if suffix in (".csv",):
        return "csv"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    raise UsageError(
        f"Cannot tell the format of {path.name}; use .txt, .csv or .jsonl, or pass --input-format."
    )


def _sniff(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return "jsonl" if line.lstrip().startswith("{") else "txt"
    return "txt"


def _parse_txt(text: str, source: str) -> PromptTable:
    table = PromptTable(source=source, kind="txt")
    for line_no, line in enumerate(text.splitlines(), start=1):
        prompt = line.strip()
        if not prompt or prompt.startswith("#"):
            continue
        table.rows.append(PromptRow(number=table.count + 1, line=line_no, prompt=prompt))
    return table


def _parse_csv(text: str, source: str) -> PromptTable:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise UsageError(f"{source} is empty.") from None
    except csv.Error as exc:
        raise UsageError(f"{source} is not a readable CSV file: {exc}.") from None
    columns = [h.strip().lower() for h in header]
    kind = _dataset_kind(columns)
    prompt_col = next((c for c in PROMPT_COLUMNS if c in columns), None)
    if prompt_col is None:
        raise UsageError(
            f"{source} has no 'prompt' or 'caption' column (found: {', '.join(columns) or 'none'})."
        )
    ignored = set(DATASETS[kind]["ignored"]) if kind in DATASETS else set()
    table = PromptTable(source=source, kind=kind)
    while True:
        line_no = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            # The csv module cannot resynchronise after a broken quote; the rest is unreadable.
            table.errors.append(RowError(table.count + 1, line_no, f"unreadable CSV: {exc}"))
            break
        if not any(c.strip() for c in cells):
            continue
        if len(cells) > len(columns):
            table.errors.append(
                RowError(
                    table.count + 1,
                    line_no,
                    f"{len(cells)} cells but the header names {len(columns)} columns",
                )
            )
            continue
        values = {c: v for c, v in zip(columns, cells, strict=False) if c not in ignored}
        if kind in DATASETS:
            values["name"] = values.get(DATASETS[kind]["id"], "")
        values["prompt"] = values.get(prompt_col, "")
        _add_row(table, values, line_no, empty_means_absent=True)
    return table


def _dataset_kind(columns: list[str]) -> str:
    if "caption" in columns and "prompt" not in columns:
        for kind, spec in DATASETS.items():
            if spec["id"] in columns:
                return kind
    return "csv"


def _parse_jsonl(text: str, source: str) -> PromptTable:
    table = PromptTable(source=source, kind="jsonl")
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            table.errors.append(RowError(table.count + 1, line_no, f"not valid JSON: {exc.msg}"))
            continue
        if not isinstance(obj, dict):
            table.errors.append(
                RowError(
                    table.count + 1, line_no, 'a line must be a JSON object like {"prompt": ...}'
                )
            )
            continue
        values = {str(k).lower(): v for k, v in obj.items()}
        if "prompt" not in values and "caption" in values:
            values["prompt"] = values["caption"]
        _add_row(table, values, line_no, empty_means_absent=False)
    return table


def _add_row(
    table: PromptTable, values: dict[str, Any], line_no: int, *, empty_means_absent: bool
) -> None:
    """Validate one row's fields and add it to `table.rows` or, with the reason, to `errors`."""
    number = table.count + 1
    raw_name = values.get("name")
    name = str(raw_name).strip() if raw_name is not None else ""
    name = name or None
    try:
        prompt = values.get("prompt")
        if prompt is None:
            raise ValueError("no prompt: the row has no prompt (or caption) field")
        if not isinstance(prompt, str):
            raise ValueError(f"bad prompt {prompt!r}: not text (put it in quotes)")
        if not prompt.strip():
            raise ValueError("empty prompt")
        fields: dict[str, Any] = {}
        for column in OVERRIDE_COLUMNS:
            raw = values.get(column)
            if raw is None or (empty_means_absent and isinstance(raw, str) and not raw.strip()):
                continue
            fields[column] = _CHECKS[column](raw)
    except ValueError as exc:
        table.errors.append(RowError(number, line_no, str(exc), name=name))
        return
    audio = next((str(values[c]).strip() for c in AUDIO_COLUMNS if values.get(c)), None)
    table.rows.append(
        PromptRow(
            number=number,
            line=line_no,
            prompt=" ".join(prompt.split()),
            name=name,
            audio=audio or None,
            **fields,
        )
    )


def _whole(raw: Any, what: str) -> int:
    if isinstance(raw, bool):
        raise ValueError(f"bad {what} {raw!r}: not a whole number")
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float) and raw.is_integer():
        return int(raw)
    if isinstance(raw, str):
        text = raw.strip()
        try:
            return int(text)
        except ValueError:
            pass
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if math.isfinite(value) and value.is_integer():
            return int(value)
    raise ValueError(f"bad {what} {raw!r}: not a whole number")


def _number(raw: Any, what: str) -> float:
    if isinstance(raw, bool):
        raise ValueError(f"bad {what} {raw!r}: not a number")
    try:
        value = float(raw.strip() if isinstance(raw, str) else raw)
    except (TypeError, ValueError):
        raise ValueError(f"bad {what} {raw!r}: not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"bad {what} {raw!r}: not a finite number")
    return value


def _seed(raw: Any) -> int:
    value = _whole(raw, "seed")
    if not 0 <= value <= MAX_SEED:
        raise ValueError(f"bad seed {value}: must be from 0 to {MAX_SEED}")
    return value


def _steps(raw: Any) -> int:
    value = _whole(raw, "steps")
    if not 1 <= value <= MAX_STEPS:
        raise ValueError(f"bad steps {value}: must be from 1 to {MAX_STEPS}")
    return value


def _guidance(raw: Any) -> float:
    value = _number(raw, "guidance")
    if value < 0:
        raise ValueError(f"bad guidance {value:g}: must be 0 or more")
    return value


def _duration(raw: Any) -> float:
    value = _number(raw, "duration")
    if not 0 < value <= MAX_SECONDS:
        raise ValueError(f"bad duration {value:g}: must be above 0 and at most {MAX_SECONDS:g} s")
    return value


def _negative(raw: Any) -> str:
    if not isinstance(raw, str):
        raise ValueError(f"bad negative_prompt {raw!r}: not text")
    return raw.strip()


_CHECKS = {
    "seed": _seed,
    "steps": _steps,
    "guidance": _guidance,
    "duration": _duration,
    "negative_prompt": _negative,
}
