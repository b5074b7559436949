"""A whole tiny bundle: transformer, T5, CLAP, VAE and vocoder, each in its hub layout.

Its audio is noise; it exists so tests, `fluxmusic doctor` and `--model tiny` run every loading
and generation code path without the real (multi-GB) weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

T5_DIM = 32
CLAP_DIM = 32


MODEL_FILE = "musicflow_tiny.pt"


@dataclass(frozen=True)
class TinyBundle:
    root: Path
    model: Path
    t5: Path
    clap: Path
    audioldm2: Path

    @classmethod
    def at(cls, root: Path) -> TinyBundle:
        """Where `build_tiny_bundle(root)` puts each component."""
        root = Path(root)
        return cls(root, root / MODEL_FILE, root / "t5", root / "clap", root / "audioldm2")

    def cli_args(self) -> list[str]:
        """The options that point a command at this bundle."""
        return [
            "--model",
            str(self.model),
            "--t5",
            str(self.t5),
            "--clap",
            str(self.clap),
            "--vae-vocoder",
            str(self.audioldm2),
        ]

    def engine_options(self, **overrides: Any):
        from fluxmusic_cli.engine.requests import EngineOptions

        values = dict(
            model=str(self.model),
            t5=str(self.t5),
            clap=str(self.clap),
            vae_vocoder=str(self.audioldm2),
            device="cpu",
            dtype="fp32",
        )
        values.update(overrides)
        return EngineOptions(**values)


def build_tiny_bundle(root: Path, *, t5_layout: str = "encoder-only", seed: int = 0) -> TinyBundle:
    """Write every component under `root` (a few MB, about a second)."""
    from fluxmusic_cli.engine.quiet import quiet_libraries

    with quiet_libraries():  # save_pretrained's shard bar is noise here
        return _write_all(Path(root), t5_layout, seed)


def _write_all(root: Path, t5_layout: str, seed: int) -> TinyBundle:
    from fluxmusic_cli.tinybundle.audio import write_tiny_audioldm2
    from fluxmusic_cli.tinybundle.text import write_tiny_clap, write_tiny_t5
    from fluxmusic_cli.tinybundle.transformer import write_tiny_fluxmusic

    at = TinyBundle.at(root)
    return TinyBundle(
        root=root,
        model=write_tiny_fluxmusic(at.model, context_in_dim=T5_DIM, vec_in_dim=CLAP_DIM, seed=seed),
        t5=write_tiny_t5(at.t5, layout=t5_layout, d_model=T5_DIM),
        clap=write_tiny_clap(at.clap, hidden=CLAP_DIM),
        audioldm2=write_tiny_audioldm2(at.audioldm2, seed=seed),
    )
