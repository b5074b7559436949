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


def periodic_hann(length: int) -> np.ndarray:
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(length) / length)


def hz_to_mel_htk(hz: np.ndarray | float) -> np.ndarray:
    return 1127.0 * np.log(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def vggish_mel_matrix(
    n_spectrum_bins: int = VGGISH_FFT // 2 + 1,
    sample_rate: int = VGGISH_SAMPLE_RATE,
    mels: int = VGGISH_MELS,
    fmin: float = VGGISH_FMIN,
    fmax: float = VGGISH_FMAX,
) -> np.ndarray:
    """(n_spectrum_bins, mels) triangles, linear in HTK mel; right-multiplies a spectrum."""
    bins_mel = hz_to_mel_htk(np.linspace(0.0, sample_rate / 2.0, n_spectrum_bins))
    edges = np.linspace(hz_to_mel_htk(fmin), hz_to_mel_htk(fmax), mels + 2)
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bins_mel[:, None] - lower) / (centre - lower)
    falling = (upper - bins_mel[:, None]) / (upper - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights[0, :] = 0.0  # HTK leaves out the DC bin
    return weights


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


def hz_to_mel_slaney(hz: np.ndarray | float) -> np.ndarray:
    """Slaney's Auditory Toolbox scale: linear below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    f_sp = 200.0 / 3.0
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, np.log(6.4) / 27.0
    linear = hz / f_sp
    log_part = min_log_mel + np.log(np.maximum(hz, min_log_hz) / min_log_hz) / logstep
    return np.where(hz >= min_log_hz, log_part, linear)


def mel_to_hz_slaney(mel: np.ndarray | float) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    f_sp = 200.0 / 3.0
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, np.log(6.4) / 27.0
    linear = f_sp * mel
    log_part = min_log_hz * np.exp(logstep * (mel - min_log_mel))
    return np.where(mel >= min_log_mel, log_part, linear)


def slaney_mel_matrix(
    sample_rate: int, n_fft: int, mels: int, fmin: float, fmax: float
) -> np.ndarray:
    """(n_fft//2 + 1, mels) area-normalised triangles, equal to librosa.filters.mel(...).T."""
    fft_hz = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    mel_hz = mel_to_hz_slaney(np.linspace(hz_to_mel_slaney(fmin), hz_to_mel_slaney(fmax), mels + 2))
    widths = np.diff(mel_hz)
    ramps = mel_hz[:, None] - fft_hz[None, :]
    weights = np.zeros((mels, fft_hz.shape[0]))
    for i in range(mels):
        lower = -ramps[i] / widths[i]
        upper = ramps[i + 2] / widths[i + 1]
        weights[i] = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_hz[2 : mels + 2] - mel_hz[:mels]))[:, None]
    return weights.T


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
