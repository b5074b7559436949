"""One temporary-name scheme for files and folders; cleaning of what killed writers left."""

from __future__ import annotations

import os
import subprocess
import sys

from fluxmusic_cli import atomic


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_half_written_folder_of_a_dead_writer_is_removed_and_a_live_one_kept(tmp_path):
    final = tmp_path / "step-000010"
    live = atomic.temp_path(final)
    dead = live.with_name(live.name.replace(f".{os.getpid()}-", f".{_dead_pid()}-"))
    for folder in (live, dead):
        folder.mkdir()
        (folder / "trainable.safetensors").write_bytes(b"partial")
    assert atomic.temp_target(dead.name) == "step-000010"
    assert atomic.clean_leftovers(tmp_path) == [dead]
    assert live.is_dir() and not dead.exists()


def test_writing_leaves_the_final_file_only_and_nothing_on_error(tmp_path):
    final = tmp_path / "clip.json"
    atomic.write_text(final, "{}")
    assert [p.name for p in tmp_path.iterdir()] == ["clip.json"]
    try:
        with atomic.writing(tmp_path / "other.json") as tmp:
            tmp.write_text("half")
            raise RuntimeError("stop")
    except RuntimeError:
        pass
    assert [p.name for p in tmp_path.iterdir()] == ["clip.json"]


def test_creating_never_replaces_a_file_that_appeared_while_it_was_written(tmp_path):
    final = tmp_path / "scores.csv"
    try:
        with atomic.creating(final) as tmp:
            tmp.write_text("ours")
            final.write_text("theirs")  # a user's file, made meanwhile
    except FileExistsError:
        pass
    else:
        raise AssertionError("creating replaced a file")
    assert final.read_text() == "theirs"
    assert [p.name for p in tmp_path.iterdir()] == ["scores.csv"]
    atomic.write_new(tmp_path / "new.csv", b"ours")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.csv", "scores.csv"]
