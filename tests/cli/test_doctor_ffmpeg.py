"""`fluxmusic doctor` says whether ffmpeg (for formats beyond libsndfile's) is there."""

from __future__ import annotations

import json
import shutil

import pytest


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
def test_doctor_reports_the_installed_ffmpeg(run_cli):
    code, out, err = run_cli(["doctor", "--json"])
    assert code == 0, err
    assert json.loads(out)["environment"]["ffmpeg"].startswith("ffmpeg version")


def test_doctor_reports_a_missing_ffmpeg_and_what_still_works(run_cli, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    code, _, err = run_cli(["doctor"])
    assert code == 0, err
    text = " ".join(err.split())  # Rich wraps to the terminal's width
    assert "ffmpeg" in text and "not installed: WAV, FLAC, OGG and MP3 still work" in text
