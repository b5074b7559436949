"""Long recordings that cost no disk: a WAV header, then a hole the file system leaves unwritten."""

from __future__ import annotations

import struct
from pathlib import Path


def sparse_wav(path: Path, seconds: float, rate: int = 16000, channels: int = 1) -> Path:
    """A 16-bit WAV of `seconds` of silence whose samples take no disk (they read as zeros)."""
    size = round(seconds * rate) * channels * 2
    fmt = struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * channels * 2, channels * 2, 16)
    header = b"RIFF" + struct.pack("<I", 36 + size) + b"WAVE" + b"fmt " + fmt
    header += b"data" + struct.pack("<I", size)
    with open(path, "wb") as fh:
        fh.write(header)
        fh.truncate(len(header) + size)
    return path
