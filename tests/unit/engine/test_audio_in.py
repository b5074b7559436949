"""A recording into the model's latent space: mono, 16 kHz, gain, padding, log-mel, VAE mean."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from fluxmusic_cli.engine import audio_in, decode
from fluxmusic_cli.errors import UsageError
from fluxmusic_cli.tinybundle.audio import SCALING_FACTOR, write_tiny_audioldm2

SHARED_AUDIO = Path(__file__).resolve().parents[4] / "shared" / "audio"


def tone(seconds: float, rate: int = 16000, freq: float = 440.0) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_filterbank_is_librosas_slaney_mel():
    librosa = pytest.importorskip("librosa")
    ref = librosa.filters.mel(sr=16000, n_fft=1024, n_mels=64, fmin=0, fmax=8000)
    np.testing.assert_allclose(audio_in.mel_basis(), ref, rtol=1e-5, atol=1e-7)


def test_log_mel_equals_a_direct_reflect_padded_stft():
    scipy_signal = pytest.importorskip("scipy.signal")
    rng = np.random.default_rng(0)
    x = rng.standard_normal(1280 * 5).astype(np.float32) * 0.2
    got = audio_in.log_mel(x)
    assert got.shape == (1, 1, 1280 * 5 // 160, 64) and got.dtype == torch.float32
    padded = np.pad(x.astype(np.float64), 512, mode="reflect")
    window = scipy_signal.get_window("hann", 1024, fftbins=True)
    frames = np.stack([padded[i * 160 : i * 160 + 1024] * window for i in range(x.size // 160)])
    magnitude = np.abs(np.fft.rfft(frames, axis=1))
    ref = np.log(np.maximum(magnitude @ audio_in.mel_basis().T, 1e-5))
    np.testing.assert_allclose(got[0, 0].numpy(), ref, rtol=1e-5, atol=1e-5)


def test_gain_centres_and_scales_to_peak_half_and_pads_to_80_ms():
    x = tone(1.0) + 0.1
    prepared = audio_in.prepare(x)
    assert prepared.length == 16000 and prepared.x.shape[0] == 16640  # 13 x 1280
    centred = x.astype(np.float64) - x.astype(np.float64).mean()
    assert prepared.gain == pytest.approx(0.5 / (np.abs(centred).max() + 1e-8))
    assert np.abs(prepared.x).max() == pytest.approx(0.5, rel=1e-6)
    assert not prepared.x[16000:].any()


@pytest.mark.parametrize(
    "samples, words",
    [(np.zeros(16000), "silent"), (np.full(16000, 5e-5), "silent"), (tone(0.05), "80 ms")],
)
def test_silent_and_too_short_recordings_are_refused(samples, words):
    with pytest.raises(UsageError, match=words):
        audio_in.prepare(samples)


def test_stereo_is_mixed_by_the_mean_and_resampled_to_16k(tmp_path):
    left, right = tone(0.5, 44100, 440.0), tone(0.5, 44100, 660.0)
    path = tmp_path / "stereo.flac"
    sf.write(path, np.stack([left, right], axis=1), 44100)
    rec = audio_in.read_recording(path)
    assert rec.channels == 2 and rec.source_rate == 44100
    assert rec.samples.shape == (8000,)
    from fluxmusic_cli.audio import resample

    expected = resample(((left.astype(np.float64) + right) / 2), 44100, 16000)
    np.testing.assert_allclose(rec.samples, expected, atol=1e-4)


def test_a_real_fluxmusic_clip_encodes_to_the_latent_grid(tmp_path):
    path = SHARED_AUDIO / "fluxmusic_sample_1.wav"
    if not path.is_file():
        pytest.skip(f"{path} is not here (the shared audio lies beside the checkout)")
    rec = audio_in.read_recording(path)
    assert rec.samples.shape == (163872,)
    dec = decode.load_decoder(write_tiny_audioldm2(tmp_path / "a"))
    prepared = audio_in.prepare(rec.samples)
    latent = audio_in.encode(dec, prepared)
    assert latent.shape == (1, 8, prepared.x.shape[0] // 640, 16)
    mean, _ = dec.encode_posterior(audio_in.log_mel(prepared.x))
    assert torch.equal(latent, mean * SCALING_FACTOR)
