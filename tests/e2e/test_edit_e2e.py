"""The editing commands through the installed console script: pipes, and ffmpeg formats in and
out (real ffmpeg; skipped with the reason where it is not installed)."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from installed import FLUXMUSIC, fluxmusic, needs_script, script_env
from sparse_audio import sparse_wav

pytestmark = [pytest.mark.e2e, needs_script]

FAST = ["--steps", "2", "--device", "cpu", "--dtype", "fp32"]
needs_ffmpeg = pytest.mark.skipif(
    shutil.which("ffmpeg") is None, reason="ffmpeg is not installed (apt install ffmpeg)"
)


def test_generate_piped_into_extend_makes_one_longer_song(tiny_bundle, tmp_path):
    gen = fluxmusic("generate", "slow piano", "-d", "2", "--seed", "3", "-o", "-",
                    *tiny_bundle.cli_args(), *FAST, cwd=tmp_path)  # fmt: skip
    assert gen.returncode == 0, gen.stderr.decode()
    ext = fluxmusic("extend", "-", "--add", "10", "--seed", "4", "-o", "song.wav",
                    *tiny_bundle.cli_args(), *FAST, cwd=tmp_path, stdin=gen.stdout)  # fmt: skip
    assert ext.returncode == 0, ext.stderr.decode()
    assert b"prompt of stdin" in ext.stderr and b"slow piano" in ext.stderr
    song, rate = sf.read(tmp_path / "song.wav", dtype="int16")
    clip, _ = sf.read(io.BytesIO(gen.stdout), dtype="int16")
    assert rate == 16000 and song.shape[0] == 32000 + 160000
    assert np.array_equal(song[: 32000 - 1700], clip[: 32000 - 1700])  # before the crossfade
    record = json.loads((tmp_path / "song.json").read_text())
    assert record["input"]["path"] == "-" and record["prompt"] == "slow piano"


@needs_ffmpeg
@pytest.mark.parametrize("command, args", [
    ("remix", ["--strength", "0.4"]),
    ("repaint", ["--region", "0.5:1"]),
    ("extend", ["--add", "1"]),
    ("loop", ["--seam", "0.64"]),
])  # fmt: skip
def test_each_edit_reads_and_writes_ffmpeg_formats(tiny_bundle, tmp_path, command, args):
    t = np.arange(32000) / 16000
    sf.write(tmp_path / "take.wav", (0.3 * np.sin(2 * np.pi * 196 * t)).astype(np.float32), 16000)
    subprocess.run(["ffmpeg", "-loglevel", "error", "-i", "take.wav", "-c:a", "libopus",
                    "take.webm"], cwd=tmp_path, check=True)  # fmt: skip
    proc = fluxmusic(command, "take.webm", "a cello", *args, "--seed", "1", "-o", "out.m4a",
                     *tiny_bundle.cli_args(), *FAST, cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode()
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_name", "-of", "csv=p=0",
         "out.m4a"], cwd=tmp_path, capture_output=True,
    )  # fmt: skip
    assert probe.stdout.strip() == b"aac"
    record = json.loads((tmp_path / "out.json").read_text())
    assert record["operation"] == command and record["input"]["sample_rate"] == 48000
    again = fluxmusic("info", "out.m4a", "--json", cwd=tmp_path)
    assert again.returncode == 0 and json.loads(again.stdout)["operation"] == command


def test_a_format_that_needs_ffmpeg_says_how_to_install_it(tiny_bundle, tmp_path):
    (tmp_path / "take.m4a").write_bytes(b"\x00\x00\x00\x20ftypM4A ")
    env = {"PATH": str(tmp_path / "no-tools-here")}
    proc = fluxmusic("remix", "take.m4a", "x", *tiny_bundle.cli_args(), *FAST, cwd=tmp_path,
                     env=env)  # fmt: skip
    assert proc.returncode == 2
    err = proc.stderr.decode()
    assert "take.m4a needs ffmpeg" in err and "apt install ffmpeg" in err and "Traceback" not in err
    proc = fluxmusic("generate", "x", "-d", "0.48", "-o", "x.m4a", *tiny_bundle.cli_args(),
                     *FAST, cwd=tmp_path, env=env)  # fmt: skip
    assert proc.returncode == 2 and b"needs ffmpeg" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["take.m4a"]


# Runs a command and prints the peak resident memory of it (its only child) when it ends.
PEAK_RSS = """
import resource, subprocess, sys
proc = subprocess.run(sys.argv[1:], capture_output=True)
sys.stderr.buffer.write(proc.stderr)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.exit(proc.returncode)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="measures memory with the resource module")
@pytest.mark.parametrize("name", ["hour.wav", pytest.param("hour.mka", marks=needs_ffmpeg)])
def test_a_recording_over_the_limit_is_refused_without_decoding_it(tiny_bundle, tmp_path, name):
    """An hour (decoded: 460 MB of float64) costs no more memory to refuse than 301 s (10 MB);
    a .mka goes through ffmpeg, whose ffprobe reads the length from the header."""
    peaks = {}
    for path, seconds in ((name, 3600), ("over.wav", 301)):
        sparse_wav(tmp_path / path, seconds)
        proc = subprocess.run(
            [sys.executable, "-c", PEAK_RSS, str(FLUXMUSIC), "loop", path, "x", "-o", "o.wav",
             *tiny_bundle.cli_args(), *FAST],
            cwd=tmp_path, capture_output=True, env=script_env(), timeout=300,
        )  # fmt: skip
        assert proc.returncode == 2, proc.stderr.decode()
        assert f"{path} is {seconds}.0 s long; the limit is 300 s." in proc.stderr.decode()
        peaks[path] = int(proc.stdout) * (1 if sys.platform == "darwin" else 1024)  # bytes
    assert peaks[name] < peaks["over.wav"] + 100 * 2**20
    assert not (tmp_path / "o.wav").exists()
