"""`--from-record`, shared by every command that makes music: the record's settings fill each
option the user did not type (explicit flags win)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import typer

from fluxmusic_cli.errors import UsageError


def replay_record(
    ctx: typer.Context, path: Path, operation: str, values: dict[str, Any], names: Iterable[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(record, replayed settings) of `path`, after filling `values[name]` for each of `names`
    the user left at its default. Refuses a record another command made."""
    from fluxmusic_cli.metadata import read_record, replay_settings

    record = read_record(path)
    made_by = record.get("operation", "generate")
    if made_by != operation:
        raise UsageError(
            f"{path} records a {made_by}, not a {operation}; replay it with "
            f"fluxmusic {made_by} --from-record {path}."
        )
    replay = replay_settings(record)
    for name in names:
        if name not in replay:
            continue
        source = ctx.get_parameter_source(name)
        if source is None or source.name in ("DEFAULT", "DEFAULT_MAP"):
            values[name] = replay[name]
    return record, replay
