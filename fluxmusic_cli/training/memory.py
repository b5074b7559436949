"""What one training step holds in memory, estimated before anything is prepared or loaded.

    weights      every parameter in fp32 (an adapter's own too), plus a copy in the compute
                 dtype that autocast keeps while it runs in bf16 or fp16
    gradients    4 bytes per trainable parameter
    optimiser    AdamW's two moments: 8 bytes per trainable parameter
    EMA          4 bytes per trainable parameter with --ema-decay
    activations  per segment of the batch, ACTIVATION_FLOATS x tokens x width x blocks values
                 of the compute dtype; with --gradient-checkpointing each block keeps only its
                 input, and one block at a time is recomputed
    data         the prepared latents and caption embeddings (held in memory) and the batch
    runtime      libraries still to load, and the allocator's slack

A forward pass keeps about 21 values per token, width unit and block for the backward pass
(counted with a saved-tensors hook on blocks of the small variant's width); the backward pass's
own buffers about double that. The factors below are fitted to the peaks measured for the small
variant at real size on a CPU in fp32 (`benchmarks/train.py`, benchmarks/results/train-quick.json:
LoRA rank 16 3.65 and 11.34 GB at batch 1 and 4, full 4.29 and 10.29 GB). The estimate is within
3% of the LoRA figures and 4-8% above the full ones; other widths, GPUs and bf16 are not
measured, so it guards against setups that cannot fit, not against every out-of-memory.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace

from fluxmusic_cli.errors import OutOfMemoryError, UsageError
from fluxmusic_cli.training.loop import MAX_GRAD_ACCUM, TrainSettings

GB = 1e9
MUSIC_TOKENS = 1024  # (256 / 2) x (16 / 2) patches of a 10.24 s segment's latent
TEXT_TOKENS = 256  # T5 tokens, as the conditioning pads them
LATENT_VALUES = 8 * 256 * 16  # one segment's latent (channels x frames x bins)
ACTIVATION_FLOATS = {"lora": 42, "full": 32}  # fitted, see the module docstring
CHECKPOINTED_FLOATS = 2  # what each block keeps with gradient checkpointing (its input)
RUNTIME_BYTES = 300_000_000
BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
# LoRA parameters per unit of width and rank, per block: (attn-mlp, the adaLN modulation).
# Double-stream: 8 attention linears h->h, two MLPs h->4h->h; modulation h->6h on each stream.
# Single-stream: q, k, v h->h, the MLP in h->4h, the output 5h->h; modulation h->3h.
LORA_PER_BLOCK = {"double": (36, 14), "single": (17, 4)}


@dataclass(frozen=True)
class ModelShape:
    """What the estimate needs of a FluxMusic transformer."""

    params: int
    hidden: int
    depth: int
    depth_single: int
    context_in_dim: int = 4096
    vec_in_dim: int = 768

    @property
    def blocks(self) -> int:
        return self.depth + self.depth_single


@dataclass(frozen=True)
class DataSize:
    """Prepared data held in memory while training: segments and distinct caption rows."""

    segments: int
    captions: int

    def nbytes(self, shape: ModelShape) -> int:
        text = TEXT_TOKENS * shape.context_in_dim + shape.vec_in_dim
        return 4 * (2 * LATENT_VALUES * self.segments + text * (self.captions + 1))


@dataclass(frozen=True)
class StepMemory:
    """Bytes one training step holds, by what holds them."""

    weights: int
    gradients: int
    optimiser: int
    ema: int
    activations: int
    data: int
    runtime: int = RUNTIME_BYTES

    @property
    def total(self) -> int:
        return (
            self.weights
            + self.gradients
            + self.optimiser
            + self.ema
            + self.activations
            + self.data
            + self.runtime
        )


def lora_params(shape: ModelShape, rank: int, targets: str) -> int:
    """Parameters of a rank-`rank` adapter on `targets` (as `engine.lora.TARGETS` names them)."""
    mod = targets == "attn-mlp-mod"
    double = LORA_PER_BLOCK["double"][0] + mod * LORA_PER_BLOCK["double"][1]
    single = LORA_PER_BLOCK["single"][0] + mod * LORA_PER_BLOCK["single"][1]
    return rank * shape.hidden * (double * shape.depth + single * shape.depth_single)


def step_memory(
    shape: ModelShape, settings: TrainSettings, *, dtype: str, data: DataSize
) -> StepMemory:
    """The estimate for one step of `settings` on `shape`, computing in `dtype`."""
    adapter = 0 if settings.full else lora_params(shape, settings.lora_rank, settings.lora_targets)
    trainable = shape.params if settings.full else adapter
    weights = 4 * (shape.params + adapter)
    if dtype != "fp32":
        weights += BYTES[dtype] * (shape.params + adapter)
    tokens = MUSIC_TOKENS + TEXT_TOKENS
    unit = tokens * shape.hidden * BYTES[dtype]
    floats = ACTIVATION_FLOATS["full" if settings.full else "lora"]
    if settings.gradient_checkpointing:
        per_item = unit * (CHECKPOINTED_FLOATS * shape.blocks + floats)
    else:
        per_item = unit * floats * shape.blocks
    batch_item = 4 * (6 * LATENT_VALUES + TEXT_TOKENS * shape.context_in_dim + shape.vec_in_dim)
    return StepMemory(
        weights=weights,
        gradients=4 * trainable,
        optimiser=8 * trainable,
        ema=4 * trainable if settings.ema_decay > 0 else 0,
        activations=settings.batch_size * per_item,
        data=data.nbytes(shape) + settings.batch_size * batch_item,
    )


def check_rank(shape: ModelShape, settings: TrainSettings) -> None:
    """A LoRA's rank cannot usefully exceed the width of the layers it adapts."""
    if not settings.full and settings.lora_rank > shape.hidden:
        raise UsageError(
            f"--lora-rank {settings.lora_rank} is above this model's width ({shape.hidden}): an "
            f"adapter's rank can be at most the width of the layers it adapts; use "
            f"--lora-rank {shape.hidden} or less, or --full to train every weight."
        )


def check_fits(
    shape: ModelShape,
    settings: TrainSettings,
    *,
    dtype: str,
    data: DataSize,
    available: int | None,
    device: str,
) -> StepMemory:
    """Refuse (OutOfMemoryError, with a setup that fits) a step that needs more than the
    `available` bytes of `device`; None (unknown) refuses nothing."""
    need = step_memory(shape, settings, dtype=dtype, data=data)
    if available is None or need.total <= available:
        return need
    where = "memory" if device == "cpu" else f"free {device} memory"
    raise OutOfMemoryError(
        f"A training step of this setup needs about {need.total / GB:.1f} GB ({_parts(need)}), "
        f"more than the {available / GB:.1f} GB of {where} available; nothing was started.",
        hint=_smaller(shape, settings, dtype=dtype, data=data, available=available),
    )


def _parts(need: StepMemory) -> str:
    named = {
        "weights": need.weights,
        "gradients and optimiser": need.gradients + need.optimiser + need.ema,
        "activations": need.activations,
        "data": need.data,
    }
    return ", ".join(f"{k} {v / GB:.1f} GB" for k, v in named.items() if v >= 0.05 * GB) or (
        "mostly the libraries"
    )


def _smaller(
    shape: ModelShape, settings: TrainSettings, *, dtype: str, data: DataSize, available: int
) -> str:
    """The first of the smaller setups that fits, said as the flags to use."""

    def fits(s: TrainSettings) -> bool:
        return step_memory(shape, s, dtype=dtype, data=data).total <= available

    def largest_batch(s: TrainSettings) -> int:
        low, high = 0, s.batch_size - 1  # the largest batch in [1, batch_size) that fits
        while low < high:
            mid = (low + high + 1) // 2
            if fits(replace(s, batch_size=mid)):
                low = mid
            else:
                high = mid - 1
        return low

    candidates = [(settings, [])]
    if not settings.gradient_checkpointing:
        candidates.append(
            (replace(settings, gradient_checkpointing=True), ["--gradient-checkpointing"])
        )
    if settings.full:
        lora = replace(settings, full=False, gradient_checkpointing=True)
        candidates.append((lora, ["LoRA instead of --full", "--gradient-checkpointing"]))
    for s, flags in candidates:
        if fits(s):
            return f"It fits with {' and '.join(flags)}."
        batch = largest_batch(s)
        if batch >= 1:
            per_step = settings.batch_size * settings.grad_accum
            accum = math.ceil(per_step / batch)
            same = ""
            if 1 < accum <= MAX_GRAD_ACCUM:
                same = f" (with --grad-accum {accum} for as many segments per step)"
            return f"It fits with {' and '.join([f'--batch-size {batch}', *flags])}{same}."
    return (
        "Even one segment per step with --gradient-checkpointing does not fit: use a smaller "
        "model, or a device with more memory."
    )


def model_shape(ref) -> ModelShape:
    """The shape of the transformer `ref` names (an `engine.sources.ComponentRef`): a released
    variant's from the registry, a local file's from its tensors' shapes (a safetensors header,
    or a memory-mapped pickle: no weights are read)."""
    if ref.variant is not None:
        v = ref.variant
        return ModelShape(v.params, v.hidden, v.depth, v.depth_single)
    from fluxmusic_cli.engine.checkpoint import infer_config

    shapes = _tensor_shapes(Path(ref.path))
    cfg = infer_config(
        {k: SimpleNamespace(shape=v) for k, v in shapes.items()}, source=str(ref.path)
    )
    return ModelShape(
        params=sum(math.prod(s) for s in shapes.values()),
        hidden=cfg.hidden,
        depth=cfg.depth,
        depth_single=cfg.depth_single,
        context_in_dim=cfg.context_in_dim,
        vec_in_dim=cfg.vec_in_dim,
    )


def _tensor_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    if path.suffix == ".safetensors":
        try:
            with open(path, "rb") as fh:
                (length,) = struct.unpack("<Q", fh.read(8))
                header = json.loads(fh.read(length))
            return {k: tuple(v["shape"]) for k, v in header.items() if k != "__metadata__"}
        except (OSError, ValueError, KeyError, TypeError, struct.error):
            pass  # read in full below, which says what is wrong with the file
    from fluxmusic_cli.engine.checkpoint import read_state_dict

    return {k: tuple(v.shape) for k, v in read_state_dict(path).items()}
