"""Measurements that must run in a fresh process (start-up, load, peers); prints one JSON line.

python benchmarks/worker.py load PATH [touch]
python benchmarks/worker.py first-step PATH
python benchmarks/worker.py peer NAME STEPS|default
python benchmarks/worker.py single-window PATH SECONDS STEPS
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

T_START = time.perf_counter()
sys.path.insert(0, str(Path(__file__).resolve().parent))


def load(path: str, touch: bool = False) -> dict:
    import torch
    from diffusers import FluxTransformer2DModel  # noqa: F401  (import cost is not load cost)

    from fluxmusic_cli.engine.checkpoint import load_transformer

    t_import = time.perf_counter() - T_START
    t0 = time.perf_counter()
    model, cfg = load_transformer(Path(path))
    t_load = time.perf_counter() - t0
    n = sum(p.numel() for p in model.parameters())
    out = {
        "import_s": t_import,
        "load_s": t_load,
        "params": n,
        "threads": torch.get_num_threads(),
        "vm_hwm_mb": _own_vm_hwm_mb(),
    }
    if touch:
        # Both formats are memory-mapped, so load_s excludes reading; the first forward pass would
        # fault every page in. Summing each tensor does that reading here, where it can be timed.
        t0 = time.perf_counter()
        with torch.inference_mode():
            for p in model.parameters():
                p.sum()
        out["touch_s"] = time.perf_counter() - t0
        out["vm_hwm_after_touch_mb"] = _own_vm_hwm_mb()
    return out


def _own_vm_hwm_mb() -> float:
    # The parent polls VmHWM every 20 ms; reading our own at the end cannot miss a short peak.
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def first_step(path: str) -> dict:
    """Process start -> model loaded in bf16 -> one full-size guided step finished."""
    import torch
    from common import LATENT_FRAMES, TEXT_TOKENS

    from fluxmusic_cli.engine import sampling
    from fluxmusic_cli.engine.checkpoint import load_transformer

    marks = {"import_s": time.perf_counter() - T_START}
    dtype = torch.bfloat16 if len(sys.argv) < 4 or sys.argv[3] == "bf16" else torch.float32
    model, cfg = load_transformer(Path(path), dtype=dtype)
    marks["loaded_s"] = time.perf_counter() - T_START
    img = sampling.patchify(sampling.get_noise([0], LATENT_FRAMES))
    txt = torch.randn(2, TEXT_TOKENS, cfg.context_in_dim)
    y = torch.randn(2, cfg.vec_in_dim)
    velocity = sampling.model_velocity(model, txt, y, length=LATENT_FRAMES)
    with torch.inference_mode():
        sampling.denoise(velocity, img, sampling.get_schedule(50)[:2], 7.0)
    marks["first_step_done_s"] = time.perf_counter() - T_START
    return marks


def single_window(path: str, seconds: float, steps: int) -> dict:
    """Denoising `seconds` of music as one window (every token attends to every other), in the
    dtype `generate` would choose; what the tool did for long requests before windows."""
    import torch
    from common import TEXT_TOKENS

    from fluxmusic_cli.engine import devices, sampling
    from fluxmusic_cli.engine.checkpoint import load_transformer

    place = devices.resolve_placement("auto", "auto")
    model, cfg = load_transformer(Path(path), dtype=place.torch_dtype)
    length = sampling.latent_length(seconds)
    img = sampling.patchify(sampling.get_noise([1], length))
    txt = torch.randn(2, TEXT_TOKENS, cfg.context_in_dim)
    y = torch.randn(2, cfg.vec_in_dim)
    velocity = sampling.model_velocity(model, txt, y, length=length)
    t0 = time.perf_counter()
    with torch.inference_mode():
        sampling.denoise(velocity, img, sampling.get_schedule(steps), 7.0)
    return {"denoise_s": time.perf_counter() - t0, "latent_frames": length, "dtype": place.dtype}


def main() -> int:
    what = sys.argv[1]
    if what == "load":
        out = load(sys.argv[2], touch=sys.argv[3:] == ["touch"])
    elif what == "first-step":
        out = first_step(sys.argv[2])
    elif what == "peer":
        import peers

        out = peers.generate(sys.argv[2], sys.argv[3])
    elif what == "single-window":
        out = single_window(sys.argv[2], float(sys.argv[3]), int(sys.argv[4]))
    else:
        raise SystemExit(f"unknown measurement {what!r}")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
