"""Per-file embedding store keyed by audio content, model and settings (never by path).

Renaming or moving a file keeps its cached embedding; changing one sample, the weights, or any
front-end setting gives a new key. Entries are `.npz` files written atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from fluxmusic_cli.engine import paths


def embeddings_root() -> Path:
    return paths.cache_dir() / "eval-embeddings"


def model_key(name: str, identity: str, settings: dict[str, Any]) -> str:
    blob = json.dumps({"name": name, "identity": identity, "settings": settings}, sort_keys=True)
    return f"{name}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


class EmbeddingCache:
    """Read/write arrays for one model key; with `enabled=False` it reads nothing (writes still
    refresh the store, so `--no-cache` recomputes and leaves fresh entries behind)."""

    def __init__(self, key: str, *, enabled: bool = True, root: Path | None = None) -> None:
        self.folder = (root or embeddings_root()) / key
        self.enabled = enabled
        self.hits = 0
        self.misses = 0

    def _path(self, content_hash: str) -> Path:
        return self.folder / content_hash[:2] / f"{content_hash}.npz"

    def load(self, content_hash: str) -> dict[str, np.ndarray] | None:
        if not self.enabled:
            return None
        path = self._path(content_hash)
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {name: data[name] for name in data.files}
        except (OSError, ValueError, KeyError):
            return None
        self.hits += 1
        return arrays

    def save(self, content_hash: str, arrays: dict[str, np.ndarray]) -> None:
        self.misses += 1
        path = self._path(content_hash)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
