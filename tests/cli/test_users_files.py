"""Files a user already has: no command replaces, rewrites or appends to a file it did not write
unless `--force`, no command creates a missing folder it was not asked to create, and no edit
writes over its own input (issue 22, items 1-3), all through the console entry point."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ENGINE = ["--device", "cpu", "--dtype", "fp32"]
FAST = ["--steps", "2", "--duration", "0.32", *ENGINE]


def tone(path: Path, seconds: float = 1.5, freq: float = 300.0) -> Path:
    t = np.arange(round(seconds * 16000)) / 16000
    sf.write(path, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), 16000)
    return path


@pytest.fixture(scope="module")
def panns(tmp_path_factory) -> list[str]:
    from fluxmusic_cli.tinybundle.eval_models import write_tiny_cnn14

    weights = write_tiny_cnn14(tmp_path_factory.mktemp("eval-weights") / "cnn14.pth")
    return ["--metrics", "is", "--is-splits", "1", "--panns-weights", str(weights)]


@pytest.fixture
def evaluate(monkeypatch, run_cli, tmp_path, panns):
    """`fluxmusic eval gen ...` on a folder of two tones, scoring IS with tiny weights."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "gen").mkdir()
    for i in range(2):
        tone(tmp_path / "gen" / f"clip{i}.wav", freq=300.0 * (i + 1))

    def _eval(*args):
        return run_cli(["eval", "gen", *panns, *args])

    return _eval


# -- 1. eval --per-file follows the rules every output follows ---------------------------------


def test_eval_per_file_refuses_a_users_file_and_replaces_it_only_with_force(evaluate, tmp_path):
    notes = tmp_path / "notes.csv"
    notes.write_text("my,own\nnotes,here\n")
    code, _, err = evaluate("--per-file", "notes.csv")
    assert code == 2, err
    assert "notes.csv already exists; pass --force to overwrite it." in err
    assert notes.read_text() == "my,own\nnotes,here\n"
    code, _, err = evaluate("--per-file", "notes.csv", "--force")
    assert code == 0, err
    assert notes.read_text().splitlines()[0].startswith("id,")


def test_eval_per_file_never_replaces_a_clip_or_a_batch_manifest(evaluate, tmp_path):
    clip = tmp_path / "gen" / "clip0.wav"
    before = clip.read_bytes()
    for force in ([], ["--force"]):
        code, _, err = evaluate("--per-file", "gen/clip0.wav", *force)
        assert code == 2 and "names an audio file" in err, err
    assert clip.read_bytes() == before
    (tmp_path / "gen" / "manifest.jsonl").write_text('{"name": "clip0", "path": "clip0.wav"}\n')
    code, _, err = evaluate("--per-file", "gen/manifest.jsonl")
    assert code == 2 and "manifest.jsonl already exists" in err, err
    assert json.loads((tmp_path / "gen" / "manifest.jsonl").read_text())["name"] == "clip0"


def test_eval_per_file_in_a_missing_folder_is_refused_and_no_folder_is_made(evaluate, tmp_path):
    code, _, err = evaluate("--per-file", "nowhere/deeper/scores.csv")
    assert code == 2, err
    assert "nowhere/deeper does not exist" in err
    assert not (tmp_path / "nowhere").exists()
