"""Reading the text files a user hands the tool (records, prompt tables, manifests, configs).

One reader, so a file that is missing, unreadable, binary, not UTF-8 or not the JSON it should
be is always one sentence (a UsageError, exit 2) naming the file and what is wrong with it,
never a UnicodeDecodeError or a JSONDecodeError.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fluxmusic_cli.errors import UsageError


def read_text(path: Path, what: str = "file") -> str:
    """The UTF-8 text of `path` (a byte-order mark, as spreadsheet programs write, is dropped);
    `what` names the file in the sentence (e.g. "prompt list"). Binary data is refused as not
    UTF-8; a stray control character in text is the reader's to show escaped."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"No such {what}: {path}") from None
    except IsADirectoryError:
        raise UsageError(f"{path} is a folder, not a {what}.") from None
    except OSError as exc:
        raise UsageError(f"Cannot read {path}: {exc.strerror or exc}.") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start}).") from None


def read_json(path: Path, what: str = "JSON file") -> Any:
    """The JSON value in `path`, refused in one sentence when it is not JSON."""
    text = read_text(path, what)
    if not text.strip():
        raise UsageError(f"{path} is empty; a {what} was expected.")
    try:
        return json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{path} is not a readable {what}: {exc}.") from None
