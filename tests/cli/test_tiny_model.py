"""`--model tiny`: every command runs end to end on tiny random weights that the tool writes to
its cache on first use, with no download, and each says that what it makes is noise."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

# One thread: on a shared 2-core machine two threads per process run several times slower.
FAST = ["--steps", "2", "--device", "cpu", "--dtype", "fp32", "--threads", "1"]
NOISE = "the audio is noise"


def tone(path: Path, seconds: float = 1.28, hz: float = 220.0) -> Path:
    t = np.arange(round(seconds * 16000)) / 16000
    sf.write(path, (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32), 16000)
    return path


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory) -> Path:
    """One tool cache for the module, so the bundle is written once (the first test that
    needs it writes it)."""
    return tmp_path_factory.mktemp("tiny-cache")


@pytest.fixture
def tiny(monkeypatch, run_cli, shared_cache, tmp_path):
    """`fluxmusic ARGS... --model tiny` (fast settings) in a fresh folder, sharing one cache."""
    monkeypatch.setenv("FLUXMUSIC_CACHE", str(shared_cache))
    monkeypatch.chdir(tmp_path)

    def run(*args: str, fast: bool = True) -> tuple[int, str, str]:
        return run_cli([*args, "--model", "tiny", *(FAST if fast else [])])

    return run


def test_first_use_writes_the_bundle_to_the_cache_and_says_it_makes_noise(
    run_cli, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    args = ["generate", "lo-fi piano", "--model", "tiny", "-d", "0.48", "-o", "a.wav", "--json"]
    code, out, err = run_cli([*args, *FAST])
    assert code == 0, err
    assert NOISE in err and "RANDOM weights" in err
    record = json.loads(out)["outputs"][0]["record"]
    assert "/tiny/" in record["model"]["source"] and record["t5"].startswith("local:")
    assert (tmp_path / "a.wav").is_file()

    code, out, _ = run_cli(["cache", "list", "--json"])
    assert code == 0 and "tiny" in [e["name"] for e in json.loads(out)["entries"]]
    code, _, err = run_cli(["cache", "rm", "tiny", "--yes"])
    assert code == 0, err
    code, out, _ = run_cli(["cache", "list", "--json"])
    assert "tiny" not in [e["name"] for e in json.loads(out)["entries"]]


def test_generate_runs_on_it_without_the_real_weights_or_the_network(tiny, tmp_path):
    code, _, err = tiny("generate", "warm lo-fi piano", "-d", "0.96", "-o", "piano.wav")
    assert code == 0, err
    assert NOISE in err
    assert sf.info(str(tmp_path / "piano.wav")).duration == pytest.approx(0.96)


@pytest.mark.parametrize(
    ("command", "options"),
    [
        ("remix", ["--strength", "0.5"]),
        ("repaint", ["--region", "0.32:0.64"]),
        ("extend", ["--add", "0.48"]),
        ("loop", ["--seam", "0.32"]),
    ],
)
def test_each_edit_runs_on_it(tiny, tmp_path, command, options):
    tone(tmp_path / "in.wav")
    code, _, err = tiny(command, "in.wav", "jazz trio", *options, "-o", "out.wav")
    assert code == 0, err
    assert NOISE in err
    assert (tmp_path / "out.wav").is_file() and (tmp_path / "out.json").is_file()


def test_batch_and_vary_run_on_it(tiny, tmp_path):
    (tmp_path / "cues.txt").write_text("rain on a tin roof\nslow organ chords\n")
    code, _, err = tiny("batch", "cues.txt", "-o", "cues", "-d", "0.48")
    assert code == 0, err
    assert NOISE in err and len(list((tmp_path / "cues").glob("*.wav"))) == 2

    # vary's --steps is an axis: the grid's one value.
    axes = ["--seeds", "0-1", "--guidance", "3.5", "--steps", "2"]
    engine = FAST[2:]
    code, _, err = tiny("vary", "harp", "-o", "grid", *axes, "-d", "0.48", *engine, fast=False)
    assert code == 0, err
    assert NOISE in err
    assert (tmp_path / "grid" / "index.html").is_file()


def test_train_on_a_few_clips_then_generate_with_its_lora(tiny, tmp_path):
    music = tmp_path / "music"
    music.mkdir()
    for name, hz in (("low", 110.0), ("high", 880.0)):
        tone(music / f"{name}.wav", seconds=2.0, hz=hz)
        (music / f"{name}.txt").write_text(f"a {name} tone\n")
    steps = ["--steps", "4", "--save-every", "4", "--lora-rank", "2"]
    code, _, err = tiny("train", str(music), "-o", "run", *steps, *FAST[2:], fast=False)
    assert code == 0, err
    assert NOISE in err
    lora = Path("run") / "lora.safetensors"
    assert f'use it: fluxmusic generate "..." --model tiny --lora {lora}' in err

    code, _, err = tiny("generate", "a low tone", "-d", "0.48", "--lora", str(lora), "-o", "g.wav")
    assert code == 0, err


def test_eval_runs_on_its_tiny_stand_ins(tiny, tmp_path):
    for folder in ("gen", "ref"):
        (tmp_path / folder).mkdir()
        for k, hz in enumerate((220.0, 330.0, 440.0)):
            tone(tmp_path / folder / f"clip{k}.wav", seconds=1.5, hz=hz)
    args = ["gen", "--reference", "ref", "--is-splits", "1", "--device", "cpu", "--json"]
    code, out, err = tiny("eval", *args, fast=False)
    assert code == 0, err
    assert "any score is meaningless" in err
    assert {"fad", "kl", "is"} <= set(json.loads(out)["metrics"])


def test_a_t5_clap_or_vae_given_beside_it_is_refused(tiny):
    code, _, err = tiny("generate", "x", "-d", "0.48", "--t5", "t5-sd3", "--clap", "laion/x")
    assert code == 2
    assert "--model tiny brings its own T5, CLAP and VAE" in err
    assert "leave out --t5 and --clap" in err


def test_eval_takes_no_other_model_name(run_cli, tmp_path):
    (tmp_path / "gen").mkdir()
    code, _, err = run_cli(["eval", str(tmp_path / "gen"), "--model", "small"])
    assert code == 2
    assert "eval --model takes only tiny" in err


def test_a_cache_that_cannot_hold_it_is_said_and_the_run_goes_on(run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blocked = tmp_path / "cache-is-a-file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("FLUXMUSIC_CACHE", str(blocked))
    code, _, err = run_cli(["generate", "x", "--model", "tiny", "-d", "0.48", "-o", "a.wav", *FAST])
    assert code == 0, err
    assert "The tool cache cannot hold the tiny bundle" in err and NOISE in err
    assert (tmp_path / "a.wav").is_file() and blocked.read_text() == "not a folder"
