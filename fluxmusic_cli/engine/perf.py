"""Small speed helpers the engine applies before sampling: CPU threads, optional compilation.

Nothing here prints; what happened is returned so the caller can report it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from fluxmusic_cli.errors import UsageError


def _allowed_cpus() -> set[int]:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return set(range(os.cpu_count() or 1))


def max_threads() -> int:
    """The most CPU threads a run may ask for: the logical CPUs this process may use (more
    only contend for the same cores, and a runaway count can crash the OpenMP runtime)."""
    return max(1, len(_allowed_cpus()))


def physical_cores(cpuinfo: str | None = None, allowed: set[int] | None = None) -> int:
    """Physical cores this process may run on (SMT siblings counted once).

    Reads `/proc/cpuinfo` (processor, physical id, core id); where that is unreadable or lacks
    topology (some VMs, macOS), falls back to the number of logical CPUs allowed.
    """
    allowed = _allowed_cpus() if allowed is None else allowed
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as fh:
                cpuinfo = fh.read()
        except OSError:
            return max(1, len(allowed))
    cores: set[tuple[str, str]] = set()
    for block in cpuinfo.strip().split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
        if "processor" not in fields or "core id" not in fields:
            return max(1, len(allowed))
        if int(fields["processor"]) in allowed:
            cores.add((fields.get("physical id", "0"), fields["core id"]))
    return max(1, len(cores) or len(allowed))


def check_threads(n: int) -> None:
    """Refuse a thread count that is not a whole number from 1 to `max_threads()`."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise UsageError(f"Thread count must be a whole number >= 1, got {n!r}.")
    if n > max_threads():
        raise UsageError(
            f"Thread count {n} is more than the {max_threads()} CPUs this process may use; "
            "give at most that many."
        )


def choose_threads(n: int | None, env: dict[str, str] | None = None) -> int:
    """The intra-op thread count: `n` if given, else OMP_NUM_THREADS, else physical cores.

    Hyper-threads share one core's vector units, so counting them only adds contention to the
    matmuls that dominate a step.
    """
    if n is not None:
        check_threads(n)
        return n
    env = os.environ if env is None else env
    value = env.get("OMP_NUM_THREADS", "").strip()
    if value.isdigit() and int(value) > 0:
        return int(value)
    return physical_cores()


def configure_threads(n: int | None = None) -> int:
    """Set torch's intra-op threads (see `choose_threads`) and return the number set."""
    import torch

    threads = choose_threads(n)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


class CompiledModel:
    """A `torch.compile`d module that falls back to eager on its first failing call.

    Compilation is lazy, so a missing C++ toolchain or an unsupported operator only shows when
    the model first runs; then the eager module takes over for good and `fallback_reason` says
    why. Attribute access (parameters, config, dtype) goes to the eager module.
    """

    def __init__(
        self, eager: Any, compiled: Any, on_fallback: Callable[[str], None] | None = None
    ) -> None:
        self.eager = eager
        self._compiled = compiled
        self._on_fallback = on_fallback
        self.fallback_reason: str | None = None
        self.scope: str | None = None  # "blocks" or "model" once compilation is set up

    @property
    def active(self) -> bool:
        return self._compiled is not None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._compiled is not None:
            try:
                return self._compiled(*args, **kwargs)
            except Exception as exc:  # dynamo/inductor raise many unrelated types
                self._fall_back(exc)
        return self.eager(*args, **kwargs)

    def _fall_back(self, exc: BaseException) -> None:
        self._compiled = None
        self.scope = None
        _uncompile_blocks(self.eager)
        lines = str(exc).strip().splitlines()
        first = lines[0] if lines else type(exc).__name__
        self.fallback_reason = (
            f"torch.compile failed ({type(exc).__name__}: {first[:200]}); running uncompiled."
        )
        if self._on_fallback is not None:
            self._on_fallback(self.fallback_reason)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.eager, name)


def maybe_compile(
    model: Any,
    enabled: bool,
    *,
    on_fallback: Callable[[str], None] | None = None,
    mode: str | None = None,
) -> Any:
    """`model` itself when disabled; otherwise a `CompiledModel` that never fails harder than eager.

    A diffusers model that names its repeated blocks (`FluxTransformer2DModel` does) gets
    regional compilation through its own `compile_repeated_blocks`: each block class is compiled
    once and the glue between blocks stays eager. On the small variant in bf16 on the CPU this
    compiled 2.4x faster than the whole model and stayed as close to fp32 as eager does, where
    the whole-model graph drifted ten times further; its steps were about 5% slower than the
    whole graph's (benchmarks/RESULTS.md, follow-up 2).
    Other modules are compiled whole. Returns eager at once (calling `on_fallback`) when
    torch.compile is absent or cannot be set up.
    """
    if not enabled:
        return model
    import torch

    wrapper = CompiledModel(model, None, on_fallback)
    if not hasattr(torch, "compile"):
        wrapper._fall_back(RuntimeError("this torch has no torch.compile"))
        return wrapper
    try:
        if getattr(model, "_repeated_blocks", None) and hasattr(model, "compile_repeated_blocks"):
            model.compile_repeated_blocks(mode=mode)
            wrapper._compiled, wrapper.scope = model, "blocks"
        else:
            wrapper._compiled, wrapper.scope = torch.compile(model, mode=mode), "model"
    except Exception as exc:  # e.g. unsupported Python version for dynamo
        wrapper._fall_back(exc)
    return wrapper


def _uncompile_blocks(model: Any) -> None:
    """Undo `nn.Module.compile` on every submodule, so the module runs eager again."""
    modules = getattr(model, "modules", None)
    if modules is None:
        return
    for module in modules():
        if getattr(module, "_compiled_call_impl", None) is not None:
            module._compiled_call_impl = None
