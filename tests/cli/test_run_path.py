"""One run path: `generate` makes its clips through the run loop `batch` uses, and command
modules never import one another."""

from __future__ import annotations

import ast
import hashlib
import json
from pathlib import Path

import numpy as np
import soundfile as sf

import fluxmusic_cli.cli
from fluxmusic_cli.cli.app import COMMAND_MODULES

CLI = Path(fluxmusic_cli.cli.__file__).parent
DATA = Path(__file__).resolve().parents[1] / "data"
# What differs between two runs of the same settings: where the file went and how long it took.
RUN_FIELDS = {"output", "timings", "path", "name", "row", "bytes", "created"}


def _imported_modules(source: Path) -> set[str]:
    tree = ast.parse(source.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_no_command_module_imports_another():
    commands = {f"fluxmusic_cli.cli.{name}" for name in COMMAND_MODULES}
    found = {}
    for source in sorted(CLI.glob("*.py")):
        if source.stem == "app":  # the one place commands are registered
            continue
        crossing = sorted(
            (_imported_modules(source) & commands) - {f"fluxmusic_cli.cli.{source.stem}"}
        )
        if crossing:
            found[source.name] = crossing
    assert found == {}


def _settings(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in RUN_FIELDS}


def test_generate_over_two_engine_calls_renders_the_clips_saved_before_the_run_loop(gen, tmp_path):
    # Six clips: two engine calls of four and two, each encoding its own prompts (saved from
    # the CHUNK loop generate had before it went through the run loop).
    stdin = "first tune\nsecond tune\nthird one\n"
    code, _, err = gen("-", "-n", "2", "-o", "c/", "--seed", "7", "-d", "0.32", stdin=stdin)
    assert code == 0, err
    made = sorted((tmp_path / "c").glob("*.wav"))
    assert [p.stem for p in made] == [
        f"{slug}-s{seed}" for slug in ("first-tune", "second-tune", "third-one") for seed in (7, 8)
    ]
    saved = np.load(DATA / "golden_generate_chunks.npy")
    # Bit for bit on the machine that saved them; another CPU's kernels round differently,
    # which flips a few samples by one step of 16-bit audio (measured: 16 of 30720).
    got = np.stack([sf.read(p, dtype="int16")[0] for p in made]).astype(np.int32)
    assert got.shape == saved.shape
    assert np.abs(got - saved).max() <= 1
    assert np.count_nonzero(got != saved) < got.size // 100


def test_generate_n_3_is_three_batch_rows_bit_for_bit(gen, batch, tmp_path):
    code, _, err = gen("one tune thrice", "-n", "3", "--seed", "5", "-o", "gen/")
    assert code == 0, err
    (tmp_path / "rows.txt").write_text("one tune thrice\n" * 3)
    code, _, err = batch("rows.txt", "-o", "rows", "--seed", "5")
    assert code == 0, err
    made = sorted((tmp_path / "gen").glob("*.wav"))
    rows = sorted((tmp_path / "rows").glob("*.wav"))
    assert [p.name for p in made] == [f"one-tune-thrice-s{s}.wav" for s in (5, 6, 7)]
    assert len(rows) == 3
    for one, row in zip(made, rows, strict=True):
        assert np.array_equal(sf.read(one)[0], sf.read(row)[0])
        side, row_side = (json.loads(p.with_suffix(".json").read_text()) for p in (one, row))
        assert _settings(side) == _settings(row_side)
    seeds = [json.loads(p.with_suffix(".json").read_text())["seed"] for p in made]
    assert seeds == [5, 6, 7]


def test_generate_writes_record_audio_and_latent_together_and_no_folder_files(gen, tmp_path):
    from safetensors import safe_open

    code, out, err = gen("two of them", "-n", "2", "--seed", "1", "-o", "g/", "--save-latent",
                         "--json")  # fmt: skip
    assert code == 0, err
    names = sorted(p.name for p in (tmp_path / "g").iterdir())
    stems = ["two-of-them-s1", "two-of-them-s2"]
    assert names == sorted(
        f"{s}{ext}" for s in stems for ext in (".json", ".latent.safetensors", ".wav")
    )
    doc = json.loads(out)
    assert [Path(o["path"]).name for o in doc["outputs"]] == [f"{s}.wav" for s in stems]
    for stem, output in zip(stems, doc["outputs"], strict=True):
        wav = tmp_path / "g" / f"{stem}.wav"
        side = json.loads(wav.with_suffix(".json").read_text())
        assert side == output["record"] and side["latent_file"] == f"{stem}.latent.safetensors"
        with safe_open(str(tmp_path / "g" / side["latent_file"]), framework="pt") as fh:
            assert fh.metadata()["audio_sha256"] == hashlib.sha256(wav.read_bytes()).hexdigest()
