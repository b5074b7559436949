"""Rectified-flow sampling as small pure functions over tensors (SPEC sections 2 and 4).

Latents are (B, 8, T, 16): 8 channels, T latent frames (4 mel frames each, 25 per second),
16 frequency rows. Tokens are 2x2 patches in time-major order, channels (c, ph, pw) inside.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from fluxmusic_cli.errors import UsageError

if TYPE_CHECKING:
    import torch

LATENT_CHANNELS = 8
LATENT_FREQ = 16
SAMPLE_RATE = 16_000
SAMPLES_PER_LATENT_FRAME = 160 * 4
GRID_SECONDS = 0.08  # two latent frames: the time patch size
MAX_SECONDS = 300.0
TRAINED_SECONDS = 10.24


def latent_length(seconds: float) -> int:
    """Latent frames for a duration, rounded up to the 80 ms grid (the length must be even)."""
    if not math.isfinite(seconds) or seconds <= 0:
        raise UsageError(f"Duration must be a positive number of seconds, got {seconds}.")
    if seconds > MAX_SECONDS:
        raise UsageError(
            f"Duration {seconds:g} s is over the {MAX_SECONDS:g} s limit; the model was trained "
            f"on {TRAINED_SECONDS} s clips."
        )
    # The small epsilon keeps 10.24 / 0.08 = 128.00000000000003 from rounding up to 129.
    return 2 * math.ceil(seconds / GRID_SECONDS - 1e-9)


def num_samples(seconds: float) -> int:
    """Samples kept after decoding: the requested duration at 16 kHz."""
    return round(seconds * SAMPLE_RATE)


def get_noise(seeds: Sequence[int], length: int, *, device=None, dtype=None) -> torch.Tensor:
    """(B, 8, T, 16) starting noise; each item drawn alone on the CPU in fp32 from its seed.

    Drawing per item on the CPU makes one seed give the same music whatever the batch size,
    the order in the batch or the device.
    """
    import torch

    items = [
        torch.randn(
            (LATENT_CHANNELS, length, LATENT_FREQ),
            generator=torch.Generator("cpu").manual_seed(int(s)),
            dtype=torch.float32,
        )
        for s in seeds
    ]
    return torch.stack(items).to(device=device, dtype=dtype)


def get_schedule(steps: int) -> list[float]:
    """Uniform times from 1 to 0 inclusive: t_i = i / N for i = N..0 (no shift)."""
    if steps < 1:
        raise UsageError(f"Steps must be at least 1, got {steps}.")
    return [i / steps for i in range(steps, -1, -1)]


def patchify(z: torch.Tensor) -> torch.Tensor:
    """(B, C, T, F) -> (B, T/2 * F/2, C*4): token (t//2)*(F/2) + f//2, channels (c, ph, pw)."""
    b, c, t, f = z.shape
    z = z.reshape(b, c, t // 2, 2, f // 2, 2)
    return z.permute(0, 2, 4, 1, 3, 5).reshape(b, (t // 2) * (f // 2), c * 4)


def unpatchify(x: torch.Tensor, length: int, freq: int = LATENT_FREQ) -> torch.Tensor:
    """Inverse of `patchify` for a latent of `length` frames and `freq` rows."""
    b, _, d = x.shape
    c = d // 4
    x = x.reshape(b, length // 2, freq // 2, c, 2, 2)
    return x.permute(0, 3, 1, 4, 2, 5).reshape(b, c, length, freq)


def image_ids(length: int, freq: int = LATENT_FREQ, *, device=None) -> torch.Tensor:
    """(T/2 * F/2, 3) position ids (0, t // 2, f // 2) of the tokens, in token order."""
    import torch

    rows = torch.arange(length // 2, device=device).repeat_interleave(freq // 2)
    cols = torch.arange(freq // 2, device=device).repeat(length // 2)
    return torch.stack([torch.zeros_like(rows), rows, cols], dim=-1).float()


def text_ids(n_tokens: int, *, device=None) -> torch.Tensor:
    """(L, 3) zeros: text tokens carry no position in RoPE."""
    import torch

    return torch.zeros(n_tokens, 3, device=device)


VelocityFn = Callable[["torch.Tensor", "torch.Tensor"], "torch.Tensor"]


def denoise(
    velocity: VelocityFn,
    img: torch.Tensor,
    timesteps: Sequence[float],
    guidance: float,
    *,
    on_step: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Euler from t = 1 to 0 with classifier-free guidance; returns the final tokens.

    `velocity(x, t)` takes x of (2B, N, D) -- the conditional half first, then the
    unconditional half -- and t of (2B,), and returns v of the same shape as x. With guidance
    exactly 1 the unconditional half cannot change the result, so it is not computed; then
    `velocity` receives only B rows. The state is kept in fp32 whatever the model's dtype.
    """
    import torch

    img = img.float()
    n = len(timesteps) - 1
    batch = img.shape[0]
    guided = guidance != 1.0
    for i, (t_curr, t_prev) in enumerate(zip(timesteps[:-1], timesteps[1:])):
        x = torch.cat([img, img]) if guided else img
        t = torch.full((x.shape[0],), t_curr, dtype=torch.float32, device=img.device)
        v = velocity(x, t).float()
        if guided:
            v_cond, v_uncond = v[:batch], v[batch:]
            v = v_uncond + guidance * (v_cond - v_uncond)
        img = img + (t_prev - t_curr) * v
        if on_step is not None:
            on_step(i + 1, n)
    return img


def model_velocity(
    model, txt: torch.Tensor, y: torch.Tensor, *, length: int, dtype=None
) -> VelocityFn:
    """Bind a `FluxTransformer2DModel` to its text conditioning as `velocity(x, t)`.

    `txt` (2B or B, L, D) and `y` (2B or B, V) follow `denoise`'s halves. Position ids are made
    once here, not per step. Inputs are cast to the model's dtype; the output is returned as is.
    """

    param = next(model.parameters())
    dtype = dtype or param.dtype
    device = param.device
    img_ids = image_ids(length, device=device)
    txt_ids = text_ids(txt.shape[1], device=device)
    txt = txt.to(device=device, dtype=dtype)
    y = y.to(device=device, dtype=dtype)

    def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        return model(
            hidden_states=x.to(dtype),
            encoder_hidden_states=txt[:n],
            pooled_projections=y[:n],
            timestep=t.to(dtype),
            img_ids=img_ids,
            txt_ids=txt_ids,
            return_dict=False,
        )[0]

    return velocity
