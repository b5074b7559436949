"""Stored text-encoder outputs, so a prompt (or the empty prompt) is encoded once per source.

Each entry is one float32 tensor in its own safetensors file, named by a hash of the key and
carrying the key in its metadata. Empty-prompt embeddings live in `empty/` and are never
evicted: they are what lets a left-out encoder stay unloaded. Prompt embeddings live in
`prompts/` under a size cap, evicting the least recently used first (a hit refreshes mtime).

The cache is an optimisation and is never trusted blindly: each entry carries the SHA-256 of
its tensor, checked on every read, so a damaged entry is a miss that is recomputed (and said
once); a cache that cannot be written (read-only, full) is said once and the run goes on
without it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from fluxmusic_cli import atomic, notices
from fluxmusic_cli.engine import paths
from fluxmusic_cli.errors import OutputError

if TYPE_CHECKING:
    import torch

DEFAULT_MAX_PROMPT_BYTES = 2 * 1024**3
_SUFFIX = ".safetensors"


@dataclass(frozen=True)
class EmbeddingKey:
    """What an embedding depends on: the encoder's source, its revision, the mode, the text."""

    identity: str
    revision: str
    mode: str
    prompt: str

    @property
    def digest(self) -> str:
        payload = json.dumps([self.identity, self.revision, self.mode, self.prompt])
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def metadata(self) -> dict[str, str]:
        return {
            "identity": self.identity,
            "revision": self.revision,
            "mode": self.mode,
            "prompt": self.prompt,
        }


@dataclass
class CachedEmbedding:
    tensor: torch.Tensor
    info: dict[str, str] = field(default_factory=dict)


class EmbeddingCache:
    """A folder of stored embeddings (default `paths.embeddings_dir()`), created on first write.

    `store_prompts=False` keeps only empty-prompt embeddings; `max_prompt_bytes` caps the
    prompt part.
    """

    def __init__(
        self,
        root: Path | None = None,
        *,
        max_prompt_bytes: int = DEFAULT_MAX_PROMPT_BYTES,
        store_prompts: bool = True,
    ) -> None:
        self.root = Path(root) if root is not None else paths.embeddings_dir()
        self.max_prompt_bytes = max_prompt_bytes
        self.store_prompts = store_prompts
        self._unwritable = False
        self._cleaned: set[Path] = set()

    def _dir(self, key: EmbeddingKey) -> Path:
        return self.root / ("empty" if key.prompt == "" else "prompts")

    def path_for(self, key: EmbeddingKey) -> Path:
        return self._dir(key) / f"{key.digest}{_SUFFIX}"

    def _enabled(self, key: EmbeddingKey) -> bool:
        return key.prompt == "" or self.store_prompts

    def load(self, key: EmbeddingKey) -> CachedEmbedding | None:
        """The stored entry with its info, or None (absent, disabled, unreadable or foreign)."""
        if not self._enabled(key):
            return None
        path = self.path_for(key)
        if not path.is_file():
            return None
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                tensor = f.get_tensor("embedding")
        except Exception:  # a torn or foreign file is a miss, and is rewritten on the next put
            self._damaged(path)
            return None
        if any(meta.get(k) != v for k, v in key.metadata().items()):
            return None
        if "sha256" not in meta:
            return None  # written by an older version without a checksum: recomputed quietly
        if meta["sha256"] != _checksum(tensor):
            self._damaged(path)
            return None
        with contextlib.suppress(OSError):
            os.utime(path)
        return CachedEmbedding(tensor=tensor, info=json.loads(meta.get("info", "{}")))

    def _damaged(self, path: Path) -> None:
        notices.note(
            f"A damaged entry in the embedding cache {self.root} was found and is recomputed."
        )
        with contextlib.suppress(OSError):
            path.unlink()

    def stored_revision(self, identity: str, mode: str) -> str | None:
        """The revision of the newest stored empty-prompt entry of `identity` in `mode`."""
        from safetensors import safe_open

        newest: tuple[int, str] | None = None
        for path, st in self._entries("empty"):
            try:
                with safe_open(str(path), framework="pt") as f:
                    meta = f.metadata() or {}
            except Exception:  # noqa: BLE001 - a damaged entry is no answer
                continue
            ours = meta.get("identity") == identity and meta.get("mode") == mode
            if ours and (newest is None or st.st_mtime_ns > newest[0]):
                newest = (st.st_mtime_ns, meta.get("revision", ""))
        return newest[1] if newest else None

    def get(self, key: EmbeddingKey) -> torch.Tensor | None:
        entry = self.load(key)
        return None if entry is None else entry.tensor

    def put(
        self, key: EmbeddingKey, tensor: torch.Tensor, info: dict[str, str] | None = None
    ) -> Path | None:
        """Store `tensor` as float32 (atomically); returns the file, or None when disabled."""
        if not self._enabled(key):
            return None
        import torch
        from safetensors.torch import save

        data = tensor.detach().to("cpu", torch.float32).contiguous()
        meta = key.metadata() | {
            "info": json.dumps(info or {}, sort_keys=True),
            "sha256": _checksum(data),
        }
        blob = save({"embedding": data}, metadata=meta)
        path = self.path_for(key)
        if self._unwritable:
            return None
        try:
            atomic.make_folder(path.parent)
            if path.parent not in self._cleaned:
                # Temporary files of writers killed mid-write (their process is gone).
                atomic.clean_leftovers(path.parent)
                self._cleaned.add(path.parent)
            atomic.write_bytes(path, blob)
        except OutputError as exc:
            self._unwritable = True
            notices.note(
                f"The embedding cache cannot be written ({exc.message}); going on without "
                "storing embeddings."
            )
            return None
        if key.prompt != "":
            self._evict(keep=path)
        return path

    def _entries(self, sub: str) -> Iterator[tuple[Path, os.stat_result]]:
        folder = self.root / sub
        if not folder.is_dir():
            return
        for p in folder.glob(f"*{_SUFFIX}"):
            with contextlib.suppress(FileNotFoundError):
                yield p, p.stat()

    def _evict(self, keep: Path) -> None:
        # The entry just written survives even alone over the cap: it is about to be used.
        entries = sorted(self._entries("prompts"), key=lambda e: e[1].st_mtime_ns)
        total = sum(st.st_size for _, st in entries)
        for p, st in entries:
            if total <= self.max_prompt_bytes:
                break
            if p == keep:
                continue
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
            total -= st.st_size

    def size_bytes(self, *, prompts_only: bool = False) -> int:
        subs = ("prompts",) if prompts_only else ("empty", "prompts")
        return sum(st.st_size for sub in subs for _, st in self._entries(sub))

    def clear(self, *, keep_empty: bool = False) -> int:
        """Delete stored entries; returns the bytes freed."""
        freed = 0
        for sub in ("prompts",) if keep_empty else ("empty", "prompts"):
            for p, st in list(self._entries(sub)):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
                    freed += st.st_size
        return freed


def _checksum(tensor: torch.Tensor) -> str:
    import torch

    data = tensor.detach().to("cpu", torch.float32).contiguous()
    header = f"{tuple(data.shape)}".encode()
    return hashlib.sha256(header + data.numpy().tobytes()).hexdigest()
