"""Fixtures of the server tests: one real `fluxmusic serve` per module where possible."""

from __future__ import annotations

import pytest
from served import start, stopped


@pytest.fixture(scope="module")
def server(tiny_bundle, tmp_path_factory):
    """`fluxmusic serve --port 0` on the tiny bundle with the default options."""
    root = tmp_path_factory.mktemp("served")
    srv = start(tiny_bundle, root / "data", root / "home")
    try:
        yield srv
    finally:
        stopped(srv)


@pytest.fixture
def same_cache(monkeypatch, server):
    """Local runs share the server's embedding cache, as a user's commands and server do: a
    prompt's cached embedding is what both start from, so their samples can be compared
    bit for bit."""
    monkeypatch.setenv("FLUXMUSIC_CACHE", str(server.home / "fluxmusic-cache"))
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
