"""What the engine is asked for: the engine's own options, and the requests of one operation.

One home for these types. `EngineOptions` are fixed for an engine's life (which weights, where
they run); `ClipSettings` say how a clip is sampled apart from its prompt and seed, and are
what clips must share to go through one forward pass; `GenerateSettings` add the length and
shape of a clip made from noise; `GenerationRequest` and `EditRequest` are one call of
`Engine.generate` and `Engine.edit`. Each checks itself (`check()`), so a caller validates the
object it is about to run rather than a throwaway copy. No torch here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Literal

from fluxmusic_cli.engine import sampling
from fluxmusic_cli.engine.conditioning import ENCODER_SUBSETS, MODES, Encoders
from fluxmusic_cli.engine.conditioning import Mode as ConditioningMode
from fluxmusic_cli.engine.guidance import parse_interval
from fluxmusic_cli.engine.sources import DEFAULT_SOURCES
from fluxmusic_cli.errors import UsageError

DEFAULT_NEGATIVE_PROMPT = "low quality, gentle"
DEFAULT_STEPS = 50
DEFAULT_GUIDANCE = 7.0
MAX_STEPS = 1000
MAX_SEED = 2**63 - 1
MAX_GUIDANCE = 100.0  # the paper samples at 3.5, the published script at 7
MAX_CACHE = 1e9  # a threshold above any relative change a step makes: every later step reuses

MemoryPolicy = Literal["auto", "sequential", "resident"]
MEMORY_POLICIES: tuple[str, ...] = ("auto", "sequential", "resident")

Operation = Literal["remix", "repaint", "extend", "loop"]
OPERATIONS: tuple[str, ...] = ("remix", "repaint", "extend", "loop")
DEFAULT_STRENGTH = 0.5
DEFAULT_CROSSFADE = 0.1
DEFAULT_CONTEXT = sampling.DEFAULT_CONTEXT_FRAMES * sampling.FRAME_SECONDS  # 5.12 s
PREFERRED_SEAM = sampling.DEFAULT_SEAM_FRAMES * sampling.FRAME_SECONDS  # 2.56 s
# None: chosen per loop, PREFERRED_SEAM where it fits, else the longest seam that does.
DEFAULT_SEAM: float | None = None


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
    text_device: str = "auto"  # where T5 and CLAP run (engine/placement.py)

    def check(self) -> None:
        if self.forward_batch < 1:
            raise UsageError(f"Forward batch must be at least 1, got {self.forward_batch}.")
        _check_choice("encoder subset", self.encoders, ENCODER_SUBSETS)
        _check_choice("conditioning mode", self.conditioning, MODES)
        from fluxmusic_cli.engine.placement import TEXT_DEVICES

        _check_choice("text device", self.text_device, TEXT_DEVICES)
        _check_choice("memory policy", self.memory, MEMORY_POLICIES)
        if self.threads is not None:
            from fluxmusic_cli.engine.perf import check_threads

            check_threads(self.threads)

    def check_clip(self, settings: ClipSettings) -> None:
        """Refuse clip settings this engine cannot run."""
        if settings.cache is not None and self.compile:
            raise UsageError(
                "--cache and --compile cannot be combined yet (the cache's hooks are not "
                "compiled); drop one."
            )


@dataclass(frozen=True)
class ClipSettings:
    """How a clip is sampled apart from its prompt, seed and length: what clips must share to
    go through one forward pass."""

    negative_prompt: str = DEFAULT_NEGATIVE_PROMPT
    steps: int = DEFAULT_STEPS
    guidance: float = DEFAULT_GUIDANCE
    encoders: str | None = None  # None: the engine's
    # Fewer forward passes, by choice (engine/guidance.py, engine/block_cache.py); None: off,
    # which computes exactly what the published script does.
    guidance_interval: tuple[float, float] | None = None  # guide only while lo <= t <= hi
    cache: float | None = None  # First-Block Cache threshold

    def __post_init__(self) -> None:
        # "LO:HI" from the command line or [lo, hi] from a record, as a checked tuple.
        object.__setattr__(self, "guidance_interval", parse_interval(self.guidance_interval))

    def check(self) -> None:
        """Raise a UsageError naming the first value that cannot run."""
        if isinstance(self.steps, bool) or not isinstance(self.steps, int):
            raise UsageError(f"Steps must be an integer, got {self.steps!r}.")
        if not 1 <= self.steps <= MAX_STEPS:
            raise UsageError(f"Steps must be between 1 and {MAX_STEPS}, got {self.steps}.")
        if not math.isfinite(self.guidance) or not 0 <= self.guidance <= MAX_GUIDANCE:
            raise UsageError(
                f"Guidance must be a number >= 0 and <= {MAX_GUIDANCE:g}, got {self.guidance}."
            )
        if self.encoders is not None:
            _check_choice("encoder subset", self.encoders, ENCODER_SUBSETS)
        if self.cache is not None and not (
            math.isfinite(self.cache) and 0 <= self.cache <= MAX_CACHE
        ):
            raise UsageError(
                f"Cache threshold must be a number from 0 to {MAX_CACHE:g}, got {self.cache}."
            )

    @property
    def clip_settings(self) -> ClipSettings:
        """These settings alone, without what a subclass adds."""
        return ClipSettings(**_own_fields(self, ClipSettings))


@dataclass(frozen=True, kw_only=True)
class GenerateSettings(ClipSettings):
    """How a clip is made from noise: its sampling settings, its length, and whether it is a
    seamless loop or long-form windows."""

    duration: float = sampling.TRAINED_SECONDS
    loop: bool = False  # make the clip a seamless loop, a whole latent long
    seam: float | None = DEFAULT_SEAM  # loop seam, seconds; None: chosen to fit
    context: float = DEFAULT_CONTEXT  # long-form: seconds each window continues from

    @property
    def windowed(self) -> bool:
        """Longer than the trained window (long-form windows) or a loop: sampled item by item."""
        return self.loop or sampling.latent_length(self.duration) > sampling.WINDOW_FRAMES

    def check(self) -> None:
        super().check()
        length = sampling.latent_length(self.duration)
        if length > sampling.WINDOW_FRAMES:
            from fluxmusic_cli.engine.editing import context_frames

            context_frames(self.context)
        if self.loop:
            from fluxmusic_cli.engine.editing import seam_frames

            seam_frames(self.seam, length)
        elif self.seam is not None and not (math.isfinite(self.seam) and self.seam > 0):
            # Unused without --loop, but a value that could never work is still refused.
            raise UsageError(f"Seam {self.seam:g} s must be a positive length.")

    @property
    def generate_settings(self) -> GenerateSettings:
        """These settings alone, without what a subclass adds."""
        return GenerateSettings(**_own_fields(self, GenerateSettings))


@dataclass(frozen=True, kw_only=True)
class GenerationRequest(GenerateSettings):
    """What to generate: one clip per (prompt, seed) pair, with shared settings."""

    prompts: tuple[str, ...]
    seeds: tuple[int, ...]
    conditioning: str | None = None  # None: the engine's

    def check(self) -> None:
        """Raise on what cannot run."""
        if not self.prompts:
            raise UsageError("No prompt given.")
        if len(self.prompts) != len(self.seeds):
            raise UsageError(f"{len(self.prompts)} prompts but {len(self.seeds)} seeds.")
        for prompt, seed in zip(self.prompts, self.seeds, strict=True):
            check_prompt(prompt)
            check_seed(seed)
        super().check()


@dataclass(frozen=True)
class EditSource:
    """The recording being edited, and its exact latent when a matching sidecar was found."""

    path: str  # as given; "-" for stdin
    sha256: str
    samples: Any  # np.ndarray (n,) float32, mono 16 kHz, before any gain
    source_rate: int
    channels: int
    latent: Any | None = None  # torch.Tensor (8, T, 16) from NAME.latent.safetensors
    latent_file: str | None = None

    @property
    def shown(self) -> str:
        """The recording as messages name it."""
        return "the recording on stdin" if self.path == "-" else self.path

    @property
    def duration(self) -> float:
        """Seconds the edit works on: the audio's, or the latent's when starting from one."""
        if self.latent is not None:
            return self.latent.shape[1] * sampling.FRAME_SECONDS
        return self.samples.shape[0] / sampling.SAMPLE_RATE


@dataclass(frozen=True, kw_only=True)
class EditRequest(ClipSettings):
    """One edit of one recording; the fields an operation does not use keep their defaults."""

    operation: Operation
    source: EditSource
    prompt: str
    seed: int
    strength: float = DEFAULT_STRENGTH  # remix
    regions: tuple[tuple[float, float | None], ...] = ()  # repaint; None = to the end
    add: float | None = None  # extend: seconds to add ...
    to: float | None = None  # ... or the total length
    context: float = DEFAULT_CONTEXT  # extend
    seam: float | None = DEFAULT_SEAM  # loop; None: chosen to fit
    crossfade: float = DEFAULT_CROSSFADE
    conditioning: str | None = None

    def check(self) -> None:
        """What every operation refuses before the recording is looked at."""
        if self.operation not in OPERATIONS:
            raise UsageError(f"Unknown operation {self.operation!r}.")
        if not isinstance(self.prompt, str) or not self.prompt.strip():
            raise UsageError("Empty prompt: describe the music the edit should make.")
        check_seed(self.seed)
        super().check()
        if not math.isfinite(self.crossfade) or not 0 <= self.crossfade <= sampling.MAX_SECONDS:
            raise UsageError(
                f"Crossfade must be from 0 to {sampling.MAX_SECONDS:g} seconds, got "
                f"{self.crossfade:g}."
            )
        if self.source.duration > sampling.MAX_SECONDS:
            raise UsageError(
                f"{self.source.path} is {self.source.duration:.1f} s long; the limit is "
                f"{sampling.MAX_SECONDS:g} s."
            )


def check_prompt(prompt: Any) -> None:
    if not isinstance(prompt, str) or not prompt.strip():
        raise UsageError(
            'Empty prompt: describe the music, e.g. "warm lo-fi piano, vinyl crackle".'
        )


def check_seed(seed: Any) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise UsageError(f"Seed must be an integer from 0 to {MAX_SEED}, got {seed!r}.")


def _check_choice(what: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise UsageError(f"Unknown {what} {value!r}; choose one of {', '.join(choices)}.")


def _own_fields(obj: Any, cls: type) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in fields(cls)}
