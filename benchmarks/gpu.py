"""Section `gpu`: seconds per 10.24 s clip (50 guided steps) for every variant on a CUDA device.

bf16 and fp16, batch 1 and 8, eager and `torch.compile`. Then the options that change the
work (`options`): `--guidance-interval` and `--cache` settings on the small variant over the
whole 50-step schedule (passes counted, time, and how far the latent moves from the default's),
and which text-encoder placement (`--text-device auto`) this GPU's memory gets per variant, and
T5 encoding in bf16 on the CPU against bf16 and 8-bit weights on the GPU (`t5_encoding`).
Needs only torch, transformers and diffusers (random weights, no network). Skipped with a
reason where no CUDA device is visible. `measure` and `options` take the device and the grid as
arguments, so the same loops are smoke-tested on the CPU with a tiny architecture
(tests/benchmarks).
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


# name -> (guidance interval, cache threshold): the settings `options` times; None is off.
OPTION_GRID: dict[str, dict] = {
    "default": {},
    "interval 0:0.5": {"interval": (0.0, 0.5)},
    "cache 0.05": {"cache": 0.05},
    "cache 0.1": {"cache": 0.1},
    "interval 0:0.5 + cache 0.1": {"interval": (0.0, 0.5), "cache": 0.1},
}


def options(device, arch: dict, *, steps: int = STEPS, dtypes=("bf16", "fp16"), batches=(1, 8),
            grid: dict[str, dict] | None = None) -> dict:  # fmt: skip
    """Whole-schedule runs per (dtype, batch, setting): transformer calls and rows (a guided
    step is 2 rows per clip), full passes (steps the cache did not skip), seconds per clip,
    peak memory and the relative latent difference from the default setting."""
    import torch
    from passes import sample

    from fluxmusic_cli.engine import sampling
    from fluxmusic_cli.engine.checkpoint import build_transformer
    from fluxmusic_cli.tinybundle.transformer import tiny_fluxmusic_state_dict

    device = torch.device(device)
    torch_dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
    grid = grid or OPTION_GRID
    sd = tiny_fluxmusic_state_dict(**arch)
    runs: dict = {}
    for dtype_name in dtypes:
        model, cfg = build_transformer(sd)
        model = model.to(device, torch_dtypes[dtype_name])
        for batch in batches:
            img = sampling.patchify(sampling.get_noise(list(range(batch)), LATENT_FRAMES))
            img = img.to(device)
            txt = torch.randn(2 * batch, TEXT_TOKENS, cfg.context_in_dim, device=device)
            y = torch.randn(2 * batch, cfg.vec_in_dim, device=device)
            ref = None
            for name, kw in grid.items():
                _reset_peak(device)
                out, counts, seconds = sample(model, img, txt, y, steps=steps, **kw)
                counts.pop("cpu_s")
                ref = out if ref is None else ref
                runs[f"small {dtype_name} b{batch} {name}"] = {
                    **counts,
                    "s_per_clip": seconds / batch * STEPS / steps,
                    "peak_mem_gb": _peak_gb(device),
                    "rel_latent_diff": float((out - ref).norm() / ref.norm()),
                }
        del model
        _reset_peak(device)
    return runs


def text_placements(memory_bytes: int, dtype: str = "bf16") -> dict[str, dict]:
    """Per released variant: the setup that fits and where `--text-device auto` encodes."""
    from fluxmusic_cli.engine import placement, registry

    out = {}
    for v in registry.VARIANTS.values():
        need = placement.component_bytes(v.params, dtype)
        out[v.name] = {
            "setup": placement.setup_for(memory_bytes, need),
            "text_device": placement.choose_text_device("auto", "cuda", memory_bytes, need).device,
        }
    return out


def t5_encoding(rounds: int) -> dict:
    """T5-XXL-width layers (`t5quant`): bf16 on the CPU, where `--text-device auto` encodes
    when the GPU cannot hold T5, against bf16 and 8-bit weights on the GPU (torchao and
    optimum-quanto, where installed), which would let an 8 GB GPU keep T5 (4.8 GB)."""
    from t5quant import TORCHAO, measure

    return {
        "cpu": measure("cpu", rounds=rounds, names=("bf16",)),
        "cuda": measure("cuda", rounds=rounds, names=("bf16", *TORCHAO, "quanto qint8 weights")),
    }


def attention_paths(quick: bool, device="cuda", dtypes=("bf16", "fp16"), **sizes) -> dict:
    """The attention candidates on CUDA (SDPA's default, each fused backend, math, chunked,
    flex compiled) at every head size in bf16 and fp16: whether one beats the default there."""
    import attention

    try:
        return attention.run(quick, dtypes=dtypes, device=device, rounds=2 if quick else 5, **sizes)
    except Exception as exc:  # noqa: BLE001 - one section's failure must not lose the others
        return {"error": f"{type(exc).__name__}: {exc}"[:300]}


def run(quick: bool) -> dict:
    import torch

    if not torch.cuda.is_available():
        return {"measured": False, "reason": "no CUDA device visible to torch"}
    start = load_avg()
    variants = {"small": VARIANTS["small"]} if quick else dict(VARIANTS)
    out: dict = {"device": torch.cuda.get_device_name(0)}
    out["runs"] = measure("cuda", variants, n_steps=3 if quick else 8)
    out["note"] = "s_per_clip = 50 x median step time / batch (denoising only)"
    out["options"] = options("cuda", VARIANTS["small"], steps=10 if quick else STEPS)
    total = torch.cuda.get_device_properties(0).total_memory
    out["text_placement"] = {"memory_gb": total / 1e9, "variants": text_placements(total)}
    out["attention"] = attention_paths(quick)
    out["t5_encoding"] = t5_encoding(rounds=2 if quick else 4)
    out["load_avg"] = {"start": start, "end": load_avg()}
    return out


def run_section(name: str, quick: bool) -> dict:
    return run(quick)


def summary_rows(name: str, r: dict) -> list[tuple[str, str]]:
    if "error" in r:
        return [("error", r["error"][:300])]
    if r.get("measured") is False:
        return [("not measured", r["reason"])]
    rows = [(k, f"{v['s_per_clip']:.2f} s/clip" if "s_per_clip" in v else v["error"])
            for k, v in r["runs"].items()]  # fmt: skip
    rows += [(k, f"{v['s_per_clip']:.2f} s/clip, {v['rows']} rows, {v['full']} full passes, "
                 f"latent diff {v['rel_latent_diff']:.2g}")
             for k, v in r.get("options", {}).items()]  # fmt: skip
    for where, t5 in r.get("t5_encoding", {}).items():
        for name, c in t5.get("cases", {}).items():
            value = c.get("error") or f"~{c['est_full_encoder_s']:.2f} s per T5-XXL encode"
            rows.append((f"T5 {name} on {where}", value))
    for name, v in r.get("text_placement", {}).get("variants", {}).items():
        rows.append((f"{name}: setup / text device", f"{v['setup']} / {v['text_device']}"))
    att = r.get("attention", {})
    if "error" in att:
        rows.append(("attention", att["error"][:200]))
    elif "cases" in att:
        import attention

        rows += [(f"attention {k}", v) for k, v in attention.summary_rows("attention", att)]
    return rows
