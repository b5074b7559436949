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


def quiet_by_default() -> None:
    """Keep the libraries' own chatter (load bars such as "Loading weights 143/143", advice
    such as "We strongly recommend passing in an attention_mask") off stderr for the whole
    run, wherever a model is loaded or run. They read these variables when first imported,
    so this is called before any of them is; a value the user set is kept."""
    import os

    for name, value in (
        ("TQDM_DISABLE", "1"),
        ("TRANSFORMERS_VERBOSITY", "error"),
        ("DIFFUSERS_VERBOSITY", "error"),
    ):
        os.environ.setdefault(name, value)
