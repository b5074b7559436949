"""The training step of the published training script, made resumable to the bit.

    x0 = (mean + exp(logvar / 2) * n) * scaling     (`--latents sample`; `mean`: n = 0)
    t = sigmoid(N(0, 1)) per item,  z_t = (1 - t) x0 + t eps,  loss = |v(z_t, t) - (eps - x0)|^2

averaged over all but the batch axis, then over the batch. Each encoder's caption is replaced
by its "" embedding with probability `caption_dropout`, independently. Every random draw of a
step derives from (seed, step, micro-batch), and the data order from (seed, epoch), so the step
counter is the whole random state: a run resumed from a checkpoint draws what the
uninterrupted run drew. Data-parallel processes (accelerate) each take their slice of one
global batch, so the batch a step sees does not depend on how many processes share it.
"""

from __future__ import annotations

import hashlib
import math
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fluxmusic_cli.engine import sampling
from fluxmusic_cli.errors import DivergedError, UsageError
from fluxmusic_cli.training.files import read_json, write_json, write_tensors

if TYPE_CHECKING:
    import torch

    from fluxmusic_cli.training.prepare import TrainData

LATENT_MODES = ("sample", "mean")
DEFAULT_LORA_LR = 1e-4
DEFAULT_FULL_LR = 1e-5
MAX_LR = 1.0
MAX_LORA_ALPHA = 1e6
MAX_GRAD_ACCUM = 4096
# Batches are bounded by the memory estimate (training/memory.py); this only keeps numbers sane.
MAX_BATCH_SIZE = 1_000_000
# Settings a resumed run must share with the run it continues (`steps` may grow).
FIXED_ON_RESUME = (
    "batch_size",
    "grad_accum",
    "lr",
    "weight_decay",
    "max_grad_norm",
    "full",
    "lora_rank",
    "lora_alpha",
    "lora_targets",
    "latents",
    "caption_dropout",
    "seed",
    "ema_decay",
    "autocast",
)


@dataclass(frozen=True)
class TrainSettings:
    steps: int = 1000
    batch_size: int = 1
    grad_accum: int = 1
    lr: float = DEFAULT_LORA_LR
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    full: bool = False
    lora_rank: int = 16
    lora_alpha: float | None = None
    lora_targets: str = "attn-mlp-mod"
    latents: str = "sample"
    caption_dropout: float = 0.1
    seed: int = 0
    ema_decay: float = 0.0  # 0: no EMA; else shadow = d * shadow + (1 - d) * weights each step
    gradient_checkpointing: bool = False
    autocast: str = "fp32"  # compute dtype (bf16/fp16 under autocast); weights stay fp32

    def check(self) -> None:
        """Refuse settings no run can use, for every caller (the CLI's parser says the same)."""
        for name in ("steps", "batch_size", "grad_accum", "lora_rank"):
            if getattr(self, name) < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be at least 1.")
        for name, most in (("batch_size", MAX_BATCH_SIZE), ("grad_accum", MAX_GRAD_ACCUM)):
            if getattr(self, name) > most:
                raise UsageError(f"--{name.replace('_', '-')} must be at most {most}.")
        # `not 0 < x` and `not x <= m` are also true of NaN.
        if not (0 < self.lr <= MAX_LR):
            raise UsageError(f"--lr must be above 0 and at most {MAX_LR:g}, got {self.lr}.")
        if self.lora_alpha is not None and not (0 < self.lora_alpha <= MAX_LORA_ALPHA):
            raise UsageError(
                f"--lora-alpha must be above 0 and at most {MAX_LORA_ALPHA:g}, "
                f"got {self.lora_alpha}."
            )
        if self.latents not in LATENT_MODES:
            raise UsageError(f"--latents must be one of {', '.join(LATENT_MODES)}.")
        if not 0 <= self.caption_dropout <= 1:
            raise UsageError("--caption-dropout must be between 0 and 1.")
        if not 0 <= self.ema_decay < 1:
            raise UsageError("--ema-decay must be at least 0 and below 1.")
        if not 0 < self.max_grad_norm < math.inf:
            raise UsageError("--max-grad-norm must be a positive number.")
        if not 0 <= self.weight_decay < math.inf:
            raise UsageError("--weight-decay must be a number of at least 0.")

    @property
    def alpha(self) -> float:
        return float(self.lora_alpha if self.lora_alpha is not None else self.lora_rank)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- random draws ------------------------------------------------------------------------------


def generator(seed: int, *keys: object):
    """A CPU generator seeded from `seed` and `keys` (a stable hash, not Python's)."""
    import torch

    text = "|".join(str(k) for k in (seed, *keys))
    value = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1
    return torch.Generator("cpu").manual_seed(value)


@lru_cache(maxsize=4)
def _order(seed: int, n: int, epoch: int):
    import torch

    return torch.randperm(n, generator=generator(seed, "order", epoch)).tolist()


def segment_indices(seed: int, n: int, start: int, size: int) -> list[int]:
    """Positions start..start+size of the data stream: each epoch a fresh permutation of n."""
    return [_order(seed, n, p // n)[p % n] for p in range(start, start + size)]


@dataclass
class Batch:
    x0: torch.Tensor  # (B, 8, T, 16) scaled latents
    noise: torch.Tensor  # (B, 8, T, 16)
    t: torch.Tensor  # (B,)
    txt: torch.Tensor  # (B, L, D)
    y: torch.Tensor  # (B, V)
    dropped_t5: torch.Tensor  # (B,) bool
    dropped_clap: torch.Tensor  # (B,) bool
    indices: list[int]

    def shard(self, rank: int, size: int) -> Batch:
        sl = slice(rank * size, (rank + 1) * size)
        return Batch(
            self.x0[sl],
            self.noise[sl],
            self.t[sl],
            self.txt[sl],
            self.y[sl],
            self.dropped_t5[sl],
            self.dropped_clap[sl],
            self.indices[sl],
        )


def draw_batch(data: TrainData, s: TrainSettings, step: int, micro: int, size: int) -> Batch:
    """The global batch of micro-batch `micro` of step `step` (steps count from 1)."""
    import torch

    start = ((step - 1) * s.grad_accum + micro) * size
    idx = segment_indices(s.seed, data.segments, start, size)
    g = generator(s.seed, "step", step, micro)
    mean = data.mean[idx]
    if s.latents == "sample":
        draw = torch.randn(mean.shape, generator=g)
        x0 = (mean + torch.exp(0.5 * data.logvar[idx]) * draw) * data.scaling_factor
    else:
        x0 = mean * data.scaling_factor
    dropped_t5 = torch.rand(size, generator=g) < s.caption_dropout
    dropped_clap = torch.rand(size, generator=g) < s.caption_dropout
    t = torch.sigmoid(torch.randn(size, generator=g))
    noise = torch.randn(x0.shape, generator=g)
    rows = data.caption[idx]
    txt = torch.where(dropped_t5[:, None, None], data.empty_txt, data.txt[rows])
    y = torch.where(dropped_clap[:, None], data.empty_y, data.y[rows])
    return Batch(x0, noise, t, txt, y, dropped_t5, dropped_clap, idx)


def flow_loss(model, batch: Batch, *, device, autocast=None) -> torch.Tensor:
    """Per-item velocity MSE (B,) of `model` on `batch`."""
    import torch

    x0, noise = batch.x0.to(device), batch.noise.to(device)
    t = batch.t.to(device)
    tt = t[:, None, None, None]
    z = (1 - tt) * x0 + tt * noise
    target = sampling.patchify(noise - x0)
    length = x0.shape[2]
    ctx = (
        torch.autocast(device_type=torch.device(device).type, dtype=autocast)
        if autocast is not None
        else nullcontext()
    )
    with ctx:
        v = model(
            hidden_states=sampling.patchify(z),
            encoder_hidden_states=batch.txt.to(device),
            pooled_projections=batch.y.to(device),
            timestep=t,
            img_ids=sampling.image_ids(length, device=device),
            txt_ids=sampling.text_ids(batch.txt.shape[1], device=device),
            return_dict=False,
        )[0]
    return ((v.float() - target) ** 2).mean(dim=(1, 2))


# -- the trainer -------------------------------------------------------------------------------


class Trainer:
    """Owns the trainable model, the optimiser, the EMA and the step counter."""

    def __init__(self, model, data: TrainData, settings: TrainSettings, *, accelerator) -> None:
        import torch

        from fluxmusic_cli.engine import lora

        settings.check()
        self.settings = settings
        self.data = data
        self.accelerator = accelerator
        self.device = accelerator.device
        if any(p.dtype != torch.float32 for p in model.parameters()):
            raise ValueError("Trainer needs the model's weights in float32.")
        model = model.to(self.device)
        if settings.full:
            model.requires_grad_(True)
            self.adapted: list[str] = []
        else:
            # peft initialises lora_A from the global generator: seed it from the run's seed.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(generator(settings.seed, "lora-init").initial_seed())
                self.adapted = lora.add_lora(
                    model, settings.lora_rank, settings.alpha, settings.lora_targets
                )
        if settings.gradient_checkpointing:
            model.enable_gradient_checkpointing()
        model.train()
        self.names = [n for n, p in model.named_parameters() if p.requires_grad]
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
        self.model, self.optimizer = accelerator.prepare(model, optimizer)
        self.params = params
        self.ema = (
            {n: p.detach().float().clone() for n, p in zip(self.names, params)}
            if settings.ema_decay > 0
            else None
        )
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(settings.autocast)
        self.autocast = dtype
        self.step = 0
        self.losses: list[float] = []

    @property
    def base(self):
        """The model without any data-parallel wrapper."""
        return self.accelerator.unwrap_model(self.model)

    @property
    def trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.params)

    def train_step(self) -> float:
        """One optimiser step (over `grad_accum` micro-batches); returns the mean loss."""
        import torch

        s, acc = self.settings, self.accelerator
        step = self.step + 1
        world, rank = acc.num_processes, acc.process_index
        total = torch.zeros((), device=self.device)
        for micro in range(s.grad_accum):
            batch = draw_batch(self.data, s, step, micro, s.batch_size * world)
            batch = batch.shard(rank, s.batch_size)
            sync = micro == s.grad_accum - 1
            with nullcontext() if sync else acc.no_sync(self.model):
                loss = flow_loss(self.model, batch, device=self.device, autocast=self.autocast)
                loss = loss.mean()
                acc.backward(loss / s.grad_accum)
            total += loss.detach()
        value = float(acc.reduce(total / s.grad_accum, reduction="mean").item())
        clipped = acc.clip_grad_norm_(self.params, s.max_grad_norm)  # the norm before clipping
        norm = 0.0 if clipped is None else float(clipped)
        if not (math.isfinite(value) and math.isfinite(norm)):
            # Checked before the update, so the weights, the optimiser and the EMA stay as the
            # last finite step left them.
            self.optimizer.zero_grad(set_to_none=True)
            what = f"the loss is {value}" if not math.isfinite(value) else f"the gradient is {norm}"
            raise DivergedError(
                f"Training diverged at step {step}: {what}, so that step was not applied."
            )
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            d = s.ema_decay
            with torch.no_grad():
                for n, p in zip(self.names, self.params):
                    self.ema[n].mul_(d).add_(p.detach().float(), alpha=1 - d)
        self.step = step
        self.losses.append(value)
        return value

    # checkpoints

    def trainable_state(self, *, ema: bool = False) -> dict[str, torch.Tensor]:
        if ema and self.ema is not None:
            return {n: t.detach().cpu().contiguous() for n, t in self.ema.items()}
        return {n: p.detach().float().cpu().contiguous() for n, p in zip(self.names, self.params)}

    def save_checkpoint(self, folder: Path, extra: dict[str, Any]) -> Path:
        """Write `folder` whole or not at all (`atomic.writing_folder`); weights that are not
        all finite are refused (DivergedError) and nothing is written."""
        import torch

        from fluxmusic_cli import atomic
        from fluxmusic_cli.engine.lora import first_nonfinite

        weights = {"trainable": self.trainable_state()}
        if self.ema is not None:
            weights["ema"] = self.trainable_state(ema=True)
        for kind, tensors in weights.items():
            bad = first_nonfinite(tensors)
            if bad is not None:
                raise DivergedError(
                    f"The {kind} weight {bad} holds NaN or infinite values at step {self.step}; "
                    f"no checkpoint was written."
                )
        with atomic.writing_folder(Path(folder)) as tmp:
            for kind, tensors in weights.items():
                write_tensors(tmp / f"{kind}.safetensors", tensors)
            with atomic.writing_stream(tmp / "optimizer.pt") as stream:
                torch.save(self.optimizer.state_dict(), stream)
            write_json(
                tmp / "state.json",
                {
                    "step": self.step,
                    "losses": self.losses,
                    "settings": self.settings.to_dict(),
                    **extra,
                },
            )
        return Path(folder)

    def load_checkpoint(self, folder: Path) -> dict[str, Any]:
        import torch
        from safetensors.torch import load_file

        state = read_json(Path(folder) / "state.json")
        saved = state["settings"]
        changed = [k for k in FIXED_ON_RESUME if saved.get(k) != getattr(self.settings, k)]
        if changed:
            shown = ", ".join(
                f"{k} {saved.get(k)!r} -> {getattr(self.settings, k)!r}" for k in changed
            )
            raise UsageError(
                f"--resume: the checkpoint in {folder} was trained with other settings ({shown}); "
                "use the same ones, or --force to start over."
            )
        tensors = load_file(str(Path(folder) / "trainable.safetensors"))
        if set(tensors) != set(self.names):
            raise UsageError(f"--resume: {folder} does not hold this run's trainable weights.")
        with torch.no_grad():
            for n, p in zip(self.names, self.params):
                p.copy_(tensors[n].to(p.device, p.dtype))
        if self.ema is not None:
            ema = load_file(str(Path(folder) / "ema.safetensors"))
            self.ema = {n: ema[n].to(self.device) for n in self.names}
        opt = torch.load(Path(folder) / "optimizer.pt", map_location="cpu", weights_only=True)
        self.optimizer.load_state_dict(opt)
        self.step = int(state["step"])
        self.losses = [float(v) for v in state["losses"]]
        return state

    def use_ema_weights(self) -> None:
        """Copy the EMA into the model (the saved result is the EMA, when one is kept)."""
        import torch

        if self.ema is None:
            return
        with torch.no_grad():
            for n, p in zip(self.names, self.params):
                p.copy_(self.ema[n].to(p.dtype))


def save_full(model, path: Path, *, info: dict[str, Any]) -> Path:
    """A full fine-tune as safetensors with the original FLUX names (`--model` reads it)."""
    import json

    from fluxmusic_cli.engine.checkpoint import from_diffusers, infer_config
    from fluxmusic_cli.engine.lora import first_nonfinite

    sd = {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()}
    bad = first_nonfinite(sd)
    if bad is not None:
        raise DivergedError(
            f"The weight {bad} holds NaN or infinite values; {path} was not written."
        )
    original = from_diffusers(sd, _config_of(model))
    infer_config(original, source=str(path))  # what `--model` will check, checked now
    metadata = {"format": "pt", "fluxmusic": json.dumps(info, default=str)}
    return write_tensors(Path(path), original, metadata)


def _config_of(model):
    from fluxmusic_cli.engine.checkpoint import FluxMusicConfig

    c = model.config
    hidden = c.num_attention_heads * c.attention_head_dim
    return FluxMusicConfig(
        hidden=hidden,
        num_heads=c.num_attention_heads,
        depth=c.num_layers,
        depth_single=c.num_single_layers,
        in_channels=c.in_channels,
        vec_in_dim=c.pooled_projection_dim,
        context_in_dim=c.joint_attention_dim,
        mlp_hidden=4 * hidden,
        axes_dim=tuple(c.axes_dims_rope),
    )
