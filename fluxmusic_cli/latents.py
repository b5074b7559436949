"""Latent sidecars: the exact final latent of a clip, beside its audio, for lossless edits.

`song.wav` gets `song.latent.safetensors`: one float32 tensor `latent` (8, T, 16) and, in the
file's metadata, the SHA-256 of the audio file it belongs to. An edit of `song.wav` starts from
that latent only while the hash matches, so a re-encoded or edited audio file is never paired
with a stale latent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SUFFIX = ".latent.safetensors"
TENSOR = "latent"
HASH_KEY = "audio_sha256"


def sidecar_path(audio_path: Path) -> Path:
    """`song.mp3` -> `song.latent.safetensors`."""
    path = Path(audio_path)
    return path.with_name(path.stem + SUFFIX)


def latent_bytes(latent: Any, audio_sha256: str) -> bytes:
    """The sidecar file for `latent` (8, T, 16), keyed by its audio file's SHA-256."""
    import torch
    from safetensors.torch import save

    tensor = latent.detach().to(device="cpu", dtype=torch.float32).contiguous()
    if tensor.ndim != 3 or tensor.shape[0] != 8 or tensor.shape[2] != 16:
        raise ValueError(f"A latent is (8, T, 16), got {tuple(tensor.shape)}.")
    return save({TENSOR: tensor}, metadata={HASH_KEY: audio_sha256, "format": "fluxmusic"})


def read_latent(audio_path: Path, audio_sha256: str) -> tuple[Any | None, str | None]:
    """(latent, None) when `audio_path` has a sidecar made for exactly these bytes, else
    (None, why not) -- why is None when there is no sidecar at all."""
    from safetensors import SafetensorError, safe_open

    path = sidecar_path(audio_path)
    if not path.is_file():
        return None, None
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            if meta.get(HASH_KEY) != audio_sha256:
                return None, f"{path.name} belongs to another version of {Path(audio_path).name}"
            latent = fh.get_tensor(TENSOR)
    except (SafetensorError, OSError, KeyError) as exc:
        return None, f"{path.name} is not a readable latent sidecar ({exc})"
    if latent.ndim != 3 or latent.shape[0] != 8 or latent.shape[2] != 16 or latent.shape[1] % 2:
        return None, f"{path.name} holds a tensor of shape {tuple(latent.shape)}, not (8, T, 16)"
    return latent.float(), None
