"""Rectified-flow sampling as small pure functions over tensors.

Latents are (B, 8, T, 16): 8 channels, T latent frames (4 mel frames each, 25 per second),
16 frequency rows. Tokens are 2x2 patches in time-major order, channels (c, ph, pw) inside.
The sampler is Euler from t = 1 to 0 on the velocity v = eps - x0 with classifier-free
guidance; `masked_denoise` is the same sampler with some latent frames known, which is what
every editing operation (remix, repaint, extend, long-form windows, loop seams) runs.
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
FRAME_SECONDS = 0.04
GRID_SECONDS = 0.08  # two latent frames: the time patch size
MAX_SECONDS = 300.0
TRAINED_SECONDS = 10.24
WINDOW_FRAMES = 256  # the trained window, 10.24 s
DEFAULT_CONTEXT_FRAMES = 128  # 5.12 s of context for each further window
DEFAULT_SEAM_FRAMES = 64  # 2.56 s loop seam


def latent_length(seconds: float) -> int:
    """Latent frames for a duration, rounded up to the 80 ms grid (the length must be even);
    refuses less than one step of the grid."""
    if not math.isfinite(seconds) or seconds <= 0:
        raise UsageError(f"Duration must be a positive number of seconds, got {seconds}.")
    if seconds < GRID_SECONDS - 1e-9:
        raise UsageError(
            f"Duration {seconds:g} s is shorter than one step of the 80 ms latent grid; the "
            f"shortest clip is {GRID_SECONDS:g} s."
        )
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
    interval: tuple[float, float] | None = None,
) -> torch.Tensor:
    """Euler from t = 1 to 0 with classifier-free guidance; returns the final tokens.

    `velocity(x, t)` takes x of (2B, N, D) -- the conditional half first, then the
    unconditional half -- and t of (2B,), and returns v of the same shape as x (see
    `guided_velocity` for guidance 1 and for steps outside a guidance `interval`). The state is
    kept in fp32 whatever the model's dtype.
    """
    img = img.float()
    n = len(timesteps) - 1
    for i, (t_curr, t_prev) in enumerate(zip(timesteps[:-1], timesteps[1:])):
        v = guided_velocity(velocity, img, t_curr, guidance, interval)
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


def guided_velocity(
    velocity: VelocityFn,
    img: torch.Tensor,
    t: float,
    guidance: float,
    interval: tuple[float, float] | None = None,
):
    """v_u + s (v_c - v_u) at time `t` for the state `img` (B, N, D), in fp32.

    With guidance exactly 1 the unconditional half cannot change the result, so it is not
    computed and `velocity` receives only B rows; the same one conditional pass runs when `t`
    lies outside a guidance `interval` (lo, hi).
    """
    import torch

    from fluxmusic_cli.engine.guidance import guided_at

    batch = img.shape[0]
    guided = guidance != 1.0 and guided_at(t, interval)
    x = torch.cat([img, img]) if guided else img
    tt = torch.full((x.shape[0],), t, dtype=torch.float32, device=img.device)
    v = velocity(x, tt).float()
    if guided:
        v_cond, v_uncond = v[:batch], v[batch:]
        v = v_uncond + guidance * (v_cond - v_uncond)
    return v


def masked_denoise(
    velocity: VelocityFn,
    known: torch.Tensor,
    mask: torch.Tensor,
    noise: torch.Tensor,
    timesteps: Sequence[float],
    start: int,
    guidance: float,
    *,
    on_step: Callable[[int, int], None] | None = None,
    interval: tuple[float, float] | None = None,
) -> torch.Tensor:
    """Sample with some latent frames known; returns the final latent (B, 8, T, 16).

    `known` x0 (B, 8, T, 16) (zeros where unknown), `mask` (T,) with 1 = generate and 0 = keep,
    `noise` eps like `known`, `timesteps` the full schedule t_N = 1 .. t_0 = 0, `start` the step
    k to begin at (N: from pure noise; 0: no step at all). Starts at (1 - t_k) x0 + t_k eps;
    after every Euler step the kept frames are put back on the straight path from x0 to eps at
    the new time, so at t = 0 they equal x0 exactly. With every frame generated and k = N this
    is exactly `denoise`.
    """
    import torch

    n = len(timesteps) - 1
    if not 0 <= start <= n:
        raise ValueError(f"start must be in [0, {n}], got {start}.")
    x0 = known.float()
    eps = noise.float().to(x0.device)
    length = x0.shape[2]
    keep = patchify((mask.to(x0.device) == 0).view(1, 1, length, 1).expand_as(x0).float()) > 0
    x0_tok, eps_tok = patchify(x0), patchify(eps)
    sched = list(timesteps)[n - start :]  # t_k, ..., t_0
    t_k = sched[0]
    img = (1 - t_k) * x0_tok + t_k * eps_tok
    for i, (t_curr, t_prev) in enumerate(zip(sched[:-1], sched[1:])):
        v = guided_velocity(velocity, img, t_curr, guidance, interval)
        img = img + (t_prev - t_curr) * v
        img = torch.where(keep, (1 - t_prev) * x0_tok + t_prev * eps_tok, img)
        if on_step is not None:
            on_step(i + 1, start)
    return unpatchify(img, length, x0.shape[3])


def region_frames(start: float, end: float, length: int) -> tuple[int, int]:
    """Seconds [start, end) snapped outward to the 80 ms grid, as latent frames clipped to
    [0, length). The 1e-9 keeps a time that lies on the grid on it."""
    lo = 2 * math.floor(start / GRID_SECONDS + 1e-9)
    hi = 2 * math.ceil(end / GRID_SECONDS - 1e-9)
    return max(0, min(lo, length)), max(0, min(hi, length))


def seconds_to_frames(seconds: float) -> int:
    """A length in seconds (context, seam) as latent frames: round(seconds / 0.04)."""
    return round(seconds / FRAME_SECONDS)


class NoiseStream:
    """One CPU generator from a seed, drawn window after window: the first draw of length L is
    exactly `get_noise([seed], L)[0]`."""

    def __init__(self, seed: int) -> None:
        import torch

        self.generator = torch.Generator("cpu").manual_seed(int(seed))

    def draw(self, length: int) -> torch.Tensor:
        import torch

        return torch.randn(
            (LATENT_CHANNELS, length, LATENT_FREQ), generator=self.generator, dtype=torch.float32
        )


# sample_window(known (8, L, 16), mask (L,), noise (8, L, 16)) -> final latent (8, L, 16)
WindowSampler = Callable[["torch.Tensor", "torch.Tensor", "torch.Tensor"], "torch.Tensor"]


def window_plan(have: int, target: int, context: int, window: int = WINDOW_FRAMES):
    """The (context, new) frame counts of each window that grows `have` frames to `target`."""
    if context % 2 or not 0 <= context < window:
        raise ValueError(f"context must be even and below {window} frames, got {context}.")
    plan = []
    while have < target:
        c = min(have, context)
        new = min(window - c, target - have)
        plan.append((c, new))
        have += new
    return plan


def continue_latent(
    sample_window: WindowSampler,
    latent: torch.Tensor | None,
    target: int,
    noise: NoiseStream,
    *,
    context: int = DEFAULT_CONTEXT_FRAMES,
    window: int = WINDOW_FRAMES,
) -> torch.Tensor:
    """Grow `latent` (8, n, 16), or nothing, to `target` frames, window after window.

    Each window holds up to `context` frames of what exists so far as known frames and
    generates the rest of the trained window; every window draws fresh noise of its own length
    from `noise`. The result is (8, target, 16).
    """
    import torch

    have = 0 if latent is None else latent.shape[1]
    out = torch.zeros((LATENT_CHANNELS, 0, LATENT_FREQ)) if latent is None else latent.float().cpu()
    for c, new in window_plan(have, target, context, window):
        length = c + new
        eps = noise.draw(length)
        known = torch.zeros((LATENT_CHANNELS, length, LATENT_FREQ))
        known[:, :c] = out[:, out.shape[1] - c :]
        mask = torch.cat([torch.zeros(c), torch.ones(new)])
        final = sample_window(known, mask, eps).float().cpu()
        out = torch.cat([out, final[:, c:]], dim=1)
    return out


def loop_shift(length: int) -> int:
    """How far a loop is rolled so its end-to-start junction lies mid-latent: 2 floor(n / 4)."""
    return 2 * (length // 4)


def seam_mask(length: int, seam: int) -> torch.Tensor:
    """(n,) 1 on the `seam` frames centred on the junction of the rolled latent."""
    import torch

    h = loop_shift(length)
    mask = torch.zeros(length)
    mask[h - seam // 2 : h + seam // 2] = 1.0
    return mask


def make_loop(
    sample_window: WindowSampler, latent: torch.Tensor, seam: int, noise: NoiseStream
) -> tuple[torch.Tensor, torch.Tensor]:
    """A latent (8, n, 16) that repeats without a seam, and its generated-frame mask (n,).

    The latent is rolled by h so its junction lies between frames h - 1 and h, the `seam`
    frames around it are repainted with the next draw of `noise`, and it is rolled back.
    """
    import torch

    n = latent.shape[1]
    h = loop_shift(n)
    rolled = torch.roll(latent.float().cpu(), h, dims=1)
    mask = seam_mask(n, seam)
    final = sample_window(rolled, mask, noise.draw(n)).float().cpu()
    return torch.roll(final, -h, dims=1), torch.roll(mask, -h, dims=0)
