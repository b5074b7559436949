"""Defaults for the weight sources: a flag wins, then FLUXMUSIC_MODEL / _T5 / _CLAP /
_VAE_VOCODER, then the config file, then the built-in; shown by --help and doctor, recorded,
named by the hint after train, and a broken config file is one sentence naming it."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

FAST = ["--steps", "2", "--duration", "0.48", "--device", "cpu", "--dtype", "fp32"]
FAST += ["--threads", "1"]
KEYS = {"model": "model", "t5": "t5", "clap": "clap", "vae_vocoder": "audioldm2"}


def config_file() -> Path:
    """Where the tool reads its config (XDG_CONFIG_HOME is the test's own, see conftest)."""
    return Path(os.environ["XDG_CONFIG_HOME"]) / "fluxmusic" / "config.toml"


def write_config(text: str) -> Path:
    path = config_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def bundle_config(bundle) -> str:
    return "".join(f'{key} = "{getattr(bundle, attr)}"\n' for key, attr in KEYS.items())


@pytest.fixture
def gen(run_cli, monkeypatch, tmp_path):
    """`fluxmusic generate x ARGS... --json` with no weight flags: the record."""
    monkeypatch.chdir(tmp_path)

    def run(*args: str) -> dict:
        code, out, err = run_cli(["generate", "x", *FAST, "--json", "--force", *args])
        assert code == 0, err
        return json.loads(out)["outputs"][0]["record"]

    return run


def test_flag_beats_environment_beats_config_file_beats_built_in(
    gen, tiny_bundle, tmp_path, monkeypatch
):
    write_config(bundle_config(tiny_bundle))
    record = gen("-o", "a.wav")  # every source from the config file
    assert record["t5"] == f"local:{tiny_bundle.t5}"
    assert record["clap"] == f"local:{tiny_bundle.clap}"
    assert record["model"]["source"] == f"local:{tiny_bundle.model}"

    other_clap = shutil.copytree(tiny_bundle.clap, tmp_path / "clap-copy")
    monkeypatch.setenv("FLUXMUSIC_CLAP", str(other_clap))
    record = gen("-o", "b.wav")
    assert record["clap"] == f"local:{other_clap}"  # the environment beats the file
    assert record["t5"] == f"local:{tiny_bundle.t5}"

    record = gen("-o", "c.wav", "--clap", str(tiny_bundle.clap))
    assert record["clap"] == f"local:{tiny_bundle.clap}"  # the flag beats both


def test_relative_paths_in_the_config_file_are_read_from_its_folder(gen, tiny_bundle):
    folder = config_file().parent
    folder.mkdir(parents=True, exist_ok=True)
    for attr in KEYS.values():
        target = getattr(tiny_bundle, attr)
        (folder / target.name).symlink_to(target)
    text = "".join(f'{key} = "./{getattr(tiny_bundle, a).name}"\n' for key, a in KEYS.items())
    write_config(text)
    record = gen("-o", "a.wav")
    assert record["t5"] == f"local:{(folder / 't5').resolve()}"


def test_a_replayed_record_keeps_its_own_sources_over_the_defaults(
    gen, tiny_bundle, tmp_path, monkeypatch
):
    gen("-o", "a.wav", *tiny_bundle.cli_args())
    copy = shutil.copytree(tiny_bundle.t5, tmp_path / "t5-copy")
    monkeypatch.setenv("FLUXMUSIC_T5", str(copy))
    assert gen("--from-record", "a.json", "-o", "b.wav")["t5"] == f"local:{tiny_bundle.t5}"


def test_help_shows_each_default_and_where_it_came_from(run_cli, monkeypatch):
    path = write_config('vae_vocoder = "org/my-vae"\n')
    monkeypatch.setenv("FLUXMUSIC_T5", "org/my-t5")
    monkeypatch.setenv("COLUMNS", "250")
    code, out, _ = run_cli(["generate", "--help"])
    assert code == 0
    assert "[default: org/my-t5, from FLUXMUSIC_T5]" in out
    assert f"[default: org/my-vae, from config file {path}]" in out
    assert "[default: small]" in out and "[default: laion/larger_clap_music]" in out


def test_doctor_shows_each_source_and_where_it_came_from(run_cli, monkeypatch, tmp_path):
    path = write_config('t5 = "org/my-t5"\n')
    monkeypatch.setenv("FLUXMUSIC_MODEL", str(tmp_path / "missing.pt"))
    code, out, err = run_cli(["doctor", "--json"])
    assert code == 0, err
    doc = json.loads(out)
    assert doc["config_file"] == {"path": str(path), "exists": True}
    sources = doc["sources"]
    assert sources["t5"] == {"value": "org/my-t5", "from": f"config file {path}", "problem": None}
    assert sources["clap"]["from"] == "built-in"
    assert sources["model"]["from"] == "FLUXMUSIC_MODEL"
    assert "No such file" in sources["model"]["problem"]

    code, _, err = run_cli(["doctor"])
    assert code == 0
    assert f"--t5 default: org/my-t5 (config file {path})" in err
    assert "--clap default: laion/larger_clap_music (built-in)" in err


def test_download_fetches_the_default_sources_too(run_cli, tiny_bundle, monkeypatch):
    monkeypatch.setenv("FLUXMUSIC_T5", str(tiny_bundle.t5))
    code, out, err = run_cli(["download", "t5", "--no-embeddings", "--json"])
    assert code == 0, err
    assert json.loads(out)["paths"] == {"t5": str(tiny_bundle.t5)}


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('model = "small"\nt5 = \n', "is not valid TOML"),
        ('modle = "small"\n', "has an unknown key 'modle'; its keys are model, t5, clap"),
        ("t5 = 5\n", "sets t5 to int 5; it must be a name, a hub repo id or a path"),
        ('clap = ""\n', "sets clap to ''"),
        (b"model = '\xff'\n", "is not UTF-8 text"),
        (None, "Cannot read the config file"),  # a folder where the file should be
    ],
)
def test_a_broken_config_file_is_one_sentence_naming_it(run_cli, tmp_path, text, says):
    path = config_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    if text is None:
        path.mkdir()
    elif isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    code, out, err = run_cli(["generate", "x", "-o", str(tmp_path / "a.wav")])
    assert code == 2
    assert err.startswith("error: ") and str(path) in err and says in err
    assert "Traceback" not in err and not (tmp_path / "a.wav").exists()


def test_the_hint_after_train_names_every_source_that_is_not_built_in(
    run_cli, tiny_bundle, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    music = tmp_path / "music"
    music.mkdir()
    t = np.arange(32000) / 16000
    for name, hz in (("low", 110), ("high", 880)):
        sf.write(music / f"{name}.wav", 0.3 * np.sin(2 * np.pi * hz * t), 16000)
        (music / f"{name}.txt").write_text(f"a {name} tone")
    monkeypatch.setenv("FLUXMUSIC_VAE_VOCODER", str(tiny_bundle.audioldm2))  # from the env
    flags = tiny_bundle.cli_args()[:6]  # --model, --t5 and --clap as flags
    steps = ["--steps", "2", "--save-every", "2", "--lora-rank", "2"]
    code, _, err = run_cli(["train", str(music), "-o", "run", *flags, *steps, *FAST[4:]])
    assert code == 0, err
    hint = next(line for line in err.splitlines() if line.startswith("use it:"))
    assert hint == (
        f'use it: fluxmusic generate "..." --model {tiny_bundle.model} --t5 {tiny_bundle.t5} '
        f"--clap {tiny_bundle.clap} --vae-vocoder {tiny_bundle.audioldm2} "
        f"--lora {Path('run') / 'lora.safetensors'}"
    )
    code, _, err = run_cli(["generate", "x", *hint.split()[5:], *FAST, "-o", "g.wav"])
    assert code == 0, err  # the hint works as printed (the environment still set)
