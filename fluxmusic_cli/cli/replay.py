"""`--from-record`, shared by every command that makes music: the record's settings fill each
option the user did not type (explicit flags win)."""

from __future__ import annotations

from dataclasses import fields, replace
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

import typer

from fluxmusic_cli.cli.option_group import Shared
from fluxmusic_cli.errors import UsageError
from fluxmusic_cli.metadata import GenerationRecord

T = TypeVar("T")


def replay_record(
    ctx: typer.Context, path: Path, operation: str, shared: Shared, *own: Any
) -> tuple[GenerationRecord, Shared, tuple[Any, ...]]:
    """(record of `path`, `shared` and the command's `own` option dataclasses with every
    option the record holds and the user left at its default replaced by the record's value).
    Refuses a record another command made."""
    from fluxmusic_cli.metadata import read_record

    record = read_record(path)
    made_by = record.operation or "generate"
    if made_by != operation:
        raise UsageError(
            f"{path} records a {made_by}, not a {operation}; replay it with "
            f"fluxmusic {made_by} --from-record {path}."
        )
    replay = record.replay_options()
    params = {p.name: p for p in ctx.command.params}

    def fill(options: T) -> T:
        typed = {
            f.name: _checked(ctx, params[f.name], replay[f.name])
            for f in fields(options)
            if f.name in replay and f.name in params and _at_default(ctx, f.name)
        }
        return replace(options, **typed)

    groups = {f.name: fill(getattr(shared, f.name)) for f in fields(shared)}
    return record, replace(shared, **groups), tuple(fill(o) for o in own)


def _checked(ctx: typer.Context, param: Any, value: Any) -> Any:
    """A replayed value through its option's own parsing and checks, as if it were typed:
    a record is a file anyone can edit."""
    try:
        value = param.process_value(ctx, value)
    except (TypeError, ValueError) as exc:  # Click's BadParameter is a ValueError
        name = param.opts[0] if getattr(param, "opts", None) else param.name
        raise UsageError(f"The record's value for {name} is not usable: {exc}") from None
    if isinstance(value, tuple):  # a repeatable option
        return [v.value if isinstance(v, Enum) else v for v in value]
    return value.value if isinstance(value, Enum) else value


def _at_default(ctx: typer.Context, name: str) -> bool:
    source = ctx.get_parameter_source(name)
    return source is None or source.name in ("DEFAULT", "DEFAULT_MAP")


def given_options(ctx: typer.Context, record: GenerationRecord | None = None) -> frozenset[str]:
    """The options the user gave, by parameter name: typed (or set by an environment
    variable), and with `record` the ones its replay filled (those left at their default)."""
    params = [p.name for p in ctx.command.params if p.name]
    typed = {name for name in params if not _at_default(ctx, name)}
    replayed: set[str] = set()
    if record is not None:
        replayed = {k for k in record.replay_options() if k in params and _at_default(ctx, k)}
    return frozenset(typed | replayed)
