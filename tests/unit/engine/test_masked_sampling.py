"""Sampling with known frames: the identities every editing operation rests on."""

from __future__ import annotations

import pytest
import torch

from fluxmusic_cli.engine import sampling


def toy_velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A deterministic stand-in for the model whose two halves differ (so guidance matters)."""
    half = x.shape[0] // 2
    scale = torch.ones(x.shape[0], 1, 1)
    if x.shape[0] > 1:
        scale[half:] = 0.5
    return torch.tanh(x * 1.3 + t.view(-1, 1, 1)) * scale + 0.1 * x.roll(1, dims=1)


def noise(seed: int, length: int) -> torch.Tensor:
    return sampling.get_noise([seed], length)


def test_all_generated_from_the_start_is_exactly_denoise():
    eps, x0 = noise(1, 24), noise(2, 24)
    schedule = sampling.get_schedule(7)
    plain = sampling.unpatchify(
        sampling.denoise(toy_velocity, sampling.patchify(eps), schedule, 4.0), 24
    )
    masked = sampling.masked_denoise(
        toy_velocity, x0, torch.ones(24), eps, schedule, start=7, guidance=4.0
    )
    assert torch.equal(plain, masked)


def test_kept_frames_equal_the_known_latent_exactly_and_the_rest_changes():
    eps, x0 = noise(3, 20), noise(4, 20)
    mask = torch.zeros(20)
    mask[6:12] = 1
    out = sampling.masked_denoise(
        toy_velocity, x0, mask, eps, sampling.get_schedule(5), start=5, guidance=3.0
    )
    keep = mask == 0
    assert torch.equal(out[:, :, keep], x0[:, :, keep])
    assert not torch.allclose(out[:, :, ~keep], x0[:, :, ~keep])


def test_start_zero_returns_the_known_latent_and_runs_no_step():
    calls = []

    def counting(x, t):
        calls.append(1)
        return toy_velocity(x, t)

    x0 = noise(5, 8)
    out = sampling.masked_denoise(
        counting, x0, torch.ones(8), noise(6, 8), sampling.get_schedule(10), start=0, guidance=2.0
    )
    assert torch.equal(out, x0) and not calls


def test_a_partial_start_begins_on_the_straight_path_at_t_k():
    seen = []

    def recording(x, t):
        seen.append((x.clone(), float(t[0])))
        return torch.zeros_like(x)

    x0, eps = noise(7, 8), noise(8, 8)
    sampling.masked_denoise(
        recording, x0, torch.ones(8), eps, sampling.get_schedule(10), start=4, guidance=1.0
    )
    assert [t for _, t in seen] == pytest.approx([0.4, 0.3, 0.2, 0.1])
    first = seen[0][0]
    assert torch.equal(first, sampling.patchify((1 - 0.4) * x0 + 0.4 * eps))


@pytest.mark.parametrize(
    "start, end, frames",
    [
        (0.0, 1.0, (0, 26)),  # 1.0 / 0.08 = 12.5 -> ceil 13 -> 26
        (0.08, 0.16, (2, 4)),  # on the grid stays on it
        (0.1, 0.3, (2, 8)),  # snapped outward
        (9.0, 99.0, (224, 256)),  # clipped to the latent
    ],
)
def test_regions_snap_outward_to_the_80_ms_grid(start, end, frames):
    assert sampling.region_frames(start, end, 256) == frames


def test_windows_cover_the_target_with_context():
    assert sampling.window_plan(0, 200, 128) == [(0, 200)]
    assert sampling.window_plan(0, 600, 128) == [(0, 256), (128, 128), (128, 128), (128, 88)]
    assert sampling.window_plan(100, 300, 128) == [(100, 156), (128, 44)]


def test_first_window_of_a_noise_stream_is_get_noise():
    stream = sampling.NoiseStream(42)
    assert torch.equal(stream.draw(30), noise(42, 30)[0])
    assert not torch.equal(stream.draw(30), noise(42, 30)[0])


def test_continuing_keeps_the_context_and_grows_to_the_target():
    calls = []

    def window(known, mask, eps):
        calls.append((known.clone(), mask.clone()))
        return torch.where(mask.view(1, -1, 1) > 0, eps, known)

    start = noise(9, 40)[0]
    out = sampling.continue_latent(window, start, 300, sampling.NoiseStream(1), context=16)
    assert out.shape == (8, 300, 16)
    assert torch.equal(out[:, :40], start)
    known, mask = calls[0]
    assert torch.equal(known[:, :16], start[:, 24:40]) and mask[:16].sum() == 0
    assert [int(m.numel()) for _, m in calls] == [256, 36]  # 16 + 240, then 16 + 20


def test_loop_seam_wraps_around_both_ends():
    def window(known, mask, eps):
        return torch.where(mask.view(1, -1, 1) > 0, torch.zeros_like(known), known)

    latent = noise(10, 40)[0] + 5
    looped, mask = sampling.make_loop(window, latent, 8, sampling.NoiseStream(2))
    assert mask.tolist() == [1.0] * 4 + [0.0] * 32 + [1.0] * 4
    assert torch.equal(looped[:, 4:36], latent[:, 4:36])
    assert (looped[:, :4] == 0).all() and (looped[:, 36:] == 0).all()


def test_long_form_of_at_most_one_window_is_plain_generation_with_the_real_model(tiny_bundle):
    from fluxmusic_cli.engine.checkpoint import load_transformer

    model, cfg = load_transformer(tiny_bundle.model)
    gen = torch.Generator().manual_seed(0)
    txt = torch.randn(2, 5, cfg.context_in_dim, generator=gen)
    y = torch.randn(2, cfg.vec_in_dim, generator=gen)
    schedule = sampling.get_schedule(3)
    length = 40

    def window(known, mask, eps):
        velocity = sampling.model_velocity(model, txt, y, length=known.shape[1])
        return sampling.masked_denoise(velocity, known[None], mask, eps[None], schedule, 3, 5.0)[0]

    with torch.inference_mode():
        windowed = sampling.continue_latent(window, None, length, sampling.NoiseStream(21))
        velocity = sampling.model_velocity(model, txt, y, length=length)
        plain = sampling.denoise(
            velocity, sampling.patchify(sampling.get_noise([21], length)), schedule, 5.0
        )
    assert torch.equal(windowed, sampling.unpatchify(plain, length)[0])
