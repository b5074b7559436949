"""Classifier weights for the metrics: where their authors publish them, and checked downloads.

Files land in `cache_dir()/eval-weights`. A download streams to a temporary file, is hashed while it
arrives, and is renamed into place only when its SHA-256 matches the published digest. Digests are
the ones stated publicly for these files (the VGGish file name carries the first 8 hex digits of
its SHA-256, as torch.hub names files; Zenodo lists the CNN14 file's MD5, which we also check).
"""

from __future__ import annotations

import errno
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from fluxmusic_cli import atomic
from fluxmusic_cli.engine import hub, paths
from fluxmusic_cli.engine.filehash import file_sha256
from fluxmusic_cli.errors import CheckpointError, ModelMissingError

Progress = Callable[[int, "int | None"], None]
CHUNK = 1 << 20


@dataclass(frozen=True)
class WeightFile:
    key: str
    description: str
    filename: str
    url: str
    sha256: str
    flag: str
    md5: str | None = None
    size_bytes: int | None = None


VGGISH = WeightFile(
    key="vggish",
    description="VGGish (torchvggish port of the AudioSet release)",
    filename="vggish-10086976.pth",
    url="https://github.com/harritaylor/torchvggish/releases/download/v0.1/vggish-10086976.pth",
    sha256="10086976245803799d9194e9a73d9b6c1549c71d1b80106f5cade5608a561f4b",
    flag="--vggish-weights",
)

PANNS_CNN14_16K = WeightFile(
    key="panns",
    description="PANNs CNN14, 16 kHz (Zenodo record 3987831)",
    filename="Cnn14_16k_mAP=0.438.pth",
    url="https://zenodo.org/records/3987831/files/Cnn14_16k_mAP%3D0.438.pth?download=1",
    sha256="e2ee543a27919542c2ea03eabaa70b24dcd4e6c8e05621de6b67a94e4c5058e6",
    md5="362fc5ff18f1d6ad2f6d464b45893f2c",
    size_bytes=358_668_570,
    flag="--panns-weights",
)


@dataclass(frozen=True)
class ResolvedWeights:
    path: Path
    sha256: str
    verified: bool  # True when the file is the published checkpoint
    source: str  # "cache", "download" or "user"


def weights_dir() -> Path:
    return paths.cache_dir() / "eval-weights"


def _open_url(url: str) -> BinaryIO:
    """The network transport (one place, so tests can replace it)."""
    import urllib.request

    request = urllib.request.Request(url, headers={"User-Agent": "fluxmusic-eval"})
    return urllib.request.urlopen(request, timeout=60)  # noqa: S310 - fixed https URLs


def download(spec: WeightFile, dest: Path, progress: Progress | None = None) -> Path:
    """Fetch `spec.url` to `dest`; a file whose SHA-256 (or MD5) differs is refused."""
    atomic.make_folder(dest.parent)
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    done = 0
    with atomic.writing(dest) as part:
        try:
            with _open_url(spec.url) as response, open(part, "wb") as out:
                length = getattr(response, "headers", {}).get("Content-Length")
                total = int(length) if length else spec.size_bytes
                for block in iter(lambda: response.read(CHUNK), b""):
                    out.write(block)
                    sha.update(block)
                    md5.update(block)
                    done += len(block)
                    if progress:
                        progress(done, total)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise atomic.os_error(exc, dest) from None
            raise ModelMissingError(
                f"Could not download the {spec.description} weights from {spec.url} ({exc}).",
                hint=_manual_hint(spec),
            ) from exc
        if sha.hexdigest() != spec.sha256 or (spec.md5 and md5.hexdigest() != spec.md5):
            raise CheckpointError(
                f"The downloaded {spec.filename} ({done} bytes) does not match its published "
                f"SHA-256 {spec.sha256[:12]}...; it was discarded.",
                hint="Try again later; if it persists the host serves a different file.",
            )
    return dest


def _manual_hint(spec: WeightFile) -> str:
    return (
        f"Fetch {spec.url} on a connected machine and pass it with {spec.flag} FILE, "
        f"or copy it to {weights_dir() / spec.filename}."
    )


def ensure_weights(
    spec: WeightFile,
    override: Path | None = None,
    *,
    progress: Progress | None = None,
    on_download: Callable[[WeightFile], None] | None = None,
) -> ResolvedWeights:
    """The weights file to use: the user's, the cached copy, or a fresh checked download."""
    if override is not None:
        override = override.expanduser()
        if not override.is_file():
            raise ModelMissingError(f"{spec.flag}: no such file: {override}")
        digest = file_sha256(override)
        return ResolvedWeights(override.resolve(), digest, digest == spec.sha256, "user")
    cached = weights_dir() / spec.filename
    if cached.is_file():
        digest = file_sha256(cached)
        if digest != spec.sha256:
            raise CheckpointError(
                f"The cached {cached} does not match its published SHA-256.",
                hint="Delete it and run again to download a fresh copy.",
            )
        return ResolvedWeights(cached, digest, True, "cache")
    if hub.offline_mode():
        raise ModelMissingError(
            f"The {spec.description} weights ({spec.filename}) are not in the cache and "
            "downloads are off (HF_HUB_OFFLINE is set).",
            hint=_manual_hint(spec),
        )
    if on_download:
        on_download(spec)
    download(spec, cached, progress)
    return ResolvedWeights(cached, file_sha256(cached), True, "download")
