"""Orchestration: a request in, 16 kHz waveforms and their generation records out.

`Engine.generate` and `Engine.edit` read as the steps they take (check, encode the prompts,
prepare latents, denoise, decode, splice, record), composed from stage functions over the
model store (`engine/store.py`), so a new operation reuses them. Models load lazily and stay
loaded between calls, so a batch loads each model once. Progress is reported through a
callback; nothing here prints.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from fluxmusic_cli import metadata
from fluxmusic_cli.engine import editing, sampling
from fluxmusic_cli.engine.requests import (
    ClipSettings,
    EditRequest,
    EditSource,
    EngineOptions,
    GenerationRequest,
)
from fluxmusic_cli.engine.store import ModelStore, as_oom
from fluxmusic_cli.errors import UsageError
from fluxmusic_cli.metadata import GenerationRecord


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
    record: GenerationRecord
    latent: Any = None  # torch.Tensor (8, T, 16), float32: the final latent (for --save-latent)


@dataclass
class GenerationResult:
    clips: list[Clip]
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


class Engine:
    """Holds the loaded models between operations; one per process is the intended use."""

    def __init__(
        self,
        options: EngineOptions | None = None,
        *,
        progress: ProgressCallback | None = None,
    ) -> None:
        self.options = options or EngineOptions()
        self.options.check()
        self._progress = progress
        self.store = ModelStore(self.options, report=self._emit)
        self._embeddings: dict[tuple[str, str, str], tuple[Any, Any]] = {}
        self._recordings: dict[tuple[str, int | None], tuple[Any, float]] = {}

    # -- the store's face ------------------------------------------------------------------------

    @property
    def refs(self):
        return self.store.refs

    @property
    def placement(self):
        return self.store.placement

    def conditioner(self, encoders: str | None = None, mode: str | None = None):
        return self.store.conditioner(encoders, mode)

    def required_refs(self):
        return self.store.required_refs()

    def estimate_memory_bytes(self) -> dict[str, int]:
        return self.store.estimate_memory_bytes()

    def release_encoders(self) -> None:
        self.store.release_encoders()

    def close(self) -> None:
        self.store.close()

    def _emit(self, stage: str, completed: int, total: int, detail: str = "") -> None:
        if self._progress is not None:
            self._progress(ProgressEvent(stage, completed, total, detail))

    # -- stage: text -----------------------------------------------------------------------------

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
            if self.store.transformer_loaded and self.store.sequential:
                self.store.release_transformer()
            self._emit("encode", 0, len(todo))
            result = self.conditioner(encoders, mode).encode(todo)
            for i, p in enumerate(todo):
                self._embeddings[(encoders, mode, p)] = (result.txt[i], result.y[i])
            warnings.extend(str(item) for item in getattr(result, "truncated", []) or [])
            self._emit("encode", len(todo), len(todo))
            if self.store.sequential:
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

    def _guided_text(
        self, prompts: Sequence[str], negative: str, encoders: str, mode: str
    ) -> tuple[Any, Any, list[str]]:
        """Conditioning for `denoise`'s halves: the prompts' rows, then the negative's for each."""
        import torch

        batch = len(prompts)
        txt, y, warnings = self.encode([*prompts, negative], encoders=encoders, mode=mode)
        txt = torch.cat([txt[:batch], txt[batch:].expand(batch, -1, -1)])
        y = torch.cat([y[:batch], y[batch:].expand(batch, -1)])
        return txt, y, warnings

    # -- stage: sampling -------------------------------------------------------------------------

    def _velocity(self, model, txt, y, length: int, cache: float | None) -> sampling.VelocityFn:
        """The model bound to its conditioning for one sampling run, through the first-block
        cache when one is asked for (a fresh cache each run)."""
        from fluxmusic_cli.engine import block_cache

        velocity = sampling.model_velocity(model, txt, y, length=length)
        if cache is None:
            block_cache.disable(model)  # a run before may have installed it
            return velocity
        return block_cache.cached_velocity(model, velocity, cache)

    def _window_sampler(
        self, model, txt, y, settings: ClipSettings, start: int, on_step
    ) -> sampling.WindowSampler:
        """A `sample_window(known, mask, noise)` for one item: masked sampling of one window,
        with position ids made for that window's own length."""
        device = self.placement.device
        schedule = sampling.get_schedule(settings.steps)

        def sample(known, mask, noise):
            velocity = self._velocity(model, txt, y, known.shape[1], settings.cache)
            try:
                out = sampling.masked_denoise(
                    velocity,
                    known[None].to(device),
                    mask,
                    noise[None],
                    schedule,
                    start,
                    settings.guidance,
                    on_step=lambda i, n: on_step(),
                    interval=settings.guidance_interval,
                )
            except RuntimeError as exc:
                raise as_oom(exc, "denoising") from exc
            return out[0]

        return sample

    def _denoise_batch(self, model, txt, y, latents, request: GenerationRequest):
        """One clip per row of `latents` (B, 8, T, 16) from noise, `forward_batch` items per
        forward pass; returns the final latents (B, 8, T, 16) on the CPU."""
        import torch

        batch, length = latents.shape[0], latents.shape[2]
        img = sampling.patchify(latents.float()).to(self.placement.device)
        chunks = _chunks(batch, self.options.forward_batch)
        schedule = sampling.get_schedule(request.steps)
        finals = []
        try:
            with torch.inference_mode():
                for k, (lo, hi) in enumerate(chunks):
                    cond = self._velocity(
                        model,
                        torch.cat([txt[lo:hi], txt[batch + lo : batch + hi]]),
                        torch.cat([y[lo:hi], y[batch + lo : batch + hi]]),
                        length,
                        request.cache,
                    )
                    done = k * request.steps
                    final = sampling.denoise(
                        cond,
                        img[lo:hi],
                        schedule,
                        request.guidance,
                        on_step=lambda i, n, done=done: self._emit(
                            "denoise", done + i, n * len(chunks)
                        ),
                        interval=request.guidance_interval,
                    )
                    finals.append(sampling.unpatchify(final, length).float().cpu())
        except RuntimeError as exc:
            raise as_oom(exc, "denoising") from exc
        return torch.cat(finals)

    def _denoise_windowed(self, model, txt, y, request: GenerationRequest):
        """Long-form windows and loop seams, item by item; returns (latents, windows)."""
        import torch

        batch = len(request.prompts)
        target = sampling.latent_length(request.duration)
        context = editing.context_frames(request.context) if target > sampling.WINDOW_FRAMES else 0
        windows = len(sampling.window_plan(0, target, context))
        passes = windows + (1 if request.loop else 0)
        tracker = _StepCounter(self._emit, passes * request.steps * batch)
        finals = []
        with torch.inference_mode():
            for i, seed in enumerate(request.seeds):
                rows = [i] if request.guidance == 1.0 else [i, batch + i]
                window = self._window_sampler(
                    model, txt[rows], y[rows], request, request.steps, tracker
                )
                noise = sampling.NoiseStream(seed)
                latent = sampling.continue_latent(window, None, target, noise, context=context)
                if request.loop:
                    seam = editing.seam_frames(request.seam, target)
                    latent, _ = sampling.make_loop(window, latent, seam, noise)
                finals.append(latent)
        return torch.stack(finals), windows

    # -- stage: decoding -------------------------------------------------------------------------

    def _decode(self, latents, keep: int, *, loop: bool = False):
        """(B, 8, T, 16) -> (B, keep) float32 numpy, each latent decoded whole in one pass. A
        loop is decoded three times over and its middle third kept, so its end flows into its
        start."""
        import torch

        decoder = self.store.decoder()
        length = latents.shape[2]
        waves = []
        self._emit("decode", 0, latents.shape[0])
        with torch.inference_mode():
            for k in range(latents.shape[0]):
                z = latents[k : k + 1]
                if loop:
                    z = torch.cat([z, z, z], dim=2)
                wave = decoder.decode(z)[0]
                if loop:
                    period = length * sampling.SAMPLES_PER_LATENT_FRAME
                    wave = wave[period : 2 * period]
                waves.append(wave[:keep].float().cpu().numpy())
                self._emit("decode", k + 1, latents.shape[0])
        import numpy as np

        return np.stack(waves)

    # -- operation: generate ---------------------------------------------------------------------

    def generate(
        self,
        request: GenerationRequest,
        *,
        encoders: str | None = None,
        mode: str | None = None,
        latents: Any | None = None,
    ) -> GenerationResult:
        """One clip per (prompt, seed): one window up to 10.24 s, else windows that continue
        the music so far; a loop gets its seam repainted. `latents` replaces the noise."""
        clock = _Stopwatch()
        encoders = encoders or request.encoders or self.options.encoders
        mode = mode or request.conditioning or self.options.conditioning

        # 1. Check the request.
        request.check()
        self.options.check_clip(request)
        warnings: list[str] = []
        length = sampling.latent_length(request.duration)
        shape = (len(request.prompts), sampling.LATENT_CHANNELS, length, sampling.LATENT_FREQ)
        if latents is not None and (request.windowed or tuple(latents.shape) != shape):
            raise UsageError(f"Given latents have shape {tuple(latents.shape)}, not the request's.")

        # 2. Encode the prompts and the negative prompt (each distinct text once).
        with clock("encode_s"):
            txt, y, enc_warnings = self._guided_text(
                request.prompts, request.negative_prompt, encoders, mode
            )
        warnings += enc_warnings

        # 3. Load the flow model.
        with clock("load_s"):
            model = self.store.transformer()

        # 4. Denoise: one window per clip from its seed's noise (drawn on the CPU), or
        #    long-form windows and loop seams.
        with clock("denoise_s"):
            windows = 1
            if request.windowed:
                finals, windows = self._denoise_windowed(model, txt, y, request)
            else:
                noise = (
                    latents if latents is not None else sampling.get_noise(request.seeds, length)
                )
                finals = self._denoise_batch(model, txt, y, noise, request)
        warnings += [self.store.compile_note] if self.store.compile_note else []
        warnings += [self.placement.note] if self.placement.note else []

        # 5. Decode each whole latent; trim to the requested duration (a loop keeps its period).
        with clock("decode_s"):
            keep = length * sampling.SAMPLES_PER_LATENT_FRAME if request.loop else None
            keep = keep or sampling.num_samples(request.duration)
            wave = self._decode(finals, keep, loop=request.loop)

        # 6. Records (a loop records its period).
        made = metadata.Made(
            operation="generate",
            duration=round(wave.shape[1] / sampling.SAMPLE_RATE, 6)
            if request.loop
            else request.duration,
            encoders=encoders,
            conditioning=mode,
            latent_frames=length,
            sample_rate=sampling.SAMPLE_RATE,
            timings=clock.done(),
            extra=metadata.long_form_fields(
                loop=request.loop,
                long_form=length > sampling.WINDOW_FRAMES,
                windows=windows,
                context=request.context,
                seam=_seam_seconds(request, length),
                seam_auto=request.seam is None,
            ),
        )
        pairs = zip(request.prompts, request.seeds)
        records = metadata.new_records(self.store.provenance(), request, made, pairs)
        clips = [
            Clip(r.prompt, r.seed, w, sampling.SAMPLE_RATE, r, z)
            for r, w, z in zip(records, wave, finals, strict=True)
        ]
        return GenerationResult(clips=clips, warnings=warnings, timings=clock.timings)

    # -- operation: edit a recording -------------------------------------------------------------

    def edit(self, request: EditRequest) -> GenerationResult:
        """Remix, repaint, extend or loop one recording; the result holds one clip."""
        from fluxmusic_cli.engine.edit_plan import plan_edit

        clock = _Stopwatch()
        encoders = request.encoders or self.options.encoders
        mode = request.conditioning or self.options.conditioning

        # 1. Check everything that needs no model, and plan the frames.
        plan = plan_edit(request)
        self.options.check_clip(request)

        # 2. The recording's latent: its exact sidecar latent, or the VAE's encoding.
        with clock("encode_audio_s"):
            latent, gain = self._source_latent(request.source, plan.cut_samples)

        # 3. Encode the prompt and the negative prompt.
        with clock("encode_s"):
            txt, y, warnings = self._guided_text(
                [request.prompt], request.negative_prompt, encoders, mode
            )

        # 4. Sample with the kept frames known.
        with clock("load_s"):
            model = self.store.transformer()
        with clock("denoise_s"):
            final, generated, windows = self._sample_edit(model, txt, y, request, plan, latent)
        warnings += [self.store.compile_note] if self.store.compile_note else []
        warnings += [self.placement.note] if self.placement.note else []

        # 5. Decode the whole latent in one pass, back at the recording's level.
        with clock("decode_s"):
            decoded = self._decode(final[None], plan.output_samples, loop=plan.loop)[0] / gain

        # 6. Kept regions play the recording itself, crossfaded into the generated ones.
        wave = _splice_recording(request, plan, decoded, generated)

        # 7. Record.
        made = metadata.Made(
            operation=request.operation,
            duration=round(plan.output_samples / sampling.SAMPLE_RATE, 6),
            encoders=encoders,
            conditioning=mode,
            latent_frames=final.shape[1],
            sample_rate=sampling.SAMPLE_RATE,
            timings=clock.done(),
            extra={
                **plan.record,
                "windows": windows,
                "crossfade": request.crossfade,
                "gain": gain,
                "input": self._input_record(request.source, plan),
            },
        )
        pairs = [(request.prompt, request.seed)]
        (record,) = metadata.new_records(self.store.provenance(), request, made, pairs)
        clip = Clip(request.prompt, request.seed, wave, sampling.SAMPLE_RATE, record, final)
        return GenerationResult(clips=[clip], warnings=warnings, timings=clock.timings)

    def _source_latent(self, source: EditSource, cut_samples: int | None):
        """(latent (8, T, 16), gain): the sidecar's latent with gain 1, else the VAE's mean
        encoding of the recording (cut to `cut_samples` first when given)."""
        from fluxmusic_cli.engine import audio_in

        if source.latent is not None:
            return source.latent.float().cpu(), 1.0
        key = (source.sha256, cut_samples)
        if key in self._recordings:  # a grid of remixes encodes its recording once
            return self._recordings[key]
        samples = source.samples if cut_samples is None else source.samples[:cut_samples]
        prepared = audio_in.prepare(samples, name=source.shown)
        self._emit("encode", 0, 1, "recording")
        try:
            latent = audio_in.encode(self.store.decoder(), prepared)
        except RuntimeError as exc:
            raise as_oom(exc, "the VAE encoder") from exc
        self._emit("encode", 1, 1, "recording")
        self._recordings[key] = (latent[0], prepared.gain)
        return self._recordings[key]

    def _sample_edit(self, model, txt, y, request, plan, latent):
        """(final latent (8, T, 16), generated-frame mask (T,), windows) for the operation."""
        import torch

        tracker = _StepCounter(self._emit, plan.passes * plan.start)
        rows = [0] if request.guidance == 1.0 else [0, 1]
        window = self._window_sampler(model, txt[rows], y[rows], request, plan.start, tracker)
        noise = sampling.NoiseStream(request.seed)
        length = latent.shape[1]
        with torch.inference_mode():
            if plan.operation == "extend":
                final = sampling.continue_latent(
                    window, latent, plan.target_frames, noise, context=plan.context
                )
                generated = torch.cat([torch.zeros(length), torch.ones(final.shape[1] - length)])
                return final, generated, plan.passes
            if plan.operation == "loop":
                final, generated = sampling.make_loop(window, latent, plan.seam, noise)
                return final, generated, 1
            mask = torch.tensor(plan.mask, dtype=torch.float32)
            final = window(latent, mask, noise.draw(length)).float().cpu()
            return final, mask, 1

    @staticmethod
    def _input_record(source: EditSource, plan) -> dict[str, Any]:
        from fluxmusic_cli.engine import audio_in

        return {
            "path": source.path,
            "sha256": source.sha256,
            "duration": round(source.samples.shape[0] / sampling.SAMPLE_RATE, 6),
            "channels": source.channels,
            "sample_rate": source.source_rate,
            "to_16k": audio_in.RESAMPLER,
            "latent_file": source.latent_file,
            "from_latent": source.latent is not None,
            "used_samples": plan.original_samples,
        }


def _seam_seconds(request: GenerationRequest, length: int) -> float | None:
    """The seam a loop of `length` frames was made with (the one chosen when none was given)."""
    if not request.loop:
        return None
    return round(editing.seam_frames(request.seam, length) * sampling.FRAME_SECONDS, 2)


def _splice_recording(request: EditRequest, plan, decoded, generated):
    """The decoded audio where frames were generated, the recording itself where they were
    kept, blended linearly over the crossfade inside the kept part."""
    from fluxmusic_cli.engine import splice

    original = request.source.samples[: plan.original_samples]
    weight = splice.decoded_weight(
        splice.frame_mask_to_samples(generated, plan.output_samples),
        original.shape[0],
        request.crossfade,
        circular=plan.loop,
    )
    return splice.splice(decoded, original, weight)


class _Stopwatch:
    """Seconds per stage (`with clock("decode_s"): ...`), and the total since it was made."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.timings: dict[str, float] = {}

    @contextmanager
    def __call__(self, key: str) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            self.timings[key] = time.perf_counter() - t

    def done(self) -> dict[str, float]:
        self.timings["total_s"] = time.perf_counter() - self.start
        return self.timings


class _StepCounter:
    """Counts Euler steps across windows and items, reporting them as one denoise bar."""

    def __init__(self, emit, total: int) -> None:
        self._emit = emit
        self.total = max(total, 1)
        self.done = 0

    def __call__(self) -> None:
        self.done += 1
        self._emit("denoise", self.done, self.total)


def _chunks(n: int, size: int) -> list[tuple[int, int]]:
    return [(lo, min(lo + size, n)) for lo in range(0, n, size)]
