"""Section `step`: one guided denoising step of the small variant at full size.

The engine's path (`sampling.denoise` + `model_velocity`: one forward of 2B per step, model cast
to the run's dtype, position ids made once) against `reference_loop.reference_denoise` (two
forwards of B, fp32 model, bf16 only through autocast), on the same random weights and inputs.
The engine runs in fp32, in bf16 and in the dtype `--dtype auto` picks on this CPU (from its
cached matmul probe, `engine/cpu_dtype.py`), each timed as its own run.
"""

from __future__ import annotations

import copy
import time

import torch
from common import LATENT_FRAMES, SMALL, TEXT_TOKENS, load_avg, matmul_rate, median, step_flops
from reference_loop import reference_denoise

GUIDANCE = 7.0


def small_model(seed: int = 0, arch: dict = SMALL):
    from fluxmusic_cli.engine.checkpoint import build_transformer
    from fluxmusic_cli.tinybundle.transformer import tiny_fluxmusic_state_dict

    model, cfg = build_transformer(tiny_fluxmusic_state_dict(**arch, seed=seed), source="bench")
    return model, cfg


def inputs(seed: int = 1, arch: dict = SMALL, frames: int = LATENT_FRAMES):
    from fluxmusic_cli.engine import sampling

    gen = torch.Generator().manual_seed(seed)
    img = sampling.patchify(sampling.get_noise([seed], frames))
    txt = torch.randn(2, TEXT_TOKENS, arch["context_in_dim"], generator=gen)
    y = torch.randn(2, arch["vec_in_dim"], generator=gen)
    return img, txt, y


def _step_times(run, n_steps: int) -> tuple[list[float], torch.Tensor]:
    stamps = [time.perf_counter()]
    out = run(lambda i, n: stamps.append(time.perf_counter()))
    diffs = [b - a for a, b in zip(stamps[:-1], stamps[1:])]
    return diffs[1:] if len(diffs) > 1 else diffs, out  # the first step warms caches


def engine_run(model, img, txt, y, timesteps, on_step, frames: int = LATENT_FRAMES):
    from fluxmusic_cli.engine import sampling

    velocity = sampling.model_velocity(model, txt, y, length=frames)
    with torch.inference_mode():
        return sampling.denoise(velocity, img, timesteps, GUIDANCE, on_step=on_step)


def reference_run(model, img, txt, y, timesteps, on_step, autocast=None, frames=LATENT_FRAMES):
    return reference_denoise(
        model, img, txt[:1], y[:1], txt[1:], y[1:], timesteps, GUIDANCE,
        length=frames, autocast=autocast, on_step=on_step,
    )  # fmt: skip


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


def profile_forward(model, img, txt, y, rows: int = 14) -> str:
    """Where one engine forward (batch 2B) spends its time, as torch.profiler's table."""
    from torch.profiler import ProfilerActivity, profile

    from fluxmusic_cli.engine import sampling

    velocity = sampling.model_velocity(model, txt, y, length=LATENT_FRAMES)
    x = torch.cat([img, img])
    t = torch.full((2,), 0.5)
    with torch.inference_mode():
        velocity(x, t)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            velocity(x, t)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


def rope_cost(model, frames: int = LATENT_FRAMES) -> float:
    """Seconds the model spends per forward rebuilding its rotary tables from the ids."""
    from fluxmusic_cli.engine import sampling

    ids = torch.cat([sampling.text_ids(TEXT_TOKENS), sampling.image_ids(frames)])
    times = []
    for _ in range(20):
        t0 = time.perf_counter()
        model.pos_embed(ids)
        times.append(time.perf_counter() - t0)
    return median(times)


def run(quick: bool, arch: dict = SMALL, frames: int = LATENT_FRAMES, matmul_n: int = 2048) -> dict:
    """The section at full size; `arch`, `frames` and `matmul_n` shrink it for the tests."""
    from fluxmusic_cli.engine import cpu_dtype, devices, sampling

    load_start = load_avg()
    n_measured = 2 if quick else 5
    timesteps = sampling.get_schedule(50)[: n_measured + 2]  # one warm-up step + measured ones
    rates = {"fp32": matmul_rate(torch.float32, n=matmul_n),
             "bf16": matmul_rate(torch.bfloat16, n=matmul_n)}  # fmt: skip
    model32, cfg = small_model(arch=arch)
    img, txt, y = inputs(arch=arch, frames=frames)
    # Guided: 2 forwards. A latent frame pair holds 8 music tokens (16 frequency rows / 2).
    flops = step_flops(cfg.hidden, cfg.depth, cfg.depth_single, n_img=4 * frames,
                       context_in_dim=cfg.context_in_dim, batch=2)  # fmt: skip
    result: dict = {
        "config": cfg.to_dict(),
        "threads": torch.get_num_threads(),
        "flops_per_step": flops,
        "matmul_gflops": rates,
        "measured_steps": n_measured,
        "runs": {},
    }

    ref32_t, ref32 = _step_times(
        lambda cb: reference_run(model32, img, txt, y, timesteps, cb, frames=frames), n_measured
    )
    eng32_t, eng32 = _step_times(
        lambda cb: engine_run(model32, img, txt, y, timesteps, cb, frames), n_measured
    )
    ref16_t, ref16 = _step_times(
        lambda cb: reference_run(model32, img, txt, y, timesteps, cb, torch.bfloat16, frames),
        n_measured,
    )
    model16 = copy.deepcopy(model32).to(torch.bfloat16)
    eng16_t, eng16 = _step_times(
        lambda cb: engine_run(model16, img, txt, y, timesteps, cb, frames), n_measured
    )
    # The default: the dtype `--dtype auto` picks on this CPU at this thread count.
    place = devices.resolve_placement("cpu", "auto")
    probe = cpu_dtype.cpu_rates()
    model_auto = model16 if place.dtype == "bf16" else model32
    auto_t, _ = _step_times(
        lambda cb: engine_run(model_auto, img, txt, y, timesteps, cb, frames), n_measured
    )
    result["auto"] = {
        "dtype": place.dtype,
        "reason": place.dtype_reason,
        "probe_gflops": {"fp32": probe.fp32, "bf16": probe.bf16},
        "bf16_margin": cpu_dtype.BF16_MARGIN,
    }
    for name, times, dtype in (
        ("reference_fp32", ref32_t, "fp32"),
        ("engine_fp32", eng32_t, "fp32"),
        ("reference_bf16_autocast", ref16_t, "bf16"),
        ("engine_bf16", eng16_t, "bf16"),
        ("engine_auto", auto_t, place.dtype),
    ):
        s = median(times)
        roofline = flops["total"] / (rates[dtype] * 1e9)
        result["runs"][name] = {
            "s_per_step": s,
            "all_s": times,
            "roofline_s": roofline,
            "roofline_fraction": roofline / s,
        }
    runs = result["runs"]
    result["speedup_fp32"] = (
        runs["reference_fp32"]["s_per_step"] / runs["engine_fp32"]["s_per_step"]
    )
    result["speedup_bf16_vs_ref_fp32"] = (
        runs["reference_fp32"]["s_per_step"] / runs["engine_bf16"]["s_per_step"]
    )
    result["speedup_bf16_vs_ref_bf16"] = (
        runs["reference_bf16_autocast"]["s_per_step"] / runs["engine_bf16"]["s_per_step"]
    )
    faster = min(runs["engine_fp32"]["s_per_step"], runs["engine_bf16"]["s_per_step"])
    result["auto"]["vs_faster_explicit"] = runs["engine_auto"]["s_per_step"] / faster
    result["rel_err_fp32_engine_vs_reference"] = rel_err(eng32, ref32)
    result["rel_err_bf16_engine_vs_reference_fp32"] = rel_err(eng16, ref32)
    result["rel_err_bf16_reference_vs_reference_fp32"] = rel_err(ref16, ref32)
    result["rope_s_per_forward"] = rope_cost(model32, frames)
    if not quick:
        result["profile_engine_bf16"] = profile_forward(model16, img, txt, y)
    result["load_avg"] = {"start": load_start, "end": load_avg()}
    return result


def summary(r: dict) -> list[tuple[str, str]]:
    rows = [("matmul GFLOP/s fp32 / bf16",
             f"{r['matmul_gflops']['fp32']:.0f} / {r['matmul_gflops']['bf16']:.0f}"),
            ("GFLOP per guided step", f"{r['flops_per_step']['total'] / 1e9:.1f}")]  # fmt: skip
    for name, v in r["runs"].items():
        frac = 100 * v["roofline_fraction"]
        rows.append((f"step {name}", f"{v['s_per_step']:.2f} s ({frac:.0f}% of roofline)"))
    rows += [
        ("speed-up fp32 engine/reference", f"{r['speedup_fp32']:.2f}x"),
        ("speed-up bf16 engine vs fp32 reference", f"{r['speedup_bf16_vs_ref_fp32']:.2f}x"),
        ("rel. error fp32 engine vs reference", f"{r['rel_err_fp32_engine_vs_reference']:.1e}"),
    ]
    if "auto" in r:
        a = r["auto"]
        rows.append(("--dtype auto (default)",
                     f"{a['dtype']}, {a['vs_faster_explicit']:.2f}x the faster explicit dtype's "
                     f"step; probe fp32 {a['probe_gflops']['fp32']:.0f} / bf16 "
                     f"{a['probe_gflops']['bf16']:.0f} GFLOP/s"))  # fmt: skip
    return rows


def run_section(name: str, quick: bool) -> dict:
    return run_compile(quick) if name == "compile" else run(quick)


def summary_rows(name: str, r: dict) -> list[tuple[str, str]]:
    if "error" in r:
        return [("error", r["error"])]
    if name == "compile":
        return [
            (
                "bf16 step eager / compiled",
                f"{r['eager_s_per_step']:.2f} / {r['compiled_s_per_step']:.2f} s "
                f"({r['speedup']:.2f}x; compiling took {r['compiled_first_step_s']:.0f} s)",
            )
        ]
    return summary(r)


def run_compile(quick: bool) -> dict:
    """The bf16 engine step, eager vs `perf.maybe_compile` (inductor), on this machine."""
    from fluxmusic_cli.engine import sampling
    from fluxmusic_cli.engine.perf import maybe_compile

    start = load_avg()
    n_measured = 2 if quick else 5
    timesteps = sampling.get_schedule(50)[: n_measured + 3]
    model32 = small_model()[0]
    img, txt, y = inputs()
    # An fp32 anchor says whether compiled bf16 drifts further from full precision than eager bf16.
    with torch.inference_mode():
        anchor = engine_run(model32, img, txt, y, timesteps, None)
    model16 = model32.to(torch.bfloat16)
    eager_t, eager = _step_times(
        lambda cb: engine_run(model16, img, txt, y, timesteps, cb), n_measured
    )
    notes: list[str] = []
    compiled = maybe_compile(model16, True, on_fallback=notes.append)
    stamps = [time.perf_counter()]
    out = engine_run(compiled, img, txt, y, timesteps,
                     lambda i, n: stamps.append(time.perf_counter()))  # fmt: skip
    times = [b - a for a, b in zip(stamps[:-1], stamps[1:])]
    return {
        "eager_s_per_step": median(eager_t),
        "compiled_first_step_s": times[0],
        "compiled_s_per_step": median(times[2:]),
        "speedup": median(eager_t) / median(times[2:]),
        "rel_err_compiled_vs_eager": rel_err(out, eager),
        "rel_err_eager_bf16_vs_fp32": rel_err(eager, anchor),
        "rel_err_compiled_bf16_vs_fp32": rel_err(out, anchor),
        "denoising_steps_compared": len(timesteps) - 1,
        "fallback": notes[0] if notes else None,
        "scope": getattr(compiled, "scope", None),
        "load_avg": {"start": start, "end": load_avg()},
    }
