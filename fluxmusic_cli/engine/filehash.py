"""The tool's one file hash: SHA-256 of a file, remembered so that large weights hash once.

The memo lives in the tool cache, keyed by the file's resolved path, size and modification
time, so an edited or replaced file is hashed again. Only large files are memoised (small ones
hash in milliseconds), and a cache that cannot be written only costs the hashing again.
"""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path

from fluxmusic_cli.engine.paths import cache_dir

BLOCK = 1 << 22
MEMO_MIN_BYTES = 64 * 1024**2  # smaller files are hashed again each time, leaving no memo


def file_sha256(path: Path) -> str:
    """SHA-256 hex digest of the file at `path`, from the memo when the file is unchanged."""
    path = Path(path).resolve()
    st = path.stat()
    key = hashlib.sha256(f"{path}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:32]
    memo = cache_dir() / "hashes" / key
    if memo.is_file():
        return memo.read_text().strip()
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(BLOCK), b""):
            digest.update(block)
    value = digest.hexdigest()
    if st.st_size >= MEMO_MIN_BYTES:
        from fluxmusic_cli import atomic
        from fluxmusic_cli.errors import OutputError

        with contextlib.suppress(OutputError):
            atomic.make_folder(memo.parent)
            atomic.write_text(memo, value)
    return value
