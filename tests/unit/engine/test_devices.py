"""Device and dtype choice: one automatic choice, explicit requests checked against torch."""

from __future__ import annotations

import pytest
import torch

from fluxmusic_cli.engine import devices
from fluxmusic_cli.errors import UsageError


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch, no_gpu):
    assert devices.auto_device() == "cpu"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert devices.auto_device() == "mps" == devices.resolve_device("auto")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert devices.auto_device() == "cuda"


def test_an_asked_device_torch_cannot_use_is_a_usage_error(no_gpu):
    assert devices.resolve_device("cpu") == "cpu"
    with pytest.raises(UsageError, match="no CUDA GPU"):
        devices.resolve_device("cuda")
    with pytest.raises(UsageError, match="no Metal"):
        devices.resolve_device("mps")
    with pytest.raises(UsageError, match="Unknown device 'tpu'; choose one of auto, cpu"):
        devices.resolve_device("tpu")
    with pytest.raises(UsageError, match="Unknown dtype 'fp8'"):
        devices.resolve_placement("cpu", "fp8")


def test_auto_dtype_on_the_cpu_is_the_faster_by_measurement(monkeypatch, no_gpu):
    from fluxmusic_cli.engine import cpu_dtype

    monkeypatch.setattr(cpu_dtype, "measure_rates", lambda: {"fp32": 174.0, "bf16": 397.0})
    place = devices.resolve_placement("auto", "auto")
    assert (place.device, place.dtype) == ("cpu", "bf16")
    assert place.reason == f"device cpu chosen automatically; {place.dtype_reason}"
    assert place.torch_dtype is torch.bfloat16


def test_explicit_choices_are_kept_as_requested(no_gpu):
    place = devices.resolve_placement("cpu", "fp16")
    assert place == devices.Placement("cpu", "fp16", "as requested", None, "forced by --dtype")
    assert place.torch_dtype is torch.float16


def test_every_concrete_dtype_has_a_size_and_the_cpu_reports_memory():
    concrete = [d for d in devices.DTYPE_NAMES if d != "auto"]
    assert {d: devices.BYTES_PER_PARAM[d] for d in concrete} == {"fp32": 4, "bf16": 2, "fp16": 2}
    available = devices.available_memory_bytes("cpu")
    assert available is None or available > 0


def test_mps_falls_back_from_bf16_to_fp32_with_a_note():
    assert devices.mps_dtype("bf16", bf16_ok=False) == (
        "fp32",
        "bf16 is not supported on this Mac's MPS; running in fp32 instead.",
    )
    assert devices.mps_dtype("bf16", bf16_ok=True) == ("bf16", None)
    assert devices.mps_dtype("fp16", bf16_ok=False) == ("fp16", None)
    assert devices.encoder_dtype("fp16", bf16_ok=False) == "fp32"
    assert devices.encoder_dtype("fp16") == "bf16"


def test_devices_does_not_import_placement_which_builds_on_it():
    # The dependency runs one way (placement -> devices), at module level or inside functions.
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(devices))
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {
        f"{node.module}.{alias.name}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not any(name.endswith("engine.placement") for name in imported)
