"""One temporary-name scheme for files and folders; cleaning of what killed writers left."""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import pytest

from fluxmusic_cli import atomic
from fluxmusic_cli.errors import OutputError


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


def _full_disk_at(monkeypatch, marker: str) -> None:
    """`os.write` fails with ENOSPC for files whose path holds `marker`, as a full disk does."""
    real_write = os.write

    def write(fd: int, data) -> int:
        if marker in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)


def test_a_full_disk_under_a_library_that_hides_it_is_still_the_sentence(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    _full_disk_at(monkeypatch, "optimizer.pt")
    with (
        pytest.raises(OutputError, match="no space left on device .*MB free on"),
        atomic.writing_stream(tmp_path / "optimizer.pt") as stream,
    ):
        torch.save({"w": torch.zeros(1000)}, stream)  # torch says "unexpected pos"
    assert list(tmp_path.iterdir()) == []


def test_a_folder_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    final = tmp_path / "step-000004"
    _full_disk_at(monkeypatch, "b.bin")
    with (
        pytest.raises(OutputError, match="no space left on device"),
        atomic.writing_folder(final) as tmp,
    ):
        atomic.write_bytes(tmp / "a.bin", b"first")
        atomic.write_bytes(tmp / "b.bin", b"second")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    with atomic.writing_folder(final) as tmp:
        atomic.write_bytes(tmp / "a.bin", b"first")
    assert [p.name for p in tmp_path.iterdir()] == ["step-000004"]
    assert (final / "a.bin").read_bytes() == b"first"


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_written_files_follow_the_umask_whatever_their_writer_chose(tmp_path, umask):
    def private_writer(tmp):  # safetensors' own writer makes 0600 files
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT, 0o600)
        os.close(fd)

    previous = os.umask(umask)
    try:
        with atomic.writing(tmp_path / "a.safetensors") as tmp:
            private_writer(tmp)
        atomic.write_text(tmp_path / "b.json", "{}")
    finally:
        os.umask(previous)
    for name in ("a.safetensors", "b.json"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask
