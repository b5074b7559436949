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
