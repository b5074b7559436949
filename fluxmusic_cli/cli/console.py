"""Where output goes: human chatter to stderr (Rich), machine output to stdout.

Rich already honours NO_COLOR and drops colour and live bars when stderr is not a terminal.
"""

from __future__ import annotations

import contextlib
import json
import os
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


def warn(message: str) -> None:
    err.print(f"[yellow]warning:[/yellow] {message}")


def info(message: str) -> None:
    err.print(message)
