"""Section `gpu`: seconds per 10.24 s clip (50 guided steps) for every variant on a CUDA device.

bf16 and fp16, batch 1 and 8, eager and `torch.compile`. Needs only torch, transformers and
diffusers (random weights, no network). Skipped with a reason where no CUDA device is visible.
"""

from __future__ import annotations

import time

from common import LATENT_FRAMES, TEXT_TOKENS, VARIANTS, load_avg, median

STEPS = 50


def _time_steps(model, batch: int, n_steps: int) -> list[float]:
    import torch

    from fluxmusic_cli.engine import sampling

    img = sampling.patchify(sampling.get_noise(list(range(batch)), LATENT_FRAMES)).cuda()
    txt = torch.randn(2 * batch, TEXT_TOKENS, 4096, device="cuda")
    y = torch.randn(2 * batch, 768, device="cuda")
    velocity = sampling.model_velocity(model, txt, y, length=LATENT_FRAMES)
    stamps: list[float] = []

    def tick(i: int, n: int) -> None:
        torch.cuda.synchronize()
        stamps.append(time.perf_counter())

    torch.cuda.synchronize()
    stamps.append(time.perf_counter())
    with torch.inference_mode():
        sampling.denoise(velocity, img, sampling.get_schedule(STEPS)[: n_steps + 1], 7.0,
                         on_step=tick)  # fmt: skip
    return [b - a for a, b in zip(stamps[:-1], stamps[1:])]


def run(quick: bool) -> dict:
    import torch

    if not torch.cuda.is_available():
        return {"measured": False, "reason": "no CUDA device visible to torch"}
    from fluxmusic_cli.engine.checkpoint import build_transformer
    from fluxmusic_cli.engine.perf import maybe_compile
    from fluxmusic_cli.tinybundle.transformer import tiny_fluxmusic_state_dict

    start = load_avg()
    variants = ("small",) if quick else tuple(VARIANTS)
    n_steps = 3 if quick else 8
    out: dict = {"device": torch.cuda.get_device_name(0), "runs": {}}
    for variant in variants:
        model32, _ = build_transformer(tiny_fluxmusic_state_dict(**VARIANTS[variant]))
        for dtype_name, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
            model = model32.to(device="cuda", dtype=dtype)
            for compiled in (False, True):
                notes: list[str] = []
                runner = maybe_compile(model, compiled, on_fallback=notes.append)
                for batch in (1, 8):
                    key = f"{variant} {dtype_name} b{batch} {'compile' if compiled else 'eager'}"
                    try:
                        t0 = time.perf_counter()
                        times = _time_steps(runner, batch, n_steps)
                        # Compilation happens in the first step(s); the median skips them.
                        step = median(times[2:] if len(times) > 3 else times[1:])
                        out["runs"][key] = {
                            "s_per_step": step,
                            "s_per_clip": STEPS * step / batch,
                            "first_step_s": times[0],
                            "wall_s": time.perf_counter() - t0,
                            "peak_mem_gb": torch.cuda.max_memory_allocated() / 2**30,
                            "compile_fallback": notes[0] if notes else None,
                        }
                    except torch.cuda.OutOfMemoryError:
                        out["runs"][key] = {"error": "out of GPU memory"}
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats()
            model32 = model.float().cpu()
            del model
        del model32
        torch.cuda.empty_cache()
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
