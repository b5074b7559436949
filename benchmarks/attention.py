"""Section `attention` (opt-in): attention kernels at FluxMusic's shapes, on this CPU (and on
CUDA from the `gpu` section, with SDPA's fused backends as further candidates).

Batch 2 (one guided item), 16 heads, 1024 music + 256 text tokens, every released head size
(32 small, 48 base, 64 large, 88 giant), fp32 and bf16. Candidates: the default
`scaled_dot_product_attention`, SDPA forced to the math backend, query-chunked SDPA, SDPA on
inputs upcast to float32 (the same call as fp32 for an fp32 run), and
`flex_attention` compiled for the CPU where it compiles. Rounds are interleaved (each round
times every candidate once, in turn) and speed is quoted as the median over rounds of each
candidate's time divided by the default's in the same round, since this machine's speed drifts.
The roofline is the best of several matmul bursts (a CPU's matrix unit can take a while to
warm up). Parity: fp32 must agree with the default to 1e-5 relative; bf16 must be as close to
the fp32 default as the default bf16 path is (within 1.5x of its error).
"""

from __future__ import annotations

import json
import sys
import time

import torch
from common import (
    MUSIC_TOKENS,
    TEXT_TOKENS,
    cpu_model,
    load_avg,
    matmul_rate,
    median,
    synchronize,
)

HEADS = 16
BATCH = 2
HEAD_DIMS = (32, 48, 64, 88)
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
CHUNK = 256  # query rows per SDPA call in the chunked candidate
FP32_TOL = 1e-5


def sdpa(q, k, v):
    return torch.nn.functional.scaled_dot_product_attention(q, k, v)


def sdpa_math(q, k, v):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel(SDPBackend.MATH):
        return torch.nn.functional.scaled_dot_product_attention(q, k, v)


def _backend(name: str):
    """SDPA forced to one CUDA backend (flash, memory-efficient or cuDNN)."""

    def forced(q, k, v):
        from torch.nn.attention import SDPBackend, sdpa_kernel

        with sdpa_kernel(getattr(SDPBackend, name)):
            return torch.nn.functional.scaled_dot_product_attention(q, k, v)

    return forced


CUDA_BACKENDS = {
    "sdpa_flash": _backend("FLASH_ATTENTION"),
    "sdpa_efficient": _backend("EFFICIENT_ATTENTION"),
    "sdpa_cudnn": _backend("CUDNN_ATTENTION"),
}


def sdpa_fp32(q, k, v):
    """Low-precision inputs upcast to float32 for the kernel, the result cast back."""
    f = torch.nn.functional.scaled_dot_product_attention
    return f(q.float(), k.float(), v.float()).to(q.dtype)


def sdpa_chunked(q, k, v):
    f = torch.nn.functional.scaled_dot_product_attention
    return torch.cat([f(q[:, :, i : i + CHUNK], k, v) for i in range(0, q.shape[2], CHUNK)], 2)


def flex_candidate():
    """`flex_attention` compiled for this CPU, or the reason it is not available."""
    try:
        from torch.nn.attention.flex_attention import flex_attention

        compiled = torch.compile(flex_attention, dynamic=False)
    except Exception as exc:  # noqa: BLE001 - any failure means "not a candidate here"
        return None, f"{type(exc).__name__}: {exc}"[:200]

    def flex(q, k, v):
        return compiled(q, k, v)

    return flex, None


def attention_flops(tokens: int, head_dim: int) -> float:
    return 4.0 * BATCH * HEADS * tokens * tokens * head_dim  # QK^T and PV, 2 FLOPs per MAC


def _time(fn, q, k, v, reps: int) -> float:
    synchronize(q.device)
    t0 = time.perf_counter()
    for _ in range(reps):
        fn(q, k, v)
    synchronize(q.device)
    return (time.perf_counter() - t0) / reps


def run(
    quick: bool, rounds: int | None = None, head_dims=HEAD_DIMS, dtypes=("fp32", "bf16"),
    flex=True, device="cpu", tokens: int = MUSIC_TOKENS + TEXT_TOKENS, matmul_n: int = 2048,
) -> dict:  # fmt: skip
    start = load_avg()
    rounds = rounds or (2 if quick else 4)  # kept short: the machine is shared
    cuda = torch.device(device).type == "cuda"
    reps = 5 if cuda else 1
    rates = {name: matmul_rate(DTYPES[name], n=matmul_n, device=device) for name in dtypes}
    candidates = {
        "sdpa": sdpa, "sdpa_math": sdpa_math, "sdpa_chunked": sdpa_chunked, "sdpa_fp32": sdpa_fp32,
        **(CUDA_BACKENDS if cuda else {}),
    }  # fmt: skip
    flex_fn, flex_error = flex_candidate() if flex else (None, "not tried in this run")
    if flex_fn is not None:
        candidates["flex_compiled"] = flex_fn
    out: dict = {
        "cpu": cpu_model(),
        "device": torch.cuda.get_device_name(device) if cuda else "cpu",
        "threads": torch.get_num_threads(),
        "shape": {"batch": BATCH, "heads": HEADS, "tokens": tokens},
        "matmul_gflops_best_burst": rates,
        "rounds": rounds,
        "cases": {},
    }
    gen = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        for d in head_dims:
            q32, k32, v32 = (
                torch.randn(BATCH, HEADS, tokens, d, generator=gen).to(device) for _ in "qkv"
            )
            exact = sdpa(q32, k32, v32)
            for name in dtypes:
                q, k, v = (x.to(DTYPES[name]) for x in (q32, k32, v32))
                case: dict = {}
                usable = dict(candidates)
                for cname, fn in list(usable.items()):
                    try:
                        got = fn(q, k, v).float()  # warm-up (and compile for flex)
                    except Exception as exc:  # noqa: BLE001
                        case[cname] = {"error": f"{type(exc).__name__}: {exc}"[:200]}
                        usable.pop(cname)
                        continue
                    err = float((got - exact).norm() / exact.norm())
                    case[cname] = {"rel_err_vs_fp32_default": err}
                times: dict[str, list[float]] = {c: [] for c in usable}
                for _ in range(rounds):
                    for cname, fn in usable.items():
                        times[cname].append(_time(fn, q, k, v, reps))
                base_err = case["sdpa"]["rel_err_vs_fp32_default"]
                for cname in usable:
                    ratios = [t / b for t, b in zip(times[cname], times["sdpa"])]
                    s = median(times[cname])
                    err = case[cname]["rel_err_vs_fp32_default"]
                    tol = FP32_TOL if name == "fp32" else max(1.5 * base_err, 1e-6)
                    case[cname].update(
                        s_median=s,
                        time_vs_default_median=median(ratios),
                        roofline_fraction=attention_flops(tokens, d) / s / 1e9 / rates[name],
                        agrees=err <= tol,
                    )
                out["cases"][f"d{d} {name}"] = case
                print(f"d{d} {name}", json.dumps(case), file=sys.stderr, flush=True)  # partial
    if flex_error:
        out["flex_compiled"] = f"not available: {flex_error}"
    out["load_avg"] = {"start": start, "end": load_avg()}
    return out


def run_section(name: str, quick: bool) -> dict:
    return run(quick)


def summary_rows(name: str, r: dict) -> list[tuple[str, str]]:
    rows = [("matmul GFLOP/s (best burst)", ", ".join(
        f"{k} {v:.0f}" for k, v in r["matmul_gflops_best_burst"].items()))]  # fmt: skip
    for key, case in r["cases"].items():
        for cname, c in case.items():
            if "error" in c:
                rows.append((f"{key} {cname}", c["error"][:80]))
            else:
                rows.append((
                    f"{key} {cname}",
                    f"x{c['time_vs_default_median']:.2f} of default, "
                    f"{100 * c['roofline_fraction']:.0f}% roofline, "
                    f"err {c['rel_err_vs_fp32_default']:.1e}"
                    f"{'' if c['agrees'] else ' (disagrees)'}",
                ))  # fmt: skip
    return rows
