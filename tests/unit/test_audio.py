"""Audio out: every format round-trips with its tags, writes are atomic, clips are checked."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from fluxmusic_cli import audio
from fluxmusic_cli.errors import BadAudioError, OutputError, UsageError

SR = 16000


def sine(freq: float = 440.0, seconds: float = 1.0, sr: int = SR, amp: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def fft_peak_hz(x: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / sr)[np.argmax(spectrum)])


TAGS = {"title": "warm lo-fi piano, rain — café", "comment": 'fluxmusic {"seed":7,"steps":50}'}


@pytest.mark.parametrize("ext", ["wav", "flac", "mp3", "ogg"])
def test_each_format_round_trips_rate_length_and_content(tmp_path, ext):
    x = sine(seconds=1.5)
    path = tmp_path / f"clip.{ext}"
    audio.write_audio(path, x, SR, tags=TAGS)
    y, sr = sf.read(path, dtype="float32")
    assert sr == SR
    lossy = ext in ("mp3", "ogg")
    # Lossy decoders may pad with encoder delay; lossless ones must match to the sample.
    assert abs(len(y) - len(x)) <= (2048 if lossy else 0)
    assert abs(fft_peak_hz(y, sr) - 440.0) < 5
    if not lossy:
        np.testing.assert_allclose(y, x, atol=1 / 2**15)


@pytest.mark.parametrize("ext", ["wav", "flac", "mp3", "ogg"])
def test_tags_read_back(tmp_path, ext):
    path = tmp_path / f"clip.{ext}"
    audio.write_audio(path, sine(seconds=0.5), SR, tags=TAGS)
    tags = audio.read_tags(path)
    assert tags["comment"] == TAGS["comment"]
    if ext == "mp3":  # ID3 through LAME: ASCII only, and the software field is LAME's own
        assert tags["title"] == "warm lo-fi piano, rain ? cafe"
    else:
        from fluxmusic_cli import __version__

        assert tags["title"] == TAGS["title"]
        assert tags["software"] == f"fluxmusic {__version__}"


def test_long_wav_tags_are_shortened_not_dropped(tmp_path):
    path = tmp_path / "long.wav"
    audio.write_audio(path, sine(seconds=0.1), SR, tags={"title": "é" * 3000, "comment": "x"})
    tags = audio.read_tags(path)
    assert tags["title"] == "é" * 1000 and tags["comment"] == "x"


def test_fmt_overrides_the_extension(tmp_path):
    path = tmp_path / "clip.bin"
    audio.write_audio(path, sine(seconds=0.1), SR, fmt="FLAC")
    assert sf.info(path).format == "FLAC"


def test_stereo_samples_write_two_channels(tmp_path):
    x = np.stack([sine(seconds=0.2), -sine(seconds=0.2)], axis=1)
    audio.write_audio(tmp_path / "st.wav", x, SR)
    assert sf.info(tmp_path / "st.wav").channels == 2


def test_out_of_range_samples_are_clipped_not_wrapped(tmp_path):
    x = sine(amp=2.0, seconds=0.1)
    audio.write_audio(tmp_path / "loud.wav", x, SR)
    y, _ = sf.read(tmp_path / "loud.wav", dtype="float32")
    assert np.abs(y).max() <= 1.0
    assert np.all(np.sign(y[np.abs(x) > 1.0]) == np.sign(x[np.abs(x) > 1.0]))


def test_unknown_extension_lists_the_supported_ones(tmp_path):
    with pytest.raises(UsageError) as exc:
        audio.write_audio(tmp_path / "clip.aac", sine(seconds=0.1), SR)
    assert all(name in str(exc.value) for name in ("wav", "flac", "mp3", "ogg"))
    assert not list(tmp_path.iterdir())


def test_unsupported_rate_for_mp3_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="MP3 at 96000 Hz"):
        audio.write_audio(tmp_path / "hi.mp3", sine(seconds=0.1, sr=96000), 96000)
    assert not list(tmp_path.iterdir())


def test_missing_folder_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        audio.write_audio(tmp_path / "nope" / "clip.wav", sine(seconds=0.1), SR)


@pytest.mark.parametrize("error", [KeyboardInterrupt, OSError(28, "No space left on device")])
def test_interrupted_write_leaves_nothing_behind(tmp_path, monkeypatch, error):
    old = tmp_path / "clip.wav"
    audio.write_audio(old, sine(seconds=0.1), SR)
    before = old.read_bytes()

    def explode(path):
        raise error

    # After the temporary file is written, before it is renamed.
    monkeypatch.setattr("fluxmusic_cli.atomic._sync", explode)
    with pytest.raises((KeyboardInterrupt, OutputError)):
        audio.write_audio(old, sine(seconds=0.3), SR)
    assert [p.name for p in tmp_path.iterdir()] == ["clip.wav"]
    assert old.read_bytes() == before


def test_wav_bytes_are_a_readable_wav_with_tags():
    data = audio.write_wav_bytes(sine(seconds=0.25), SR, {"title": "hello"})
    assert data[:4] == b"RIFF"
    with sf.SoundFile(io.BytesIO(data)) as f:
        assert (f.samplerate, f.frames, f.format) == (SR, 4000, "WAV")
        assert f.title == "hello"


def test_nan_samples_raise_bad_audio_naming_the_fix(tmp_path):
    x = sine(seconds=0.5)
    x[100] = np.nan
    with pytest.raises(BadAudioError) as exc:
        audio.check_clip(x, SR)
    assert "float16" in exc.value.message and "--dtype bf16" in exc.value.hint
    with pytest.raises(BadAudioError):
        audio.write_audio(tmp_path / "nan.wav", x, SR)
    assert not list(tmp_path.iterdir())


def test_inf_samples_raise_bad_audio():
    x = sine(seconds=0.1)
    x[0] = np.inf
    with pytest.raises(BadAudioError):
        audio.peak_normalize(x)


def test_report_measures_a_sine():
    report = audio.check_clip(sine(amp=0.5, seconds=2.0), SR)
    assert report.peak == pytest.approx(0.5, abs=1e-4)
    assert report.rms == pytest.approx(0.5 / np.sqrt(2), rel=1e-3)
    # A full-scale 1 kHz sine reads -3.01 LUFS; 440 Hz at half scale lands a little below -9.
    assert report.lufs is not None and -11.0 < report.lufs < -8.0
    assert report.duration_s == 2.0 and not report.is_silent and report.warnings == []


def test_silence_is_reported_as_a_warning_with_no_loudness():
    report = audio.check_clip(np.zeros(SR * 2, np.float32), SR)
    assert report.is_silent and report.lufs is None
    assert any("silent" in w for w in report.warnings)


def test_clips_shorter_than_a_loudness_block_have_no_loudness():
    report = audio.check_clip(sine(seconds=0.3), SR)
    assert report.lufs is None and not report.is_silent


def test_full_scale_samples_are_reported_as_clipping():
    x = sine(amp=1.5, seconds=1.0)
    report = audio.check_clip(x, SR)
    assert 0.3 < report.clipped_fraction < 0.7
    assert any("clipped" in w for w in report.warnings)


@pytest.mark.parametrize("count, shown", [(1, "1 sample of 160000 (0.00063%) reaches"),
                                          (3, "3 samples of 160000 (0.0019%) reach")])  # fmt: skip
def test_a_few_clipped_samples_are_counted_never_shown_as_zero_percent(count, shown):
    x = sine(amp=0.5, seconds=10.0)
    x[:count] = 1.0
    (warning,) = audio.check_clip(x, SR).warnings
    assert shown in warning and "0.00%" not in warning


def test_resample_16k_to_44k_keeps_length_and_pitch():
    x = sine(freq=1000.0, seconds=1.0)
    y = audio.resample(x, 16000, 44100)
    assert y.dtype == np.float32 and len(y) == 44100
    assert abs(fft_peak_hz(y, 44100) - 1000.0) < 2


def test_resample_same_rate_is_a_copy():
    x = sine(seconds=0.1)
    y = audio.resample(x, SR, SR)
    assert np.array_equal(x, y) and y is not x


@pytest.mark.parametrize("peak", [0.95, 0.1, 1.0, 0.3333])
def test_peak_normalize_reaches_but_never_exceeds_the_peak(peak):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(SR) * 3).astype(np.float32)
    y = audio.peak_normalize(x, peak)
    assert float(np.abs(y).max()) <= peak
    assert float(np.abs(y).max()) == pytest.approx(peak, rel=1e-6)


def test_peak_normalize_leaves_silence_alone():
    assert not audio.peak_normalize(np.zeros(10, np.float32)).any()


@pytest.mark.parametrize(
    ("prompt", "slug"),
    [
        ("Warm Lo-Fi piano, with RAIN!", "warm-lo-fi-piano-with-rain"),
        ("café déjà vu", "cafe-deja-vu"),
        ("钢琴", "untitled"),
        ("  --  ", "untitled"),
    ],
)
def test_slugify(prompt, slug):
    assert audio.slugify(prompt) == slug


def test_slugify_cuts_long_prompts_at_a_word_boundary():
    slug = audio.slugify("an epic orchestral soundtrack with choir and thundering drums", 30)
    assert slug == "an-epic-orchestral-soundtrack"
    assert len(audio.slugify("x" * 100, 48)) == 48


def test_module_import_does_not_load_torch_or_scipy():
    code = "import sys, fluxmusic_cli.audio; print('torch' in sys.modules, 'scipy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
