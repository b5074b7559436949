"""The checks and frame arithmetic behind editing requests (remix, repaint, extend, loop).

Every editing operation samples a latent of which some frames are known. This module turns a
request and the recording's length into what the sampler needs (which frames are generated,
from which step, how long the output is) and refuses bad values with one sentence each,
before any model loads. No torch here.
"""

from __future__ import annotations

import math

from fluxmusic_cli.engine import sampling
from fluxmusic_cli.errors import UsageError


def parse_region(text: str) -> tuple[float, float | None]:
    """`START:END` or `START:` (to the end), in seconds."""
    parts = text.split(":")
    if len(parts) != 2 or not parts[0].strip():
        raise UsageError(
            f"Region {text!r} is not START:END in seconds (e.g. 4.5:8, or 12: to the end)."
        )
    try:
        start = float(parts[0])
        end = float(parts[1]) if parts[1].strip() else None
    except ValueError:
        raise UsageError(f"Region {text!r} is not START:END in seconds (e.g. 4.5:8).") from None
    if not math.isfinite(start) or (end is not None and not math.isfinite(end)):
        raise UsageError(f"Region {text!r} must be finite seconds.")
    return start, end


def context_frames(seconds: float) -> int:
    """Extend / long-form context in latent frames: even and below the 10.24 s window."""
    finite = isinstance(seconds, (int, float)) and math.isfinite(seconds)
    frames = sampling.seconds_to_frames(seconds) if finite else 0
    if not finite or seconds < 0 or frames >= sampling.WINDOW_FRAMES:
        raise UsageError(
            f"Context {seconds:g} s must be at least 0 and less than {sampling.TRAINED_SECONDS} s."
        )
    if frames % 2:
        lo, hi = (frames - 1) * sampling.FRAME_SECONDS, (frames + 1) * sampling.FRAME_SECONDS
        raise UsageError(
            f"Context {seconds:g} s is not on the 80 ms grid; the nearest valid ones are "
            f"{lo:.2f} and {hi:.2f} s."
        )
    return frames


def seam_frames(seconds: float | None, length: int) -> int:
    """Loop seam in latent frames for a loop of `length` frames: a positive multiple of 4
    (0.16 s), at most half the loop. None chooses it: the default 2.56 s where it fits, else
    the longest seam that does."""
    longest = _longest_seam(length)
    if seconds is None:
        return min(sampling.DEFAULT_SEAM_FRAMES, longest)
    fits = f"the longest that fits this {_s(length)} s loop is {_s(longest)} s"
    frames = sampling.seconds_to_frames(seconds) if math.isfinite(seconds) else -1
    if frames <= 0:
        raise UsageError(f"Seam {seconds:g} s must be a positive length; {fits}.")
    if frames > longest:
        raise UsageError(
            f"Seam {seconds:g} s is longer than half the loop ({_s(length / 2)} s); {fits}."
        )
    if frames % 4:
        below = frames - frames % 4
        nearest = [f for f in (below, below + 4) if f >= 4]  # below + 4 <= longest here
        shown = " and ".join(_s(f) for f in nearest)
        ones = "ones are" if len(nearest) > 1 else "one is"
        raise UsageError(
            f"Seam {seconds:g} s is not a multiple of 0.16 s; the nearest valid {ones} {shown} s."
        )
    return frames


def _longest_seam(length: int) -> int:
    """The longest seam a loop of `length` frames takes; refuses a loop too short for any."""
    longest = 4 * (length // 8)
    if longest < 4:
        shortest = 2 * 4  # twice the shortest seam, 0.16 s
        raise UsageError(
            f"Too short for a loop: it is {_s(length)} s on the 80 ms grid, and a loop needs at "
            f"least {_s(shortest)} s (twice the shortest seam, 0.16 s), so anything longer than "
            f"{_s(shortest - 2)} s works."
        )
    return longest


def _s(frames: float) -> str:
    """Latent frames as seconds, as messages show them."""
    return f"{frames * sampling.FRAME_SECONDS:.2f}"


def remix_start(strength: float, steps: int) -> int:
    """The step remix starts from: round(strength x N)."""
    if not math.isfinite(strength) or not 0.0 <= strength <= 1.0:
        raise UsageError(f"Strength must be between 0 and 1, got {strength:g}.")
    return round(strength * steps)


def repaint_mask(regions, duration: float, length: int) -> tuple[list[int], list[list[float]]]:
    """(T,) mask of the merged regions, and the regions as snapped seconds [start, end)."""
    if not regions:
        raise UsageError("Give at least one --region START:END (seconds) to repaint.")
    mask = [0] * length
    for start, end in regions:
        stop = duration if end is None else end
        shown = f"{start:g}:{'' if end is None else f'{end:g}'}"
        if start < 0:
            raise UsageError(f"Region {shown} starts before the recording.")
        if stop < start:
            raise UsageError(f"Region {shown} ends before it starts.")
        if stop == start:
            raise UsageError(f"Region {shown} is empty.")
        if start >= duration:
            raise UsageError(
                f"Region {shown} lies outside the recording, which is {duration:.2f} s long."
            )
        lo, hi = sampling.region_frames(start, min(stop, duration), length)
        for i in range(lo, hi):
            mask[i] = 1
    return mask, _runs_in_seconds(mask)


def _runs_in_seconds(mask: list[int]) -> list[list[float]]:
    runs, start = [], None
    for i, m in enumerate([*mask, 0]):
        if m and start is None:
            start = i
        elif not m and start is not None:
            runs.append(
                [round(start * sampling.FRAME_SECONDS, 2), round(i * sampling.FRAME_SECONDS, 2)]
            )
            start = None
    return runs


def extend_seconds(add: float | None, to: float | None, current: float) -> float:
    """Seconds to add, from --add or --to; refuses a total not longer than the recording."""
    if (add is None) == (to is None):
        raise UsageError("Give exactly one of --add SECONDS or --to SECONDS.")
    if add is not None:
        if not math.isfinite(add) or add <= 0:
            raise UsageError(f"--add must be a positive number of seconds, got {add:g}.")
    else:
        if not math.isfinite(to) or to <= current + 1e-9:
            raise UsageError(f"--to {to:g} s is not longer than the recording ({current:.2f} s).")
        add = to - current
    if current + add > sampling.MAX_SECONDS + 1e-9:
        raise UsageError(
            f"The extended music would be {current + add:.1f} s; the limit is "
            f"{sampling.MAX_SECONDS:g} s."
        )
    return add
