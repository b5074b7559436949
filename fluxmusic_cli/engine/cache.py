"""What is on disk: whether a component can be used without a download, where it is, and the
caches' entries (hub repos the tool uses, converted checkpoints, stored embeddings) with their
sizes, for `models`, `cache ls` and `cache rm`. Nothing here prints.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from fluxmusic_cli import atomic
from fluxmusic_cli.engine import conversion, hub, paths, registry
from fluxmusic_cli.engine.sources import ComponentRef


def is_cached(ref: ComponentRef) -> bool:
    """Whether the component can be used now without any download."""
    if ref.path is not None:
        return ref.path.exists()
    if ref.variant is not None:
        if conversion.converted_checkpoints(ref.variant):
            return True
        return hub.local_state(ref.variant.repo_id, "main", (ref.variant.filename,)).complete
    assert ref.hub is not None
    return hub.local_state(ref.hub.repo_id, ref.hub.revision, ref.hub.files).complete


def where(ref: ComponentRef) -> Path | None:
    """Where the component's files are on disk now, or None when they are not there."""
    if ref.path is not None:
        return ref.path if ref.path.exists() else None
    if ref.variant is not None:
        conv = conversion.converted_checkpoints(ref.variant)
        if conv:
            return conv[0].path
        state = hub.local_state(ref.variant.repo_id, "main", (ref.variant.filename,))
        return state.present.get(ref.variant.filename)
    assert ref.hub is not None
    state = hub.local_state(ref.hub.repo_id, ref.hub.revision, ref.hub.files)
    return state.snapshot if state.complete else None


def tree_size(path: Path) -> int:
    """Bytes under `path`, following no symlinks except a top-level file's."""
    if path.is_file():
        return path.stat().st_size
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_size
            except OSError:
                continue
    return total


@dataclass(frozen=True)
class CacheEntry:
    """One removable thing in the caches."""

    name: str
    kind: str  # "hub" (a repo in huggingface_hub's cache), "converted", "embeddings", "other"
    path: Path
    size_bytes: int
    aliases: tuple[str, ...] = ()
    detail: str = ""

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "kind": self.kind,
            "path": str(self.path),
            "size_bytes": self.size_bytes,
            "aliases": list(self.aliases),
            "detail": self.detail,
        }


def _known_repos() -> dict[str, tuple[str, ...]]:
    """Repos the tool downloads from, with the short names `cache rm` accepts for them."""
    repos: dict[str, tuple[str, ...]] = {registry.FLUXMUSIC_REPO: ("fluxmusic", "checkpoints")}
    for comp in registry.T5_SOURCES.values():
        repos[comp.repo_id] = (comp.key, *(a for a in comp.aliases if a != "default"))
    repos[registry.CLAP.repo_id] = ("clap",)
    repos[registry.AUDIOLDM2.repo_id] = ("audioldm2", "vae-vocoder")
    return repos


def list_cache() -> list[CacheEntry]:
    """The tool's cached files and the hub repos it uses, with their sizes."""
    entries: list[CacheEntry] = []
    hub_cache = hub.hub_cache_dir()
    if hub_cache.is_dir():
        from huggingface_hub import scan_cache_dir

        try:
            scan = scan_cache_dir(hub_cache)
        except Exception:  # noqa: BLE001 - a corrupt shared cache must not break listing
            scan = None
        known = _known_repos()
        for repo in scan.repos if scan else ():
            if repo.repo_type == "model" and repo.repo_id in known:
                files = sorted({f.file_name for r in repo.revisions for f in r.files})
                entries.append(
                    CacheEntry(
                        repo.repo_id,
                        "hub",
                        repo.repo_path,
                        repo.size_on_disk,
                        known[repo.repo_id],
                        detail=", ".join(files),
                    )
                )
    root = paths.cache_dir()
    if root.is_dir():
        for child in sorted(root.iterdir()):
            if child.name == "converted" and child.is_dir():
                for conv in conversion.converted_checkpoints():
                    entries.append(
                        CacheEntry(
                            f"converted/{conv.path.name}",
                            "converted",
                            conv.path,
                            tree_size(conv.path),
                            (conv.variant,),
                            detail=f"from {conv.repo_id}/{conv.filename}",
                        )
                    )
            elif child.name == "embeddings" and child.is_dir():
                for item in sorted(child.iterdir()):
                    if not item.name.startswith("."):
                        name = f"embeddings/{item.name}"
                        entries.append(CacheEntry(name, "embeddings", item, tree_size(item)))
            elif not child.name.startswith("."):
                entries.append(CacheEntry(child.name, "other", child, tree_size(child)))
    return entries


def find_cache_entries(name: str, entries: list[CacheEntry] | None = None) -> list[CacheEntry]:
    """Entries called `name` or carrying it as an alias (a variant name matches its conversions)."""
    entries = list_cache() if entries is None else entries
    key = name.strip()
    return [e for e in entries if key == e.name or key in e.aliases]


def remove_cache_entry(entry: CacheEntry) -> int:
    """Delete one entry; returns the bytes freed. A folder that refuses (read-only, another
    user's) is one sentence."""
    try:
        return _remove(entry)
    except OSError as exc:
        raise atomic.os_error(exc, Path(exc.filename or entry.path), "remove") from None


def _remove(entry: CacheEntry) -> int:
    if entry.kind == "hub":
        from huggingface_hub import scan_cache_dir

        scan = scan_cache_dir(hub.hub_cache_dir())
        for repo in scan.repos:
            if repo.repo_path == entry.path:
                strategy = scan.delete_revisions(*(r.commit_hash for r in repo.revisions))
                strategy.execute()
        if entry.path.exists():
            shutil.rmtree(entry.path, ignore_errors=True)
        return entry.size_bytes
    if entry.path.is_dir() and not entry.path.is_symlink():
        shutil.rmtree(entry.path)
    else:
        entry.path.unlink(missing_ok=True)
        if entry.kind == "converted":
            entry.path.with_suffix(".json").unlink(missing_ok=True)
    return entry.size_bytes
