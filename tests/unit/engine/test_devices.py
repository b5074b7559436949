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


def test_auto_dtype_is_bf16_only_where_the_cpu_computes_it_natively(monkeypatch, no_gpu):
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: True)
    place = devices.resolve_placement("auto", "auto")
    assert (place.device, place.dtype) == ("cpu", "bf16")
    assert "chosen automatically" in place.reason and "natively" in place.reason
    assert place.torch_dtype is torch.bfloat16
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: False)
    place = devices.resolve_placement("cpu", "auto")
    assert place.dtype == "fp32" and place.reason == "fp32: no native bf16 on this device"


def test_explicit_choices_are_kept_as_requested(no_gpu):
    place = devices.resolve_placement("cpu", "fp16")
    assert place == devices.Placement("cpu", "fp16", "as requested")
    assert place.torch_dtype is torch.float16


def test_every_concrete_dtype_has_a_size_and_the_cpu_reports_memory():
    concrete = [d for d in devices.DTYPE_NAMES if d != "auto"]
    assert {d: devices.BYTES_PER_PARAM[d] for d in concrete} == {"fp32": 4, "bf16": 2, "fp16": 2}
    available = devices.available_memory_bytes("cpu")
    assert available is None or available > 0
