"""One evaluation run: collect the sets, embed what is not cached, compute the metrics.

Never prints: progress goes through the `Hooks` callables and everything a person should read
(warnings, caveats) is returned in the `EvalReport`.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fluxmusic_cli.engine import registry
from fluxmusic_cli.engine.filehash import file_sha256
from fluxmusic_cli.errors import UsageError
from fluxmusic_cli.evaluation import audio_io, inputs, weights
from fluxmusic_cli.evaluation import metrics as maths
from fluxmusic_cli.evaluation.cache import EmbeddingCache, model_key

METRICS = ("fad", "kl", "is", "clap")
FAD_EMBEDDERS = ("vggish", "clap")


@dataclass
class EvalRequest:
    generated: Path
    reference: Path | None = None
    prompts_file: Path | None = None
    metrics: tuple[str, ...] | None = None  # None: every metric the inputs allow
    fad_embedder: str = "vggish"
    fad_infinity: bool = False
    sqrt_method: maths.SqrtMethod = "eigh"
    vggish_weights: Path | None = None
    panns_weights: Path | None = None
    clap_model: str = registry.CLAP.repo_id
    use_cache: bool = True
    allow_missing: bool = False
    is_splits: int = maths.IS_SPLITS
    device: str = "cpu"


@dataclass
class Hooks:
    """Progress callbacks; the CLI turns them into Rich bars."""

    stage: Callable[[str, int], None] = lambda label, total: None
    advance: Callable[[], None] = lambda: None
    download: Callable[[str, int, int | None], None] = lambda name, done, total: None


@dataclass
class SetSummary:
    folder: str
    n: int
    duration_min_s: float
    duration_mean_s: float
    duration_max_s: float
    sample_rates: list[int]
    channels: list[int]
    silent: list[str]


@dataclass
class PerFileRow:
    id: str
    path: str
    reference_path: str | None = None
    duration_s: float = 0.0
    sample_rate: int = 0
    clap_score: float | None = None
    kl_softmax: float | None = None
    kl_sigmoid: float | None = None
    fad_own: float | None = None


@dataclass
class EvalReport:
    metrics: dict[str, dict[str, Any]]
    generated: SetSummary
    reference: SetSummary | None
    per_file: list[PerFileRow]
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    cache: dict[str, dict[str, int]] = field(default_factory=dict)
    resampler: str = audio_io.RESAMPLER

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class _Set:
    clips: list[inputs.ClipFile]
    info: dict[str, audio_io.AudioInfo]


def _summary(folder: Path, s: _Set) -> SetSummary:
    durations = [s.info[c.id].duration for c in s.clips]
    return SetSummary(
        folder=str(folder),
        n=len(s.clips),
        duration_min_s=round(min(durations), 3),
        duration_mean_s=round(float(np.mean(durations)), 3),
        duration_max_s=round(max(durations), 3),
        sample_rates=sorted({s.info[c.id].sample_rate for c in s.clips}),
        channels=sorted({s.info[c.id].channels for c in s.clips}),
        silent=[c.id for c in s.clips if s.info[c.id].silent],
    )


def _choose_metrics(request: EvalRequest, has_prompts: bool, notes: list[str]) -> list[str]:
    if request.metrics:
        unknown = [m for m in request.metrics if m not in METRICS]
        if unknown:
            raise UsageError(
                f"Unknown metric(s) {', '.join(unknown)}; choose from {', '.join(METRICS)}."
            )
        chosen = list(dict.fromkeys(request.metrics))
        if request.reference is None and {"fad", "kl"} & set(chosen):
            raise UsageError("FAD and KL compare against a reference set; pass --reference DIR.")
        if "clap" in chosen and not has_prompts:
            raise UsageError(
                "The CLAP score needs the prompts: none found in a batch manifest, sidecar "
                "records or --prompts FILE."
            )
        return chosen
    chosen = ["is"]
    if request.reference is not None:
        chosen = ["fad", "kl", "is"]
    else:
        notes.append("FAD and KL skipped: they need --reference DIR.")
    if has_prompts:
        chosen.append("clap")
    else:
        notes.append("CLAP score skipped: no prompts found (manifest, sidecars or --prompts).")
    return chosen


def _load_set(folder: Path, label: str, prompts: dict[str, str], hooks: Hooks) -> _Set:
    clips = inputs.with_prompts(inputs.collect(folder, label), prompts)
    hooks.stage(f"Reading {label} clips", len(clips))
    info = {}
    for clip in clips:
        info[clip.id] = audio_io.inspect(clip.path)
        hooks.advance()
    return _Set(clips, info)


class _Embedding:
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

    def run(self, s: _Set, hooks: Hooks, label: str) -> dict[str, dict[str, np.ndarray]]:
        hooks.stage(f"{self.name}: {label}", len(s.clips))
        out = {}
        for clip in s.clips:
            info = s.info[clip.id]
            arrays = self.cache.load(info.content_hash)
            if arrays is None:
                if self.embedder is None:
                    self.embedder = self.factory()
                mono, rate = audio_io.read_mono(clip.path)
                arrays = self.embedder.embed(audio_io.resample(mono, rate, self.sample_rate))
                self.cache.save(info.content_hash, arrays)
            out[clip.id] = arrays
            hooks.advance()
        return out

    def stats(self) -> dict[str, int]:
        calls = self.embedder.forward_calls if self.embedder is not None else 0
        return {"cached": self.cache.hits, "computed": self.cache.misses, "forward_calls": calls}


def _resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def _too_short(s: _Set, min_samples: int, rate: int) -> list[str]:
    return [
        c.id for c in s.clips if s.info[c.id].frames * rate / s.info[c.id].sample_rate < min_samples
    ]


def _listing(ids: list[str]) -> str:
    return ", ".join(ids[:8]) + (f" and {len(ids) - 8} more" if len(ids) > 8 else "")


def run_eval(request: EvalRequest, hooks: Hooks | None = None) -> EvalReport:
    """Compute the requested metrics for `request.generated` (against `request.reference`)."""
    from fluxmusic_cli.evaluation import frontends

    hooks = hooks or Hooks()
    warnings: list[str] = []
    notes: list[str] = []
    device = _resolve_device(request.device)

    # 1. Read both sets (ids, prompts, formats, content hashes).
    prompts = inputs.read_prompts(request.prompts_file) if request.prompts_file else {}
    gen = _load_set(request.generated, "generated", prompts, hooks)
    ref = _load_set(request.reference, "reference", {}, hooks) if request.reference else None
    chosen = _choose_metrics(request, any(c.prompt for c in gen.clips), notes)
    if request.fad_embedder not in FAD_EMBEDDERS:
        raise UsageError(f"--fad-embedder must be one of {', '.join(FAD_EMBEDDERS)}.")

    pairs: list[tuple[inputs.ClipFile, inputs.ClipFile]] = []
    if "kl" in chosen and ref is not None:
        pairs, problems = inputs.pair(gen.clips, ref.clips, request.allow_missing)
        warnings += [f"KL uses the {len(pairs)} ids present in both sets; {p}." for p in problems]

    for label, s in (("generated", gen), ("reference", ref)):
        if s is None:
            continue
        silent = [c.id for c in s.clips if s.info[c.id].silent]
        if silent:
            warnings.append(
                f"{len(silent)} {label} clip(s) are silent (peak below -100 dBFS): "
                f"{_listing(silent)}. They are scored as they are and pull every metric."
            )

    # 2. Set up each model the chosen metrics need (weights resolved, loading deferred).
    models: dict[str, dict[str, Any]] = {}
    embeddings: dict[str, _Embedding] = {}
    need_vggish = "fad" in chosen and request.fad_embedder == "vggish"
    need_clap = "clap" in chosen or ("fad" in chosen and request.fad_embedder == "clap")
    need_panns = "kl" in chosen or "is" in chosen

    def weight_file(spec: weights.WeightFile, override: Path | None) -> weights.ResolvedWeights:
        resolved = weights.ensure_weights(
            spec, override, progress=lambda done, total: hooks.download(spec.key, done, total)
        )
        models[spec.key] = {
            "file": str(resolved.path),
            "sha256": resolved.sha256,
            "published_checkpoint": resolved.verified,
            "source": resolved.source,
        }
        if not resolved.verified:
            warnings.append(
                f"{spec.flag} {resolved.path} is not the published {spec.filename} (SHA-256 "
                "differs); numbers are not comparable with the paper's."
            )
        return resolved

    if need_vggish:
        from fluxmusic_cli.evaluation.embedders.vggish import VGGishEmbedder

        vg = weight_file(weights.VGGISH, request.vggish_weights)
        short = _too_short(gen, frontends.vggish_min_samples(), 16_000)
        short += _too_short(ref, frontends.vggish_min_samples(), 16_000) if ref else []
        if short:
            raise UsageError(
                f"VGGish needs clips of at least 0.975 s; too short: {_listing(short)}."
            )
        embeddings["vggish"] = _Embedding(
            "vggish",
            vg.sha256,
            {**VGGishEmbedder.settings, "resampler": audio_io.RESAMPLER},
            lambda: VGGishEmbedder.from_file(vg.path, device),
            VGGishEmbedder.sample_rate,
            request.use_cache,
        )
    if need_panns:
        from fluxmusic_cli.evaluation.embedders.panns import Cnn14Embedder

        pn = weight_file(weights.PANNS_CNN14_16K, request.panns_weights)
        embeddings["panns"] = _Embedding(
            "panns-cnn14-16k",
            pn.sha256,
            {**Cnn14Embedder.settings, "resampler": audio_io.RESAMPLER},
            lambda: Cnn14Embedder.from_file(pn.path, device),
            Cnn14Embedder.sample_rate,
            request.use_cache,
        )
    clap_text_cache: EmbeddingCache | None = None
    if need_clap:
        from fluxmusic_cli.evaluation.embedders.clap_audio import (
            SAMPLE_RATE,
            ClapEmbedder,
            resolve_clap_dir,
        )

        folder, identity = resolve_clap_dir(request.clap_model)
        if identity == "local":
            weight_files = sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin"))
            identity = "local:" + ",".join(
                file_sha256(p) for p in [folder / "config.json", *weight_files]
            )
        models["clap"] = {"source": request.clap_model, "identity": identity}
        holder: dict[str, ClapEmbedder] = {}

        def clap_factory() -> ClapEmbedder:
            if "model" not in holder:
                holder["model"] = ClapEmbedder(folder, device)
            return holder["model"]

        probe_settings = {
            "sample_rate": SAMPLE_RATE,
            "resampler": audio_io.RESAMPLER,
            "crop_seed": 0,
            "preprocessor": _preprocessor_digest(folder),
        }
        embeddings["clap"] = _Embedding(
            "clap-audio", identity, probe_settings, clap_factory, SAMPLE_RATE, request.use_cache
        )
        clap_text_cache = EmbeddingCache(
            model_key("clap-text", identity, {}), enabled=request.use_cache
        )

    # 3. Embed (cached per file by content hash).
    gen_emb = {k: e.run(gen, hooks, "generated") for k, e in embeddings.items()}
    ref_needs = {
        "vggish": "fad" in chosen,
        "panns": "kl" in chosen,
        "clap": "fad" in chosen and request.fad_embedder == "clap",
    }
    ref_emb = (
        {k: e.run(ref, hooks, "reference") for k, e in embeddings.items() if ref_needs[k]}
        if ref
        else {}
    )

    # 4. Metrics.
    results: dict[str, dict[str, Any]] = {}
    rows = {
        c.id: PerFileRow(
            id=c.id,
            path=str(c.path),
            duration_s=round(gen.info[c.id].duration, 3),
            sample_rate=gen.info[c.id].sample_rate,
        )
        for c in gen.clips
    }

    if "fad" in chosen and ref is not None:
        key, field_name = (
            ("vggish", "frames") if request.fad_embedder == "vggish" else ("clap", "audio")
        )
        gen_rows = np.concatenate(
            [np.atleast_2d(gen_emb[key][c.id][field_name]) for c in gen.clips]
        )
        ref_rows = np.concatenate(
            [np.atleast_2d(ref_emb[key][c.id][field_name]) for c in ref.clips]
        )
        dim = gen_rows.shape[1]
        for label, r in (("generated", gen_rows), ("reference", ref_rows)):
            if r.shape[0] < maths.min_rows_for_stable_fd(dim):
                warnings.append(
                    f"FAD: only {r.shape[0]} {label} embeddings for {dim} dimensions (fewer "
                    f"than {maths.min_rows_for_stable_fd(dim)}); the covariance is poorly "
                    "estimated and FAD is biased upward."
                )
        if min(gen_rows.shape[0], ref_rows.shape[0]) < 2:
            raise UsageError("FAD needs at least two embeddings in each set.")
        ref_stats = maths.gaussian_stats(ref_rows)
        fad = maths.frechet_distance(maths.gaussian_stats(gen_rows), ref_stats, request.sqrt_method)
        results["fad"] = {
            "value": fad,
            "embedder": request.fad_embedder,
            "dim": dim,
            "n_generated_embeddings": int(gen_rows.shape[0]),
            "n_reference_embeddings": int(ref_rows.shape[0]),
            "n_generated": len(gen.clips),
            "n_reference": len(ref.clips),
            "sqrt_method": request.sqrt_method,
        }
        if request.fad_embedder == "vggish":
            for c in gen.clips:
                own = gen_emb["vggish"][c.id]["frames"]
                if own.shape[0] >= 2:
                    rows[c.id].fad_own = maths.frechet_distance(
                        maths.gaussian_stats(own), ref_stats, request.sqrt_method
                    )
        if request.fad_infinity:
            try:
                inf = maths.fad_infinity(gen_rows, ref_stats, method=request.sqrt_method)
            except ValueError as exc:
                warnings.append(f"FAD-infinity skipped: {exc}.")
            else:
                results["fad_infinity"] = {
                    "value": inf.intercept,
                    "r2": inf.r2,
                    "slope": inf.slope,
                    "sizes": list(inf.sizes),
                    "values": list(inf.values),
                }

    if "kl" in chosen and pairs:
        kl = maths.kl_divergence(
            np.stack([ref_emb["panns"][r.id]["logits"] for _, r in pairs]),
            np.stack([gen_emb["panns"][g.id]["logits"] for g, _ in pairs]),
        )
        results["kl"] = {
            "value": kl.softmax,
            "kl_sigmoid": kl.sigmoid,
            "n_pairs": len(pairs),
            "direction": "reference || generated",
        }
        for (g, r), soft, sig in zip(pairs, kl.per_item_softmax, kl.per_item_sigmoid):
            rows[g.id].reference_path = str(r.path)
            rows[g.id].kl_softmax = float(soft)
            rows[g.id].kl_sigmoid = float(sig)

    if "is" in chosen:
        logits = np.stack([gen_emb["panns"][c.id]["logits"] for c in gen.clips])
        if logits.shape[0] < 10 * request.is_splits:
            warnings.append(
                f"IS: {logits.shape[0]} clips over {request.is_splits} splits is fewer than 10 "
                "per split; the score and its std are unstable."
            )
        try:
            score = maths.inception_score(logits, splits=request.is_splits)
        except ValueError as exc:
            warnings.append(f"IS skipped: {exc}.")
        else:
            results["is"] = {
                "value": score.mean,
                "std": score.std,
                "n": len(gen.clips),
                "splits": request.is_splits,
                "seed": maths.IS_SEED,
            }

    if "clap" in chosen:
        assert clap_text_cache is not None
        prompted = [c for c in gen.clips if c.prompt]
        unprompted = [c.id for c in gen.clips if not c.prompt]
        if unprompted:
            message = f"{len(unprompted)} generated clip(s) have no prompt: {_listing(unprompted)}"
            if not request.allow_missing:
                raise UsageError(
                    message + ".",
                    hint="Give them prompts with --prompts FILE, "
                    "or pass --allow-missing to score only the prompted clips.",
                )
            warnings.append(message + "; the CLAP score leaves them out.")
        text = _text_embeddings(
            [c.prompt or "" for c in prompted], clap_text_cache, embeddings["clap"].factory
        )
        audio = np.stack([gen_emb["clap"][c.id]["audio"] for c in prompted])
        scores = maths.cosine_similarities(text, audio)
        for c, s in zip(prompted, scores):
            rows[c.id].clap_score = float(s)
        results["clap"] = {
            "value": float(scores.mean()),
            "n": len(prompted),
            "model": request.clap_model,
        }
        if request.clap_model == registry.CLAP.repo_id:
            notes.append(
                f"CLAP score uses {registry.CLAP.repo_id}, the same model whose text tower "
                "conditioned the generator; this can flatter the score."
            )

    return EvalReport(
        metrics=results,
        generated=_summary(request.generated, gen),
        reference=_summary(request.reference, ref) if ref and request.reference else None,
        per_file=[rows[c.id] for c in gen.clips],
        warnings=warnings,
        notes=notes,
        models=models,
        cache={e.name: e.stats() for e in embeddings.values()},
    )


def _preprocessor_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for name in ("preprocessor_config.json", "processor_config.json"):
        path = folder / name
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _text_embeddings(
    prompts: list[str], cache: EmbeddingCache, factory: Callable[[], Any]
) -> np.ndarray:
    out: list[np.ndarray | None] = []
    todo: list[int] = []
    for i, prompt in enumerate(prompts):
        key = hashlib.sha256(prompt.encode("utf-8")).hexdigest()
        hit = cache.load(key)
        out.append(hit["text"] if hit else None)
        if hit is None:
            todo.append(i)
    if todo:
        fresh = factory().embed_texts([prompts[i] for i in todo])
        for i, row in zip(todo, fresh):
            cache.save(hashlib.sha256(prompts[i].encode("utf-8")).hexdigest(), {"text": row})
            out[i] = row
    return np.stack([o for o in out if o is not None])
