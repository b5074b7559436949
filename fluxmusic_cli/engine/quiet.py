"""Keep transformers' and diffusers' load reports and progress bars off the terminal.

The engine never prints; problems those reports would mention become our own errors.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def quiet_libraries() -> Iterator[None]:
    """Errors only, no progress bars, from both libraries, restored afterwards."""
    from diffusers.utils import logging as dlog
    from transformers.utils import logging as tlog

    saved = (tlog.get_verbosity(), dlog.get_verbosity())
    bars = (tlog.is_progress_bar_enabled(), dlog.is_progress_bar_enabled())
    tlog.set_verbosity_error()
    dlog.set_verbosity_error()
    tlog.disable_progress_bar()
    dlog.disable_progress_bar()
    try:
        yield
    finally:
        tlog.set_verbosity(saved[0])
        dlog.set_verbosity(saved[1])
        if bars[0]:
            tlog.enable_progress_bar()
        if bars[1]:
            dlog.enable_progress_bar()
