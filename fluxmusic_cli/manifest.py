"""`OUT_DIR/manifest.jsonl`: one JSON line per finished clip, appended, read by batch and eval.

Lines are appended with one `write` on an O_APPEND descriptor under an exclusive lock and
flushed to disk, so shards sharing a folder keep whole lines. A process killed mid-write
leaves its line cut short (the last line, or a middle one when another shard appended after
it): every reader skips such a line (with a note), and a batch rerun rewrites the manifest
without it (`repair`).

A manifest is the tool's when each line is one of its entries (`is_entry`: a record with
"tool": "fluxmusic", the clip's "name" and "path") or a line of one cut short. Any other line
(a user's notes, JSON of another shape) makes it foreign: it is never appended to or
rewritten, and a run into its folder is refused, unless `--force`, which rewrites it with the
tool's entries only.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fluxmusic_cli import atomic, notices
from fluxmusic_cli.errors import UsageError
from fluxmusic_cli.ownership import TOOL

MANIFEST = "manifest.jsonl"
# Every line the tool writes starts so ("name" is an entry's first field).
_LINE_START = '{"name": '


@dataclass
class Lines:
    rows: list[dict[str, Any]] = field(default_factory=list)  # every JSON object, in order
    bad: list[int] = field(default_factory=list)  # 1-based numbers of lines that are not JSON
    cut: list[int] = field(default_factory=list)  # of those, the lines a stopped run cut short
    foreign: list[int] = field(default_factory=list)  # lines the tool did not write

    @property
    def entries(self) -> list[dict[str, Any]]:
        """The tool's own entries."""
        return [row for row in self.rows if is_entry(row)]


def is_entry(row: Any) -> bool:
    """Whether a manifest line is one the tool writes: a record of its own, naming a clip."""
    return (
        isinstance(row, dict)
        and row.get("tool") == TOOL
        and isinstance(row.get("name"), str)
        and isinstance(row.get("path"), str)
    )


def scan(path: Path) -> Lines:
    """Every line of a manifest, sorted into JSON objects, lines cut short, other lines that
    are not JSON, and lines the tool did not write; says nothing."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return Lines()
    except OSError as exc:
        raise UsageError(f"Cannot read {path}: {exc.strerror or exc}") from None
    out = Lines()
    lines = text.splitlines(keepends=True)
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            out.bad.append(number)
            body = line.rstrip("\r\n")
            ours = body.startswith(_LINE_START) or _LINE_START.startswith(body)
            if ours or (number == len(lines) and not line.endswith("\n")):
                out.cut.append(number)
            if not ours:
                out.foreign.append(number)
            continue
        if isinstance(row, dict):
            out.rows.append(row)
        if not is_entry(row):
            out.foreign.append(number)
    return out


def read_lines(path: Path, *, strict: bool = False) -> Lines:
    """The JSON objects of a manifest, in order. A line cut short is skipped with a note;
    another line that is not JSON is skipped too, or refused when `strict`."""
    path = Path(path)
    found = scan(path)
    if strict:
        for number in found.bad:
            if number not in found.cut:
                raise UsageError(f"{path}:{number} is not valid JSON; fix or remove that line.")
    _note_skipped(path, found)
    return found


def _note_skipped(path: Path, found: Lines) -> None:
    for number in found.bad:
        notices.note(
            f"{path}:{number} was cut short by a stopped run; that line is skipped."
            if number in found.cut
            else f"{path}:{number} is not valid JSON; that line is skipped."
        )


def read_manifest(out_dir: Path) -> dict[str, dict[str, Any]]:
    """The tool's finished items by name (the last line of a name wins)."""
    return {entry["name"]: entry for entry in read_lines(Path(out_dir) / MANIFEST).entries}


def check_ours(out_dir: Path, *, force: bool) -> None:
    """Refuse a run into `out_dir` when its manifest holds lines the tool did not write (it
    would append to a user's file), unless `force`."""
    path = Path(out_dir) / MANIFEST
    if not force and path.is_file():
        _refuse_foreign(path, scan(path))


def _refuse_foreign(path: Path, found: Lines) -> None:
    if found.foreign:
        raise UsageError(
            f"{path} was not written by fluxmusic (line {found.foreign[0]} is not one of its "
            "records); pass --force to replace it with this run's manifest, or choose another "
            "output folder."
        )


def repair(out_dir: Path, *, force: bool = False) -> bool:
    """Rewrite the manifest without lines cut short; True when it was rewritten. A foreign
    manifest is refused (`check_ours`), or with `force` rewritten with the tool's entries only.

    Done under the manifest's lock, and appenders reopen the file when it was replaced, so a
    shard appending meanwhile loses no line.
    """
    path = Path(out_dir) / MANIFEST
    if not path.is_file():
        return False
    with _locked(path):
        found = scan(path)
        if not force:
            _refuse_foreign(path, found)
        if not (found.bad or found.foreign):
            return False
        _note_skipped(path, found)
        dropped = len(set(found.foreign) - set(found.bad))
        if dropped:
            notices.note(
                f"--force: {path} held {dropped} line(s) fluxmusic did not write; "
                "it is rewritten without them."
            )
        entries = found.entries
        text = "".join(json.dumps(r, default=str, ensure_ascii=False) + "\n" for r in entries)
        atomic.write_text(path, text)
    return True


def append_manifest(out_dir: Path, entry: dict[str, Any]) -> None:
    """Add one line and flush it to disk."""
    path = Path(out_dir) / MANIFEST
    line = (json.dumps(entry, default=str, ensure_ascii=False) + "\n").encode("utf-8")
    try:
        with _locked(path) as fd:
            size = os.fstat(fd).st_size
            # A process killed mid-write leaves a line without its newline; end it first so
            # this line is not glued onto it.
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = b"\n" + line
            os.write(fd, line)
            os.fsync(fd)
    except OSError as exc:
        raise atomic.os_error(exc, path) from None


@contextlib.contextmanager
def _locked(path: Path):
    """An O_APPEND descriptor of `path` under an exclusive lock, reopened until it is the file
    now under that name (a `repair` may have replaced it meanwhile)."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        _lock(fd)
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        yield fd
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
