"""Section `gpu`: seconds per 10.24 s clip (50 guided steps) for every variant on a CUDA device.

bf16 and fp16, batch 1 and 8, eager and `torch.compile`. Needs only torch, transformers and
diffusers (random weights, no network). Skipped with a reason where no CUDA device is visible.
`measure` takes the device and the grid as arguments, so the same loop can be smoke-tested on
the CPU with a tiny architecture (tests/benchmarks).
"""

from __future__ import annotations

import time

from common import LATENT_FRAMES, TEXT_TOKENS, VARIANTS, load_avg, median

STEPS = 50


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_steps(model, cfg, batch: int, n_steps: int, device) -> list[float]:
    import torch

    from fluxmusic_cli.engine import sampling

    img = sampling.patchify(sampling.get_noise(list(range(batch)), LATENT_FRAMES)).to(device)
    txt = torch.randn(2 * batch, TEXT_TOKENS, cfg.context_in_dim, device=device)
    y = torch.randn(2 * batch, cfg.vec_in_dim, device=device)
    velocity = sampling.model_velocity(model, txt, y, length=LATENT_FRAMES)
    stamps: list[float] = []

    def tick(i: int, n: int) -> None:
        _sync(device)
        stamps.append(time.perf_counter())

    _sync(device)
    stamps.append(time.perf_counter())
    with torch.inference_mode():
        sampling.denoise(velocity, img, sampling.get_schedule(STEPS)[: n_steps + 1], 7.0,
                         on_step=tick)  # fmt: skip
    return [b - a for a, b in zip(stamps[:-1], stamps[1:])]


def _peak_gb(device) -> float | None:
    import torch

    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def _reset_peak(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def measure(device, variants: dict[str, dict], *, n_steps: int, dtypes=("bf16", "fp16"),
            compile_modes=(False, True), batches=(1, 8)) -> dict:  # fmt: skip
    """Median step time per (variant, dtype, batch, compile) on `device`; one entry per run."""
    import torch

    from fluxmusic_cli.engine.checkpoint import build_transformer
    from fluxmusic_cli.engine.perf import maybe_compile
    from fluxmusic_cli.tinybundle.transformer import tiny_fluxmusic_state_dict

    device = torch.device(device)
    torch_dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
    runs: dict = {}
    for variant, arch in variants.items():
        sd = tiny_fluxmusic_state_dict(**arch)
        for dtype_name in dtypes:
            # Built anew per dtype, so every dtype starts from the same fp32 weights.
            model, cfg = build_transformer(sd)
            model = model.to(device, torch_dtypes[dtype_name])
            for compiled in compile_modes:
                notes: list[str] = []
                runner = maybe_compile(model, compiled, on_fallback=notes.append)
                for batch in batches:
                    key = f"{variant} {dtype_name} b{batch} {'compile' if compiled else 'eager'}"
                    _reset_peak(device)
                    try:
                        t0 = time.perf_counter()
                        times = _time_steps(runner, cfg, batch, n_steps, device)
                        # Compilation happens in the first step(s); the median skips them.
                        step = median(times[2:] if len(times) > 3 else times[1:] or times)
                        runs[key] = {
                            "s_per_step": step,
                            "s_per_clip": STEPS * step / batch,
                            "first_step_s": times[0],
                            "wall_s": time.perf_counter() - t0,
                            "peak_mem_gb": _peak_gb(device),
                            "compile_fallback": notes[0] if notes else None,
                        }
                    except torch.cuda.OutOfMemoryError:
                        runs[key] = {"error": "out of GPU memory"}
            del model
            _reset_peak(device)
        del sd
    return runs


def run(quick: bool) -> dict:
    import torch

    if not torch.cuda.is_available():
        return {"measured": False, "reason": "no CUDA device visible to torch"}
    start = load_avg()
    variants = {"small": VARIANTS["small"]} if quick else dict(VARIANTS)
    out: dict = {"device": torch.cuda.get_device_name(0)}
    out["runs"] = measure("cuda", variants, n_steps=3 if quick else 8)
    out["note"] = "s_per_clip = 50 x median step time / batch (denoising only)"
    out["load_avg"] = {"start": start, "end": load_avg()}
    return out


def run_section(name: str, quick: bool) -> dict:
    return run(quick)


def summary_rows(name: str, r: dict) -> list[tuple[str, str]]:
    if "error" in r:
        return [("error", r["error"][:300])]
    if r.get("measured") is False:
        return [("not measured", r["reason"])]
    return [(k, f"{v['s_per_clip']:.2f} s/clip" if "s_per_clip" in v else v["error"])
            for k, v in r["runs"].items()]  # fmt: skip
