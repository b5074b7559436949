"""The memory a training step needs, estimated before anything loads, with the memory injected."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fluxmusic_cli.engine.registry import VARIANTS
from fluxmusic_cli.errors import OutOfMemoryError, UsageError
from fluxmusic_cli.training import memory
from fluxmusic_cli.training.loop import TrainSettings

SMALL = VARIANTS["small"]
SHAPE = memory.ModelShape(SMALL.params, SMALL.hidden, SMALL.depth, SMALL.depth_single)
MEASURED = Path(__file__).resolve().parents[3] / "benchmarks" / "results" / "train-quick.json"


@pytest.mark.parametrize(("full", "batch"), [(False, 1), (False, 4), (True, 1), (True, 4)])
def test_the_estimate_is_near_the_measured_peaks_and_not_below_them_by_much(full, batch):
    runs = json.loads(MEASURED.read_text())["sections"]["train"]["runs"]
    measured = runs[f"small {'full' if full else 'lora16'} b{batch}"]["peak_rss_gb"] * 1e9
    settings = TrainSettings(batch_size=batch, full=full, lora_rank=16)
    # The benchmark's data: 8 segments, 4 captions.
    need = memory.step_memory(SHAPE, settings, dtype="fp32", data=memory.DataSize(8, 4))
    assert 0.97 * measured <= need.total <= 1.1 * measured


def test_the_adapter_size_is_what_the_benchmark_trained():
    runs = json.loads(MEASURED.read_text())["sections"]["train"]["runs"]
    trained = runs["small lora16 b1"]["trainable_params"]
    assert memory.lora_params(SHAPE, 16, "attn-mlp-mod") == trained


@pytest.mark.parametrize("targets", ["attn-mlp", "attn-mlp-mod"])
def test_the_adapter_size_is_what_peft_adds_to_the_tiny_model(tmp_path, targets):
    from fluxmusic_cli.engine import lora
    from fluxmusic_cli.engine.checkpoint import load_transformer
    from fluxmusic_cli.engine.sources import parse_ref
    from fluxmusic_cli.tinybundle.transformer import write_tiny_fluxmusic

    path = write_tiny_fluxmusic(tmp_path / "m.pt", context_in_dim=32, vec_in_dim=32, depth=2)
    shape = memory.model_shape(parse_ref("transformer", str(path)))
    model, cfg = load_transformer(path)
    assert shape.params == sum(p.numel() for p in model.parameters())
    assert (shape.hidden, shape.depth, shape.depth_single) == (cfg.hidden, 2, 1)
    lora.add_lora(model, 3, None, targets)
    added = sum(p.numel() for n, p in model.named_parameters() if ".lora_" in n)
    assert memory.lora_params(shape, 3, targets) == added


def test_a_step_over_the_available_memory_is_refused_with_a_smaller_batch_that_fits():
    settings = TrainSettings(batch_size=16, grad_accum=2)
    need = memory.step_memory(SHAPE, settings, dtype="fp32", data=memory.DataSize(8, 4))
    fits = memory.check_fits(
        SHAPE, settings, dtype="fp32", data=memory.DataSize(8, 4), available=need.total,
        device="cpu",
    )  # fmt: skip
    assert fits == need
    with pytest.raises(OutOfMemoryError) as refused:
        memory.check_fits(
            SHAPE, settings, dtype="fp32", data=memory.DataSize(8, 4), available=int(12e9),
            device="cuda",
        )  # fmt: skip
    assert "more than the 12.0 GB of free cuda memory available" in refused.value.message
    hint = refused.value.hint
    batch = int(hint.split("--batch-size ")[1].split()[0])
    smaller = memory.step_memory(
        SHAPE, TrainSettings(batch_size=batch), dtype="fp32", data=memory.DataSize(8, 4)
    )
    larger = memory.step_memory(
        SHAPE, TrainSettings(batch_size=batch + 1), dtype="fp32", data=memory.DataSize(8, 4)
    )
    assert smaller.total <= 12e9 < larger.total  # the largest batch that fits
    assert f"--grad-accum {-(-32 // batch)}" in hint


def test_when_no_batch_fits_checkpointing_then_lora_is_suggested():
    data = memory.DataSize(1, 1)
    full = TrainSettings(full=True)
    checkpointed = memory.step_memory(
        SHAPE, TrainSettings(full=True, gradient_checkpointing=True), dtype="fp32", data=data
    )
    with pytest.raises(OutOfMemoryError) as refused:
        memory.check_fits(
            SHAPE, full, dtype="fp32", data=data, available=checkpointed.total, device="cpu"
        )
    assert refused.value.hint == "It fits with --gradient-checkpointing."
    with pytest.raises(OutOfMemoryError) as refused:
        memory.check_fits(SHAPE, full, dtype="fp32", data=data, available=int(2e9), device="cpu")
    assert refused.value.hint == "It fits with LoRA instead of --full and --gradient-checkpointing."


def test_unknown_memory_refuses_nothing():
    huge = TrainSettings(batch_size=100_000)
    memory.check_fits(
        SHAPE, huge, dtype="fp32", data=memory.DataSize(1, 1), available=None, device="mps"
    )


def test_a_rank_above_the_width_is_refused_and_full_has_no_rank():
    memory.check_rank(SHAPE, TrainSettings(lora_rank=512))
    with pytest.raises(UsageError, match="--lora-rank 513 is above this model's width \\(512\\)"):
        memory.check_rank(SHAPE, TrainSettings(lora_rank=513))
    memory.check_rank(SHAPE, TrainSettings(lora_rank=513, full=True))
