"""Sections `startup` (`fluxmusic --help`, time to first step) and `load` (.pt vs safetensors)."""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import fixtures
from common import fluxmusic_exe, load_avg, median, run_child

WORKER = str(Path(__file__).resolve().parent / "worker.py")
WORK = Path("/tmp/fluxmusic-bench")
RELEASED = ("large", "giant-full", "giant")


def _worker(*args: str):
    run = run_child([sys.executable, WORKER, *args])
    if run.returncode != 0:
        raise RuntimeError(f"worker {args[0]} failed: {run.stderr.strip()[-400:]}")
    return run, json.loads(run.stdout.strip().splitlines()[-1])


def startup(quick: bool) -> dict:
    start = load_avg()
    reps = 3 if quick else 7
    help_s = []
    for _ in range(reps):
        run = run_child([fluxmusic_exe(), "--help"])
        if run.returncode != 0:
            raise RuntimeError(f"fluxmusic --help failed: {run.stderr[-300:]}")
        help_s.append(run.wall_s)
    code = "import sys, fluxmusic_cli.cli.app; print('torch' in sys.modules)"
    probe = run_child([sys.executable, "-c", code])
    pt, st = fixtures.transformer(WORK, "small")
    first = {}
    for name, path in (("safetensors_bf16", st), ("pt_bf16", pt)):
        run, marks = _worker("first-step", str(path), "bf16")
        first[name] = {**marks, "wall_s": run.wall_s, "peak_rss_mb": run.peak_rss_mb}
    return {
        "help_s_median": median(help_s),
        "help_s_all": help_s,
        "help_imports_torch": probe.stdout.strip() == "True",
        "time_to_first_step": first,
        "load_avg": {"start": start, "end": load_avg()},
    }


def load(quick: bool, variants: tuple[str, ...] | None = None, *, remove: bool = False) -> dict:
    start = load_avg()
    variants = variants or (("small",) if quick else ("small", "base"))
    reps = 1 if quick else 3
    out: dict = {}
    for variant in variants:
        t0 = time.perf_counter()
        pt, st = fixtures.transformer(WORK, variant)
        written_s = time.perf_counter() - t0
        for kind, path in ((".pt", pt), ("safetensors", st)):
            runs = [_worker("load", str(path), *(["touch"] if remove else [])) for _ in range(reps)]
            touched = [m for _, m in runs if "touch_s" in m]
            if touched:
                out[f"{variant} {kind} touched"] = {
                    "touch_s_median": median([m["touch_s"] for m in touched]),
                    "touch_s_all": [m["touch_s"] for m in touched],
                    "vm_hwm_after_touch_mb_max": max(m["vm_hwm_after_touch_mb"] for m in touched),
                }
            out[f"{variant} {kind}"] = {
                "file_mb": path.stat().st_size / 2**20,
                "load_s_median": median([m["load_s"] for _, m in runs]),
                "load_s_all": [m["load_s"] for _, m in runs],
                "process_wall_s_median": median([r.wall_s for r, _ in runs]),
                "peak_rss_mb_max": max(r.peak_rss_mb for r, _ in runs),
                "own_vm_hwm_mb_max": max(m.get("vm_hwm_mb", 0.0) for _, m in runs),
                "params": runs[0][1]["params"],
                "fixture_write_s": written_s,
                "load_avg_after": load_avg(),
            }
        if remove:  # the released sizes take 7-17 GB of disk per variant
            shutil.rmtree(pt.parent)
    return {"variants": out, "page_cache": "warm (files just written or read)",
            "load_avg": {"start": start, "end": load_avg()}}  # fmt: skip


def run_section(name: str, quick: bool) -> dict:
    if name == "startup":
        return startup(quick)
    if name == "load-released":
        return load(quick, RELEASED, remove=True)
    return load(quick)


def summary_rows(name: str, r: dict) -> list[tuple[str, str]]:
    if "error" in r:
        return [("error", r["error"])]
    if name == "startup":
        rows = [("fluxmusic --help (median)", f"{r['help_s_median']:.3f} s"),
                ("--help imports torch", str(r["help_imports_torch"]))]  # fmt: skip
        for k, v in r["time_to_first_step"].items():
            rows.append((f"time to first step ({k})",
                         f"{v['first_step_done_s']:.1f} s (loaded at {v['loaded_s']:.1f} s, "
                         f"peak RSS {v['peak_rss_mb']:.0f} MB)"))  # fmt: skip
        return rows
    return [
        (f"load {k}", f"{v['load_s_median']:.2f} s, peak RSS {v['peak_rss_mb_max']:.0f} MB")
        if "load_s_median" in v
        else (
            f"  {k}",
            f"read all weights {v['touch_s_median']:.2f} s, "
            f"VmHWM then {v['vm_hwm_after_touch_mb_max']:.0f} MB",
        )
        for k, v in r["variants"].items()
    ]
