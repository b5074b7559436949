"""The shipped completion scripts are what the app generates, and they complete commands."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from installed import FLUXMUSIC, needs_script

pytestmark = needs_script

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = {"bash": "fluxmusic.bash", "zsh": "_fluxmusic", "fish": "fluxmusic.fish"}


def app_output(env: dict[str, str]) -> str:
    proc = subprocess.run(
        [str(FLUXMUSIC)], env={**os.environ, **env}, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("shell", sorted(SCRIPTS))
def test_shipped_completion_script_is_not_stale(shell):
    shipped = (ROOT / "completions" / SCRIPTS[shell]).read_text()
    fresh = app_output({"_FLUXMUSIC_COMPLETE": f"source_{shell}"})
    assert shipped == fresh, f"completions/{SCRIPTS[shell]} is stale: run completions/regenerate.sh"


def test_completion_offers_every_command_and_option():
    words = app_output(
        {"_FLUXMUSIC_COMPLETE": "complete_bash", "COMP_WORDS": "fluxmusic ", "COMP_CWORD": "1"}
    ).split()
    assert {"generate", "info", "models", "download", "cache", "doctor", "eval"} <= set(words)
    options = app_output(
        {
            "_FLUXMUSIC_COMPLETE": "complete_bash",
            "COMP_WORDS": "fluxmusic generate --enc",
            "COMP_CWORD": "2",
        }
    ).split()
    assert options == ["--encoders"]
