"""The GPU section of the benchmark harness, run on the CPU with a tiny architecture.

CI has no GPU, so this is the only place the loop behind `benchmarks/run.py --only gpu` runs
before someone takes it to a CUDA machine.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def gpu_section():
    sys.path.insert(0, str(BENCH))
    try:
        import gpu

        yield gpu
    finally:
        sys.path.remove(str(BENCH))


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


def test_section_skips_with_a_reason_without_cuda(gpu_section, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = gpu_section.run_section("gpu", quick=True)
    assert result == {"measured": False, "reason": "no CUDA device visible to torch"}
    assert gpu_section.summary_rows("gpu", result) == [
        ("not measured", "no CUDA device visible to torch")
    ]
