"""`fluxmusic serve` on the command line: its options are checked before anything starts."""

from __future__ import annotations

import os
import subprocess

import pytest
from installed import FLUXMUSIC, needs_script


@pytest.mark.parametrize(
    "args, words",
    [
        (["--keep-alive", "5 minutes"], "--keep-alive takes a duration"),
        (["--keep-alive", "inf"], "--keep-alive must be a finite duration"),
        (["--cors-origin", "localhost:3000"], "is not an origin"),
        (["--cors-origin", "http://localhost:3000/app"], "is not an origin"),
        (["--allowed-host", "studio.local:8677"], "is not a host name"),
        (["--allowed-host", "http://studio.local"], "is not a host name"),
        (["--max-queue", "-1"], "--max-queue"),
        (["--port", "70000"], "--port"),
        (["--max-batch", "0"], "--max-batch"),
        (["--token", "two words"], "--token must be printable, without spaces"),
        (["--token", ""], "--token must be printable"),
        # Fewer forward passes are a job's own settings, not the server's.
        (["--cache", "0.1"], "No such option: --cache"),
    ],
)
def test_a_bad_serve_option_is_one_sentence_before_anything_starts(run_cli, tmp_path, args, words):
    code, out, err = run_cli(["serve", "--data-dir", str(tmp_path / "data"), *args])
    assert code == 2, err
    assert words in " ".join(err.split()) and out == ""
    assert not (tmp_path / "data").exists()


def test_serve_is_a_command_and_its_hugging_face_token_moved_to_hf_token(run_cli):
    code, out, _ = run_cli(["--help"])
    assert code == 0 and "serve" in out
    code, out, _ = run_cli(["serve", "--help"])
    assert code == 0
    for flag in ("--host", "--port", "--token", "--data-dir", "--max-queue", "--max-upload-mb",
                 "--keep-alive", "--allowed-host", "--cors-origin", "--max-batch", "--model",
                 "--hf-token", "--device", "--lora"):  # fmt: skip
        assert flag in out, flag


@pytest.mark.parametrize("text, seconds", [("30s", 30), ("5m", 300), ("1h", 3600),
                                           ("1h30m", 5400), ("90", 90), ("0", 0), ("-1", None),
                                           ("250ms", 0.25)])  # fmt: skip
def test_keep_alive_durations(text, seconds):
    from fluxmusic_cli.server.config import parse_duration

    assert parse_duration(text) == seconds


@needs_script
def test_completion_offers_serve_and_its_options():
    """The shipped scripts ask fluxmusic itself, so serve completes without regenerating them."""

    def complete(words: str, cword: str) -> list[str]:
        env = {**os.environ, "_FLUXMUSIC_COMPLETE": "complete_bash", "COMP_WORDS": words,
               "COMP_CWORD": cword}  # fmt: skip
        proc = subprocess.run([str(FLUXMUSIC)], env=env, capture_output=True, text=True,
                              timeout=60)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.split()

    assert "serve" in complete("fluxmusic se", "1")
    assert complete("fluxmusic serve --keep", "2") == ["--keep-alive"]
