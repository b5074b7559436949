"""The embedders the metrics read (VGGish, PANNs CNN14, CLAP): set up once, run per clip.

Weights are resolved when an embedder is set up, but a model is only loaded for the first clip
the cache lacks; embeddings are cached per file by content hash, model and front-end settings.
Which embedders a run sets up follows from the metrics' `Need`s (`evaluation.scores`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fluxmusic_cli.engine.filehash import file_sha256
from fluxmusic_cli.errors import UsageError
from fluxmusic_cli.evaluation import audio_io, inputs, weights
from fluxmusic_cli.evaluation.cache import EmbeddingCache, model_key

if TYPE_CHECKING:
    from fluxmusic_cli.evaluation.request import EvalRequest, Hooks


@dataclass
class ClipSet:
    """The clips of one folder with what `audio_io.inspect` found out about each."""

    label: str  # "generated" or "reference"
    clips: list[inputs.ClipFile]
    info: dict[str, audio_io.AudioInfo]


class ClipEmbeddings:
    """Per-file embeddings for one model, computed only for files the cache lacks."""

    def __init__(
        self,
        name: str,
        identity: str,
        settings: dict[str, Any],
        factory: Callable[[], Any],
        sample_rate: int,
        use_cache: bool,
    ) -> None:
        self.name = name
        self.factory = factory
        self.sample_rate = sample_rate
        self.embedder: Any = None
        self.cache = EmbeddingCache(model_key(name, identity, settings), enabled=use_cache)

    def model(self) -> Any:
        if self.embedder is None:
            self.embedder = self.factory()
        return self.embedder

    def run(self, s: ClipSet, hooks: Hooks) -> dict[str, dict[str, np.ndarray]]:
        hooks.stage(f"{self.name}: {s.label}", len(s.clips))
        out = {}
        for clip in s.clips:
            info = s.info[clip.id]
            arrays = self.cache.load(info.content_hash)
            if arrays is None:
                mono, rate = audio_io.read_mono(clip.path)
                arrays = self.model().embed(audio_io.resample(mono, rate, self.sample_rate))
                self.cache.save(info.content_hash, arrays)
            out[clip.id] = arrays
            hooks.advance()
        return out

    def stats(self) -> dict[str, int]:
        calls = self.embedder.forward_calls if self.embedder is not None else 0
        return {"cached": self.cache.hits, "computed": self.cache.misses, "forward_calls": calls}


class ClapEmbeddings(ClipEmbeddings):
    """CLAP's audio embeddings, and its text embeddings (cached per prompt) from the same model."""

    def __init__(self, *args: Any, text_cache: EmbeddingCache, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.text_cache = text_cache

    def texts(self, prompts: list[str]) -> np.ndarray:
        keys = [hashlib.sha256(p.encode("utf-8")).hexdigest() for p in prompts]
        out: list[np.ndarray | None] = []
        for key in keys:
            hit = self.text_cache.load(key)
            out.append(hit["text"] if hit else None)
        todo = [i for i, row in enumerate(out) if row is None]
        if todo:
            fresh = self.model().embed_texts([prompts[i] for i in todo])
            for i, row in zip(todo, fresh):
                self.text_cache.save(keys[i], {"text": row})
                out[i] = row
        return np.stack([o for o in out if o is not None])


@dataclass
class Setup:
    """What setting an embedder up needs, and what it reports back (models used, warnings)."""

    request: EvalRequest
    device: str
    hooks: Hooks
    sets: list[ClipSet]
    models: dict[str, dict[str, Any]]
    warnings: list[str]

    def weights(self, spec: weights.WeightFile, override: Path | None) -> weights.ResolvedWeights:
        hooks = self.hooks
        resolved = weights.ensure_weights(
            spec, override, progress=lambda done, total: hooks.download(spec.key, done, total)
        )
        self.models[spec.key] = {
            "file": str(resolved.path),
            "sha256": resolved.sha256,
            "published_checkpoint": resolved.verified,
            "source": resolved.source,
        }
        if not resolved.verified:
            self.warnings.append(
                f"{spec.flag} {resolved.path} is not the published {spec.filename} (SHA-256 "
                "differs); numbers are not comparable with the paper's."
            )
        return resolved


def _too_short(s: ClipSet, min_samples: int, rate: int) -> list[str]:
    return [
        c.id for c in s.clips if s.info[c.id].frames * rate / s.info[c.id].sample_rate < min_samples
    ]


def _vggish(setup: Setup) -> ClipEmbeddings:
    from fluxmusic_cli.evaluation import frontends
    from fluxmusic_cli.evaluation.embedders.vggish import VGGishEmbedder

    vg = setup.weights(weights.VGGISH, setup.request.vggish_weights)
    rate = VGGishEmbedder.sample_rate
    short = [i for s in setup.sets for i in _too_short(s, frontends.vggish_min_samples(), rate)]
    if short:
        raise UsageError(
            f"VGGish needs clips of at least 0.975 s; too short: {inputs.listing(short)}."
        )
    return ClipEmbeddings(
        "vggish",
        vg.sha256,
        {**VGGishEmbedder.settings, "resampler": audio_io.RESAMPLER},
        lambda: VGGishEmbedder.from_file(vg.path, setup.device),
        rate,
        setup.request.use_cache,
    )


def _panns(setup: Setup) -> ClipEmbeddings:
    from fluxmusic_cli.evaluation.embedders.panns import Cnn14Embedder

    pn = setup.weights(weights.PANNS_CNN14_16K, setup.request.panns_weights)
    return ClipEmbeddings(
        "panns-cnn14-16k",
        pn.sha256,
        {**Cnn14Embedder.settings, "resampler": audio_io.RESAMPLER},
        lambda: Cnn14Embedder.from_file(pn.path, setup.device),
        Cnn14Embedder.sample_rate,
        setup.request.use_cache,
    )


def _preprocessor_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for name in ("preprocessor_config.json", "processor_config.json"):
        path = folder / name
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _clap(setup: Setup) -> ClipEmbeddings:
    from fluxmusic_cli.evaluation.embedders.clap_audio import (
        SAMPLE_RATE,
        ClapEmbedder,
        resolve_clap_dir,
    )

    source, use_cache = setup.request.clap_model, setup.request.use_cache
    folder, identity = resolve_clap_dir(source)
    if identity == "local":
        weight_files = sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin"))
        identity = "local:" + ",".join(
            file_sha256(p) for p in [folder / "config.json", *weight_files]
        )
    setup.models["clap"] = {"source": source, "identity": identity}
    settings = {
        "sample_rate": SAMPLE_RATE,
        "resampler": audio_io.RESAMPLER,
        "crop_seed": 0,
        "preprocessor": _preprocessor_digest(folder),
    }
    return ClapEmbeddings(
        "clap-audio",
        identity,
        settings,
        lambda: ClapEmbedder(folder, setup.device),
        SAMPLE_RATE,
        use_cache,
        text_cache=EmbeddingCache(model_key("clap-text", identity, {}), enabled=use_cache),
    )


# In the order they are set up and run (the order of the report's `models` and `cache`).
EMBEDDERS: dict[str, Callable[[Setup], ClipEmbeddings]] = {
    "vggish": _vggish,
    "panns": _panns,
    "clap": _clap,
}
