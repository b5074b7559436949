"""What the page shows of a finished clip besides its audio: its mel spectrogram (a PNG drawn by
`fluxmusic_cli.spectrogram`, as on the `vary` page) and its waveform's peaks (JSON, for the
canvas on which a region is chosen).

Both are drawn from the clip's file the first time they are asked for and kept beside it
(`ID.spectrogram.png`, `ID.peaks.json`), written whole, so they go with the job's other files
when it is deleted. The seconds of the peaks are the clip's as the editing commands read it,
so a region chosen on them is the region a repaint changes.
"""

from __future__ import annotations

import json
import os
import stat
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PEAKS = 1000  # (min, max) pairs across the clip: more than a page is wide
SPECTROGRAM_SIZE = (7.2, 1.6)  # inches at 100 dpi: 720 x 160 pixels, the page's width

_drawing = threading.Lock()  # one clip drawn at a time; the page asks for both at once


@dataclass(frozen=True)
class Pictures:
    spectrogram: Path
    peaks: Path


def beside(audio: Path) -> Pictures:
    """Where the pictures of the clip `audio` (ID.FORMAT) are kept."""
    stem = audio.name.split(".", 1)[0]
    return Pictures(
        audio.with_name(f"{stem}.spectrogram.png"), audio.with_name(f"{stem}.peaks.json")
    )


def ensure(audio: Path) -> Pictures:
    """The pictures of `audio`, drawn now unless they are there already (as plain files: a
    link planted in their place is replaced, never followed)."""
    kept = beside(audio)
    if _plain(kept.spectrogram) and _plain(kept.peaks):
        return kept
    with _drawing:
        if _plain(kept.spectrogram) and _plain(kept.peaks):
            return kept
        from fluxmusic_cli import atomic
        from fluxmusic_cli.audio import read_audio

        decoded = read_audio(audio)
        png, peaks = draw(decoded.samples, decoded.sample_rate)
        atomic.write_bytes(kept.spectrogram, png)
        atomic.write_bytes(kept.peaks, json.dumps(peaks, separators=(",", ":")).encode())
    return kept


def draw(samples: np.ndarray, sample_rate: int) -> tuple[bytes, dict]:
    """The spectrogram PNG and the peaks of one clip, (frames, channels) at `sample_rate`."""
    from fluxmusic_cli.spectrogram import mel_spectrogram, spectrogram_png

    frames = int(samples.shape[0])
    duration = frames / sample_rate
    db, fmax = mel_spectrogram(samples, sample_rate)
    png = spectrogram_png(db, duration, fmax, size=SPECTROGRAM_SIZE)
    return png, {"duration": duration, "sample_rate": sample_rate, "peaks": peaks(samples)}


def peaks(samples: np.ndarray, count: int = PEAKS) -> list[list[float]]:
    """[min, max] of the mono mix in `count` equal spans (fewer for a shorter clip)."""
    mono = np.asarray(samples, dtype=np.float64)
    if mono.ndim == 2:
        mono = mono.mean(axis=1)
    if mono.size == 0:
        return []
    spans = np.array_split(mono, min(count, mono.size))
    return [[round(float(s.min()), 4), round(float(s.max()), 4)] for s in spans]


def _plain(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False
