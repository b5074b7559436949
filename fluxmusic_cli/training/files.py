"""Run files written whole or not at all (through `fluxmusic_cli.atomic`), and read back."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fluxmusic_cli import atomic


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path that replaces `path` only if the block succeeds (folder created)."""
    atomic.make_folder(Path(path).parent)
    with atomic.writing(Path(path)) as tmp:
        yield tmp


def write_tensors(
    path: Path, tensors: dict[str, Any], metadata: dict[str, str] | None = None
) -> Path:
    """A safetensors file, whole or not at all (folder created). Written through
    `atomic.writing_stream`, so a full disk is a sentence (safetensors' own writer reports it
    as a SafetensorError) and the file follows the umask."""
    from safetensors.torch import save

    atomic.make_folder(Path(path).parent)
    with atomic.writing_stream(Path(path)) as stream:
        stream.write(save(tensors, metadata=metadata))
    return Path(path)


def write_json(path: Path, data: Any) -> Path:
    atomic.make_folder(Path(path).parent)
    return atomic.write_text(Path(path), json.dumps(data, indent=2, default=str) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))
