"""`OUT_DIR/manifest.jsonl`: one JSON line per finished clip, appended, read by batch and eval.

Lines are appended with one `write` on an O_APPEND descriptor under an exclusive lock and
flushed to disk, so shards sharing a folder keep whole lines. A process killed mid-write
leaves its last line cut short: every reader skips such a line (with a note), and a batch
rerun rewrites the manifest without it (`repair`).
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

MANIFEST = "manifest.jsonl"


@dataclass
class Lines:
    rows: list[dict[str, Any]] = field(default_factory=list)
    bad: list[int] = field(default_factory=list)  # 1-based numbers of skipped lines


def read_lines(path: Path, *, strict: bool = False) -> Lines:
    """The JSON objects of a manifest, in order. A torn last line (no newline, not JSON) is
    skipped with a note; another bad line is skipped too, or refused when `strict`."""
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
        except ValueError as exc:
            torn = number == len(lines) and not line.endswith("\n")
            if strict and not torn:
                raise UsageError(f"{path}:{number} is not valid JSON ({exc}).") from None
            out.bad.append(number)
            notices.note(
                f"{path}:{number} was cut short by a stopped run; that line is skipped."
                if torn
                else f"{path}:{number} is not valid JSON; that line is skipped."
            )
            continue
        if isinstance(row, dict):
            out.rows.append(row)
    return out


def read_manifest(out_dir: Path) -> dict[str, dict[str, Any]]:
    """Finished items by name (the last line of a name wins)."""
    entries: dict[str, dict[str, Any]] = {}
    for entry in read_lines(Path(out_dir) / MANIFEST).rows:
        if isinstance(entry.get("name"), str):
            entries[entry["name"]] = entry
    return entries


def repair(out_dir: Path) -> bool:
    """Rewrite the manifest without lines cut short or damaged; True when it was rewritten.

    Done under the manifest's lock, and appenders reopen the file when it was replaced, so a
    shard appending meanwhile loses no line.
    """
    path = Path(out_dir) / MANIFEST
    if not path.is_file():
        return False
    with _locked(path):
        found = read_lines(path)
        if not found.bad:
            return False
        text = "".join(json.dumps(r, default=str, ensure_ascii=False) + "\n" for r in found.rows)
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
