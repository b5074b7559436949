"""`fluxmusic doctor` reports the machine and proves a whole tiny generation works."""

from __future__ import annotations

import json


def test_doctor_reports_environment_and_runs_a_tiny_generation(run_cli):
    code, out, err = run_cli(["doctor", "--json"])
    assert code == 0, err
    doc = json.loads(out)
    env, smoke = doc["environment"], doc["tiny_generation"]
    assert env["versions"]["torch"] and env["auto_placement"]["device"] in ("cpu", "cuda", "mps")
    assert env["hub"].startswith("not checked")  # the test environment is offline
    assert smoke["ok"] and smoke["samples"] == 16000 == smoke["frames"]
    assert 0 < smoke["peak"] < 1


def test_doctor_says_the_tiny_audio_is_noise(run_cli):
    code, out, err = run_cli(["doctor"])
    assert code == 0, err
    assert "noise" in out + err and "proves" in out + err
