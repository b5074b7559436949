"""Orchestration: a request in, 16 kHz waveforms and their generation records out.

`Engine.generate` reads as the steps it takes: check the request, encode the prompts (each
distinct prompt once), draw the noise, denoise, decode, trim. Models load lazily and stay
loaded between calls, so a batch loads each model once. Progress is reported through a
callback; nothing here prints.
"""

from __future__ import annotations

import gc
import math
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from fluxmusic_cli import __version__
from fluxmusic_cli.engine import devices, sampling
from fluxmusic_cli.engine.conditioning import ENCODER_SUBSETS, MODES, Encoders
from fluxmusic_cli.engine.conditioning import Mode as ConditioningMode
from fluxmusic_cli.engine.sources import DEFAULT_SOURCES, ComponentRef, parse_ref
from fluxmusic_cli.errors import OutOfMemoryError, UsageError

DEFAULT_NEGATIVE_PROMPT = "low quality, gentle"
DEFAULT_STEPS = 50
DEFAULT_GUIDANCE = 7.0
MAX_STEPS = 1000
MAX_SEED = 2**63 - 1

MemoryPolicy = Literal["auto", "sequential", "resident"]
MEMORY_POLICIES: tuple[str, ...] = ("auto", "sequential", "resident")


@dataclass(frozen=True)
class EngineOptions:
    """Which weights, where they run, and how text is turned into conditioning."""

    model: str = DEFAULT_SOURCES["transformer"]
    t5: str = DEFAULT_SOURCES["t5"]
    clap: str = DEFAULT_SOURCES["clap"]
    vae_vocoder: str = DEFAULT_SOURCES["audioldm2"]
    encoders: Encoders = "both"
    conditioning: ConditioningMode = "training"
    device: str = "auto"
    dtype: str = "auto"
    memory: MemoryPolicy = "auto"
    token: str | None = None
    offline: bool | None = None
    prompt_cache: bool = True
    # Items per forward pass. 1 makes every clip bit-identical whatever the request's batch
    # size (matrix kernels round differently for other batch shapes); more is faster on GPUs.
    forward_batch: int = 1
    compile: bool = False  # torch.compile the transformer (falls back to eager on failure)
    threads: int | None = None  # CPU threads; None: OMP_NUM_THREADS, else physical cores
    loras: tuple[tuple[str, float], ...] = ()  # (file, scale): merged into the transformer

    def check(self) -> None:
        if self.forward_batch < 1:
            raise UsageError(f"Forward batch must be at least 1, got {self.forward_batch}.")
        if self.encoders not in ENCODER_SUBSETS:
            raise UsageError(
                f"Unknown encoder subset {self.encoders!r}; choose one of "
                f"{', '.join(ENCODER_SUBSETS)}."
            )
        if self.conditioning not in MODES:
            raise UsageError(
                f"Unknown conditioning mode {self.conditioning!r}; choose one of "
                f"{', '.join(MODES)}."
            )
        if self.memory not in MEMORY_POLICIES:
            raise UsageError(
                f"Unknown memory policy {self.memory!r}; choose one of "
                f"{', '.join(MEMORY_POLICIES)}."
            )


@dataclass(frozen=True)
class GenerationRequest:
    """What to generate: one clip per (prompt, seed) pair, with shared sampling settings."""

    prompts: tuple[str, ...]
    seeds: tuple[int, ...]
    negative_prompt: str = DEFAULT_NEGATIVE_PROMPT
    steps: int = DEFAULT_STEPS
    guidance: float = DEFAULT_GUIDANCE
    duration: float = sampling.TRAINED_SECONDS

    def check(self) -> list[str]:
        """Raise on what cannot run; return warnings for what runs but deserves a word."""
        if not self.prompts:
            raise UsageError("No prompt given.")
        if len(self.prompts) != len(self.seeds):
            raise UsageError(f"{len(self.prompts)} prompts but {len(self.seeds)} seeds.")
        for p in self.prompts:
            if not isinstance(p, str) or not p.strip():
                raise UsageError(
                    'Empty prompt: describe the music, e.g. "warm lo-fi piano, vinyl crackle".'
                )
        for s in self.seeds:
            if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= MAX_SEED:
                raise UsageError(f"Seed must be an integer from 0 to {MAX_SEED}, got {s!r}.")
        if isinstance(self.steps, bool) or not isinstance(self.steps, int):
            raise UsageError(f"Steps must be an integer, got {self.steps!r}.")
        if not 1 <= self.steps <= MAX_STEPS:
            raise UsageError(f"Steps must be between 1 and {MAX_STEPS}, got {self.steps}.")
        if not math.isfinite(self.guidance) or self.guidance < 0:
            raise UsageError(f"Guidance must be a number >= 0, got {self.guidance}.")
        sampling.latent_length(self.duration)
        warnings = []
        if self.duration > sampling.TRAINED_SECONDS + 1e-9:
            warnings.append(
                f"Duration {self.duration:g} s is longer than the {sampling.TRAINED_SECONDS} s "
                "clips the model was trained on; quality may drop."
            )
        return warnings


@dataclass
class ProgressEvent:
    """`stage` is load | encode | denoise | decode; `completed` of `total` units."""

    stage: str
    completed: int
    total: int
    detail: str = ""


ProgressCallback = Callable[[ProgressEvent], None]


@dataclass
class Clip:
    prompt: str
    seed: int
    waveform: Any  # np.ndarray (samples,), float32, at `sample_rate`
    sample_rate: int
    record: dict[str, Any]


@dataclass
class GenerationResult:
    clips: list[Clip]
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


class Engine:
    """Holds the loaded models between generations; one per process is the intended use."""

    def __init__(
        self,
        options: EngineOptions | None = None,
        *,
        progress: ProgressCallback | None = None,
    ) -> None:
        self.options = options or EngineOptions()
        self.options.check()
        self._progress = progress
        self._placement: devices.Placement | None = None
        self._policy: str | None = None
        self._threads: int | None = None
        self._compile_note: str | None = None
        self._compile_scope: str | None = None  # "blocks" (regional) or "model", once compiled
        self._conditioners: dict[tuple[str, str], Any] = {}
        self._transformer = None
        self._transformer_info: dict[str, Any] = {}
        self._loras: list[dict[str, Any]] = []
        self._decoder = None
        self._embeddings: dict[tuple[str, str, str], tuple[Any, Any]] = {}
        self.load_counts: dict[str, int] = {"transformer": 0, "decoder": 0}
        self.refs = {
            "transformer": parse_ref("transformer", self.options.model),
            "t5": parse_ref("t5", self.options.t5),
            "clap": parse_ref("clap", self.options.clap),
            "audioldm2": parse_ref("audioldm2", self.options.vae_vocoder),
        }

    # -- placement and loading ---------------------------------------------------------------

    @property
    def placement(self) -> devices.Placement:
        """Device and dtype, resolved on first use (which also sets the CPU thread count)."""
        if self._placement is None:
            from fluxmusic_cli.engine import perf

            self._placement = devices.resolve_placement(self.options.device, self.options.dtype)
            self._threads = perf.configure_threads(self.options.threads)
        return self._placement

    def _emit(self, stage: str, completed: int, total: int, detail: str = "") -> None:
        if self._progress is not None:
            self._progress(ProgressEvent(stage, completed, total, detail))

    def _local(self, ref: ComponentRef) -> Path:
        from fluxmusic_cli.engine import hub

        return hub.ensure_local(ref, token=self.options.token, offline=self.options.offline)

    def _local_transformer(self, ref: ComponentRef) -> Path:
        from fluxmusic_cli.engine import hub

        return hub.ensure_transformer(ref, token=self.options.token, offline=self.options.offline)

    def conditioner(self, encoders: str | None = None, mode: str | None = None):
        """The text conditioner for an encoder subset and mode (created once, loads lazily)."""
        from fluxmusic_cli.engine.conditioning import TextConditioner
        from fluxmusic_cli.engine.embedding_cache import EmbeddingCache

        key = (encoders or self.options.encoders, mode or self.options.conditioning)
        if key not in self._conditioners:
            place = self.placement
            # T5-XXL overflows in fp16; it runs in bf16 there instead.
            enc_dtype = "bf16" if place.dtype == "fp16" else place.dtype
            self._conditioners[key] = TextConditioner(
                t5=self.refs["t5"],
                clap=self.refs["clap"],
                encoders=key[0],
                mode=key[1],
                device=place.device,
                dtype=devices.Placement(place.device, enc_dtype, "").torch_dtype,
                cache=EmbeddingCache(),
                resolve=self._local,
                use_prompt_cache=self.options.prompt_cache,
            )
        return self._conditioners[key]

    def _memory_policy(self) -> str:
        """Decided once, before anything loads (free memory shrinks as models load)."""
        if self._policy is None:
            if self.options.memory != "auto":
                self._policy = self.options.memory
            else:
                avail = devices.available_memory_bytes(self.placement.device)
                need = self.estimate_memory_bytes()["total"]
                fits = avail is not None and need < 0.8 * avail
                self._policy = "resident" if fits else "sequential"
        return self._policy

    def estimate_memory_bytes(self) -> dict[str, int]:
        """Rough weights memory of the chosen setup (parameters x bytes per parameter)."""
        from fluxmusic_cli.engine import registry

        per = devices.BYTES_PER_PARAM[self.placement.dtype]
        ref = self.refs["transformer"]
        transformer = (ref.variant.params if ref.variant else _local_params(ref.path, 4)) * per
        t5_ref, clap_ref = self.refs["t5"], self.refs["clap"]
        t5 = 0
        if self.options.encoders != "clap":
            params = registry.T5_XXL_ENCODER_PARAMS if t5_ref.hub else _local_params(t5_ref.path, 2)
            t5 = params * max(per, 2)
        clap = 0
        if self.options.encoders != "t5":
            params = registry.CLAP_TEXT_PARAMS if clap_ref.hub else _local_params(clap_ref.path, 4)
            clap = params * 4
        dec_ref = self.refs["audioldm2"]
        decoder = 4 * (
            registry.AUDIOLDM2_DECODE_PARAMS if dec_ref.hub else _local_params(dec_ref.path, 4)
        )
        return {
            "transformer": transformer,
            "t5": t5,
            "clap": clap,
            "decoder": decoder,
            "total": transformer + t5 + clap + decoder,
        }

    def required_refs(self) -> list[ComponentRef]:
        """Components a generation needs on disk: the transformer, the decoder, the encoders in
        use, and a left-out encoder only while its empty-prompt embedding is not stored."""
        refs = [self.refs["transformer"], self.refs["audioldm2"]]
        cond = self.conditioner()
        for kind in ("t5", "clap"):
            needed = kind in cond.active or cond.cache.get(cond.key(kind, "")) is None
            if needed:
                refs.append(self.refs[kind])
        return refs

    def release_encoders(self) -> None:
        for cond in self._conditioners.values():
            cond.release()
        _free_memory(self.placement.device)

    def release_transformer(self) -> None:
        self._transformer = None
        _free_memory(self.placement.device)

    def transformer(self):
        """The flow model, loaded once (from the converted safetensors when available)."""
        if self._transformer is None:
            from fluxmusic_cli.engine.checkpoint import file_sha256, load_transformer

            ref = self.refs["transformer"]
            self._emit("load", 0, 1, "transformer")
            path = self._local_transformer(ref)
            place = self.placement
            try:
                model, cfg = load_transformer(path, device=place.device, dtype=place.torch_dtype)
            except RuntimeError as exc:
                raise _as_oom(exc, "the transformer") from exc
            if self.options.loras:
                from fluxmusic_cli.engine.lora import apply_loras

                self._loras = apply_loras(model, self.options.loras)
            if self.options.compile:
                from fluxmusic_cli.engine import perf

                model = perf.maybe_compile(model, True, on_fallback=self._note_compile)
                self._compile_scope = model.scope
            self._transformer = model
            self._transformer_info = {
                "source": ref.identity,
                "variant": ref.variant.name if ref.variant else None,
                "file": str(path),
                "sha256": file_sha256(path),
                "config": cfg.to_dict(),
            }
            self.load_counts["transformer"] += 1
            self._emit("load", 1, 1, "transformer")
        return self._transformer

    def _note_compile(self, reason: str) -> None:
        self._compile_note = reason

    def decoder(self):
        if self._decoder is None:
            from fluxmusic_cli.engine.decode import load_decoder

            self._emit("load", 0, 1, "vae+vocoder")
            root = self._local(self.refs["audioldm2"])
            place = self.placement
            self._decoder = load_decoder(root, place.device, place.torch_dtype)
            self.load_counts["decoder"] += 1
            self._emit("load", 1, 1, "vae+vocoder")
        return self._decoder

    # -- text ------------------------------------------------------------------------------------

    def encode(
        self, prompts: Sequence[str], *, encoders: str | None = None, mode: str | None = None
    ) -> tuple[Any, Any, list[str]]:
        """(txt (B, L, D), y (B, V), warnings) for `prompts`, each distinct prompt encoded once.

        Results are kept in memory for the engine's life, so a batch can encode every prompt up
        front, release the encoders, and then generate chunk by chunk.
        """
        import torch

        encoders = encoders or self.options.encoders
        mode = mode or self.options.conditioning
        todo = [p for p in dict.fromkeys(prompts) if (encoders, mode, p) not in self._embeddings]
        warnings: list[str] = []
        if todo:
            if self._transformer is not None and self._memory_policy() == "sequential":
                self.release_transformer()
            self._emit("encode", 0, len(todo))
            result = self.conditioner(encoders, mode).encode(todo)
            for i, p in enumerate(todo):
                self._embeddings[(encoders, mode, p)] = (result.txt[i], result.y[i])
            warnings.extend(_truncation_warnings(result))
            self._emit("encode", len(todo), len(todo))
            if self._memory_policy() == "sequential":
                self.release_encoders()
        rows = [self._embeddings[(encoders, mode, p)] for p in prompts]
        txt = torch.stack([r[0] for r in rows])
        y = torch.stack([r[1] for r in rows])
        return txt, y, warnings

    def forget(
        self, prompts: Sequence[str], *, encoders: str | None = None, mode: str | None = None
    ) -> None:
        """Drop prompts' embeddings from memory (a long batch encodes window by window)."""
        encoders = encoders or self.options.encoders
        mode = mode or self.options.conditioning
        for p in prompts:
            self._embeddings.pop((encoders, mode, p), None)

    # -- generation ------------------------------------------------------------------------------

    def generate(
        self,
        request: GenerationRequest,
        *,
        encoders: str | None = None,
        mode: str | None = None,
        latents: Any | None = None,
    ) -> GenerationResult:
        """Generate one clip per (prompt, seed); `latents` (B, 8, T, 16) replaces the noise."""
        import numpy as np
        import torch

        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        encoders = encoders or self.options.encoders
        mode = mode or self.options.conditioning

        # 1. Check the request.
        warnings = request.check()
        length = sampling.latent_length(request.duration)
        batch = len(request.prompts)

        # 2. Encode the prompts and the negative prompt (each distinct text once).
        t = time.perf_counter()
        txt, y, enc_warnings = self.encode(
            [*request.prompts, request.negative_prompt], encoders=encoders, mode=mode
        )
        warnings += enc_warnings
        txt = torch.cat([txt[:batch], txt[batch:].expand(batch, -1, -1)])
        y = torch.cat([y[:batch], y[batch:].expand(batch, -1)])
        timings["encode_s"] = time.perf_counter() - t

        # 3. Load the flow model; draw noise per seed on the CPU.
        t = time.perf_counter()
        model = self.transformer()
        timings["load_s"] = time.perf_counter() - t
        place = self.placement
        if latents is None:
            latents = sampling.get_noise(request.seeds, length)
        elif tuple(latents.shape) != (
            batch,
            sampling.LATENT_CHANNELS,
            length,
            sampling.LATENT_FREQ,
        ):
            raise UsageError(f"Given latents have shape {tuple(latents.shape)}, not the request's.")
        img = sampling.patchify(latents.float()).to(place.device)

        # 4. Denoise: Euler from t = 1 to 0, guided; each forward pass carries the conditional
        #    and unconditional halves of `forward_batch` items.
        t = time.perf_counter()
        chunks = _chunks(batch, self.options.forward_batch)
        schedule = sampling.get_schedule(request.steps)
        finals = []
        try:
            with torch.inference_mode():
                for k, (lo, hi) in enumerate(chunks):
                    cond = sampling.model_velocity(
                        model,
                        torch.cat([txt[lo:hi], txt[batch + lo : batch + hi]]),
                        torch.cat([y[lo:hi], y[batch + lo : batch + hi]]),
                        length=length,
                    )
                    done = k * request.steps
                    finals.append(
                        sampling.denoise(
                            cond,
                            img[lo:hi],
                            schedule,
                            request.guidance,
                            on_step=lambda i, n, done=done: self._emit(
                                "denoise", done + i, n * len(chunks)
                            ),
                        )
                    )
        except RuntimeError as exc:
            raise _as_oom(exc, "denoising") from exc
        timings["denoise_s"] = time.perf_counter() - t
        if self._compile_note:
            warnings.append(self._compile_note)

        # 5. Decode: latent -> mel -> waveform; trim to the requested duration.
        t = time.perf_counter()
        decoder = self.decoder()
        keep = sampling.num_samples(request.duration)
        waves = []
        self._emit("decode", 0, len(chunks))
        with torch.inference_mode():
            for k, final in enumerate(finals):
                wave = decoder.decode(sampling.unpatchify(final, length))
                waves.append(wave[:, :keep].float().cpu().numpy())
                self._emit("decode", k + 1, len(chunks))
        wave = np.concatenate(waves)
        timings["decode_s"] = time.perf_counter() - t
        timings["total_s"] = time.perf_counter() - t0

        # 6. Records.
        base = self._record_base(request, encoders, mode, length, timings)
        clips = [
            Clip(
                prompt=p,
                seed=s,
                waveform=wave[i],
                sample_rate=sampling.SAMPLE_RATE,
                record={**base, "prompt": p, "seed": s},
            )
            for i, (p, s) in enumerate(zip(request.prompts, request.seeds))
        ]
        return GenerationResult(clips=clips, warnings=warnings, timings=timings)

    def _record_base(
        self, request: GenerationRequest, encoders: str, mode: str, length: int, timings: dict
    ) -> dict[str, Any]:
        import diffusers
        import torch
        import transformers

        place = self.placement
        settings = asdict(request)
        del settings["prompts"], settings["seeds"]
        return {
            "tool": "fluxmusic",
            "version": __version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **settings,
            "encoders": encoders,
            "conditioning": mode,
            "latent_frames": length,
            "sample_rate": sampling.SAMPLE_RATE,
            "model": dict(self._transformer_info),
            "loras": list(self._loras),
            "t5": self.refs["t5"].identity,
            "clap": self.refs["clap"].identity,
            "vae_vocoder": self.refs["audioldm2"].identity,
            "device": place.device,
            "dtype": place.dtype,
            "memory_policy": self._memory_policy(),
            "forward_batch": self.options.forward_batch,
            "threads": self._threads,
            "compile": self.options.compile and self._compile_note is None,
            "compile_scope": self._compile_scope if self._compile_note is None else None,
            "timings": {k: round(v, 3) for k, v in timings.items()},
            "versions": {
                "torch": torch.__version__,
                "diffusers": diffusers.__version__,
                "transformers": transformers.__version__,
                "python": platform.python_version(),
            },
        }

    def close(self) -> None:
        self.release_encoders()
        self._transformer = None
        self._decoder = None
        _free_memory(self.placement.device if self._placement else "cpu")


def _chunks(n: int, size: int) -> list[tuple[int, int]]:
    return [(lo, min(lo + size, n)) for lo in range(0, n, size)]


def _truncation_warnings(result) -> list[str]:
    out = []
    for item in getattr(result, "truncated", []) or []:
        out.append(str(item))
    return out


def _local_params(path: Path | None, bytes_per_param: int) -> int:
    """Parameters of local weights, from their files' sizes (a file or a folder of them)."""
    if path is None or not path.exists():
        return 0
    files = (
        [path]
        if path.is_file()
        else [f for f in path.rglob("*") if f.suffix in (".safetensors", ".bin", ".pt", ".pth")]
    )
    return sum(f.stat().st_size for f in files) // bytes_per_param


def _free_memory(device: str) -> None:
    gc.collect()
    if device == "cuda":
        import torch

        torch.cuda.empty_cache()


def _as_oom(exc: RuntimeError, what: str) -> Exception:
    text = str(exc).lower()
    if "out of memory" in text or "can't allocate memory" in text or "not enough memory" in text:
        return OutOfMemoryError(
            f"Out of memory while running {what}.",
            hint=(
                "Try a smaller variant (--model small), --encoders clap, --dtype bf16, fewer "
                "items per batch, or --device cpu."
            ),
        )
    return exc
