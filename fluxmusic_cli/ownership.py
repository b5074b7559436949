"""How the tool tells the files it wrote into a folder from a user's files of the same name.

A folder that `batch` or `vary` fills may hold a user's own files. A rerun replaces only what
the tool wrote there, recognised by a mark inside the file, never by its name alone:

- `manifest.jsonl`: every line is one of the tool's records (see `manifest.is_entry`), or a
  line a stopped run of the tool cut short;
- an HTML page (`index.html`): `<meta name="generator" content="fluxmusic; manifest.jsonl">`,
  naming the tool and the manifest of its folder;
- a PNG (`grid.png`, `NAME.mel.png`): the text chunks Software = fluxmusic and Source = the
  folder's manifest.

A file without the mark is the user's and is replaced only with `--force`.
"""

from __future__ import annotations

from pathlib import Path

TOOL = "fluxmusic"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_HTML_MARK = f'<meta name="generator" content="{TOOL};'
_HEAD = 64 * 1024  # the mark sits near the start: a page's head, a PNG's chunks before IDAT


def html_mark(manifest: str) -> str:
    """The meta tag that marks a page as the tool's, naming its folder's manifest."""
    return f'<meta name="generator" content="{TOOL}; {manifest}">'


def png_mark(manifest: str) -> dict[str, str]:
    """The PNG text chunks that mark a picture as the tool's (matplotlib's `metadata=`)."""
    return {"Software": TOOL, "Source": manifest}


def is_ours(path: Path) -> bool:
    """Whether `path` carries the tool's mark (an HTML page or a PNG); False for anything else,
    for a link (the tool never writes one) and for a file that cannot be read."""
    path = Path(path)
    if path.is_symlink() or not path.is_file():
        return False
    try:
        with open(path, "rb") as fh:
            head = fh.read(_HEAD)
    except OSError:
        return False
    if head.startswith(_PNG_SIGNATURE):
        return png_text(head).get("Software") == TOOL
    return _HTML_MARK.encode() in head


def png_text(data: bytes) -> dict[str, str]:
    """The tEXt chunks of a PNG that come before its image data (where writers put them)."""
    found: dict[str, str] = {}
    pos = len(_PNG_SIGNATURE)
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        if kind in (b"IDAT", b"IEND"):
            break
        if kind == b"tEXt":
            key, _, value = data[pos + 8 : pos + 8 + length].partition(b"\0")
            found[key.decode("latin-1")] = value.decode("latin-1")
        pos += 12 + length
    return found
