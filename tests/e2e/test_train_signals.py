"""The installed `fluxmusic train` while it runs: SIGTERM (what `timeout` and Slurm send at a time
limit) saves a checkpoint that `--resume` continues, and a second run into its folder is refused."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from installed import FLUXMUSIC, needs_script, script_env

pytestmark = [pytest.mark.e2e, needs_script]

CPU = ["--device", "cpu", "--dtype", "fp32", "--threads", "1"]
LONG = ["--steps", "1000000", "--save-every", "0", "--lora-rank", "2", "--json"]


def write_music(folder: Path) -> None:
    """Two captioned one-second tones."""
    folder.mkdir(parents=True)
    t = np.arange(16000) / 16000
    for name, hz in (("low", 110), ("high", 880)):
        sf.write(folder / f"{name}.wav", 0.4 * np.sin(2 * np.pi * hz * t), 16000)
        (folder / f"{name}.txt").write_text(f"a {name} tone")


def _args(tiny_bundle, folder: Path, *extra: str) -> list[str]:
    return ["train", str(folder / "music"), "-o", str(folder / "run"),
            *tiny_bundle.cli_args(), *CPU, *extra]  # fmt: skip


class _Running:
    """A long `fluxmusic train --json` in a subprocess, its stdout and stderr in files; it is
    stopped (SIGKILL) when the block ends, whatever happened."""

    def __init__(self, tiny_bundle, folder: Path, *extra: str) -> None:
        write_music(folder / "music")
        self.out, self.err = folder / "stdout.jsonl", folder / "stderr.txt"
        self.command = [str(FLUXMUSIC), *_args(tiny_bundle, folder, *LONG, *extra)]
        self.folder = folder

    def __enter__(self) -> _Running:
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.proc = subprocess.Popen(
                self.command, cwd=self.folder, env=script_env({"OMP_NUM_THREADS": "1"}),
                stdout=out, stderr=err,
            )  # fmt: skip
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def wait_for_step(self, kind: str = "step", within_s: float = 240) -> int:
        """The step of the first `kind` event it reports (after a "step", it is inside the
        training loop)."""
        deadline = time.monotonic() + within_s
        while True:
            for line in self.out.read_text().splitlines():
                event = json.loads(line) if line.endswith("}") else {}
                if event.get("event") == kind:
                    return int(event["step"])
            if self.proc.poll() is not None:
                pytest.fail(f"train ended before its first {kind}: {self.err.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"no {kind} was reported within {within_s:.0f} s")
            time.sleep(0.05)

    def stop(self, sig: int, within_s: float = 120) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=within_s)


def test_sigterm_saves_a_checkpoint_exits_143_and_resume_continues_from_it(
    tiny_bundle, tmp_path, run_cli
):
    with _Running(tiny_bundle, tmp_path) as running:
        running.wait_for_step()
        code = running.stop(signal.SIGTERM)
    said = " ".join(running.err.read_text().split())
    assert code == 143, said
    assert "Stopped by SIGTERM at step" in said and "--resume" in said
    (checkpoint,) = (tmp_path / "run" / "checkpoints").iterdir()
    saved = json.loads((checkpoint / "state.json").read_text())["step"]
    assert checkpoint.name == f"step-{saved:06d}" and f"at step {saved};" in said
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "interrupted"

    resumed = _args(tiny_bundle, tmp_path, *LONG[2:], "--steps", str(saved + 2), "--resume")
    code, out, err = run_cli(resumed)
    assert code == 0, err
    steps = [e["step"] for e in map(json.loads, out.splitlines()) if e["event"] == "step"]
    assert steps == [saved + 1, saved + 2]  # on from the checkpoint, nothing done twice
    record = json.loads((tmp_path / "run" / "lora.json").read_text())
    assert record["resumed_from"] == str(checkpoint) and record["step"] == saved + 2


def test_a_second_train_into_a_folder_being_written_is_refused_even_with_force(
    tiny_bundle, tmp_path, run_cli
):
    with _Running(tiny_bundle, tmp_path) as running:
        running.wait_for_step()
        for extra in ([], ["--force"], ["--resume"]):
            code, _, err = run_cli(_args(tiny_bundle, tmp_path, "--steps", "2", *extra))
            said = " ".join(err.split())
            assert code == 2, said
            assert f"Another fluxmusic train is writing into {tmp_path / 'run'}" in said
            assert running.proc.poll() is None  # the first run goes on, untouched
        assert running.stop(signal.SIGTERM) == 143
    assert (tmp_path / "run" / "checkpoints").is_dir()  # --force cleared nothing
    assert not list((tmp_path / "run").glob(".fluxmusic-train.lock"))  # the last one out


def test_after_kill_9_resume_continues_from_the_last_whole_checkpoint_and_leaves_no_litter(
    tiny_bundle, tmp_path, run_cli
):
    # A checkpoint after every step: the kill is likely to land while one is being written.
    with _Running(tiny_bundle, tmp_path, "--save-every", "1") as running:
        running.wait_for_step("checkpoint")
        assert running.stop(signal.SIGKILL) == -signal.SIGKILL
    run = tmp_path / "run"
    whole = sorted(p for p in (run / "checkpoints").glob("step-*"))
    assert whole and all((p / "state.json").is_file() for p in whole)
    last = json.loads((whole[-1] / "state.json").read_text())["step"]

    resumed = _args(tiny_bundle, tmp_path, *LONG[2:], "--steps", str(last + 2), "--resume")
    code, out, err = run_cli(resumed)
    assert code == 0, err
    steps = [e["step"] for e in map(json.loads, out.splitlines()) if e["event"] == "step"]
    assert steps == [last + 1, last + 2]
    assert json.loads((run / "lora.json").read_text())["resumed_from"] == str(whole[-1])
    assert list(run.rglob(".*")) == []  # no temporary file or folder, no lock file
