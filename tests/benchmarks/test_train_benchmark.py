"""The fine-tuning benchmark's loops, run on tiny models (the real-size run is opt-in)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
TINY = dict(hidden=64, num_heads=4, depth=1, depth_single=1, context_in_dim=32, vec_in_dim=32)


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(BENCH))
    try:
        import train

        yield train
    finally:
        sys.path.remove(str(BENCH))


@pytest.fixture
def one_thread():
    """Two threads per process run several times slower on a shared 2-core machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("mode", ["lora16", "full"])
def test_step_timing_trains_the_configured_weights(bench, mode, one_thread):
    result = bench.measure_steps(TINY, mode, 2, n_steps=1)
    assert result["s_per_step"] > 0 and result["final_loss"] > 0
    lora_params = result["trainable_params"]
    if mode == "full":
        assert lora_params > 100_000  # every weight of the tiny model
    else:
        assert 0 < lora_params < 100_000
    rows = bench.summary_rows(
        "train", {"runs": {f"tiny {mode} b2": {**result, "peak_rss_gb": 0.5}}}
    )
    assert rows[0][0] == f"tiny {mode} b2" and "s/step" in rows[0][1]


def test_preparation_timing_counts_segments_and_scales_to_an_hour(bench, tiny_bundle, tmp_path):
    result = bench.measure_preparation(tiny_bundle.audioldm2, 13.0, tmp_path)
    assert result["segments"] == 2  # 10.24 s, then a 2.76 s tail (over a quarter segment)
    assert result["s_per_hour_of_audio"] == pytest.approx(result["wall_s"] * 3600 / 13.0)
    assert "min" in bench.summary_rows("prepare", result)[0][1]
