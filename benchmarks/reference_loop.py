"""The published sampling script's loop, restated in our own words, as the baseline to beat.

What it keeps from that script: per step, one forward pass with the prompt's conditioning and
a second with the negative prompt's (batch B each, never 2B); position ids built again for every
call, so the model recomputes its rotary tables every time; the model in fp32, with bf16 only
through autocast; no caching of anything between steps. It runs on diffusers'
`FluxTransformer2DModel` (the original FLUX module is not available here), which computes the
same function as the original FLUX double- and single-stream blocks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import torch


def _positions(length: int, n_txt: int, device, freq: int = 16) -> tuple[torch.Tensor, ...]:
    # Each music token sits at (0, row, column) of the 2x2-patch grid; text tokens at the origin.
    grid = torch.zeros(length // 2, freq // 2, 3, device=device)
    grid[..., 1] += torch.arange(length // 2, device=device)[:, None]
    grid[..., 2] += torch.arange(freq // 2, device=device)[None, :]
    return grid.reshape(-1, 3), torch.zeros(n_txt, 3, device=device)


def _forward(model, x, txt, vec, t, length: int) -> torch.Tensor:
    img_ids, txt_ids = _positions(length, txt.shape[1], x.device)
    return model(
        hidden_states=x,
        encoder_hidden_states=txt,
        pooled_projections=vec,
        timestep=t,
        img_ids=img_ids,
        txt_ids=txt_ids,
        return_dict=False,
    )[0]


def reference_denoise(
    model,
    img: torch.Tensor,
    txt: torch.Tensor,
    vec: torch.Tensor,
    neg_txt: torch.Tensor,
    neg_vec: torch.Tensor,
    timesteps: Sequence[float],
    guidance: float,
    *,
    length: int,
    autocast: torch.dtype | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Euler steps from timesteps[0] to timesteps[-1] with two forward passes per step."""
    amp = (
        torch.autocast("cpu" if img.device.type == "cpu" else img.device.type, dtype=autocast)
        if autocast is not None
        else contextlib.nullcontext()
    )
    n = len(timesteps) - 1
    with torch.no_grad():
        for i in range(n):
            t_curr, t_prev = timesteps[i], timesteps[i + 1]
            t = torch.full((img.shape[0],), t_curr, dtype=img.dtype, device=img.device)
            with amp:
                cond = _forward(model, img, txt, vec, t, length)
                uncond = _forward(model, img, neg_txt, neg_vec, t, length)
            pred = uncond.float() + guidance * (cond.float() - uncond.float())
            img = img + (t_prev - t_curr) * pred
            if on_step is not None:
                on_step(i + 1, n)
    return img
