"""Clip makers for the evaluation tests (imported by name: pytest puts this folder on sys.path)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16_000


def tone(freq: float, seconds: float = 2.0, amp: float = 0.3, sr: int = SR, seed: int = 0):
    t = np.arange(int(seconds * sr)) / sr
    noise = 0.02 * np.random.default_rng(seed).standard_normal(t.shape[0])
    return amp * np.sin(2 * np.pi * freq * t) + noise


def make_set(
    folder: Path, waves: dict[str, np.ndarray], sr: int = SR, prompts: dict[str, str] | None = None
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, wave in waves.items():
        sf.write(folder / f"{name}.wav", wave, sr)
        if prompts and name in prompts:
            (folder / f"{name}.json").write_text(json.dumps({"prompt": prompts[name]}))
    return folder


def varied_waves(count: int = 4, amp: float = 0.3) -> dict[str, np.ndarray]:
    return {f"clip{i}": tone(220.0 * (i + 1), amp=amp, seed=i) for i in range(count)}
