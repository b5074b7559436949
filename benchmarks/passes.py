"""Section `passes` (opt-in): what `--guidance-interval` and `--cache` save, on random weights.

A full 50-step, guidance-7 run of a reduced FluxMusic architecture (hidden 256, 8 heads of 32
like small, 2 + 4 blocks) on a 1.28 s latent (128 music tokens) and 32 text tokens, so that
every setting runs its whole schedule several times on a shared 2-core CPU. For each setting:
transformer calls and rows (a guided step is 2 rows), steps whose remaining blocks ran, the
denoising time, and how far the final latent moved from the default's (relative L2
difference). Random weights say nothing about how the music sounds; they say how many passes
are saved and how far the numbers move.
"""

from __future__ import annotations

import time

import torch
from common import load_avg, matmul_rate, median

MINI = dict(hidden=256, num_heads=8, depth=2, depth_single=4, context_in_dim=4096, vec_in_dim=768)
STEPS = 50
GUIDANCE = 7.0
FRAMES = 32  # 1.28 s: 16 x 8 = 128 music tokens
TEXT = 32
SETTINGS: dict[str, dict] = {
    "default": {},
    "interval 0:0.5": {"interval": (0.0, 0.5)},
    "interval 0.2:0.8": {"interval": (0.2, 0.8)},
    # Random weights move the first block's residual by 30% or more per step, so thresholds
    # that skip anything here are far above those tried on trained models (0.05-0.2).
    "cache 0.1": {"cache": 0.1},
    "cache 0.5": {"cache": 0.5},
    "cache 0.8": {"cache": 0.8},
    "cache 1.0": {"cache": 1.0},
    "interval 0:0.5 + cache 0.8": {"interval": (0.0, 0.5), "cache": 0.8},
}


def sample(model, img, txt, y, *, interval=None, cache=None, steps: int = STEPS, frames=None):
    """(final tokens, counts, seconds) of one run, counted through hooks on the model; counts
    include `cpu_s`, the process CPU time (less disturbed than wall time on a shared machine)."""
    from fluxmusic_cli.engine import block_cache, sampling

    counts = {"calls": 0, "rows": 0, "full": 0}

    def on_call(module, args, kwargs):
        counts["calls"] += 1
        counts["rows"] += kwargs["hidden_states"].shape[0]

    def on_tail(module, args, output):
        counts["full"] += 1

    hooks = [
        model.register_forward_pre_hook(on_call, with_kwargs=True),
        model.single_transformer_blocks[-1].attn.register_forward_hook(on_tail),
    ]
    from common import LATENT_FRAMES

    velocity = sampling.model_velocity(model, txt, y, length=frames or LATENT_FRAMES)
    if cache is not None:
        velocity = block_cache.cached_velocity(model, velocity, cache)
    elif model.is_cache_enabled:
        model.disable_cache()
    t0, c0 = time.perf_counter(), time.process_time()
    with torch.inference_mode():
        out = sampling.denoise(
            velocity, img, sampling.get_schedule(steps), GUIDANCE, interval=interval
        )
        if out.is_cuda:
            torch.cuda.synchronize(out.device)
    seconds = time.perf_counter() - t0
    counts["cpu_s"] = time.process_time() - c0
    for h in hooks:
        h.remove()
    return out, counts, seconds


def run(quick: bool, rounds: int | None = None) -> dict:
    from fluxmusic_cli.engine import sampling
    from fluxmusic_cli.engine.checkpoint import build_transformer
    from fluxmusic_cli.tinybundle.transformer import tiny_fluxmusic_state_dict

    start = load_avg()
    steps = 10 if quick else STEPS
    rounds = rounds or (1 if quick else 3)
    model, _ = build_transformer(tiny_fluxmusic_state_dict(**MINI, seed=0), source="bench")
    gen = torch.Generator().manual_seed(1)
    img = sampling.patchify(sampling.get_noise([1], FRAMES))
    txt = torch.randn(2, TEXT, MINI["context_in_dim"], generator=gen)
    y = torch.randn(2, MINI["vec_in_dim"], generator=gen)
    times: dict[str, list[float]] = {k: [] for k in SETTINGS}
    cpu: dict[str, list[float]] = {k: [] for k in SETTINGS}
    results: dict[str, dict] = {}
    for _ in range(rounds):  # interleaved, so drift hits every setting alike
        for name, kw in SETTINGS.items():
            out, counts, seconds = sample(model, img, txt, y, steps=steps, frames=FRAMES, **kw)
            times[name].append(seconds)
            cpu[name].append(counts.pop("cpu_s"))
            results[name] = {"out": out, **counts}
    ref = results["default"]["out"]
    rows: dict[str, dict] = {}
    for name, r in results.items():
        ratios = [t / d for t, d in zip(times[name], times["default"])]
        cpu_ratios = [t / d for t, d in zip(cpu[name], cpu["default"])]
        rows[name] = {
            "calls": r["calls"],
            "rows": r["rows"],
            "full_passes": r["full"],
            "rows_saved": 1 - r["rows"] / results["default"]["rows"],
            "s_median": median(times[name]),
            "time_ratio_median": median(ratios),
            "cpu_time_ratio_median": median(cpu_ratios),
            "rel_latent_diff": float((r["out"] - ref).norm() / ref.norm()),
        }
    return {
        "matmul_gflops_best_burst": {"fp32": matmul_rate(torch.float32)},
        "arch": MINI,
        "latent_frames": FRAMES,
        "text_tokens": TEXT,
        "steps": steps,
        "guidance": GUIDANCE,
        "rounds": rounds,
        "settings": rows,
        "load_avg": {"start": start, "end": load_avg()},
        "note": "random weights: the effect on sound is not measured",
    }


def run_section(name: str, quick: bool) -> dict:
    return run(quick)


def summary_rows(name: str, r: dict) -> list[tuple[str, str]]:
    rate = r["matmul_gflops_best_burst"]["fp32"]
    return [("matmul GFLOP/s (best burst)", f"fp32 {rate:.0f}")] + [
        (
            k,
            f"{v['rows']} rows, {v['full_passes']} full passes, time x{v['time_ratio_median']:.2f}"
            f" (CPU x{v['cpu_time_ratio_median']:.2f}), latent diff {v['rel_latent_diff']:.3g}",
        )
        for k, v in r["settings"].items()
    ]
