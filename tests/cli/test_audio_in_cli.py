"""Reading a user's recording through the console entry point: a file that is not audio is
called that whether ffmpeg is installed or not, ffmpeg is asked for only by formats that need
it, and a recording over the length limit is refused from its header."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import soundfile as sf
from sparse_audio import sparse_wav

ENGINE = ["--device", "cpu", "--dtype", "fp32", "--steps", "2"]
HAS_FFMPEG = shutil.which("ffmpeg") is not None


@pytest.fixture(params=["without ffmpeg", "with ffmpeg"])
def ffmpeg(request, monkeypatch, tmp_path):
    """Each test twice: with ffmpeg hidden from PATH, and with it (skipped where it is not
    installed)."""
    if request.param == "without ffmpeg":
        empty = tmp_path / "no-tools-here"
        empty.mkdir()
        monkeypatch.setenv("PATH", str(empty))
    elif not HAS_FFMPEG:
        pytest.skip("ffmpeg is not installed (apt install ffmpeg)")
    return request.param


@pytest.fixture
def remix(monkeypatch, run_cli, tiny_bundle, tmp_path):
    monkeypatch.chdir(tmp_path)

    def run(name: str):
        return run_cli(["remix", name, "x", "-o", "out.wav", *tiny_bundle.cli_args(), *ENGINE])

    return run


@pytest.mark.parametrize(
    "name, content",
    [
        ("broken.mp3", b"this is not audio"),
        ("empty.wav", b""),
        ("notes.flac", b"fLa"),  # shorter than any signature
        ("page.ogg", b"<html><body>not a song</body></html>"),
        ("photo.wav", b"\x89PNG\r\n\x1a\n" + bytes(64)),
    ],
)
def test_a_file_that_is_not_audio_is_called_that_with_or_without_ffmpeg(
    ffmpeg, remix, tmp_path, name, content
):
    (tmp_path / name).write_bytes(content)
    code, _, err = remix(name)
    said = " ".join(err.split())
    assert code == 2 and f"Cannot read {name}" in said and "no audio in it" in said, said
    assert "Install ffmpeg" not in said and "Traceback" not in said
    assert not (tmp_path / "out.wav").exists()


def test_ffmpeg_is_asked_for_only_by_audio_that_needs_it(monkeypatch, remix, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path / "no-tools-here"))
    mp4 = b"\x00\x00\x00\x20ftypM4A " + bytes(32)
    (tmp_path / "take.m4a").write_bytes(mp4)
    (tmp_path / "take.wav").write_bytes(mp4)  # an MP4 named .wav: audio libsndfile cannot read
    for name in ("take.m4a", "take.wav"):
        code, _, err = remix(name)
        said = " ".join(err.split())
        assert code == 2 and "needs ffmpeg" in said and "Install ffmpeg" in said, said
    sf.write(tmp_path / "fine.wav", 0.3 * np.sin(np.arange(16000) / 8), 16000)
    code, _, err = remix("fine.wav")
    assert code == 0 and "ffmpeg" not in err, err


def test_a_recording_over_the_limit_is_refused_from_its_header(remix, tmp_path):
    sparse_wav(tmp_path / "hour.wav", 3600)
    code, _, err = remix("hour.wav")
    assert code == 2 and "hour.wav is 3600.0 s long; the limit is 300 s." in err, err
    sparse_wav(tmp_path / "stereo.wav", 301, rate=48000, channels=2)
    code, _, err = remix("stereo.wav")
    assert code == 2 and "stereo.wav is 301.0 s long; the limit is 300 s." in err, err
