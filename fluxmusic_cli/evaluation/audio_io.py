"""Reading clips for evaluation: one reader, one mixdown, one resampler for every metric.

Every clip is read as float64 with soundfile, mixed to mono by averaging channels, and resampled
with `scipy.signal.resample_poly` (polyphase FIR, Kaiser window beta 5) to the rate each model
needs. The reference library mixes differently per metric (mean for VGGish, first channel for
CNN14) and uses two different resamplers; using one path makes numbers comparable across runs.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fluxmusic_cli.errors import UsageError

RESAMPLER = "scipy.signal.resample_poly(window=('kaiser', 5.0)), mono = mean of channels"
SILENCE_PEAK = 1e-5  # about -100 dBFS


@dataclass(frozen=True)
class AudioInfo:
    sample_rate: int
    channels: int
    frames: int
    content_hash: str
    peak: float

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0

    @property
    def silent(self) -> bool:
        return self.peak < SILENCE_PEAK


def read_mono(path: Path) -> tuple[np.ndarray, int]:
    """The file's samples mixed to mono, through the tool's one audio reader (libsndfile, then
    ffmpeg), which says in one sentence why a file that is not audio cannot be read."""
    from fluxmusic_cli.audio import read_audio

    decoded = read_audio(path)
    return decoded.samples.mean(axis=1), decoded.sample_rate


def inspect(path: Path) -> AudioInfo:
    """Content hash (of the file bytes), format facts and peak level of one file."""
    from fluxmusic_cli.audio import read_audio

    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    decoded = read_audio(path)
    channels = decoded.channels
    mono, rate = decoded.samples.mean(axis=1), decoded.sample_rate
    if not np.isfinite(mono).all():
        raise UsageError(f"{path} contains NaN or infinite samples; it cannot be scored.")
    peak = float(np.max(np.abs(mono))) if mono.size else 0.0
    return AudioInfo(rate, channels, int(mono.shape[0]), digest, peak)


def resample(samples: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """The tool's one resampler (`fluxmusic_cli.audio.resample`), used for every model input."""
    from fluxmusic_cli.audio import resample as shared_resample

    return shared_resample(samples, orig_sr, target_sr)
