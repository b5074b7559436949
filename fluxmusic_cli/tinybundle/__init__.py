"""Tiny random-weight model bundles in the real on-disk layouts, for tests and smoke runs."""

from fluxmusic_cli.tinybundle.text import write_tiny_clap, write_tiny_t5  # noqa: F401
