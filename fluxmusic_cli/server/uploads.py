"""Request bodies read with a limit, counted while they stream: a body over its limit is
refused as soon as it passes it (or before, when its Content-Length says so), and nothing of
it is kept. Uploads go to a temporary file in the uploads folder under a name the server makes;
the service keeps the file only once it reads as audio."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

from fluxmusic_cli.errors import FluxMusicError


class TooLarge(FluxMusicError):
    """A request body over its limit (413)."""


def check_length(content_length: str | None, limit: int, what: str) -> None:
    """Refuse a body whose declared length is over `limit` before reading any of it."""
    if content_length is None:
        return
    try:
        declared = int(content_length)
    except ValueError:
        return  # the server's HTTP parser refuses a malformed length itself
    if declared > limit:
        raise TooLarge(_too_large(what, limit))


async def read_limited(chunks: AsyncIterator[bytes], limit: int, what: str) -> bytes:
    """The whole body, refused past `limit` bytes."""
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise TooLarge(_too_large(what, limit))
        parts.append(chunk)
    return b"".join(parts)


async def receive_upload(chunks: AsyncIterator[bytes], folder: Path, limit: int) -> Path:
    """The body written to a temporary file in `folder` (removed again on any failure)."""
    from fluxmusic_cli import atomic

    tmp = atomic.temp_path(Path(folder) / "upload")
    size = 0
    try:
        with open(tmp, "xb") as fh:
            async for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise TooLarge(_too_large("An upload", limit))
                fh.write(chunk)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return tmp


def _too_large(what: str, limit: int) -> str:
    mib = limit / (1024 * 1024)
    shown = f"{mib:g} MiB" if mib >= 1 else f"{limit} bytes"
    hint = " (--max-upload-mb)" if what == "An upload" else ""
    return f"{what} may hold at most {shown}{hint}; this one is larger, and nothing of it was kept."
