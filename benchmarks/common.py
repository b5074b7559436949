"""Shared pieces of the benchmark harness: machine facts, timing, child processes, FLOP counts."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent

# The released small variant's architecture and the full-size token counts of a 10.24 s clip.
SMALL = dict(hidden=512, num_heads=16, depth=8, depth_single=16, context_in_dim=4096,
             vec_in_dim=768)  # fmt: skip
VARIANTS = {
    "small": SMALL,
    "base": dict(SMALL, hidden=768, depth=12, depth_single=24),
    "large": dict(SMALL, hidden=1024, depth=12, depth_single=24),
    "giant": dict(SMALL, hidden=1408, depth=16, depth_single=32),
    "giant-full": dict(SMALL, hidden=1408, depth=12, depth_single=24),
}
MUSIC_TOKENS = 1024  # (256 / 2) x (16 / 2) patches of a 10.24 s latent
TEXT_TOKENS = 256
LATENT_FRAMES = 256


def load_avg() -> float:
    return os.getloadavg()[0]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_facts() -> dict:
    import diffusers
    import torch
    import transformers

    from fluxmusic_cli.engine import devices, perf

    facts = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "physical_cores": perf.physical_cores(),
        "native_bf16": devices.cpu_has_native_bf16(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        # Set to cap oneDNN's kernels (e.g. AVX512_CORE_BF16: a CPU without AMX, emulated).
        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "diffusers": diffusers.__version__,
        "mem_total_gb": round(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30, 1),
    }
    if torch.cuda.is_available():
        facts["gpu"] = torch.cuda.get_device_name(0)
    return facts


def matmul_rate(dtype, n: int = 2048, bursts: int = 6, reps: int = 3, device="cpu") -> float:
    """Best GFLOP/s over `bursts` bursts of `reps` n x n `torch.matmul`s in `dtype`: a CPU's
    matrix unit can take a while to reach its rate (on an AMX Xeon one process went from 756
    to 2040 GFLOP/s), so a single burst can understate the roofline."""
    import torch

    a, b = (torch.randn(n, n).to(device=device, dtype=dtype) for _ in "ab")
    best = 0.0
    for _ in range(bursts):
        synchronize(device)
        t0 = time.perf_counter()
        for _ in range(reps):
            torch.matmul(a, b)
        synchronize(device)
        best = max(best, reps * 2 * n**3 / (time.perf_counter() - t0) / 1e9)
    return best


def synchronize(device) -> None:
    """Wait for queued CUDA work, so a timer around it measures the work (no-op on the CPU)."""
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


@dataclass
class ChildRun:
    wall_s: float
    peak_rss_mb: float
    returncode: int
    stdout: str
    stderr: str


def run_child(
    cmd: list[str],
    *,
    env: dict | None = None,
    stdin: str | None = None,
    cwd: Path | None = None,
    timeout: float | None = None,
) -> ChildRun:
    """Run `cmd`; return its wall time and its own peak RSS (VmHWM polled every 20 ms)."""
    import tempfile

    full_env = {**os.environ, **(env or {})}
    with (
        tempfile.TemporaryFile("w+") as fin,
        tempfile.TemporaryFile("w+") as fout,
        tempfile.TemporaryFile("w+") as ferr,
    ):
        if stdin is not None:
            fin.write(stdin)
            fin.seek(0)
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdin=fin, stdout=fout, stderr=ferr, env=full_env, cwd=cwd)
        deadline = None if timeout is None else t0 + timeout
        # rusage's ru_maxrss survives exec, so a child forked from a big harness process would
        # report the harness's size; VmHWM belongs to the child's own address space.
        peak_kb = 0
        while True:
            peak_kb = max(peak_kb, _vm_hwm_kb(proc.pid))
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid == proc.pid:
                break
            if deadline is not None and time.perf_counter() > deadline:
                proc.kill()
            time.sleep(0.02)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        fout.seek(0)
        ferr.seek(0)
        return ChildRun(wall, peak_kb / 1024, proc.returncode, fout.read(), ferr.read())


def _vm_hwm_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def fluxmusic_exe() -> str:
    exe = VENV_BIN / "fluxmusic"
    return str(exe) if exe.exists() else "fluxmusic"


def step_flops(
    hidden: int,
    depth: int,
    depth_single: int,
    *,
    n_img: int = MUSIC_TOKENS,
    n_txt: int = TEXT_TOKENS,
    context_in_dim: int = 4096,
    in_channels: int = 32,
    batch: int = 1,
) -> dict[str, float]:
    """FLOPs of one forward pass (multiply-add = 2 FLOPs), counted from the architecture.

    Per token and block both kinds of block spend 12 h^2 multiply-adds in linear layers
    (double: qkv 3h^2 + proj h^2 + MLP 8h^2 per stream; single: linear1 7h^2 + linear2 5h^2),
    so the blocks cost 24 h^2 N (D + S); the embedders add 2 h (4096 n_txt + 32 n_img) and
    the output layer 2 h 32 n_img. Attention over N = n_img + n_txt tokens costs 4 N^2 h per
    block (QK^T and AV). Per-sample terms (time/vector embedders, modulation) are negligible.
    """
    n = n_img + n_txt
    blocks = depth + depth_single
    linear = 24 * hidden**2 * n * blocks
    linear += 2 * hidden * (context_in_dim * n_txt + in_channels * n_img)
    linear += 2 * hidden * in_channels * n_img
    attention = 4 * n**2 * hidden * blocks
    return {"linear": batch * linear, "attention": batch * attention,
            "total": batch * (linear + attention)}  # fmt: skip


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
