"""`fluxmusic doctor` reports the machine and proves a whole tiny generation works."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from fluxmusic_cli.cli.app import app


def test_doctor_reports_environment_and_runs_a_tiny_generation():
    result = CliRunner().invoke(app, ["doctor", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    env, smoke = doc["environment"], doc["tiny_generation"]
    assert env["versions"]["torch"] and env["auto_placement"]["device"] in ("cpu", "cuda", "mps")
    assert env["hub"].startswith("not checked")  # the test environment is offline
    assert smoke["ok"] and smoke["samples"] == 16000 == smoke["frames"]
    assert 0 < smoke["peak"] < 1


def test_doctor_says_the_tiny_audio_is_noise():
    result = CliRunner().invoke(app, ["doctor"])
    assert result.exit_code == 0, result.output
    assert "noise" in result.output and "proves" in result.output
