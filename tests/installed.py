"""The installed `fluxmusic` console script, as the end-to-end tests run it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# Beside the interpreter: where `pip install` put the console script of this environment.
FLUXMUSIC = Path(sys.executable).with_name("fluxmusic")
# For a module's `pytestmark`: its tests run the script, so they skip (saying so) without it.
needs_script = pytest.mark.skipif(
    not FLUXMUSIC.exists(), reason=f"console script not installed at {FLUXMUSIC}"
)


def script_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment (the tests' isolated caches) on two threads, plus `extra`."""
    return {**os.environ, "OMP_NUM_THREADS": "2", **(extra or {})}


def fluxmusic(*args, cwd, stdin: bytes | None = None, env: dict[str, str] | None = None):
    """Run the script to completion: the CompletedProcess, output as bytes."""
    return subprocess.run(
        [str(FLUXMUSIC), *args], cwd=cwd, input=stdin, capture_output=True,
        env=script_env(env), timeout=300,
    )  # fmt: skip
