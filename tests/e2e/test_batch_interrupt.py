"""Stopping the installed `fluxmusic batch` mid-run (Ctrl-C, then kill -9) and running it again."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
import soundfile as sf
from installed import FLUXMUSIC, needs_script, script_env

pytestmark = [pytest.mark.e2e, needs_script]

ITEMS = 8
DURATION = 0.64
# The signal goes out within a few milliseconds of the first manifest line, long before the
# other seven items (each a whole generate, decode and write) can finish.
SLOW = ["--steps", "4", "--duration", str(DURATION), "--device", "cpu", "--dtype", "fp32",
        "--batch-size", "1", "--json"]  # fmt: skip


def _command(tiny_bundle) -> list[str]:
    return [str(FLUXMUSIC), "batch", "cues.txt", "-o", "out", *tiny_bundle.cli_args(), *SLOW]


def _interrupt(tiny_bundle, folder: Path, sig: int) -> int:
    """Start a batch, send `sig` once its first clip is in the manifest; the exit status."""
    (folder / "cues.txt").write_text("".join(f"cue {i}, solo cello\n" for i in range(ITEMS)))
    env = script_env()
    manifest = folder / "out" / "manifest.jsonl"
    deadline = time.monotonic() + 240
    # stderr goes to a file, not a pipe nobody drains.
    with open(folder / "stderr.txt", "wb") as log:
        proc = subprocess.Popen(
            _command(tiny_bundle), cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=log
        )
        try:
            while not (manifest.exists() and manifest.read_bytes().count(b"\n") >= 1):
                if proc.poll() is not None:
                    text = (folder / "stderr.txt").read_text()
                    pytest.fail(f"batch ended before its first clip: {text}")
                if time.monotonic() > deadline:
                    pytest.fail("no clip was finished within 240 s")
                time.sleep(0.005)
            proc.send_signal(sig)
            proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return proc.returncode


def _rerun(tiny_bundle, folder: Path, monkeypatch, run_cli) -> None:
    """Run the same command again, in-process (the interrupted runs were the real script)."""
    monkeypatch.chdir(folder)
    code, out, err = run_cli(_command(tiny_bundle)[1:])
    assert code == 0, err
    summary = json.loads(out.splitlines()[-1])
    assert summary["event"] == "summary" and summary["failed"] == 0
    assert summary["done"] + summary["skipped"] == ITEMS and summary["skipped"] >= 1


def _whole_lines(manifest: Path) -> list[dict]:
    text = manifest.read_text()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def _check_complete_set(out: Path) -> None:
    entries = _whole_lines(out / "manifest.jsonl")
    names = [e["name"] for e in entries]
    assert len(names) == ITEMS and len(set(names)) == ITEMS  # every item once, none twice
    assert sorted(p.name for p in out.glob("*.wav")) == sorted(f"{n}.wav" for n in names)
    for entry in entries:
        data, rate = sf.read(out / entry["path"])  # decodes to the end
        assert rate == 16000 and len(data) == round(DURATION * 16000)
        assert (out / entry["path"]).stat().st_size == entry["bytes"]
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []


def test_ctrl_c_leaves_whole_files_and_a_rerun_completes_the_set(
    tiny_bundle, tmp_path, monkeypatch, run_cli
):
    code = _interrupt(tiny_bundle, tmp_path, signal.SIGINT)
    assert code == 130
    out = tmp_path / "out"
    entries = _whole_lines(out / "manifest.jsonl")
    assert 1 <= len(entries) < ITEMS  # stopped part-way
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []  # no temp files
    for entry in entries:
        data, _ = sf.read(out / entry["path"])
        assert len(data) == round(DURATION * 16000)
    # Every clip under its final name is whole and has its record.
    for wav in out.glob("*.wav"):
        assert len(sf.read(wav)[0]) == round(DURATION * 16000)
        assert wav.with_suffix(".json").is_file()

    _rerun(tiny_bundle, tmp_path, monkeypatch, run_cli)
    _check_complete_set(out)


def test_kill_9_and_a_rerun_completes_the_set_without_duplicates(
    tiny_bundle, tmp_path, monkeypatch, run_cli
):
    code = _interrupt(tiny_bundle, tmp_path, signal.SIGKILL)
    assert code == -signal.SIGKILL
    out = tmp_path / "out"
    finished_before = {json.loads(line)["name"] for line in _complete_lines(out)}
    assert 1 <= len(finished_before) < ITEMS

    _rerun(tiny_bundle, tmp_path, monkeypatch, run_cli)
    _check_complete_set(out)
    # What was finished before the kill was kept, not made again.
    assert finished_before <= {e["name"] for e in _whole_lines(out / "manifest.jsonl")}


def _complete_lines(out: Path) -> list[str]:
    # A kill can land mid-append; only newline-terminated lines count as written.
    text = (out / "manifest.jsonl").read_text()
    return text.splitlines()[: text.count("\n")]
