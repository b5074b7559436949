"""The smaller rough edges a new user met: comments, folder names, odd text, help, packaging."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

FAST = ["--steps", "2", "--duration", "0.48", "--device", "cpu", "--dtype", "fp32"]
ROOT = Path(__file__).resolve().parents[2]


def test_generate_from_stdin_skips_comment_lines_as_batch_does(gen, tmp_path):
    code, _, err = gen("-", "-o", "clips/", "--seed", "3", stdin="# my cues\nlow drone\n\n")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "clips").glob("*.wav")) == ["low-drone-s3.wav"]


def test_a_trailing_slash_names_a_folder_even_with_a_dot(gen, tmp_path):
    code, _, err = gen("low drone", "-o", "v1.2/", "--seed", "3")
    assert code == 0, err
    assert (tmp_path / "v1.2" / "low-drone-s3.wav").is_file()


def test_a_folder_given_as_the_prompt_list_is_called_a_folder(batch, tmp_path):
    (tmp_path / "cues").mkdir()
    code, _, err = batch("cues", "-o", "out")
    assert code == 2 and "is a folder, not a prompt list" in err


def test_a_huge_word_and_a_nul_byte_reach_stderr_cut_short_and_escaped(batch, tmp_path):
    (tmp_path / "cues.txt").write_text("\x00" + "w" * 200_000 + "\n")
    code, _, err = batch("cues.txt", "-o", "out")
    assert code == 0, err
    assert "truncat" in err.lower() or "ignored" in err  # the long prompt was reported ...
    assert len(err) < 5_000 and "\x00" not in err  # ... in a few lines, without the NUL


def test_windows_reserved_names_are_refused_for_batch_rows(batch, tmp_path):
    (tmp_path / "cues.csv").write_text("name,prompt\nCON,low drone\naux.wav,bells\nfine,harp\n")
    code, _, err = batch("cues.csv", "-o", "out")
    assert code == 6
    assert "'CON' is reserved on Windows" in err and "'aux' is reserved on Windows" in err
    assert [p.name for p in (tmp_path / "out").glob("*.wav")] == ["fine.wav"]


def test_flags_show_no_value_type_and_usage_lines_agree(run_cli):
    for command, usage in (("generate", "[PROMPT]"), ("batch", "PROMPTS_FILE"),
                           ("eval", "GENERATED_DIR"), ("info", "FILE")):  # fmt: skip
        code, out, _ = run_cli([command, "--help"])
        assert code == 0
        assert f"fluxmusic {command} [OPTIONS] {usage}" in out
        assert "<bool>" not in out and "{" not in out.splitlines()[1]


def test_doctor_leaves_no_hash_memo_in_the_cache(run_cli):
    code, _, err = run_cli(["doctor"])
    assert code == 0, err
    cache = Path(os.environ["FLUXMUSIC_CACHE"])
    assert not (cache / "hashes").exists()


def test_audio_to_stdout_is_refused_when_stdout_is_a_terminal(tiny_bundle, tmp_path):
    fluxmusic = Path(sys.executable).with_name("fluxmusic")
    if not fluxmusic.exists():
        pytest.skip(f"console script not installed at {fluxmusic}")
    master, slave = pty.openpty()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    command = [str(fluxmusic), "generate", "cello", "-o", "-", *FAST, *tiny_bundle.cli_args()]
    proc = subprocess.Popen(command, cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
                            stdout=slave, stderr=subprocess.PIPE)  # fmt: skip
    os.close(slave)
    try:
        _, err = proc.communicate(timeout=120)
        shown = b""
        while select.select([master], [], [], 0.1)[0]:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(master)
    assert proc.returncode == 2, err
    assert b"is a terminal" in err and b"RIFF" not in shown


def test_the_package_metadata_gives_setuptools_no_licence_warning():
    from setuptools.config.pyprojecttoml import apply_configuration
    from setuptools.dist import Distribution

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        apply_configuration(Distribution(), ROOT / "pyproject.toml")
    assert not [w for w in caught if "license" in str(w.message).lower()]


def test_models_calls_the_vae_and_vocoder_vae_vocoder(run_cli):
    code, out, _ = run_cli(["models", "--json"])
    assert code == 0
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows["vae-vocoder"]["kind"] == "vae-vocoder"


def test_library_load_bars_and_advice_stay_off_stderr(tmp_path):
    import numpy as np
    import soundfile as sf

    from fluxmusic_cli.tinybundle.text import write_tiny_clap

    fluxmusic = Path(sys.executable).with_name("fluxmusic")
    if not fluxmusic.exists():
        pytest.skip(f"console script not installed at {fluxmusic}")
    (tmp_path / "gen").mkdir()
    t = np.arange(16000) / 16000
    for i in range(2):
        sf.write(tmp_path / "gen" / f"c{i}.wav", 0.3 * np.sin(2 * np.pi * 300 * (i + 1) * t), 16000)
        (tmp_path / "gen" / f"c{i}.json").write_text(json.dumps({"prompt": f"tone {i}", "seed": i}))
    clap = write_tiny_clap(tmp_path / "clap")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    for name in ("TQDM_DISABLE", "TRANSFORMERS_VERBOSITY", "DIFFUSERS_VERBOSITY"):
        env.pop(name, None)
    command = [str(fluxmusic), "eval", "gen", "--metrics", "clap", "--clap-model", str(clap)]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "Loading weights" not in done.stderr and "it/s" not in done.stderr
