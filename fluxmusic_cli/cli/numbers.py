"""Number options: one parser for every numeric option of every command.

A value that is not a number, not a whole number where one is needed, infinite, NaN, or out of
its range is refused with one sentence naming the option (exit 2), in the tool's own error
style, before anything else runs. The range goes into the option's help, so `--help` says it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import typer

from fluxmusic_cli.errors import UsageError


def parse_number(
    flag: str,
    *,
    whole: bool = False,
    minimum: float | None = None,
    maximum: float | None = None,
    above: float | None = None,
) -> Callable[[Any], float | int]:
    """A parser for `flag`'s values: finite, whole when `whole`, within [minimum, maximum]
    and greater than `above`."""

    def parse(value: Any) -> float | int:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number: float | int = value  # a default, or a value replayed from a record
        else:
            text = str(value).strip()
            try:
                number = int(text) if whole else float(text)
            except ValueError:
                kind = "a whole number" if whole else "a number"
                raise UsageError(f"{flag} takes {kind}, got {value!r}.") from None
        if isinstance(number, float) and not math.isfinite(number):
            raise UsageError(f"{flag} must be a finite number, got {value}.")
        if whole and number != int(number):
            raise UsageError(f"{flag} takes a whole number, got {value!r}.")
        if minimum is not None and number < minimum:
            raise UsageError(f"{flag} must be at least {_shown(minimum)}, got {_shown(number)}.")
        if maximum is not None and number > maximum:
            raise UsageError(f"{flag} must be at most {_shown(maximum)}, got {_shown(number)}.")
        if above is not None and number <= above:
            raise UsageError(f"{flag} must be more than {_shown(above)}, got {_shown(number)}.")
        return int(number) if whole else float(number)

    return parse


def number_option(
    *decls: str,
    help: str,
    whole: bool = False,
    minimum: float | None = None,
    maximum: float | None = None,
    above: float | None = None,
    metavar: str | None = None,
    **kwargs: Any,
) -> Any:
    """A `typer.Option` whose values go through `parse_number`; its range ends its help."""
    bounds = _bounds(minimum, maximum, above)
    return typer.Option(
        *decls,
        parser=parse_number(decls[0], whole=whole, minimum=minimum, maximum=maximum, above=above),
        metavar=metavar or ("INTEGER" if whole else "NUMBER"),
        help=f"{help} ({bounds})" if bounds else help,
        **kwargs,
    )


def _bounds(minimum: float | None, maximum: float | None, above: float | None) -> str:
    """The range in words, e.g. "from 1 to 1000", "at least 0", "more than 0"."""
    if minimum is not None and maximum is not None:
        return f"from {_shown(minimum)} to {_shown(maximum)}"
    parts = []
    if above is not None:
        parts.append(f"more than {_shown(above)}")
    if minimum is not None:
        parts.append(f"at least {_shown(minimum)}")
    if maximum is not None:
        parts.append(f"at most {_shown(maximum)}")
    return ", ".join(parts)


def _shown(number: float | int) -> str:
    if isinstance(number, int):
        return str(number)
    if number.is_integer() and abs(number) < 1e15:
        return str(int(number))
    return f"{number:g}"
