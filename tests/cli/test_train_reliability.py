"""`fluxmusic train` held to the promises of the other commands: a run that diverges, a step
that cannot fit, a full disk during a checkpoint, a read-only folder, the umask."""

from __future__ import annotations

import errno
import json
import os
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_train_cli import CPU, write_music  # the train tests' shared data


@pytest.fixture
def music(tmp_path) -> Path:
    return write_music(tmp_path / "music", seconds=1.0)


@pytest.fixture
def train(run_cli, tiny_bundle, music, tmp_path):
    """`fluxmusic train MUSIC -o RUN ...` on the tiny bundle (RUN under tmp_path by default)."""

    def _train(*args: str, run: Path | None = None):
        out = run if run is not None else tmp_path / "run"
        return run_cli(["train", str(music), "-o", str(out), *tiny_bundle.cli_args(), *CPU, *args])

    return _train


def _all_finite(path: Path) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in load_file(str(path)).values())


# -- 4. a run that diverges ----------------------------------------------------------------------


def test_a_diverging_run_stops_with_exit_5_and_saves_nothing_non_finite(train, tmp_path):
    # The largest rate and alpha the parser takes blow the tiny model up within a few steps.
    code, _, err = train(
        "--steps", "40", "--lr", "1", "--lora-alpha", "1e6", "--lora-rank", "1",
        "--save-every", "1", "-q",
    )  # fmt: skip
    said = " ".join(err.split())
    assert code == 5, err
    assert "Training diverged at step" in said and "wrote no adapter" in said
    assert "--lr" in said and "Traceback" not in err
    run = tmp_path / "run"
    assert not (run / "lora.safetensors").exists() and not (run / "lora.json").exists()
    checkpoints = sorted((run / "checkpoints").glob("step-*"))
    assert checkpoints, "the steps before the divergence were checkpointed"
    assert all(_all_finite(c / "trainable.safetensors") for c in checkpoints)
    assert f"{checkpoints[-1]}, is intact" in said
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "diverged"
    assert all(isinstance(v, float) and v == v for v in record.get("losses", [0.0]))


# -- 5. a step that cannot fit, a rank above the width ------------------------------------------


def test_a_batch_that_cannot_fit_the_memory_is_refused_before_anything_is_written(train, tmp_path):
    code, _, err = train("--batch-size", "100000", "--steps", "1")
    said = " ".join(err.split())
    assert code == 4, err
    assert "A training step of this setup needs about" in said and "available" in said
    assert "It fits with --batch-size" in said and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_a_lora_rank_above_the_model_width_is_refused_naming_both(train, tmp_path):
    code, _, err = train("--lora-rank", "65", "--steps", "1")
    said = " ".join(err.split())
    assert code == 2, err
    assert "--lora-rank 65 is above this model's width (64)" in said
    assert not (tmp_path / "run").exists()


# -- 6. a full disk during a checkpoint ---------------------------------------------------------


def test_a_full_disk_during_a_checkpoint_exits_2_and_resume_finds_the_previous_one(
    train, tmp_path, monkeypatch
):
    """The disk fills while the step-4 checkpoint is written: `os.write`, through which every
    file of a checkpoint goes, fails with ENOSPC there (and only there)."""
    real_write = os.write

    def full_disk(fd: int, data) -> int:
        with_name = os.readlink(f"/proc/self/fd/{fd}") if os.path.exists("/proc/self/fd") else ""
        if "step-000004" in with_name:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    args = ["--steps", "6", "--save-every", "2", "--lora-rank", "2", "-q"]
    monkeypatch.setattr(os, "write", full_disk)
    code, _, err = train(*args)
    monkeypatch.setattr(os, "write", real_write)
    said = " ".join(err.split())
    assert code == 2, err
    assert "no space left on device" in said and "MB free on" in said
    checkpoints = tmp_path / "run" / "checkpoints"
    assert "step-000002, is intact" in said and "--resume" in said
    assert sorted(p.name for p in checkpoints.iterdir()) == ["step-000002"]  # nothing half-done
    assert not (tmp_path / "run" / "lora.safetensors").exists()

    code, _, err = train(*args, "--resume")
    assert code == 0, err
    record = json.loads((tmp_path / "run" / "lora.json").read_text())
    assert record["resumed_from"] == str(checkpoints / "step-000002") and record["step"] == 6


# -- 7. a read-only output folder ---------------------------------------------------------------


@pytest.fixture
def read_only_folder(tmp_path):
    """An empty folder this process cannot write in: a read-only bind mount for root (whom
    permissions do not stop), permissions otherwise."""
    folder = tmp_path / "ro"
    folder.mkdir()
    mounted = False
    if os.geteuid() == 0:
        for args in (["--bind", str(folder), str(folder)], ["-o", "remount,ro,bind", str(folder)]):
            done = subprocess.run(["mount", *args], capture_output=True, text=True)
            if done.returncode != 0:
                subprocess.run(["umount", str(folder)], check=False)
                pytest.skip(f"cannot make a read-only mount here: {done.stderr.strip()}")
            mounted = True
    else:
        folder.chmod(0o500)
    yield folder
    if mounted:
        subprocess.run(["umount", "-l", str(folder)], check=False)
    else:
        folder.chmod(0o700)


@pytest.mark.parametrize("where", ["a new folder inside it", "the folder itself"])
def test_train_into_a_read_only_folder_is_refused_in_a_sentence_before_any_model_loads(
    train, read_only_folder, where
):
    run = read_only_folder / "run" if where == "a new folder inside it" else read_only_folder
    missing = read_only_folder.parent / "no-decoder"  # loading it would fail (another message)
    code, _, err = train("--steps", "1", "--vae-vocoder", str(missing), run=run)
    said = " ".join(err.split())
    assert code == 2, err
    assert str(run) in said and ("read-only" in said or "not writable" in said)
    assert "Traceback" not in err and "unexpected" not in err


# -- 10. the umask ------------------------------------------------------------------------------


def test_adapters_checkpoints_and_records_follow_the_umask(train, tmp_path):
    previous = os.umask(0o027)
    try:
        code, _, err = train("--steps", "2", "--save-every", "1", "--lora-rank", "2", "-q")
    finally:
        os.umask(previous)
    assert code == 0, err
    run = tmp_path / "run"
    written = [p for p in run.rglob("*") if p.is_file()]
    assert {p.name for p in written} >= {
        "lora.safetensors", "lora.json", "trainable.safetensors", "optimizer.pt", "state.json",
        "latents.safetensors", "run.json", "loss.png",
    }  # fmt: skip
    modes = {str(p.relative_to(run)): oct(p.stat().st_mode & 0o777) for p in written}
    assert set(modes.values()) == {oct(0o640)}, modes
