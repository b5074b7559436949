"""The tool's own cache folder. Nothing is created at import time."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Root of the tool's cache: `FLUXMUSIC_CACHE`, else the platform's user cache folder.

    Hub downloads themselves live in huggingface_hub's cache (shared with other tools); this
    folder holds what the tool derives: converted checkpoints and stored text embeddings.
    """
    override = os.environ.get("FLUXMUSIC_CACHE")
    if override:
        return Path(override).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("fluxmusic", appauthor=False))


def converted_dir() -> Path:
    """Released `.pt` checkpoints converted once to safetensors."""
    return cache_dir() / "converted"


def embeddings_dir() -> Path:
    """Stored text-encoder outputs (empty-prompt and prompt embeddings)."""
    return cache_dir() / "embeddings"


def cpu_rates_dir() -> Path:
    """This machine's measured matmul rates, from which `--dtype auto` picks the CPU's dtype."""
    return cache_dir() / "cpu-rates"
