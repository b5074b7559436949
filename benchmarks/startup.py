"""Sections `startup` (`fluxmusic --help`, time to first step) and `load` (.pt vs safetensors)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import fixtures
from common import fluxmusic_exe, load_avg, median, run_child

WORKER = str(Path(__file__).resolve().parent / "worker.py")
WORK = Path("/tmp/fluxmusic-bench")


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


def load(quick: bool) -> dict:
    start = load_avg()
    variants = ("small",) if quick else ("small", "base")
    reps = 1 if quick else 3
    out: dict = {}
    for variant in variants:
        pt, st = fixtures.transformer(WORK, variant)
        for kind, path in ((".pt", pt), ("safetensors", st)):
            runs = [_worker("load", str(path)) for _ in range(reps)]
            out[f"{variant} {kind}"] = {
                "file_mb": path.stat().st_size / 2**20,
                "load_s_median": median([m["load_s"] for _, m in runs]),
                "process_wall_s_median": median([r.wall_s for r, _ in runs]),
                "peak_rss_mb_max": max(r.peak_rss_mb for r, _ in runs),
                "params": runs[0][1]["params"],
            }
    return {"variants": out, "page_cache": "warm (files just written or read)",
            "load_avg": {"start": start, "end": load_avg()}}  # fmt: skip


def run_section(name: str, quick: bool) -> dict:
    return startup(quick) if name == "startup" else load(quick)


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
        for k, v in r["variants"].items()
    ]
