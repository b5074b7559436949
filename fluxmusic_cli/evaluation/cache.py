"""Per-file embedding store keyed by audio content, model and settings (never by path).

Renaming or moving a file keeps its cached embedding; changing one sample, the weights, or any
front-end setting gives a new key. Entries are `.npz` files written atomically, each with a
checksum checked on read: a damaged entry is recomputed.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from fluxmusic_cli import atomic, notices
from fluxmusic_cli.engine import paths
from fluxmusic_cli.errors import OutputError


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
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, EOFError):
            return self._damaged(path)
        stored = arrays.pop(_CHECKSUM, None)
        if stored is None or str(stored) != _checksum(arrays):
            return self._damaged(path)
        self.hits += 1
        return arrays

    def _damaged(self, path: Path) -> None:
        notices.note(f"A damaged entry in the evaluation cache {self.folder} is recomputed.")
        with contextlib.suppress(OSError):
            path.unlink()

    def save(self, content_hash: str, arrays: dict[str, np.ndarray]) -> None:
        """Store `arrays` with their checksum; a cache that cannot be written is said once."""
        self.misses += 1
        path = self._path(content_hash)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays, **{_CHECKSUM: np.array(_checksum(arrays))})
        try:
            atomic.make_folder(path.parent)
            atomic.write_bytes(path, buffer.getvalue())
        except OutputError as exc:
            notices.note(
                f"The evaluation cache cannot be written ({exc.message}); going on without it."
            )


_CHECKSUM = "__sha256__"


def _checksum(arrays: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for name in sorted(arrays):
        data = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{data.dtype.str}|{data.shape}|".encode())
        digest.update(data.tobytes())
    return digest.hexdigest()
