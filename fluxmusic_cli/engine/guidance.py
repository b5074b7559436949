"""Guidance interval: classifier-free guidance only while t lies in [lo, hi].

Outside the interval a step runs one conditional pass instead of the conditional and the
unconditional pair, so it costs half a guided step (Kynkäänniemi et al. 2024 apply guidance in
a limited interval; ACE-Step ships it). Off (None) every step is guided, as the published
script does.
"""

from __future__ import annotations

from collections.abc import Sequence

from fluxmusic_cli.errors import UsageError

Interval = tuple[float, float]


def parse_interval(value: str | Sequence[float] | None) -> Interval | None:
    """`"LO:HI"` (or a recorded [lo, hi]) as a checked (lo, hi) with 0 <= lo <= hi <= 1."""
    if value is None:
        return None
    if isinstance(value, str):
        parts = value.split(":")
        try:
            if len(parts) != 2:
                raise ValueError
            lo, hi = (float(p) for p in parts)
        except ValueError:
            raise UsageError(
                f"Guidance interval must be LO:HI with times in [0, 1], e.g. 0.2:0.8; "
                f"got {value!r}."
            ) from None
    else:
        lo, hi = (float(v) for v in value)
    if not 0.0 <= lo <= hi <= 1.0:
        raise UsageError(f"Guidance interval needs 0 <= LO <= HI <= 1, got {lo:g}:{hi:g}.")
    return (lo, hi)


def guided_at(t: float, interval: Interval | None) -> bool:
    """Whether the step at time `t` is guided: always without an interval."""
    return interval is None or interval[0] <= t <= interval[1]
