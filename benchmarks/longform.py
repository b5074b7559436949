"""Section `longform`: music longer than the trained 10.24 s window.

For 30 s and 60 s, `fluxmusic generate -d D` (trained windows with 5.12 s of context, what the
tool does now) against one single window D long (what it did before: every token attending
to every other), measured side by side in one run, each in its own process, with the small
model at real size (random weights). A 5-minute long-form run checks the memory target:
its peak RSS must stay below that of a 10.24 s run with T5-XXL and the small model (10.72 GB
measured in the `t5xxl` section, about 11 GB).

Steps are few (the per-step cost is what differs); the JSON gives seconds per step and per
second of output, so any step count follows. The matmul rate of the machine is measured in the
same run, since machines differ threefold.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from clip import PROMPT, WORK, _args, _components
from common import fluxmusic_exe, load_avg, run_child

MEMORY_TARGET_GB = 11.0  # T5-XXL + small, 10.24 s, measured 10.72 GB (results/t5xxl.json)


def _long_form(parts, out: Path, seconds: float, steps: int) -> dict:
    cmd = [fluxmusic_exe(), "generate", PROMPT, "-o", str(out), "-d", str(seconds),
           "--steps", str(steps), "--seed", "1", "--json", "-q", "--force",
           *_args(parts)]  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="fm-long-cache-") as cache:
        run = run_child(cmd, env={"FLUXMUSIC_CACHE": cache, "HF_HUB_OFFLINE": "1"})
    if run.returncode != 0:
        raise RuntimeError(f"generate exited {run.returncode}: {run.stderr.strip()[-600:]}")
    record = json.loads(run.stdout)["outputs"][0]["record"]
    timings = record["timings"]
    return {
        "seconds": seconds,
        "steps": steps,
        "windows": record.get("windows", 1),
        "wall_s": round(run.wall_s, 2),
        "peak_rss_mb": round(run.peak_rss_mb),
        "denoise_s": timings["denoise_s"],
        "decode_s": timings["decode_s"],
        "denoise_s_per_step_per_output_s": timings["denoise_s"] / steps / seconds,
    }


def _single_window(model: Path, seconds: float, steps: int) -> dict:
    worker = Path(__file__).with_name("worker.py")
    cmd = [sys.executable, str(worker), "single-window", str(model), str(seconds), str(steps)]
    run = run_child(cmd)
    if run.returncode != 0:
        raise RuntimeError(f"worker exited {run.returncode}: {run.stderr.strip()[-600:]}")
    out = json.loads(run.stdout.strip().splitlines()[-1])
    out.update(seconds=seconds, steps=steps, peak_rss_mb=round(run.peak_rss_mb))
    out["denoise_s_per_step_per_output_s"] = out["denoise_s"] / steps / seconds
    return out


def longform(quick: bool) -> dict:
    import torch
    from common import matmul_rate

    start = load_avg()
    steps = 1 if quick else 2
    lengths = (12.0,) if quick else (30.0, 60.0)
    parts = _components()
    rates = {"fp32": matmul_rate(torch.float32), "bf16": matmul_rate(torch.bfloat16)}
    result: dict = {"steps": steps, "matmul_gflops": rates, "by_length": {}}
    with tempfile.TemporaryDirectory(prefix="fm-long-") as tmp:
        for seconds in lengths:
            windowed = _long_form(parts, Path(tmp) / f"w{seconds:g}.wav", seconds, steps)
            single = _single_window(parts["model"], seconds, steps)
            result["by_length"][f"{seconds:g}"] = {
                "windowed": windowed,
                "single_window": single,
                "single_over_windowed_denoise": single["denoise_s"] / windowed["denoise_s"],
            }
        if not quick:
            five = _long_form(parts, Path(tmp) / "five.wav", 300.0, 1)
            five["under_memory_target"] = five["peak_rss_mb"] / 1024 < MEMORY_TARGET_GB
            result["five_minutes"] = five
    result["memory_target_gb"] = MEMORY_TARGET_GB
    result["load_avg"] = {"start": start, "end": load_avg()}
    result["work"] = str(WORK)
    return result


def run_section(name: str, quick: bool) -> dict:
    return longform(quick)


def summary_rows(name: str, r: dict) -> list[tuple[str, str]]:
    if "error" in r:
        return [("error", r["error"][:200])]
    rows = []
    for seconds, entry in r["by_length"].items():
        w, s = entry["windowed"], entry["single_window"]
        rows.append((f"{seconds} s: windows ({w['windows']}) / one window, s per step",
                     f"{w['denoise_s'] / w['steps']:.1f} / {s['denoise_s'] / s['steps']:.1f} "
                     f"({entry['single_over_windowed_denoise']:.2f}x)"))  # fmt: skip
        rows.append((f"{seconds} s: peak RSS windows / one window",
                     f"{w['peak_rss_mb']} / {s['peak_rss_mb']} MB"))  # fmt: skip
    if "five_minutes" in r:
        f = r["five_minutes"]
        target = f"target {r['memory_target_gb']} GB: {f['under_memory_target']}"
        peak = f"{f['peak_rss_mb'] / 1024:.2f} GB"
        rows.append(("300 s long-form, 1 step: wall, peak RSS",
                     f"{f['wall_s']:.0f} s, {peak} ({target})"))  # fmt: skip
    return rows
