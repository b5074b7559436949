"""The installed console script, run as a user runs it, on a tiny bundle."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest
import soundfile as sf
from installed import FLUXMUSIC, fluxmusic, needs_script, script_env

pytestmark = [pytest.mark.e2e, needs_script]

FAST = ["--steps", "2", "--duration", "0.48", "--device", "cpu", "--dtype", "fp32"]


@pytest.mark.parametrize("ext", ["wav", "flac", "mp3", "ogg"])
def test_generate_writes_a_decodable_file(tiny_bundle, tmp_path, ext):
    proc = fluxmusic(
        "generate", "a tiny test tune", "-o", f"t.{ext}", "--seed", "1", "--sample-rate", "22050",
        *tiny_bundle.cli_args(), *FAST, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode()
    data, rate = sf.read(tmp_path / f"t.{ext}")
    assert rate == 22050
    assert abs(len(data) - round(0.48 * 22050)) <= (0 if ext == "wav" else 2048)


def test_replay_reproduces_samples_and_files_are_never_overwritten(tiny_bundle, tmp_path):
    first = fluxmusic(
        "generate", "replay me", "-o", "a.flac", "--seed", "4", "--guidance", "3.5",
        *tiny_bundle.cli_args(), *FAST, cwd=tmp_path,
    )  # fmt: skip
    assert first.returncode == 0, first.stderr.decode()
    again = fluxmusic("generate", "--from-record", "a.json", "-o", "a.flac", cwd=tmp_path)
    assert again.returncode == 2 and b"already exists" in again.stderr
    replay = fluxmusic("generate", "--from-record", "a.json", "-o", "b.flac", cwd=tmp_path)
    assert replay.returncode == 0, replay.stderr.decode()
    a, _ = sf.read(tmp_path / "a.flac")
    b, _ = sf.read(tmp_path / "b.flac")
    assert (a == b).all()


def test_ctrl_c_leaves_no_partial_file(tiny_bundle, tmp_path):
    """SIGINT once the denoising bar is drawn: exit 130, one sentence, nothing on disk."""
    import signal
    import time

    # Rich draws its bars only for a terminal; these make it treat the log file as one.
    env = script_env({"TTY_COMPATIBLE": "1", "FORCE_COLOR": "1"})
    log_path = tmp_path.parent / f"{tmp_path.name}-stderr.txt"  # outside the checked folder
    deadline = time.monotonic() + 240
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(FLUXMUSIC), "generate", "long one", "-o", "long.wav", "--seed", "1",
             *tiny_bundle.cli_args(), "--steps", "1000", "--duration", "60", "--device", "cpu",
             "--dtype", "fp32"],
            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=log,
        )  # fmt: skip
        try:
            while b"denoising" not in log_path.read_bytes():
                if proc.poll() is not None:
                    pytest.fail(f"generate ended before denoising: {log_path.read_text()}")
                if time.monotonic() > deadline:
                    pytest.fail("no denoising progress within 240 s")
                time.sleep(0.01)
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    err = log_path.read_bytes()
    assert proc.returncode == 130, err.decode()
    assert b"interrupted" in err and b"Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_stdout_output_is_a_valid_wav_and_json_goes_nowhere_else(tiny_bundle, tmp_path):
    proc = fluxmusic(
        "generate", "-", "-o", "-", "--seed", "2", *tiny_bundle.cli_args(), *FAST,
        cwd=tmp_path, stdin=b"piped prompt\n",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode()
    data, rate = sf.read(io.BytesIO(proc.stdout))
    assert rate == 16000 and len(data) == round(0.48 * 16000)
    assert list(tmp_path.iterdir()) == []


def test_json_document_describes_the_outputs(tiny_bundle, tmp_path):
    proc = fluxmusic(
        "generate", "organ", "-o", "o.flac", "--seed", "3", "--json", "--quiet",
        *tiny_bundle.cli_args(), *FAST, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode()
    doc = json.loads(proc.stdout)
    assert doc["outputs"][0]["path"] == "o.flac"
    assert doc["outputs"][0]["record"]["seed"] == 3


def test_help_is_instant_and_imports_no_torch():
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from fluxmusic_cli.cli.app import app\n"
        "r = CliRunner().invoke(app, ['--help'])\n"
        "assert r.exit_code == 0, r.output\n"
        "r = CliRunner().invoke(app, ['generate', '--help'])\n"
        "assert r.exit_code == 0 and 'Examples' in r.output, r.output\n"
        "heavy = [m for m in ('torch', 'transformers', 'diffusers') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    proc = subprocess.run([str(FLUXMUSIC), "--help"], capture_output=True, timeout=60)
    assert proc.returncode == 0 and b"generate" in proc.stdout
