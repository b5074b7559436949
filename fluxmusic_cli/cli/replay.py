"""`--from-record`, shared by every command that makes music: the record's settings fill each
option the user did not type (explicit flags win)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from fluxmusic_cli.errors import UsageError


def replay_record(
    ctx: typer.Context, path: Path, operation: str, values: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(record, replayed settings) of `path`, after filling each option in `values` that the
    record holds and the user left at its default. Refuses a record another command made."""
    from fluxmusic_cli.metadata import read_record, replay_settings

    record = read_record(path)
    made_by = record.get("operation", "generate")
    if made_by != operation:
        raise UsageError(
            f"{path} records a {made_by}, not a {operation}; replay it with "
            f"fluxmusic {made_by} --from-record {path}."
        )
    replay = replay_settings(record)
    for name in values:
        if name == "prompt" or name not in replay:
            continue
        source = ctx.get_parameter_source(name)
        if source is None or source.name in ("DEFAULT", "DEFAULT_MAP"):
            values[name] = replay[name]
    return record, replay
