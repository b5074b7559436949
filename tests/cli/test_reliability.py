"""Faults a user meets: existing files, full disks, a second run on one folder, torn manifests.

The fault tests use real mechanisms: a small tmpfs for a full disk, a real second process for
a concurrent run. They skip, with the reason, where the machine does not allow them.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import soundfile as sf

FAST = ["--steps", "2", "--duration", "0.48", "--device", "cpu", "--dtype", "fp32"]
PAGE = 4096


@pytest.fixture
def small_disk(tmp_path):
    """`small_disk(free_bytes)`: a fresh tmpfs with about that much room left (root only)."""
    mounts: list[Path] = []

    def _make(free: int) -> Path:
        point = tmp_path / f"disk{len(mounts)}"
        point.mkdir()
        pages = math.ceil(free / PAGE) + 4
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={pages * PAGE}", "tmpfs", str(point)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.strip() or 'not root'}")
        mounts.append(point)
        (point / "filler").write_bytes(b"\0" * (4 * PAGE))
        assert os.statvfs(point).f_bavail * PAGE == math.ceil(free / PAGE) * PAGE
        return point

    yield _make
    for point in mounts:
        subprocess.run(["umount", "-l", str(point)], check=False)


def _pages(nbytes: int) -> int:
    return math.ceil(nbytes / PAGE) * PAGE


# -- 1. nothing is overwritten without --force -----------------------------------------------


def test_generate_refuses_to_replace_an_existing_record_beside_the_audio(gen, tmp_path):
    (tmp_path / "song.json").write_text('{"mine": true}')
    code, _, err = gen("cello", "-o", "song.wav", "--seed", "1")
    assert code == 2 and "song.json already exists" in err and "--force" in err
    assert (tmp_path / "song.json").read_text() == '{"mine": true}'
    assert not (tmp_path / "song.wav").exists()


def test_batch_in_another_format_does_not_replace_the_first_formats_record(batch, tmp_path):
    (tmp_path / "cues.txt").write_text("low drone\n")
    assert batch("cues.txt", "-o", "out", "--format", "mp3")[0] == 0
    (side,) = (tmp_path / "out").glob("*.json")
    before = side.read_bytes()
    code, _, err = batch("cues.txt", "-o", "out", "--format", "wav", "--steps", "3")
    assert code == 6 and "--force" in err
    assert side.read_bytes() == before
    assert not list((tmp_path / "out").glob("*.wav"))


# -- 4. a full disk leaves both files or neither, and says so --------------------------------


def test_a_full_disk_leaves_neither_clip_nor_record_and_names_the_free_space(
    gen, tmp_path, small_disk
):
    assert gen("cello", "-o", "probe.wav", "--seed", "1")[0] == 0
    audio_bytes = _pages((tmp_path / "probe.wav").stat().st_size)
    # Room for the audio, not for the record as well.
    disk = small_disk(audio_bytes)
    code, _, err = gen("cello", "-o", str(disk / "song.wav"), "--seed", "1")
    assert code == 2, err
    assert "no space left on device" in err and "MB free on" in err
    assert "unexpected" not in err and "System error" not in err
    assert sorted(p.name for p in disk.iterdir()) == ["filler"]
    (disk / "filler").unlink()
    code, _, err = gen("cello", "-o", str(disk / "song.wav"), "--seed", "1")
    assert code == 0, err
    assert (disk / "song.json").is_file() and sf.info(str(disk / "song.wav")).frames > 0


def test_batch_on_a_full_disk_says_so_and_the_rerun_finishes(batch, tmp_path, small_disk):
    (tmp_path / "cues.txt").write_text("low drone\n")
    assert batch("cues.txt", "-o", "probe")[0] == 0
    probe = tmp_path / "probe"
    (clip,) = probe.glob("*.wav")
    room = _pages(clip.stat().st_size) + _pages(clip.with_suffix(".json").stat().st_size)
    disk = small_disk(room)  # the clip and its record fit; the manifest line does not
    code, _, err = batch("cues.txt", "-o", str(disk / "out"))
    assert code == 2, err
    assert "no space left on device" in err and "manifest.jsonl" in err
    (disk / "filler").unlink()
    code, _, err = batch("cues.txt", "-o", str(disk / "out"))
    assert code == 0, err
    lines = (disk / "out" / "manifest.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["name"] == clip.stem


# -- 5. two runs on one folder -----------------------------------------------------------------


def _holder(path: Path) -> subprocess.Popen:
    """A real second process that owns a temporary file for `path`, as a run in flight does."""
    code = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from fluxmusic_cli import atomic\n"
        "tmp = atomic.temp_path(Path(sys.argv[1]))\n"
        "tmp.write_bytes(b'half a clip')\n"
        "print(tmp, flush=True)\n"
        "time.sleep(120)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen(
        [sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True, env=env
    )


def test_a_second_run_keeps_the_temporary_files_of_a_living_run(batch, tmp_path):
    (tmp_path / "cues.txt").write_text("low drone\nhigh bells\n")
    out = tmp_path / "out"
    out.mkdir()
    holder = _holder(out / "high-bells-0002.wav")
    try:
        temp = Path(holder.stdout.readline().strip())
        code, _, err = batch("cues.txt", "-o", "out", "--shard", "0/2")
        assert code == 0, err
        assert temp.read_bytes() == b"half a clip"  # the other shard's file in flight
    finally:
        holder.kill()
        holder.wait()
    code, _, err = batch("cues.txt", "-o", "out", "--shard", "1/2")
    assert code == 0, err
    assert not temp.exists()  # its writer is gone: a leftover, cleaned


def test_a_second_unsharded_batch_on_one_folder_is_refused_naming_shard(tiny_bundle, tmp_path):
    fluxmusic = Path(sys.executable).with_name("fluxmusic")
    if not fluxmusic.exists():
        pytest.skip(f"console script not installed at {fluxmusic}")
    (tmp_path / "cues.txt").write_text("".join(f"cue {i}, solo cello\n" for i in range(6)))
    command = [str(fluxmusic), "batch", "cues.txt", "-o", "out", *tiny_bundle.cli_args(),
               FAST[0], "4", "--duration", "0.64", *FAST[4:]]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    with open(tmp_path / "first.txt", "wb") as log:
        first = subprocess.Popen(command, cwd=tmp_path, env=env, stderr=log)
        try:
            deadline = time.monotonic() + 240
            while not (tmp_path / "out" / ".fluxmusic-batch.lock").exists():
                assert first.poll() is None, (tmp_path / "first.txt").read_text()
                assert time.monotonic() < deadline
                time.sleep(0.01)
            second = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
            assert second.returncode == 2, second.stderr
            assert "--shard" in second.stderr and "Another fluxmusic run" in second.stderr
            assert first.wait(timeout=300) == 0, (tmp_path / "first.txt").read_text()
        finally:
            if first.poll() is None:
                first.kill()
    assert len(list((tmp_path / "out").glob("*.wav"))) == 6


# -- 7. a torn last manifest line ------------------------------------------------------------


def test_a_torn_manifest_line_is_skipped_by_eval_and_rewritten_by_the_rerun(
    batch, run_cli, tmp_path
):
    (tmp_path / "cues.txt").write_text("low drone\nhigh bells\n")
    assert batch("cues.txt", "-o", "out")[0] == 0
    manifest = tmp_path / "out" / "manifest.jsonl"
    with open(manifest, "a") as f:
        f.write('{"name": "high-bells-0002", "pa')  # what a writer killed mid-line leaves
    from fluxmusic_cli.tinybundle.eval_models import write_tiny_cnn14

    weights = write_tiny_cnn14(tmp_path / "cnn14.pth")
    code, out, err = run_cli(
        ["eval", "out", "--metrics", "is", "--panns-weights", str(weights), "--json"]
    )
    assert code == 0, err
    assert "manifest.jsonl:3 was cut short" in err and json.loads(out)
    code, _, err = batch("cues.txt", "-o", "out")
    assert code == 0, err
    assert "cut short" in err
    lines = manifest.read_text().splitlines()
    assert len(lines) == 2 and all(json.loads(line)["name"] for line in lines)


# -- 8. sentences where "unexpected error" was -----------------------------------------------


def test_swapped_encoder_folders_are_refused_before_loading(gen, tiny_bundle):
    code, _, err = gen("cello", "--t5", str(tiny_bundle.clap), "--clap", str(tiny_bundle.t5))
    assert code == 2, err
    assert "swapped" in err and "unexpected" not in err


def test_an_encoder_of_the_wrong_width_is_refused_naming_both_widths(gen, tmp_path):
    from fluxmusic_cli.tinybundle.text import write_tiny_t5

    wide = write_tiny_t5(tmp_path / "wide-t5", d_model=48)
    code, _, err = gen("cello", "--t5", str(wide))
    assert code == 2, err
    assert "48-wide" in err and "expects 32" in err


def test_output_to_a_full_device_or_a_full_stdout_is_a_sentence(tiny_bundle, tmp_path):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    fluxmusic = Path(sys.executable).with_name("fluxmusic")
    if not fluxmusic.exists():
        pytest.skip(f"console script not installed at {fluxmusic}")
    base = [str(fluxmusic), "generate", "cello", *tiny_bundle.cli_args(), *FAST]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    named = subprocess.run([*base, "-o", "/dev/full"], cwd=tmp_path, env=env,
                           capture_output=True, text=True)  # fmt: skip
    assert named.returncode == 2 and "neither a folder nor" in named.stderr, named.stderr
    with open("/dev/full", "wb") as full:
        piped = subprocess.run([*base, "-o", "-"], cwd=tmp_path, env=env, stdout=full,
                               stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert piped.returncode == 2, piped.stderr
    assert "No space left on device" in piped.stderr and "unexpected" not in piped.stderr


def test_batch_into_a_new_folder_on_a_read_only_file_system_is_a_sentence(batch, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    for args in (["--bind", str(ro), str(ro)], ["-o", "remount,ro,bind", str(ro)]):
        done = subprocess.run(["mount", *args], capture_output=True, text=True)
        if done.returncode != 0:
            subprocess.run(["umount", str(ro)], check=False)
            pytest.skip(f"cannot make a read-only mount here: {done.stderr.strip()}")
    try:
        (tmp_path / "cues.txt").write_text("low drone\n")
        code, _, err = batch("cues.txt", "-o", str(ro / "new"))
        assert code == 2, err
        assert "read-only" in err and "unexpected" not in err
    finally:
        subprocess.run(["umount", "-l", str(ro)], check=False)


# -- 9. refusals before the work --------------------------------------------------------------


@pytest.mark.parametrize("command", ["generate", "batch"])
def test_mp3_above_48_khz_is_refused_before_any_model_loads(
    run_cli, tmp_path, monkeypatch, command
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cues.txt").write_text("low drone\n")
    missing = ["--model", str(tmp_path / "nowhere.pt")]  # loading it would fail with exit 3
    args = (["generate", "cello", "-o", "a.mp3"] if command == "generate"
            else ["batch", "cues.txt", "-o", "out", "--format", "mp3"])  # fmt: skip
    code, _, err = run_cli([*args, *missing, "--sample-rate", "96000"])
    assert code == 2, err
    assert "MP3 at 96000 Hz" in err


def test_fp16_on_a_cpu_is_warned_about_with_bf16_suggested(gen):
    code, _, err = gen("cello", "--dtype", "fp16", "--seed", "1")
    assert code == 0, err
    assert "fp16 on the CPU" in err and "bf16" in err
