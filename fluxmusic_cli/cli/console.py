"""Where output goes: human chatter to stderr (Rich), machine output to stdout.

Rich already honours NO_COLOR and drops colour and live bars when stderr is not a terminal.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console

err = Console(stderr=True, highlight=False)


def emit_json(document: Any) -> None:
    """Write one JSON document to stdout (for `--json`)."""
    sys.stdout.write(json.dumps(document, indent=2, default=str) + "\n")
    sys.stdout.flush()


def emit_json_line(event: dict[str, Any]) -> None:
    """Write one newline-delimited JSON event to stdout (for long runs followed by programs)."""
    sys.stdout.write(json.dumps(event, default=str) + "\n")
    sys.stdout.flush()


def warn(message: str) -> None:
    err.print(f"[yellow]warning:[/yellow] {message}")


def info(message: str) -> None:
    err.print(message)
