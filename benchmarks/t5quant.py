"""Section `t5-8bit` (opt-in): T5-XXL encoding in bf16 against 8-bit weights, on this CPU.

Issue 11 asks whether an 8-bit T5 (torchao or optimum-quanto) encodes faster than the bf16
encoder on the CPU, where the tool puts T5 when the accelerator cannot hold it. A T5 encoder
at T5-XXL's width (d_model 4096, d_ff 10240, 64 heads of 64, gated GELU) with `LAYERS` of its
24 layers and seeded random weights encodes one guided pair (2 x 256 tokens, the length the
tool pads prompts to). Candidates: fp32, bf16, torchao int8 weight-only, torchao int8 dynamic
activations + int8 weights, and optimum-quanto qint8 weights; whichever of the two libraries is
not installed is reported as such (neither is a dependency of the tool). Rounds are interleaved
and each candidate's time is the median over rounds of its time divided by bf16's in the same
round. Error is the relative difference of the last hidden state from the fp32 encoder's (with
transformers' own initialisation the layers, not the embeddings, dominate it).
The whole encoder's seconds are estimated as layers x (measured per-layer time), the embedding
lookup being negligible.
"""

from __future__ import annotations

import copy
import time

import torch
from common import cpu_model, load_avg, median

LAYERS = 2
FULL_LAYERS = 24
TOKENS = 256
XXL = dict(d_model=4096, d_ff=10240, num_heads=64, d_kv=64, feed_forward_proj="gated-gelu",
           vocab_size=32128, num_layers=LAYERS)  # fmt: skip


def encoder(arch: dict | None = None):
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(0)
    return T5EncoderModel(T5Config(**(arch or XXL))).eval()


def candidates(base, device: str = "cpu", names=None) -> tuple[dict, dict]:
    """name -> encoder on `device` (the quantised ones quantised there); `missing` says which
    library could not be used and why."""
    names = names or ("fp32", "bf16", *TORCHAO, "quanto qint8 weights")
    out: dict = {}
    if "fp32" in names:
        out["fp32"] = copy.deepcopy(base).to(device)
    if "bf16" in names:
        out["bf16"] = copy.deepcopy(base).to(device, torch.bfloat16)
    missing = {}
    try:
        from torchao.quantization import quantize_

        for name in (n for n in TORCHAO if n in names):
            m = copy.deepcopy(base).to(device, torch.bfloat16)
            quantize_(m.encoder, TORCHAO[name]())
            out[name] = m
    except Exception as exc:  # noqa: BLE001 - absent or broken: not a candidate here
        missing["torchao"] = f"{type(exc).__name__}: {exc}"[:200]
    if "quanto qint8 weights" in names:
        try:
            from optimum.quanto import freeze, qint8, quantize

            m = copy.deepcopy(base).to(device, torch.bfloat16)
            quantize(m.encoder, weights=qint8)
            freeze(m.encoder)
            out["quanto qint8 weights"] = m
        except Exception as exc:  # noqa: BLE001
            missing["optimum-quanto"] = f"{type(exc).__name__}: {exc}"[:200]
    return out, missing


def _torchao_configs() -> dict:
    def config(name):
        def make():
            import torchao.quantization as q

            return getattr(q, name)()

        return make

    return {
        "torchao int8 weight-only": config("Int8WeightOnlyConfig"),
        "torchao int8 dynamic": config("Int8DynamicActivationInt8WeightConfig"),
    }


TORCHAO = _torchao_configs()


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure(device: str = "cpu", *, rounds: int = 4, names=None, arch: dict | None = None) -> dict:
    """Interleaved encode times, errors against fp32 on the CPU, and weight bytes per layer."""
    arch = arch or XXL
    base = encoder(arch)
    models, missing = candidates(base, device, names)
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(0, arch["vocab_size"], (2, TOKENS), generator=gen)
    results: dict = {}
    times: dict[str, list[float]] = {n: [] for n in models}
    with torch.inference_mode():
        exact = base(input_ids=ids).last_hidden_state
        for name, m in list(models.items()):
            try:  # also the warm-up
                got = m(input_ids=ids.to(device)).last_hidden_state.float().cpu()
            except Exception as exc:  # noqa: BLE001
                results[name] = {"error": f"{type(exc).__name__}: {exc}"[:200]}
                models.pop(name)
                times.pop(name)
                continue
            results[name] = {"rel_err_vs_fp32": float((got - exact).norm() / exact.norm())}
        for _ in range(rounds):
            for name, m in models.items():
                _sync(device)
                t0 = time.perf_counter()
                m(input_ids=ids.to(device))
                _sync(device)
                times[name].append(time.perf_counter() - t0)
    anchor = times.get("bf16") or next(iter(times.values()))
    for name in models:
        results[name].update(
            s_median=median(times[name]),
            vs_bf16=median([a / b for a, b in zip(times[name], anchor)]),
            est_full_encoder_s=median(times[name]) / arch["num_layers"] * FULL_LAYERS,
            layer_weight_mb=_layer_bytes(models[name]) / 1e6,
        )
    return {"device": device, "cases": results, "not_available": missing}


def run(quick: bool) -> dict:
    start = load_avg()
    out = measure("cpu", rounds=2 if quick else 4)
    return {
        "cpu": cpu_model(), "threads": torch.get_num_threads(), "rounds": 2 if quick else 4,
        "layers_measured": LAYERS, "tokens": [2, TOKENS], **out,
        "load_avg": {"start": start, "end": load_avg()},
    }  # fmt: skip


def _layer_bytes(model) -> int:
    """Bytes of one encoder layer's weights as stored (8-bit tensors count their int8 data)."""
    total = 0
    for t in model.encoder.block[0].state_dict().values():
        inner = [getattr(t, a) for a in ("_data", "qdata", "int_data") if hasattr(t, a)]
        if inner:
            t = inner[0]
        total += t.numel() * t.element_size()
    return total


def run_section(name: str, quick: bool) -> dict:
    return run(quick)


def summary_rows(name: str, r: dict) -> list[tuple[str, str]]:
    rows = [(f"{k} not available", v[:80]) for k, v in r.get("not_available", {}).items()]
    for key, c in r.get("cases", {}).items():
        if "error" in c:
            rows.append((key, c["error"][:80]))
            continue
        rows.append((key, (
            f"{c['s_median']:.2f} s for {r['layers_measured']} layers, "
            f"x{c['vs_bf16']:.2f} of bf16, "
            f"~{c['est_full_encoder_s']:.1f} s for 24 layers, {c['layer_weight_mb']:.0f} MB/layer, "
            f"err {c['rel_err_vs_fp32']:.1e}"
        )))  # fmt: skip
    return rows
