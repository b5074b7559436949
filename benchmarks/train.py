"""Fine-tuning figures: training step time and peak memory, and preparation time per hour.

    python benchmarks/run.py --only train,prepare

`train`: FluxMusic small at real size (random weights) with LoRA rank 16 and with every weight
trained, at batch 1 and 4 (10.24 s segments: 1024 music + 256 text tokens per item). Each
configuration runs in its own process, so its peak RSS (VmHWM) is its own; on CUDA the peak is
the allocator's. `prepare`: `fluxmusic train`'s preparation of 10.24 s segments through the
real-size AudioLDM 2 VAE (the audio front end, then the posterior), per hour of audio. Both
record the CPU model and the measured matmul rate, as every section does.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from common import (
    LATENT_FRAMES,
    ROOT,
    VARIANTS,
    load_avg,
    median,
    run_child,
)

WORK = Path("/tmp/fluxmusic-bench")
CONFIGS = (("lora16", 1), ("lora16", 4), ("full", 1), ("full", 4))


def measure_steps(arch: dict, mode: str, batch: int, *, n_steps: int, device: str = "cpu"):
    """Seconds per optimiser step (median after one warm-up) of a fresh model of `arch`."""
    import torch
    from accelerate import Accelerator

    from fluxmusic_cli.engine.checkpoint import build_transformer
    from fluxmusic_cli.tinybundle.transformer import tiny_fluxmusic_state_dict
    from fluxmusic_cli.training.loop import Trainer, TrainSettings
    from fluxmusic_cli.training.prepare import TrainData

    model, _ = build_transformer(tiny_fluxmusic_state_dict(**arch))
    g = torch.Generator().manual_seed(0)
    n, frames = max(8, batch), LATENT_FRAMES
    data = TrainData(
        mean=torch.randn(n, 8, frames, 16, generator=g),
        logvar=torch.full((n, 8, frames, 16), -2.0),
        caption=torch.arange(n) % 4,
        txt=torch.randn(4, 256, arch["context_in_dim"], generator=g),
        y=torch.randn(4, arch["vec_in_dim"], generator=g),
        empty_txt=torch.zeros(256, arch["context_in_dim"]),
        empty_y=torch.zeros(arch["vec_in_dim"]),
        scaling_factor=0.41,
    )
    settings = TrainSettings(
        steps=n_steps + 1, batch_size=batch, full=mode == "full", lora_rank=16,
        lr=1e-5 if mode == "full" else 1e-4,
    )  # fmt: skip
    acc = Accelerator(cpu=device == "cpu")
    trainer = Trainer(model, data, settings, accelerator=acc)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(n_steps + 1):
        t0 = time.perf_counter()
        trainer.train_step()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    out = {
        "s_per_step": median(times[1:]),
        "first_step_s": times[0],
        "trainable_params": trainer.trainable_parameters,
        "final_loss": trainer.losses[-1],
    }
    if device == "cuda":
        out["peak_gpu_gb"] = torch.cuda.max_memory_allocated() / 2**30
    return out


def _worker(mode: str, batch: int, n_steps: int) -> None:
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    result = measure_steps(VARIANTS["small"], mode, batch, n_steps=n_steps, device=device)
    print(json.dumps({**result, "device": device}))


def run_train(quick: bool) -> dict:
    import torch
    from common import matmul_rate

    start = load_avg()
    out: dict = {"rates_gflops": {"fp32": matmul_rate(torch.float32)}, "runs": {}}
    n_steps = 2 if quick else 4
    for mode, batch in CONFIGS:
        child = run_child(
            [sys.executable, str(Path(__file__)), "--worker", mode, str(batch), str(n_steps)],
            env={"PYTHONPATH": str(ROOT)},
        )
        key = f"small {mode} b{batch}"
        if child.returncode != 0:
            out["runs"][key] = {"error": child.stderr.strip().splitlines()[-1:]}
            continue
        result = json.loads(child.stdout.strip().splitlines()[-1])
        result["peak_rss_gb"] = round(child.peak_rss_mb / 1024, 2)
        result["process_wall_s"] = round(child.wall_s, 1)
        out["runs"][key] = result
    out["note"] = "fp32 weights and compute; peak RSS is the whole process (model, Adam, data)"
    out["load_avg"] = {"start": start, "end": load_avg()}
    return out


def measure_preparation(decoder_root: Path, seconds: float, work: Path) -> dict:
    """Prepare one `seconds`-long recording (read, gain, segments, log-mel, VAE posterior)."""
    import numpy as np
    import soundfile as sf
    import torch

    from fluxmusic_cli.engine.decode import load_decoder
    from fluxmusic_cli.training.data import Track, TrackList
    from fluxmusic_cli.training.prepare import encode_tracks

    work.mkdir(parents=True, exist_ok=True)
    path = work / "prepare-input.wav"
    t = np.arange(int(seconds * 16000)) / 16000
    sf.write(path, 0.3 * np.sin(2 * np.pi * 220 * t), 16000)
    decoder = load_decoder(decoder_root, "cpu", torch.float32)
    tracks = TrackList(source=str(work), kind="folder", tracks=[Track(path, "a tone")])
    t0 = time.perf_counter()
    encoded = encode_tracks(tracks, decoder)
    wall = time.perf_counter() - t0
    segments = int(encoded.mean.shape[0])
    return {
        "audio_s": seconds,
        "segments": segments,
        "wall_s": wall,
        "s_per_segment": wall / segments,
        "s_per_hour_of_audio": wall * 3600 / seconds,
    }


def run_prepare(quick: bool) -> dict:
    import fixtures

    start = load_avg()
    root = fixtures.audioldm2_decoder(WORK)
    out = measure_preparation(root, 20.48 if quick else 61.44, WORK)
    out["note"] = "real-size random VAE, fp32 on the CPU; text encoding is not included"
    out["load_avg"] = {"start": start, "end": load_avg()}
    return out


def run_section(name: str, quick: bool) -> dict:
    return run_train(quick) if name == "train" else run_prepare(quick)


def summary_rows(name: str, r: dict) -> list[tuple[str, str]]:
    if "error" in r:
        return [("error", r["error"][:300])]
    if name == "prepare":
        per_hour = r["s_per_hour_of_audio"] / 60
        return [("preparation per hour of audio",
                 f"{per_hour:.1f} min ({r['s_per_segment']:.2f} s/segment)")]  # fmt: skip
    rows = []
    for key, v in r["runs"].items():
        if "error" in v:
            rows.append((key, f"error {v['error']}"))
            continue
        if "peak_gpu_gb" in v:
            mem = f"{v['peak_gpu_gb']:.2f} GB GPU"
        else:
            mem = f"{v['peak_rss_gb']} GB RSS"
        rows.append((key, f"{v['s_per_step']:.2f} s/step, {mem}"))
    return rows


if __name__ == "__main__" and len(sys.argv) == 5 and sys.argv[1] == "--worker":
    _worker(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
