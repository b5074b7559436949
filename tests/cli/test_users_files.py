"""Files a user already has: no command replaces, rewrites or appends to a file it did not write
unless `--force`, no command creates a missing folder it was not asked to create, and no edit
writes over its own input (issue 22, items 1-3), all through the console entry point."""

from __future__ import annotations

import json
import os
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


@pytest.fixture
def vary(monkeypatch, run_cli, tiny_bundle, tmp_path):
    monkeypatch.chdir(tmp_path)

    def _vary(*args):
        return run_cli(["vary", "harp", *tiny_bundle.cli_args(), *FAST, "--seeds", "1", *args])

    return _vary


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


# -- 2. a folder's files the tool did not write ------------------------------------------------


def test_vary_refuses_to_replace_a_users_page_and_picture_without_force(vary, tmp_path):
    folder = tmp_path / "grid"
    folder.mkdir()
    (folder / "index.html").write_text("<p>my own page</p>\n")
    (folder / "grid.png").write_bytes(b"\x89PNG\r\n\x1a\nmy own picture")
    code, _, err = vary("-o", "grid")
    assert code == 2, err
    assert "index.html" in err and "--force" in err and "replace" in err
    assert (folder / "index.html").read_text() == "<p>my own page</p>\n"
    assert (folder / "grid.png").read_bytes() == b"\x89PNG\r\n\x1a\nmy own picture"
    assert sorted(p.name for p in folder.iterdir()) == ["grid.png", "index.html"]
    code, _, err = vary("-o", "grid", "--force")
    assert code == 0, err
    assert "fluxmusic" in (folder / "index.html").read_text()


def test_vary_reruns_replace_its_own_page_and_picture(vary, tmp_path):
    assert vary("-o", "grid")[0] == 0
    code, _, err = vary("-o", "grid", "--guidance", "3.5,7,9")
    assert code == 0, err
    assert "guidance 9" in (tmp_path / "grid" / "index.html").read_text()


def test_vary_refuses_a_users_own_picture_named_like_a_cells_spectrogram(vary, tmp_path):
    folder = tmp_path / "grid"
    folder.mkdir()
    mine = folder / "seed1_cfg3.5_steps2_both.mel.png"
    mine.write_bytes(b"\x89PNG\r\n\x1a\nmine")
    code, _, err = vary("-o", "grid", "--steps", "2")
    assert code == 2 and mine.name in err and "--force" in err, err
    assert mine.read_bytes() == b"\x89PNG\r\n\x1a\nmine"


def test_vary_does_not_append_to_a_manifest_it_did_not_write(vary, tmp_path):
    folder = tmp_path / "grid"
    folder.mkdir()
    theirs = '{"name": "take1", "path": "take1.wav", "notes": "mine"}\n'
    (folder / "manifest.jsonl").write_text(theirs)
    code, _, err = vary("-o", "grid")
    assert code == 2, err
    assert "manifest.jsonl" in err and "--force" in err
    assert (folder / "manifest.jsonl").read_text() == theirs
    assert not list(folder.glob("*.wav"))


def test_batch_does_not_rewrite_a_foreign_manifest_with_a_line_that_is_not_json(batch, tmp_path):
    (tmp_path / "cues.txt").write_text("low drone\n")
    out = tmp_path / "out"
    out.mkdir()
    theirs = '{"take": 1}\nthis is not json\n{"take": 2}\n'
    (out / "manifest.jsonl").write_text(theirs)
    code, _, err = batch("cues.txt", "-o", "out")
    assert code == 2, err
    assert "manifest.jsonl" in err and "not written by fluxmusic" in err and "--force" in err
    assert (out / "manifest.jsonl").read_text() == theirs
    assert not list(out.glob("*.wav"))
    code, _, err = batch("cues.txt", "-o", "out", "--force")
    assert code == 0, err
    (line,) = (out / "manifest.jsonl").read_text().splitlines()
    assert json.loads(line)["tool"] == "fluxmusic"


def test_a_line_cut_short_by_a_killed_shard_is_ours_even_in_the_middle(batch, tmp_path):
    (tmp_path / "cues.txt").write_text("low drone\nhigh bells\n")
    assert batch("cues.txt", "-o", "out", "--shard", "0/2")[0] == 0
    manifest = tmp_path / "out" / "manifest.jsonl"
    # Shard 1 was killed mid-line, then shard 0's line was appended after it.
    manifest.write_text('{"name": "high-bells-0002", "pa\n' + manifest.read_text())
    code, _, err = batch("cues.txt", "-o", "out", "--shard", "1/2")
    assert code == 0, err
    lines = manifest.read_text().splitlines()
    assert len(lines) == 2 and all(json.loads(line)["tool"] == "fluxmusic" for line in lines)


# -- 3. an edit never writes over its own input ------------------------------------------------

EDITS = [
    ("remix", []),
    ("repaint", ["--region", "1:2"]),
    ("extend", ["--add", "1"]),
    ("loop", ["--seam", "0.32"]),
]


@pytest.fixture
def edit(monkeypatch, run_cli, tiny_bundle, tmp_path, load_counts):
    monkeypatch.chdir(tmp_path)
    tone(tmp_path / "song.wav", seconds=3.0)

    def _edit(command, *args):
        """(exit code, stdout, stderr, models loaded by this call)"""
        before = dict(load_counts)
        code, out, err = run_cli([command, *args, *tiny_bundle.cli_args(), "--steps", "2", *ENGINE])
        return code, out, err, {k: load_counts[k] - before[k] for k in before}

    return _edit


@pytest.mark.parametrize("command, args", EDITS)
def test_force_never_lets_an_edit_write_over_its_input(edit, tmp_path, command, args):
    before = (tmp_path / "song.wav").read_bytes()
    code, _, err, loads = edit(command, "song.wav", "x", *args, "-o", "song.wav", "--force")
    assert code == 2, err
    assert "song.wav is the input" in err
    assert loads == {"transformer": 0, "decoder": 0}
    assert (tmp_path / "song.wav").read_bytes() == before


def test_an_edit_into_another_format_keeps_the_inputs_record_and_latent(edit, tmp_path):
    code, _, err, _ = edit("remix", "song.wav", "x", "-o", "first.wav", "--save-latent")
    assert code == 0, err
    os.replace(tmp_path / "first.wav", tmp_path / "song.wav")
    os.replace(tmp_path / "first.json", tmp_path / "song.json")
    os.replace(tmp_path / "first.latent.safetensors", tmp_path / "song.latent.safetensors")
    kept = {p.name: p.read_bytes() for p in tmp_path.glob("song.*")}
    for latent in ([], ["--save-latent"]):
        code, _, err, loads = edit("remix", "song.wav", "-o", "song.flac", "--force", *latent)
        assert code == 2, err
        assert "song.json is the record of the input recording song.wav" in err
        assert loads == {"transformer": 0, "decoder": 0}
    os.unlink(tmp_path / "song.json")
    code, _, err, loads = edit("remix", "song.wav", "x", "-o", "song.flac", "--save-latent")
    assert code == 2 and "song.latent.safetensors is the latent of the input" in err, err
    kept.pop("song.json")
    assert {p.name: p.read_bytes() for p in tmp_path.glob("song.*")} == kept


def test_an_edit_into_a_folder_whose_default_name_is_the_input_is_refused(edit, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "song-remix-s4.wav").symlink_to(tmp_path / "song.wav")
    before = (tmp_path / "song.wav").read_bytes()
    code, _, err, _ = edit("remix", "song.wav", "x", "--seed", "4", "-o", "out/", "--force")
    assert code == 2 and "is the input" in err, err
    assert (tmp_path / "song.wav").read_bytes() == before


def test_vary_never_writes_a_remix_cell_over_its_input(vary, tmp_path):
    (tmp_path / "grid").mkdir()
    cell = tone(tmp_path / "grid" / "seed1_cfg3.5_steps2_both_str0.5.wav")
    before = cell.read_bytes()
    code, _, err = vary("-o", "grid", "--steps", "2", "--guidance", "3.5", "--input", str(cell),
                        "--strength", "0.5", "--force")  # fmt: skip
    assert code == 2 and "is the input recording" in err, err
    assert cell.read_bytes() == before
