"""Pieces of the benchmark harness that can run without real-size models.

CI has no GPU, so the GPU section's loop runs here on the CPU with a tiny architecture: this is
the only place it runs before someone takes it to a CUDA machine. The summary rows are checked
on result dictionaries of both shapes the batch section writes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(BENCH))
    try:
        import clip
        import gpu
        import step
        import t5quant

        yield {"gpu": gpu, "clip": clip, "t5quant": t5quant, "step": step}
    finally:
        sys.path.remove(str(BENCH))


@pytest.fixture(scope="module")
def gpu_section(bench):
    return bench["gpu"]


TINY = dict(hidden=64, num_heads=4, depth=1, depth_single=1, context_in_dim=48, vec_in_dim=24)


def test_measure_fills_the_grid_on_cpu(gpu_section):
    runs = gpu_section.measure(
        "cpu", {"tiny": TINY}, n_steps=3, dtypes=("bf16", "fp32"), compile_modes=(False,),
        batches=(1, 2),
    )  # fmt: skip
    assert sorted(runs) == [
        "tiny bf16 b1 eager", "tiny bf16 b2 eager", "tiny fp32 b1 eager", "tiny fp32 b2 eager",
    ]  # fmt: skip
    for key, run in runs.items():
        assert run["s_per_step"] > 0, key
        # 50 steps per clip, shared by the clips of a batch.
        batch = int(key.split()[2][1:])
        assert run["s_per_clip"] == pytest.approx(50 * run["s_per_step"] / batch)
        assert run["peak_mem_gb"] is None  # no CUDA allocator on the CPU
        assert run["compile_fallback"] is None


def test_the_attention_grid_runs_on_the_device_it_is_given(gpu_section):
    # The GPU section's attention grid, on the CPU at a small size (fp32: the CPU's fp16 and
    # bf16 matmuls can be slow emulations): every candidate timed against the default and
    # checked for agreement.
    att = gpu_section.attention_paths(
        True, device="cpu", dtypes=("fp32",), head_dims=(32,), flex=False, tokens=64,
        matmul_n=256,
    )  # fmt: skip
    assert att["device"] == "cpu" and sorted(att["cases"]) == ["d32 fp32"]
    for key, case in att["cases"].items():
        assert case["sdpa"]["time_vs_default_median"] == 1.0, key
        assert "sdpa_flash" not in case  # the fused backends are CUDA-only candidates
        assert all(c["agrees"] for c in case.values() if "agrees" in c), key
    rows = gpu_section.summary_rows("gpu", {"runs": {}, "attention": att})
    assert any(name.startswith("attention d32 fp32 sdpa_chunked") for name, _ in rows)


def test_section_skips_with_a_reason_without_cuda(gpu_section, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = gpu_section.run_section("gpu", quick=True)
    assert result == {"measured": False, "reason": "no CUDA device visible to torch"}
    assert gpu_section.summary_rows("gpu", result) == [
        ("not measured", "no CUDA device visible to torch")
    ]


BATCH = {"prompts": 16, "steps": 50, "batch_wall_s": 2000.0, "generate_wall_s_total": 2400.0,
         "clips_per_hour_batch": 28.8, "clips_per_hour_generate": 24.0}  # fmt: skip


def test_batch_rows_at_full_steps_have_no_extrapolation(bench):
    rows = bench["clip"].summary_rows("batch", BATCH)
    assert rows == [
        ("16 prompts x 50 steps: batch", "2000 s (29 clips/h)"),
        ("16 separate generate runs", "2400 s (24 clips/h)"),
    ]


def test_batch_rows_at_reduced_steps_show_the_extrapolation(bench):
    extra = {"clips_per_hour_batch": 24.34, "clips_per_hour_generate": 23.21}
    rows = bench["clip"].summary_rows(
        "batch", {**BATCH, "steps": 3, "extrapolated_50_steps": extra}
    )
    assert rows[-1] == ("  extrapolated to 50 steps: batch / generate", "24.3 / 23.2 clips/h")


def test_options_grid_counts_the_passes_each_setting_runs_on_cpu(gpu_section):
    runs = gpu_section.options(
        "cpu", TINY, steps=8, dtypes=("fp32",), batches=(2,),
        grid={"default": {}, "half": {"interval": (0.0, 0.5)}, "skip": {"cache": 1e9}},
    )  # fmt: skip
    for batch in (2,):
        cases = ("default", "half", "skip")
        default, half, skip = (runs[f"small fp32 b{batch} {k}"] for k in cases)
        assert default["rows"] == 16 * batch and default["rel_latent_diff"] == 0.0
        # t = 1 .. 0.125 in 8 steps: the four at or below 0.5 are guided.
        assert half["calls"] == 8 and half["rows"] == 12 * batch and half["rel_latent_diff"] > 0
        assert skip["full"] == 1 and skip["calls"] == 8
        assert all(r["s_per_clip"] > 0 and r["peak_mem_gb"] is None for r in (default, half))


def test_text_placement_rows_follow_the_gpu_memory(gpu_section):
    eight = gpu_section.text_placements(8 * 10**9)
    assert eight["small"] == {"setup": "text on cpu", "text_device": "cpu"}
    assert gpu_section.text_placements(80 * 10**9)["giant"] == {
        "setup": "resident", "text_device": "cuda",
    }  # fmt: skip


def test_t5_encoding_comparison_times_and_checks_each_candidate(bench):
    tiny = dict(bench["t5quant"].XXL, d_model=32, d_ff=64, num_heads=2, d_kv=16, num_layers=2)
    out = bench["t5quant"].measure("cpu", rounds=2, names=("fp32", "bf16"), arch=tiny)
    fp32, bf16 = out["cases"]["fp32"], out["cases"]["bf16"]
    assert fp32["rel_err_vs_fp32"] == 0.0 < bf16["rel_err_vs_fp32"] < 0.05
    assert bf16["vs_bf16"] == 1.0 and fp32["s_median"] > 0
    assert fp32["layer_weight_mb"] == 2 * bf16["layer_weight_mb"]  # 4 against 2 bytes a weight


@pytest.mark.parametrize(
    ("rates", "dtype"),
    [({"fp32": 272.0, "bf16": 151.0}, "fp32"), ({"fp32": 174.0, "bf16": 397.0}, "bf16")],
)
def test_the_step_section_times_the_default_dtype_beside_both_explicit_ones(
    bench, monkeypatch, rates, dtype
):
    from fluxmusic_cli.engine import cpu_dtype

    monkeypatch.setattr(cpu_dtype, "measure_rates", lambda: rates)  # the probe's rates, injected
    r = bench["step"].run(True, arch=TINY, frames=8, matmul_n=64)
    assert set(r["runs"]) == {"reference_fp32", "engine_fp32", "reference_bf16_autocast",
                              "engine_bf16", "engine_auto"}  # fmt: skip
    assert r["auto"]["dtype"] == dtype and r["auto"]["probe_gflops"] == rates
    assert r["auto"]["reason"].endswith(f"-> {dtype}")
    faster = min(r["runs"][f"engine_{d}"]["s_per_step"] for d in ("fp32", "bf16"))
    assert r["auto"]["vs_faster_explicit"] == r["runs"]["engine_auto"]["s_per_step"] / faster
    assert set(r["matmul_gflops"]) == {"fp32", "bf16"}
    rows = dict(bench["step"].summary(r))
    assert rows["--dtype auto (default)"].startswith(f"{dtype}, ")
