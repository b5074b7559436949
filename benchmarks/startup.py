"""Sections `startup` (`fluxmusic --help`, time to first step), `help` (`fluxmusic --help`
alone) and `load` (.pt vs safetensors)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
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


HEAVY = ("torch", "numpy", "scipy", "transformers", "diffusers", "soundfile", "safetensors")


def help_timing(reps: int) -> dict:
    """Wall time of `fluxmusic --help` as a user meets it, and what it imports.

    Fair by construction: one warm-up run first (it writes the package's bytecode, as a first
    run after `pip install -e` does, and warms the page cache); then the cases run interleaved,
    so a change of load hits each alike; each run is timed around `subprocess.run` (no polling,
    unlike `run_child`). "no bytecode" runs with PYTHONDONTWRITEBYTECODE=1 and an empty
    PYTHONPYCACHEPREFIX, so every module is compiled on every start: the worst case, near what
    an editable install under PYTHONDONTWRITEBYTECODE=1 sees.
    """
    exe = fluxmusic_exe()
    cached = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    start = load_avg()
    with tempfile.TemporaryDirectory(prefix="fluxmusic-pycache-") as empty:
        cold = {**cached, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPYCACHEPREFIX": empty}
        cases = {
            "python -c pass": ([sys.executable, "-c", "pass"], cached),
            "fluxmusic --help": ([exe, "--help"], cached),
            "fluxmusic generate --help": ([exe, "generate", "--help"], cached),
            "fluxmusic --help, no bytecode": ([exe, "--help"], cold),
        }
        subprocess.run([exe, "--help"], env=cached, capture_output=True, check=True)
        times: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(reps):
            for name, (cmd, env) in cases.items():
                t0 = time.perf_counter()
                subprocess.run(cmd, env=env, capture_output=True, check=True)
                times[name].append(time.perf_counter() - t0)
    env = {**cached, "PYTHONPROFILEIMPORTTIME": "1"}
    probe = subprocess.run([exe, "--help"], env=env, capture_output=True, text=True, check=True)
    modules, app_us = set(), None
    for line in probe.stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            _, cumulative, name = line.split("|")
            modules.add(name.strip().split(".")[0])
            if name.strip() == "fluxmusic_cli.cli.app":
                app_us = int(cumulative)
    return {
        "reps": reps,
        "median_s": {k: round(median(v), 4) for k, v in times.items()},
        "min_s": {k: round(min(v), 4) for k, v in times.items()},
        "app_import_s": None if app_us is None else app_us / 1e6,
        "heavy_imported": sorted(m for m in HEAVY if m in modules),
        "load_avg": {"start": start, "end": load_avg()},
    }


def help_section(quick: bool) -> dict:
    return help_timing(5 if quick else 21)


def startup(quick: bool) -> dict:
    start = load_avg()
    reps = 3 if quick else 7
    help_run = help_timing(reps)
    help_s = [help_run["median_s"]["fluxmusic --help"]]
    code = "import sys, fluxmusic_cli.cli.app; print('torch' in sys.modules)"
    probe = run_child([sys.executable, "-c", code])
    pt, st = fixtures.transformer(WORK, "small")
    first = {}
    for name, path in (("safetensors_bf16", st), ("pt_bf16", pt)):
        run, marks = _worker("first-step", str(path), "bf16")
        first[name] = {**marks, "wall_s": run.wall_s, "peak_rss_mb": run.peak_rss_mb}
    return {
        "help_s_median": median(help_s),
        "help": help_run,
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
    if name == "help":
        return help_section(quick)
    if name == "startup":
        return startup(quick)
    if name == "load-released":
        return load(quick, RELEASED, remove=True)
    return load(quick)


def summary_rows(name: str, r: dict) -> list[tuple[str, str]]:
    if "error" in r:
        return [("error", r["error"])]
    if name == "help":
        rows = [
            (f"{case} (median; min of {r['reps']})", f"{med:.3f} s; {r['min_s'][case]:.3f} s")
            for case, med in r["median_s"].items()
        ]
        heavy = ", ".join(r["heavy_imported"]) or "none"
        return [*rows, ("heavy libraries imported by --help", heavy)]
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
