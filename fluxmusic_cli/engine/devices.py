"""Device and dtype choice, and how much memory there is to spend."""

from __future__ import annotations

import os
from dataclasses import dataclass

from fluxmusic_cli.errors import UsageError

DTYPE_NAMES = ("auto", "fp32", "bf16", "fp16")
DEVICE_NAMES = ("auto", "cpu", "cuda", "mps")


@dataclass(frozen=True)
class Placement:
    """Where the model runs and in what precision, with the reason for an automatic choice."""

    device: str
    dtype: str  # fp32 | bf16 | fp16
    reason: str
    note: str | None = None  # a fallback the user should hear about
    dtype_reason: str = ""  # why this dtype: "forced by --dtype", or what `auto` found

    @property
    def torch_dtype(self):
        import torch

        return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[self.dtype]


def encoder_dtype(dtype: str, bf16_ok: bool = True) -> str:
    """T5-XXL overflows in fp16, so it runs in bf16 there (fp32 where bf16 is not supported);
    otherwise the run's dtype."""
    if dtype == "fp16":
        return "bf16" if bf16_ok else "fp32"
    return dtype


def mps_dtype(dtype: str, bf16_ok: bool) -> tuple[str, str | None]:
    """The dtype to run on MPS and a note when it differs: bf16 falls back to fp32 where this
    macOS/torch cannot compute it (mixed dtypes on MPS are known to garble audio elsewhere)."""
    if dtype == "bf16" and not bf16_ok:
        return "fp32", "bf16 is not supported on this Mac's MPS; running in fp32 instead."
    return dtype, None


def cpu_has_native_bf16() -> bool:
    """True when the CPU has bf16 dot-product instructions (AVX512-BF16 or AMX)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            flags = fh.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def mps_available() -> bool:
    import torch

    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def mps_bf16_supported() -> bool:
    """Whether this torch computes bf16 on MPS (macOS 14 and later do)."""
    import torch

    try:
        x = torch.ones(4, 4, device="mps", dtype=torch.bfloat16)
        return bool(torch.isfinite((x @ x).float().cpu()).all())
    except (RuntimeError, TypeError):
        return False


def auto_device() -> str:
    """The device `--device auto` means here: cuda, else mps, else cpu."""
    import torch

    if torch.cuda.is_available():
        return "cuda"
    return "mps" if mps_available() else "cpu"


def resolve_device(device: str = "auto") -> str:
    """`device` checked against what torch sees, with "auto" replaced by `auto_device()`."""
    import torch

    if device not in DEVICE_NAMES:
        raise UsageError(f"Unknown device {device!r}; choose one of {', '.join(DEVICE_NAMES)}.")
    if device == "auto":
        return auto_device()
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for, but torch sees no CUDA GPU.")
    if device == "mps" and not mps_available():
        raise UsageError("--device mps was asked for, but this torch has no Metal (MPS) support.")
    return device


def resolve_placement(device: str = "auto", dtype: str = "auto") -> Placement:
    """Pick device (cuda, mps, cpu) and dtype. `auto` is bf16 on a CUDA GPU that computes it,
    fp32 on MPS, and on the CPU the faster by measurement (`cpu_dtype`; set the thread count
    first, since the rates depend on it)."""
    if dtype not in DTYPE_NAMES:
        raise UsageError(f"Unknown dtype {dtype!r}; choose one of {', '.join(DTYPE_NAMES)}.")
    reasons = []
    chosen = resolve_device(device)
    if device == "auto":
        reasons.append(f"device {chosen} chosen automatically")
    if dtype == "auto":
        dtype, why = _auto_dtype(chosen)
        reasons.append(why)
    else:
        why = "forced by --dtype"
    if chosen == "cpu" and dtype == "fp16":
        from fluxmusic_cli import notices

        notices.note(
            "--dtype fp16 on the CPU has no native kernels and runs about 50x slower than "
            "bf16; use --dtype bf16 (or fp32) there."
        )
    note = None
    if chosen == "mps":
        dtype, note = mps_dtype(dtype, dtype != "bf16" or mps_bf16_supported())
        if note:
            reasons.append(note)
            why = f"{why}; {note}"
    return Placement(chosen, dtype, "; ".join(reasons) or "as requested", note, why)


def _auto_dtype(device: str) -> tuple[str, str]:
    """(dtype, why) of `--dtype auto` on `device`."""
    import torch

    if device == "cuda":
        if torch.cuda.is_bf16_supported():
            return "bf16", "auto: this GPU computes bf16 natively -> bf16"
        return "fp32", "auto: this GPU has no native bf16 -> fp32"
    if device == "mps":  # MPS bf16 depends on the macOS version; fp32 is the safe choice
        return "fp32", "auto: fp32 on MPS (its bf16 support depends on the macOS version)"
    from fluxmusic_cli.engine import cpu_dtype

    rates = cpu_dtype.cpu_rates()
    return rates.choice, rates.reason


def available_memory_bytes(device: str) -> int | None:
    """Memory the models may use on `device`: free GPU memory, or available RAM for the CPU."""
    import torch

    if device == "cuda":
        free, _total = torch.cuda.mem_get_info()
        return int(free)
    if device == "mps":
        device = "cpu"  # unified memory
    try:
        with open("/proc/meminfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


BYTES_PER_PARAM = {"fp32": 4, "bf16": 2, "fp16": 2}
