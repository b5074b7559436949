"""Where output goes: human chatter to stderr (Rich), machine output to stdout.

Rich already honours NO_COLOR and drops colour and live bars when stderr is not a terminal.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
from typing import Any

from rich.console import Console

err = Console(stderr=True, highlight=False)


def write_stdout(data: bytes | str) -> None:
    """Write machine output to stdout; a full or closed stdout is one sentence."""
    try:
        if isinstance(data, bytes):
            sys.stdout.buffer.write(data)
        else:
            sys.stdout.write(data)
        sys.stdout.flush()
    except OSError as exc:
        from fluxmusic_cli.errors import OutputError

        with contextlib.suppress(OSError, ValueError):  # what is buffered cannot go out either
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise OutputError(f"Cannot write to stdout: {exc.strerror or exc}.") from None


def refuse_binary_to_terminal() -> None:
    """`-o -` sends audio bytes to stdout: refuse when stdout is a terminal."""
    if sys.stdout.isatty():
        from fluxmusic_cli.errors import UsageError

        raise UsageError(
            "-o - writes audio bytes to stdout, which is a terminal; pipe it into a player "
            "(e.g. `| ffplay -nodisp -`) or redirect it to a file."
        )


def emit_json(document: Any) -> None:
    """Write one JSON document to stdout (for `--json`)."""
    write_stdout(json.dumps(document, indent=2, default=str) + "\n")


def emit_json_line(event: dict[str, Any]) -> None:
    """Write one newline-delimited JSON event to stdout (for long runs followed by programs)."""
    write_stdout(json.dumps(event, default=str) + "\n")


# Quoted user text in a message (a prompt, a name, a bad value) is cut to this many characters.
QUOTE_CHARS = 80
_LONG_WORD = re.compile(rf"\S{{{QUOTE_CHARS + 1},}}")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def printable(text: str) -> str:
    """`text` safe for a terminal: control characters escaped, runaway words shortened."""
    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    return _LONG_WORD.sub(_shorten, text)


def _shorten(match: re.Match) -> str:
    word = match.group()
    if "/" in word and len(word) <= 1024:  # a file path is told in full
        return word
    return word[: QUOTE_CHARS - 3] + "..."


def warn(message: str) -> None:
    err.print(f"[yellow]warning:[/yellow] {printable(message)}")


def info(message: str) -> None:
    err.print(message)
