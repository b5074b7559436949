"""`--dtype auto` on the CPU: the faster dtype by a measured matmul rate, measured once per
machine and kept in the tool's cache (the timing is injected: no test here depends on speed)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from fluxmusic_cli.engine import cpu_dtype, devices, paths

# The issue's two CPUs: a Xeon with AVX-512 BF16 and no AMX, and a Zen 4.
XEON = {"fp32": 272.0, "bf16": 151.0}
ZEN4 = {"fp32": 174.0, "bf16": 397.0}


class FakeTimer:
    """Stands in for `measure_rates`, counting how often the CPU was measured."""

    def __init__(self, rates: dict[str, float]) -> None:
        self.rates = rates
        self.calls = 0

    def __call__(self) -> dict[str, float]:
        self.calls += 1
        return dict(self.rates)


@pytest.fixture
def timer(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    fake = FakeTimer(XEON)
    monkeypatch.setattr(cpu_dtype, "measure_rates", fake)
    return fake


def _stored() -> list:
    return sorted(paths.cpu_rates_dir().glob("*.json"))


@pytest.mark.parametrize(
    ("rates", "dtype"),
    [(XEON, "fp32"), (ZEN4, "bf16"), ({"fp32": 100.0, "bf16": 110.0}, "fp32"),
     ({"fp32": 100.0, "bf16": 120.0}, "bf16"), ({"fp32": 100.0, "bf16": 100.0}, "fp32")],
)  # fmt: skip
def test_auto_follows_the_measured_rates_with_a_margin_for_bf16(timer, rates, dtype):
    timer.rates = rates
    place = devices.resolve_placement("cpu", "auto")
    assert place.dtype == dtype
    assert place.dtype_reason == (
        f"auto: bf16 matmul {rates['bf16']:.0f} GFLOP/s vs fp32 {rates['fp32']:.0f} GFLOP/s on "
        f"this CPU -> {dtype}"
    )
    assert place.dtype_reason in place.reason


def test_the_xeon_of_the_issue_gets_fp32_in_its_own_words(timer):
    place = devices.resolve_placement("auto", "auto")
    assert (place.device, place.dtype) == ("cpu", "fp32")
    assert place.dtype_reason == (
        "auto: bf16 matmul 151 GFLOP/s vs fp32 272 GFLOP/s on this CPU -> fp32"
    )


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_an_explicit_dtype_is_forced_and_measures_nothing(timer, dtype):
    place = devices.resolve_placement("cpu", dtype)
    assert (place.dtype, place.dtype_reason) == (dtype, "forced by --dtype")
    assert timer.calls == 0


def test_the_rates_are_measured_once_and_then_read_from_the_cache(timer):
    for _ in range(3):
        assert devices.resolve_placement("cpu", "auto").dtype == "fp32"
    assert timer.calls == 1
    (entry,) = _stored()
    assert json.loads(entry.read_text())["gflops"] == XEON


def test_another_thread_count_is_measured_again(timer):
    threads = torch.get_num_threads()
    try:
        devices.resolve_placement("cpu", "auto")
        torch.set_num_threads(1 if threads > 1 else 2)
        devices.resolve_placement("cpu", "auto")
    finally:
        torch.set_num_threads(threads)
    assert timer.calls == 2 and len(_stored()) == 2


@pytest.mark.parametrize(
    "damage",
    [b"\x00\xff binary", b"", b'{"schema": 1, "key": ', b"[1, 2]",
     b'{"schema": 1, "key": null, "gflops": {"fp32": 1, "bf16": 2}}'],
)  # fmt: skip
def test_a_damaged_rates_file_is_measured_again_and_rewritten(timer, damage):
    devices.resolve_placement("cpu", "auto")
    (entry,) = _stored()
    entry.write_bytes(damage)
    assert devices.resolve_placement("cpu", "auto").dtype == "fp32"
    assert timer.calls == 2
    assert json.loads(entry.read_text())["gflops"] == XEON


@pytest.mark.parametrize("bad", [None, "fast", -5.0, 0, float("nan"), True])
def test_stored_rates_that_are_not_positive_numbers_are_measured_again(timer, bad):
    devices.resolve_placement("cpu", "auto")
    (entry,) = _stored()
    data = json.loads(entry.read_text())
    data["gflops"]["bf16"] = bad
    entry.write_text(json.dumps(data))
    devices.resolve_placement("cpu", "auto")
    assert timer.calls == 2


def test_a_cache_that_cannot_be_written_only_costs_the_measurement(timer, monkeypatch, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("FLUXMUSIC_CACHE", str(blocker / "cache"))
    for _ in range(2):
        assert devices.resolve_placement("cpu", "auto").dtype == "fp32"
    assert timer.calls == 2


def test_cuda_keeps_its_rule_and_does_not_measure_the_cpu(timer, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    place = devices.resolve_placement("auto", "auto")
    assert (place.device, place.dtype) == ("cuda", "bf16") and "GPU" in place.dtype_reason
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert devices.resolve_placement("cuda", "auto").dtype == "fp32"
    assert timer.calls == 0


def test_mps_keeps_fp32_and_does_not_measure_the_cpu(timer, monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    place = devices.resolve_placement("mps", "auto")
    assert (place.device, place.dtype) == ("mps", "fp32") and "MPS" in place.dtype_reason
    assert timer.calls == 0


def test_the_measurement_gives_both_rates_and_leaves_the_global_random_state_alone():
    torch.manual_seed(3)
    expected = torch.rand(4)
    torch.manual_seed(3)
    rates = cpu_dtype.measure_rates(size=64, rounds=2)
    assert torch.equal(torch.rand(4), expected)
    assert set(rates) == {"fp32", "bf16"}
    assert all(math.isfinite(v) and v > 0 for v in rates.values())
