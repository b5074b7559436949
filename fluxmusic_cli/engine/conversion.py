"""Released checkpoints, converted once: a variant's `.pt` is downloaded (`engine.hub`),
converted to safetensors in the tool cache and from then on loaded from there, without network
and without reading the `.pt` again. Nothing here prints.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from fluxmusic_cli import atomic, notices
from fluxmusic_cli.engine import hub, paths, registry
from fluxmusic_cli.engine.sources import ComponentRef
from fluxmusic_cli.errors import OutputError, UsageError

_HEX = re.compile(r"^[0-9a-f]{40}$|^[0-9a-f]{64}$")


@dataclass(frozen=True)
class ConvertedCheckpoint:
    path: Path
    variant: str
    repo_id: str
    filename: str
    commit: str | None
    etag: str
    sha256: str | None = None  # of the converted file itself, checked before it is used

    def to_dict(self) -> dict[str, object]:
        return {
            "path": str(self.path),
            "variant": self.variant,
            "repo_id": self.repo_id,
            "filename": self.filename,
            "commit": self.commit,
            "etag": self.etag,
        }

    def intact(self) -> bool:
        """Whether the file still is what was written (a conversion without a stored hash,
        from an older version, is trusted)."""
        from fluxmusic_cli.engine.checkpoint import file_sha256

        return self.sha256 is None or file_sha256(self.path) == self.sha256


def _converted_path(variant: registry.Variant, etag: str) -> Path:
    return paths.converted_dir() / f"{variant.name}-{etag[:16]}.safetensors"


def converted_checkpoints(variant: registry.Variant | None = None) -> list[ConvertedCheckpoint]:
    """Converted checkpoints in the tool cache, newest first."""
    folder = paths.converted_dir()
    if not folder.is_dir():
        return []
    found = []
    for meta_file in folder.glob("*.json"):
        try:
            meta = json.loads(meta_file.read_text())
        except (OSError, ValueError):
            continue
        weights = meta_file.with_suffix(".safetensors")
        if not weights.is_file() or (variant is not None and meta.get("variant") != variant.name):
            continue
        found.append(
            ConvertedCheckpoint(
                weights,
                meta.get("variant", ""),
                meta.get("repo_id", ""),
                meta.get("filename", ""),
                meta.get("commit"),
                meta.get("etag", ""),
                meta.get("sha256"),
            )
        )
    found.sort(key=lambda c: c.path.stat().st_mtime, reverse=True)
    return found


def _etag_of(pt_path: Path) -> str:
    target = pt_path.resolve()
    if _HEX.match(target.name):
        return target.name  # the hub cache names blobs by their etag (sha256 for LFS files)
    from fluxmusic_cli.engine.filehash import file_sha256

    return file_sha256(pt_path)


def _convert(variant: registry.Variant, pt_path: Path, etag: str) -> Path:
    """The converted file, or the `.pt` itself when the tool cache cannot be written."""
    from fluxmusic_cli.engine.checkpoint import convert_to_safetensors, file_sha256

    dst = _converted_path(variant, etag)
    try:
        convert_to_safetensors(pt_path, dst)
        _write_conversion_meta(variant, pt_path, etag, dst, file_sha256(dst))
    except OutputError as exc:
        notices.note(
            f"The tool cache cannot be written ({exc.message}); the released checkpoint is "
            "read directly each time instead of once converted (slower to load)."
        )
        return pt_path
    return dst


def _write_conversion_meta(
    variant: registry.Variant, pt_path: Path, etag: str, dst: Path, sha256: str
) -> None:
    meta = {
        "variant": variant.name,
        "repo_id": variant.repo_id,
        "filename": variant.filename,
        "commit": hub.commit_of(str(pt_path)),
        "etag": etag,
        "source_bytes": pt_path.stat().st_size,
        "sha256": sha256,
    }
    atomic.write_text(dst.with_suffix(".json"), json.dumps(meta, indent=2))


def ensure_transformer(
    ref: ComponentRef,
    *,
    token: str | None = None,
    offline: bool | None = None,
    refresh: bool = False,
    progress: hub.ProgressCallback | None = None,
) -> Path:
    """The transformer weights file to load: a local file as given, else the converted one.

    A released `.pt` is downloaded, converted once to safetensors in the tool cache and then
    reused without network and without reading the `.pt` again. With `refresh=True` the hub
    is asked whether the file changed (one HEAD request) before the cached conversion is used.
    """
    if ref.path is not None:
        return hub.validate_local(ref)
    if ref.variant is None:
        raise UsageError(f"{hub.describe(ref)} is not a transformer checkpoint.")
    variant = ref.variant
    off = hub.resolve_offline(offline)
    existing = [c for c in converted_checkpoints(variant) if _usable(c)]
    if existing and (off or not refresh):
        return existing[0].path
    if existing and not off:
        etag = hub.remote_etag(ref, token)
        if etag is not None and _converted_path(variant, etag).is_file():
            return _converted_path(variant, etag)
    pt = hub.ensure_local(ref, token=token, offline=off, refresh=refresh, progress=progress)
    etag = _etag_of(pt)
    done = _converted_path(variant, etag)
    if (
        done.is_file()
        and done.with_suffix(".json").is_file()
        and done in [c.path for c in existing]
    ):
        return done
    return _convert(variant, pt, etag)


def _usable(conv: ConvertedCheckpoint) -> bool:
    """An intact conversion; a damaged one is removed (and said once), to be converted again."""
    if conv.intact():
        return True
    notices.note(
        f"The converted checkpoint {conv.path.name} in the tool cache is damaged; it is "
        "converted again from the downloaded file."
    )
    for path in (conv.path, conv.path.with_suffix(".json")):
        with contextlib.suppress(OSError):
            path.unlink()
    return False


def fetch_all(
    refs: Iterable[ComponentRef],
    *,
    token: str | None = None,
    offline: bool | None = None,
    refresh: bool = False,
    progress: hub.ProgressCallback | None = None,
) -> list[Path]:
    """Make every component available; one path per ref, in order (a variant's converted file)."""
    out: list[Path] = []
    for ref in refs:
        fn = ensure_transformer if ref.kind == "transformer" else hub.ensure_local
        out.append(fn(ref, token=token, offline=offline, refresh=refresh, progress=progress))
    return out
