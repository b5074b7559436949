"""Fixtures the CLI tests share: `generate` and `batch` on the tiny bundle, in a fresh folder."""

from __future__ import annotations

import pytest

FAST = ["--steps", "2", "--duration", "0.48", "--device", "cpu", "--dtype", "fp32"]


def _command(name, monkeypatch, run_cli, tiny_bundle, tmp_path, *, options_first: bool):
    monkeypatch.chdir(tmp_path)

    def run(*args, stdin=None):
        common = [*tiny_bundle.cli_args(), *FAST]
        argv = [name, *common, *args] if options_first else [name, *args, *common]
        return run_cli(argv, stdin)

    return run


@pytest.fixture
def gen(monkeypatch, run_cli, tiny_bundle, tmp_path):
    """`fluxmusic generate` with the bundle and fast settings; later flags win."""
    return _command("generate", monkeypatch, run_cli, tiny_bundle, tmp_path, options_first=True)


@pytest.fixture
def batch(monkeypatch, run_cli, tiny_bundle, tmp_path):
    """`fluxmusic batch ARGS...` with the bundle and fast settings after them."""
    return _command("batch", monkeypatch, run_cli, tiny_bundle, tmp_path, options_first=False)
