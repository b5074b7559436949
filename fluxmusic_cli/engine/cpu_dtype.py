"""What `--dtype auto` runs on the CPU: bf16 only where this CPU multiplies in it clearly faster.

A CPU flag cannot tell: with AVX-512 BF16 and no AMX, one Xeon multiplies 2048-wide matrices at
272 GFLOP/s in fp32 and 151 in bf16, while a Zen 4 with the same flag runs bf16 2.3x faster than
fp32. So `auto` times a short square matmul in each dtype once per machine and keeps the two
rates in the tool's cache (`cpu-rates/`), under a key of what sets them: the CPU model and
flags, torch's thread count, torch's version and CPU capability, and oneDNN's instruction-set
cap. A missing, damaged or foreign file is measured again; a cache that cannot be written costs
only the measurement (about 0.1 s) on the next run.

The margin: a guided step's linear layers scale with the matmul rate, while its attention took
about as long in both dtypes on both CPUs above (1.6 s on the Xeon, 2.1-2.3 s on the Zen 4, for
the small model at full size). So bf16's step gain is smaller than its matmul gain: at a matmul
ratio of 1.15 it is 5-7% on both, about the noise of a busy machine. Below that margin fp32,
the exact reference, wins.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fluxmusic_cli.engine import paths

BF16_MARGIN = 1.15
SIZE = 1024  # n of the n x n matmul: 2.1 GFLOP, a few milliseconds on a modern core
ROUNDS = 6
BUDGET_S = 0.3  # rounds stop once this is spent (a CPU that emulates bf16 takes long)
_SCHEMA = 1

# () -> {"fp32": GFLOP/s, "bf16": GFLOP/s}
Measure = Callable[[], dict[str, float]]


@dataclass(frozen=True)
class CpuRates:
    """The best matmul rates (GFLOP/s) measured on this machine, and what `auto` makes of them."""

    fp32: float
    bf16: float

    @property
    def choice(self) -> str:
        return "bf16" if self.bf16 >= BF16_MARGIN * self.fp32 else "fp32"

    @property
    def reason(self) -> str:
        return (
            f"auto: bf16 matmul {self.bf16:.0f} GFLOP/s vs fp32 {self.fp32:.0f} GFLOP/s on this "
            f"CPU -> {self.choice}"
        )


def measure_rates(size: int = SIZE, rounds: int = ROUNDS, budget_s: float = BUDGET_S) -> dict:
    """Best GFLOP/s of one `size`-wide matmul in fp32 and bf16 at torch's current thread count.

    The dtypes alternate round by round, so a neighbour's load falls on both alike; each takes
    one untimed product first (thread pool start, kernel selection). Inputs come from a private
    generator: the global random state is left alone.
    """
    import torch

    gen = torch.Generator().manual_seed(0)
    pairs = {
        name: tuple(torch.randn(size, size, generator=gen).to(dtype) for _ in "ab")
        for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16))
    }
    flops = 2 * size**3
    best = dict.fromkeys(pairs, 0.0)
    for a, b in pairs.values():
        torch.mm(a, b)
    deadline = time.perf_counter() + budget_s
    for _ in range(rounds):
        for name, (a, b) in pairs.items():
            t0 = time.perf_counter()
            torch.mm(a, b)
            best[name] = max(best[name], flops / max(time.perf_counter() - t0, 1e-9) / 1e9)
        if time.perf_counter() > deadline:
            break
    return best


def machine_key() -> dict[str, object]:
    """What a measurement holds for: change any of it and the rates are measured again."""
    import torch

    model, flags = _cpuinfo()
    return {
        "cpu": model,
        "flags": hashlib.sha256(flags.encode()).hexdigest()[:16],
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "capability": torch.backends.cpu.get_cpu_capability(),
        "isa_cap": os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA"),
    }


def cpu_rates(measure: Measure | None = None) -> CpuRates:
    """This machine's rates: from the cache when its key matches, else measured and stored."""
    key = machine_key()
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    path = paths.cpu_rates_dir() / f"{digest}.json"
    stored = _read(path, key)
    if stored is not None:
        return stored
    rates = CpuRates(**(measure or measure_rates)())
    _write(path, key, rates)
    return rates


def _cpuinfo() -> tuple[str, str]:
    """(model name, flags) of the first CPU in /proc/cpuinfo, or what platform says elsewhere."""
    model = flags = ""
    with (
        contextlib.suppress(OSError),
        open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh,
    ):
        for line in fh:
            name, _, value = line.partition(":")
            name = name.strip()
            if name in ("model name", "Model") and not model:
                model = value.strip()
            elif name in ("flags", "Features") and not flags:
                flags = value.strip()
            if model and flags:
                break
    return model or platform.processor() or platform.machine(), flags


def _read(path: Path, key: dict[str, object]) -> CpuRates | None:
    """The stored rates for `key`, or None when absent, unreadable, damaged or another key's."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data["schema"] != _SCHEMA or data["key"] != key:
            return None
        rates = {name: data["gflops"][name] for name in ("fp32", "bf16")}
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
        return None
    ok = all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0
        for v in rates.values()
    )
    return CpuRates(**rates) if ok else None


def _write(path: Path, key: dict[str, object], rates: CpuRates) -> None:
    from fluxmusic_cli import atomic
    from fluxmusic_cli.errors import OutputError

    data = {"schema": _SCHEMA, "key": key, "gflops": {"fp32": rates.fp32, "bf16": rates.bf16}}
    with contextlib.suppress(OutputError):  # read-only or full: measured again next time
        atomic.make_folder(path.parent)
        atomic.clean_leftovers(path.parent)
        atomic.write_text(path, json.dumps(data, indent=2) + "\n")
