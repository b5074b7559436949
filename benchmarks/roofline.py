"""Section `roofline` (opt-in): guided step times of small and base against the matmul roofline.

One guided step (one forward of batch 2, as the engine runs it) of FluxMusic small (head size
32) and base (head size 48) at full size and the real token counts, in fp32 and bf16, with
seeded random weights. In bf16 two attention paths are timed side by side: the default SDPA
call on bf16 inputs, and SDPA on inputs upcast to fp32 (the result cast back), which
`benchmarks/attention.py` found faster at head size 32 on some CPUs. Rounds are interleaved
(every setting once per round) and each setting's time is quoted as the median over rounds;
ratios are the median of per-round ratios. The roofline is FLOPs (counted from the
architecture, `common.step_flops`) over the matmul rate in the same dtype, measured (best of
three bursts) right before each timed step, since this machine's speed drifts within minutes;
the fraction quoted is the median over rounds. Attention's share of the time is what
torch.profiler attributes to the attention kernels in one more step of each setting.
"""

from __future__ import annotations

import contextlib
import time

import torch
from common import (
    LATENT_FRAMES,
    TEXT_TOKENS,
    VARIANTS,
    cpu_model,
    load_avg,
    matmul_rate,
    median,
    step_flops,
)

GUIDANCE_BATCH = 2  # a guided step runs the conditional and unconditional rows together


@contextlib.contextmanager
def upcast_attention():
    """Run every SDPA call of the block on fp32 copies of its inputs (benchmark only)."""
    f = torch.nn.functional
    original = f.scaled_dot_product_attention

    def upcast(query, key, value, *args, **kwargs):
        if query.dtype == torch.float32:
            return original(query, key, value, *args, **kwargs)
        out = original(query.float(), key.float(), value.float(), *args, **kwargs)
        return out.to(query.dtype)

    f.scaled_dot_product_attention = upcast
    try:
        yield
    finally:
        f.scaled_dot_product_attention = original


def build(variant: str, dtype: torch.dtype):
    from fluxmusic_cli.engine import sampling
    from fluxmusic_cli.engine.checkpoint import build_transformer
    from fluxmusic_cli.tinybundle.transformer import tiny_fluxmusic_state_dict

    spec = VARIANTS[variant]
    model, cfg = build_transformer(tiny_fluxmusic_state_dict(**spec, seed=0), source="bench")
    model = model.to(dtype).eval()
    gen = torch.Generator().manual_seed(1)
    x = sampling.patchify(sampling.get_noise([1, 2], LATENT_FRAMES))
    txt = torch.randn(GUIDANCE_BATCH, TEXT_TOKENS, spec["context_in_dim"], generator=gen)
    y = torch.randn(GUIDANCE_BATCH, spec["vec_in_dim"], generator=gen)
    velocity = sampling.model_velocity(model, txt, y, length=LATENT_FRAMES)
    t = torch.full((GUIDANCE_BATCH,), 0.7)
    return (lambda: velocity(x, t)), cfg


def attention_share(call) -> float:
    """Share of one step's CPU time spent in the attention kernels, by torch.profiler."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        call()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    attn = sum(e.self_cpu_time_total for e in events if "attention" in e.key.lower())
    return attn / total if total else float("nan")


def run(quick: bool, variants=("small", "base")) -> dict:
    start = load_avg()
    rounds = 2 if quick else 5
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    settings = [(v, "fp32", False) for v in variants]
    settings += [(v, "bf16", up) for v in variants for up in (False, True)]
    built = {(v, d): build(v, dtypes[d]) for v in variants for d in dtypes}
    times: dict[str, list[float]] = {}
    fractions: dict[str, list[float]] = {}
    rates: dict[str, list[float]] = {d: [] for d in dtypes}
    outputs, shares = {}, {}
    with torch.inference_mode():
        for call, _ in built.values():
            call()  # warm-up
        for _ in range(rounds):
            for v, d, up in settings:
                call, cfg = built[v, d]
                key = _key(v, d, up)
                # The rate beside each timing: this machine's speed drifts within minutes.
                rate = matmul_rate(dtypes[d], bursts=3)
                rates[d].append(rate)
                with upcast_attention() if up else contextlib.nullcontext():
                    t0 = time.perf_counter()
                    outputs[key] = call().float()
                    s = time.perf_counter() - t0
                flops = step_flops(cfg.hidden, cfg.depth, cfg.depth_single, batch=GUIDANCE_BATCH)
                times.setdefault(key, []).append(s)
                fractions.setdefault(key, []).append(flops["total"] / 1e9 / rate / s)
        for v, d, up in settings:
            with upcast_attention() if up else contextlib.nullcontext():
                shares[_key(v, d, up)] = attention_share(built[v, d][0])
    out: dict = {
        "cpu": cpu_model(), "threads": torch.get_num_threads(), "rounds": rounds,
        "matmul_gflops_best_burst": {d: max(r) for d, r in rates.items()},
        "matmul_gflops_median_burst": {d: median(r) for d, r in rates.items()}, "cases": {},
    }  # fmt: skip
    for v, d, up in settings:
        cfg = built[v, d][1]
        key = _key(v, d, up)
        flops = step_flops(cfg.hidden, cfg.depth, cfg.depth_single, batch=GUIDANCE_BATCH)
        ref = outputs[_key(v, "fp32", False)]
        default = times[_key(v, d, False)]
        out["cases"][key] = {
            "head_dim": cfg.head_dim,
            "s_per_step": median(times[key]),
            "all_s": times[key],
            "vs_default_path": median([a / b for a, b in zip(times[key], default)]),
            "gflop_per_step": flops["total"] / 1e9,
            "attention_flop_share": flops["attention"] / flops["total"],
            "roofline_fraction": median(fractions[key]),
            "attention_time_share": shares[key],
            "rel_err_vs_fp32": float((outputs[key] - ref).norm() / ref.norm()),
        }
    out["load_avg"] = {"start": start, "end": load_avg()}
    return out


def _key(variant: str, dtype: str, upcast: bool) -> str:
    return f"{variant} {dtype}{' attention-fp32' if upcast else ''}"


def run_section(name: str, quick: bool) -> dict:
    return run(quick)


def summary_rows(name: str, r: dict) -> list[tuple[str, str]]:
    rows = [("matmul GFLOP/s (best burst)", ", ".join(
        f"{k} {v:.0f}" for k, v in r["matmul_gflops_best_burst"].items()))]  # fmt: skip
    for key, c in r.get("cases", {}).items():
        rows.append((key, (
            f"{c['s_per_step']:.2f} s/step, x{c['vs_default_path']:.3f} of default path, "
            f"{100 * c['roofline_fraction']:.0f}% roofline, attention "
            f"{100 * c['attention_time_share']:.0f}% of time / "
            f"{100 * c['attention_flop_share']:.0f}% of FLOPs, err {c['rel_err_vs_fp32']:.1e}"
        )))  # fmt: skip
    return rows
