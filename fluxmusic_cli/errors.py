"""One exception family for everything a user can get wrong or lack.

The CLI maps each class to an exit code in one place (`cli/app.py`); the engine raises these
and never prints. Messages are one or two sentences a user can act on.
"""

from __future__ import annotations

import signal


def first_line(exc: BaseException) -> str:
    """The first line of a library's exception message (its class name when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class FluxMusicError(Exception):
    """Base of every error the tool reports without a traceback."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n{self.hint}"


class UsageError(FluxMusicError):
    """Bad input: an option value, a prompt, a path."""

    exit_code = 2


class OutputError(FluxMusicError):
    """An output cannot be written: no space left, a read-only folder, a device that refuses."""

    exit_code = 2


class ModelMissingError(FluxMusicError):
    """Weights are not on disk and cannot be fetched (offline, gated, not found)."""

    exit_code = 3


class CheckpointError(FluxMusicError):
    """A weights file is not what it should be (truncated, another model, a missing tensor)."""

    exit_code = 3


class OutOfMemoryError(FluxMusicError):
    """The chosen setup does not fit the device's memory."""

    exit_code = 4


class BadAudioError(FluxMusicError):
    """Generated audio failed its checks (NaN/inf samples) and was not written."""

    exit_code = 5


class DivergedError(FluxMusicError):
    """Training diverged (a NaN or infinite loss or weight) and nothing non-finite was saved."""

    exit_code = 5


class PartialFailure(FluxMusicError):
    """Some items of a batch failed; the rest were written."""

    exit_code = 6


class ServerError(FluxMusicError):
    """The server a command was sent to (`--server`, FLUXMUSIC_HOST) could not be reached,
    did not accept the token or the host name, was full, or failed the job."""

    exit_code = 7


class Cancelled(FluxMusicError):
    """A run was asked to stop (a server job cancelled, or the server stopping); it stops at
    its next denoising step and writes nothing."""

    exit_code = 130


class Interrupted(FluxMusicError):
    """Stopped by Ctrl-C (SIGINT, exit 130) or SIGTERM (exit 143, as a shell reports a process
    the signal ended); nothing half-written was left behind."""

    exit_code = 130

    def __init__(
        self, message: str, *, hint: str | None = None, signum: int = signal.SIGINT
    ) -> None:
        super().__init__(message, hint=hint)
        self.exit_code = 128 + int(signum)
