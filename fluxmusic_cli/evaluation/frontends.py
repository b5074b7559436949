"""Log-mel front ends of the two classifiers, written from their published definitions.

VGGish (AudioSet release): 16 kHz, 25 ms periodic-Hann frames every 10 ms, each zero-padded at the
end to a 512-point FFT, magnitude spectrum, 64 HTK-mel bands 125-7500 Hz (the DC bin excluded),
log(mel + 0.01), cut into non-overlapping 0.96 s examples of 96 frames.

PANNs CNN14 16 kHz (torchlibrosa settings of that checkpoint): centred 512-point STFT with a
periodic Hann window, reflect padding, hop 160, power spectrum, 64 Slaney-normalised mel bands
50-8000 Hz (librosa's default filterbank), 10 log10(max(mel, 1e-10)).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from fluxmusic_cli.dsp import htk_mel_matrix, periodic_hann, slaney_mel_matrix

if TYPE_CHECKING:
    import torch

VGGISH_SAMPLE_RATE = 16_000
VGGISH_WINDOW = 400
VGGISH_HOP = 160
VGGISH_FFT = 512
VGGISH_MELS = 64
VGGISH_FMIN = 125.0
VGGISH_FMAX = 7500.0
VGGISH_LOG_OFFSET = 0.01
VGGISH_EXAMPLE_FRAMES = 96


@dataclass(frozen=True)
class Cnn14FrontEnd:
    sample_rate: int = 16_000
    n_fft: int = 512
    hop: int = 160
    mels: int = 64
    fmin: float = 50.0
    fmax: float = 8000.0
    amin: float = 1e-10


CNN14_16K = Cnn14FrontEnd()


def vggish_mel_matrix() -> np.ndarray:
    """(257, 64) VGGish filterbank for its 512-point FFT: HTK mel triangles 125-7500 Hz."""
    return htk_mel_matrix(
        VGGISH_FFT // 2 + 1, VGGISH_SAMPLE_RATE, VGGISH_MELS, VGGISH_FMIN, VGGISH_FMAX
    )


def frame_signal(signal: np.ndarray, length: int, hop: int) -> np.ndarray:
    """(n_frames, length) complete frames, no padding; zero frames when the signal is shorter."""
    count = 0 if signal.shape[0] < length else 1 + (signal.shape[0] - length) // hop
    if count == 0:
        return np.zeros((0, length) + signal.shape[1:], dtype=signal.dtype)
    idx = np.arange(length)[None, :] + hop * np.arange(count)[:, None]
    return signal[idx]


def vggish_log_mel(wave: np.ndarray) -> np.ndarray:
    """16 kHz mono waveform -> (frames, 64) log-mel, frame k covering samples [160k, 160k+400)."""
    frames = frame_signal(np.asarray(wave, dtype=np.float64), VGGISH_WINDOW, VGGISH_HOP)
    spectrum = np.abs(np.fft.rfft(frames * periodic_hann(VGGISH_WINDOW), VGGISH_FFT))
    return np.log(spectrum @ vggish_mel_matrix() + VGGISH_LOG_OFFSET)


def vggish_examples(wave: np.ndarray) -> np.ndarray:
    """(n_examples, 96, 64): whole 0.96 s examples only; a trailing partial example is dropped."""
    log_mel = vggish_log_mel(wave)
    count = log_mel.shape[0] // VGGISH_EXAMPLE_FRAMES
    return log_mel[: count * VGGISH_EXAMPLE_FRAMES].reshape(
        count, VGGISH_EXAMPLE_FRAMES, VGGISH_MELS
    )


def vggish_min_samples() -> int:
    """The shortest clip that yields one VGGish example (0.975 s at 16 kHz)."""
    return VGGISH_WINDOW + VGGISH_HOP * (VGGISH_EXAMPLE_FRAMES - 1)


def cnn14_min_samples(front: Cnn14FrontEnd = CNN14_16K) -> int:
    """CNN14 halves time five times, so it needs 32 STFT frames (0.31 s at 16 kHz)."""
    return 31 * front.hop


def cnn14_log_mel(wave: torch.Tensor, front: Cnn14FrontEnd = CNN14_16K) -> torch.Tensor:
    """(batch, samples) -> (batch, 1, frames, mels) log-mel in dB, float32."""
    import torch

    window = torch.hann_window(front.n_fft, periodic=True, dtype=wave.dtype, device=wave.device)
    spec = torch.stft(
        wave,
        n_fft=front.n_fft,
        hop_length=front.hop,
        win_length=front.n_fft,
        window=window,
        center=True,
        pad_mode="reflect",
        return_complex=True,
    )
    power = spec.real**2 + spec.imag**2  # (batch, bins, frames)
    mel_w = torch.as_tensor(
        slaney_mel_matrix(front.sample_rate, front.n_fft, front.mels, front.fmin, front.fmax),
        dtype=wave.dtype,
        device=wave.device,
    )
    mel = power.transpose(1, 2) @ mel_w
    return (10.0 * torch.log10(torch.clamp(mel, min=front.amin)))[:, None]
