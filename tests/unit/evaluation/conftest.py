"""Tiny random-weight evaluation models, written once per session."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class EvalModels:
    vggish: Path
    cnn14: Path
    clap: Path


@pytest.fixture(scope="session")
def eval_models(tmp_path_factory) -> EvalModels:
    from fluxmusic_cli.tinybundle.eval_models import write_tiny_cnn14, write_tiny_vggish
    from fluxmusic_cli.tinybundle.text import write_tiny_clap

    root = tmp_path_factory.mktemp("eval-models")
    return EvalModels(
        vggish=write_tiny_vggish(root / "vggish-tiny.pth"),
        cnn14=write_tiny_cnn14(root / "cnn14-tiny.pth"),
        clap=write_tiny_clap(root / "clap"),
    )
