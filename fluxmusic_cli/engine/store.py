"""The model store: where models run, loading each once, the memory policy, compile, release.

Every operation (generate, the editing commands, batch runs) asks the store for the text
conditioner, the flow model and the decoder; the store loads them lazily on the chosen device
and dtype, keeps them between calls, and releases what the memory policy says must go.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fluxmusic_cli.engine import devices
from fluxmusic_cli.engine.sources import ComponentRef, parse_ref
from fluxmusic_cli.errors import OutOfMemoryError

# (stage, completed, total, detail) -> None
LoadReporter = Callable[[str, int, int, str], None]


class ModelStore:
    """Holds the loaded models of one set of `EngineOptions`."""

    def __init__(self, options, *, report: LoadReporter | None = None) -> None:
        self.options = options
        self._report = report
        self._placement: devices.Placement | None = None
        self._policy: str | None = None
        self._text: Any = None  # placement.TextPlacement, decided once
        self.threads: int | None = None
        self.compile_note: str | None = None
        self.compile_scope: str | None = None  # "blocks" (regional) or "model", once compiled
        self._conditioners: dict[tuple[str, str], Any] = {}
        self._transformer = None
        self.transformer_info: dict[str, Any] = {}
        self.lora_info: list[dict[str, Any]] = []  # file, sha256, scale of each merged LoRA
        self._decoder = None
        self.refs = {
            "transformer": parse_ref("transformer", options.model),
            "t5": parse_ref("t5", options.t5),
            "clap": parse_ref("clap", options.clap),
            "audioldm2": parse_ref("audioldm2", options.vae_vocoder),
        }

    @property
    def placement(self) -> devices.Placement:
        """Device and dtype, resolved on first use after setting the CPU thread count (the
        CPU's `auto` dtype is measured at it)."""
        if self._placement is None:
            from fluxmusic_cli.engine import perf

            self.threads = perf.configure_threads(self.options.threads)
            self._placement = devices.resolve_placement(self.options.device, self.options.dtype)
        return self._placement

    def _emit(self, completed: int, total: int, detail: str) -> None:
        if self._report is not None:
            self._report("load", completed, total, detail)

    def _local(self, ref: ComponentRef) -> Path:
        from fluxmusic_cli.engine import hub

        return hub.ensure_local(ref, token=self.options.token, offline=self.options.offline)

    def conditioner(self, encoders: str | None = None, mode: str | None = None):
        """The text conditioner for an encoder subset and mode (created once, loads lazily)."""
        from fluxmusic_cli.engine.conditioning import TextConditioner
        from fluxmusic_cli.engine.embedding_cache import EmbeddingCache

        key = (encoders or self.options.encoders, mode or self.options.conditioning)
        if key not in self._conditioners:
            place = self.placement
            enc_dtype = devices.encoder_dtype(place.dtype, self._bf16_ok())
            self._conditioners[key] = TextConditioner(
                t5=self.refs["t5"],
                clap=self.refs["clap"],
                encoders=key[0],
                mode=key[1],
                device=self.text_placement.device,
                dtype=devices.Placement(place.device, enc_dtype, "").torch_dtype,
                cache=EmbeddingCache(),
                resolve=self._local,
                use_prompt_cache=self.options.prompt_cache,
                expect=self._text_width,
            )
        return self._conditioners[key]

    def _text_width(self, kind: str) -> int | None:
        """The width of `kind`'s embeddings the transformer takes (from shapes, no weights)."""
        from fluxmusic_cli.engine.checkpoint import text_widths
        from fluxmusic_cli.engine.conversion import ensure_transformer

        path = ensure_transformer(
            self.refs["transformer"], token=self.options.token, offline=self.options.offline
        )
        return text_widths(path).get(kind)

    @property
    def text_placement(self):
        """Where the text encoders run (`--text-device`), decided once before anything loads."""
        if self._text is None:
            from fluxmusic_cli.engine.placement import choose_text_device

            device = self.placement.device
            avail = None if device == "cpu" else devices.available_memory_bytes(device)
            need = self.estimate_memory_bytes()
            self._text = choose_text_device(self.options.text_device, device, avail, need)
        return self._text

    def memory_policy(self) -> str:
        """Decided once, before anything loads (free memory shrinks as models load)."""
        if self._policy is None:
            if self.options.memory != "auto":
                self._policy = self.options.memory
            else:
                avail = devices.available_memory_bytes(self.placement.device)
                est = self.estimate_memory_bytes()
                need = est["total"]
                if self.text_placement.device != self.placement.device:
                    need -= est["t5"] + est["clap"]  # encoded on the CPU, not on the device
                fits = avail is not None and need < 0.8 * avail
                self._policy = "resident" if fits else "sequential"
        return self._policy

    def provenance(self):
        """What a record says made its clip: the weights as loaded, where and how they ran."""
        from fluxmusic_cli.metadata import Provenance

        compiled = self.options.compile and self.compile_note is None
        return Provenance(
            model=dict(self.transformer_info),
            loras=list(self.lora_info),
            t5=self.refs["t5"].identity,
            clap=self.refs["clap"].identity,
            vae_vocoder=self.refs["audioldm2"].identity,
            device=self.placement.device,
            text_device=self.text_placement.device,
            dtype=self.placement.dtype,
            dtype_reason=self.placement.dtype_reason,
            memory_policy=self.memory_policy(),
            forward_batch=self.options.forward_batch,
            threads=self.threads,
            compile=compiled,
            compile_scope=self.compile_scope if compiled else None,
        )

    @property
    def sequential(self) -> bool:
        return self.memory_policy() == "sequential"

    def estimate_memory_bytes(self) -> dict[str, int]:
        """Weights memory of the chosen setup, per component and in total: the pre-flight
        plan's formula (`placement.component_bytes`) over the same parameter counts."""
        from fluxmusic_cli.engine.placement import component_bytes
        from fluxmusic_cli.engine.preflight import component_params

        counts: dict[str, int] = {}
        for ref in self.refs.values():
            counts.update(component_params(ref))
        return component_bytes(
            counts.pop("transformer"),
            self.placement.dtype,
            self.options.encoders,
            params=counts,
            bf16_ok=self._bf16_ok(),
        )

    def _bf16_ok(self) -> bool:
        return self.placement.device != "mps" or devices.mps_bf16_supported()

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
        free_memory(self.placement.device)

    def release_transformer(self) -> None:
        self._transformer = None
        free_memory(self.placement.device)

    @property
    def transformer_loaded(self) -> bool:
        return self._transformer is not None

    def transformer(self):
        """The flow model, loaded once (from the converted safetensors when available)."""
        if self._transformer is None:
            from fluxmusic_cli.engine.checkpoint import load_transformer
            from fluxmusic_cli.engine.conversion import ensure_transformer
            from fluxmusic_cli.engine.filehash import file_sha256

            ref = self.refs["transformer"]
            self._emit(0, 1, "transformer")
            path = ensure_transformer(ref, token=self.options.token, offline=self.options.offline)
            place = self.placement
            try:
                model, cfg = load_transformer(path, device=place.device, dtype=place.torch_dtype)
            except RuntimeError as exc:
                raise as_oom(exc, "the transformer") from exc
            if self.options.loras:
                from fluxmusic_cli.engine.lora import apply_loras

                self.lora_info = apply_loras(model, self.options.loras)
            if self.options.compile:
                from fluxmusic_cli.engine import perf

                model = perf.maybe_compile(model, True, on_fallback=self._note_compile)
                self.compile_scope = model.scope
            self._transformer = model
            self.transformer_info = {
                "source": ref.identity,
                "variant": ref.variant.name if ref.variant else None,
                "file": str(path),
                "sha256": file_sha256(path),
                "config": cfg.to_dict(),
            }
            self._emit(1, 1, "transformer")
        return self._transformer

    def _note_compile(self, reason: str) -> None:
        self.compile_note = reason

    def decoder(self):
        """The VAE and vocoder (which also encodes recordings), loaded once."""
        if self._decoder is None:
            from fluxmusic_cli.engine.decode import load_decoder

            self._emit(0, 1, "vae+vocoder")
            root = self._local(self.refs["audioldm2"])
            place = self.placement
            self._decoder = load_decoder(root, place.device, place.torch_dtype)
            self._emit(1, 1, "vae+vocoder")
        return self._decoder

    def close(self) -> None:
        self.release_encoders()
        self._transformer = None
        self._decoder = None
        free_memory(self.placement.device if self._placement else "cpu")


def free_memory(device: str) -> None:
    gc.collect()
    if device == "cuda":
        import torch

        torch.cuda.empty_cache()


def as_oom(exc: RuntimeError, what: str) -> Exception:
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
