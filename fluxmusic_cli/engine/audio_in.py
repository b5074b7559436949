"""A user's recording into the model's latent space, as the training data was prepared.

    file -> mono (mean of channels) -> 16 kHz -> remove the mean, peak 0.5 (gain g kept)
    -> zero pad to whole 80 ms -> log-mel (64 Slaney bins, hop 160, window 1024)
    -> VAE posterior mean x scaling factor -> latent (1, 8, S / 640, 16)

Generated audio is divided by `g` on the way out, so an edit comes back at the recording's own
level. Nothing here prints or reads stdin; the caller hands over bytes for `-`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fluxmusic_cli.dsp import periodic_hann, slaney_mel_matrix
from fluxmusic_cli.errors import UsageError

if TYPE_CHECKING:
    import torch

SAMPLE_RATE = 16_000
GRID_SAMPLES = 1280  # 80 ms: two latent frames, the time patch of a token
HOP = 160
N_FFT = 1024
MEL_BINS = 64
MEL_FMAX = 8000.0
LOG_FLOOR = 1e-5
TARGET_PEAK = 0.5
GAIN_EPS = 1e-8
SILENT_PEAK = 1e-4
RESAMPLER = "scipy.signal.resample_poly (Kaiser window), mono = mean of channels"


@dataclass(frozen=True)
class Recording:
    """A recording as the tool hears it: mono, 16 kHz, at its own level (no gain applied)."""

    samples: np.ndarray  # (n,) float32
    source_rate: int
    channels: int
    sha256: str  # of the file's bytes
    path: str  # as the user gave it; "-" for stdin

    @property
    def duration(self) -> float:
        return self.samples.shape[0] / SAMPLE_RATE


@dataclass(frozen=True)
class ModelInput:
    """The recording scaled and padded for the VAE, and the gain to undo on the way out."""

    x: np.ndarray  # (S,) float32: (samples - mean) * gain, zero padded to a multiple of 1280
    gain: float
    length: int  # samples before padding


def read_recording(
    path: Path | str, data: bytes | None = None, *, max_seconds: float | None = None
) -> Recording:
    """Decode `path` (or `data`, the bytes of stdin), mix to mono by the mean, resample to
    16 kHz. A recording longer than `max_seconds` is refused from its header, unread."""
    from fluxmusic_cli.audio import read_audio, resample

    decoded = read_audio(path, data, max_seconds=max_seconds)
    if data is None:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise UsageError(f"Cannot read {path}: {exc.strerror or exc}") from None
    mono = decoded.samples.mean(axis=1)
    if not np.isfinite(mono).all():
        raise UsageError(f"{path} holds NaN or infinite samples; it cannot be used.")
    samples = resample(mono, decoded.sample_rate, SAMPLE_RATE).astype(np.float32)
    digest = hashlib.sha256(data).hexdigest()
    return Recording(samples, decoded.sample_rate, decoded.channels, digest, str(path))


def prepare(samples: np.ndarray, *, name: str = "the recording") -> ModelInput:
    """Centre, scale to peak 0.5 and pad to the 80 ms grid; refuse silence and < 80 ms."""
    x = np.asarray(samples, dtype=np.float64)
    check_length(x.shape[0], name=name)
    centred = x - x.mean()
    peak = float(np.max(np.abs(centred)))
    if float(np.max(np.abs(x))) < SILENT_PEAK or peak < SILENT_PEAK:
        raise UsageError(f"{name} is silent (peak below 1e-4); there is nothing to work from.")
    gain = TARGET_PEAK / (peak + GAIN_EPS)
    padded = padded_length(x.shape[0])
    out = np.zeros(padded, dtype=np.float32)
    out[: x.shape[0]] = centred * gain
    return ModelInput(out, gain, int(x.shape[0]))


def check_length(samples: int, *, name: str = "the recording") -> None:
    """Refuse a recording shorter than one step of the latent grid (80 ms)."""
    if samples < GRID_SAMPLES:
        raise UsageError(
            f"{name} is {samples / SAMPLE_RATE * 1000:.0f} ms long; at least 80 ms is needed."
        )


def padded_length(samples: int) -> int:
    """Samples rounded up to whole 80 ms."""
    return -(-samples // GRID_SAMPLES) * GRID_SAMPLES


def mel_basis() -> np.ndarray:
    """(64, 513) Slaney filterbank 0-8000 Hz (librosa's `filters.mel` default normalisation)."""
    return slaney_mel_matrix(SAMPLE_RATE, N_FFT, MEL_BINS, 0.0, MEL_FMAX).T


def log_mel(x: np.ndarray) -> torch.Tensor:
    """(S,) samples -> (1, 1, S / 160, 64) float32 log-mel, the VAE's input.

    Reflect padding of 512 on both sides, periodic Hann STFT (1024 / hop 160), magnitude,
    Slaney mel, natural log floored at 1e-5; the frame past the end is dropped. Computed in
    float64 so the front end adds no rounding of its own.
    """
    import torch

    wave = torch.as_tensor(np.asarray(x, dtype=np.float64))
    frames = wave.shape[0] // HOP
    padded = torch.nn.functional.pad(wave[None, None], (N_FFT // 2, N_FFT // 2), mode="reflect")
    spec = torch.stft(
        padded[0, 0],
        n_fft=N_FFT,
        hop_length=HOP,
        win_length=N_FFT,
        window=torch.as_tensor(periodic_hann(N_FFT)),
        center=False,
        return_complex=True,
    )  # (513, frames + 1)
    magnitude = torch.sqrt(spec.real**2 + spec.imag**2)
    mel = torch.as_tensor(mel_basis()) @ magnitude  # (64, frames + 1)
    logmel = torch.log(torch.clamp(mel, min=LOG_FLOOR))[:, :frames]
    return logmel.T[None, None].float().contiguous()


def encode(decoder, prepared: ModelInput) -> torch.Tensor:
    """The recording's latent (1, 8, S / 640, 16): the VAE posterior's mean x scaling factor."""
    mean, _ = decoder.encode_posterior(log_mel(prepared.x))
    return mean * decoder.scaling_factor
