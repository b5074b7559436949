"""Sections `clip` (whole `fluxmusic generate`), `batch` and the opt-in `t5xxl` memory policy run.

Everything goes through the installed console script in a child process, so wall time and the
child's own peak RSS are what a user would see.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
from pathlib import Path

import fixtures
from common import fluxmusic_exe, load_avg, run_child

from fluxmusic_cli.tinybundle.text import CAPTIONS

WORK = Path("/tmp/fluxmusic-bench")
PROMPT = "A calm piano melody with soft strings and gentle rain in the background."


def _components(t5: Path | None = None) -> dict[str, Path]:
    pt, _ = fixtures.transformer(WORK, "small")
    return {
        "model": pt,
        "t5": t5 or fixtures.t5_wide(WORK),
        "clap": fixtures.clap(WORK),
        "vae-vocoder": fixtures.audioldm2_decoder(WORK),
    }


def _args(parts: dict[str, Path]) -> list[str]:
    out: list[str] = []
    for k, v in parts.items():
        out += [f"--{k}", str(v)]
    return out


def _generate(parts, cache: Path, out: Path, steps: int, *extra: str, prompt: str = PROMPT):
    cmd = [fluxmusic_exe(), "generate", prompt, "-o", str(out), "--steps", str(steps),
           "--seed", "1", "--json", "-q", "--force", *_args(parts), *extra]  # fmt: skip
    run = run_child(cmd, env={"FLUXMUSIC_CACHE": str(cache), "HF_HUB_OFFLINE": "1"})
    if run.returncode != 0:
        raise RuntimeError(f"generate exited {run.returncode}: {run.stderr.strip()[-600:]}")
    return run


def clip(quick: bool) -> dict:
    start = load_avg()
    steps = 3 if quick else 50
    parts = _components()
    with tempfile.TemporaryDirectory(prefix="fm-clip-") as tmp:
        cache = Path(tmp) / "cache"
        first = _generate(parts, cache, Path(tmp) / "a.wav", steps)
        # A second run of the same prompt must not touch T5: make its weights unreadable.
        weights = parts["t5"] / "model.safetensors"
        mode = weights.stat().st_mode
        os.chmod(weights, 0)
        try:
            second = _generate(parts, cache, Path(tmp) / "b.wav", steps)
            second_ok, second_err = True, ""
        except RuntimeError as exc:
            second, second_ok, second_err = None, False, str(exc)
        finally:
            os.chmod(weights, stat.S_IMODE(mode))
    result = {
        "steps": steps,
        "seconds": 10.24,
        "t5": "T5-XXL width (d_model 4096, d_ff 10240), 2 of 24 layers; see section t5xxl",
        "first_run": {
            "wall_s": first.wall_s,
            "peak_rss_mb": first.peak_rss_mb,
            "record": _record(first.stdout),
        },  # fmt: skip
        "seen_prompt_without_t5_weights": second_ok,
        "load_avg": {"start": start, "end": load_avg()},
    }
    if second is not None:
        result["second_run"] = {"wall_s": second.wall_s, "peak_rss_mb": second.peak_rss_mb,
                                "record": _record(second.stdout)}  # fmt: skip
    else:
        result["second_run_error"] = second_err
    if quick:
        rec = result["first_run"]["record"] or {}
        timings = rec.get("timings", {})
        if "denoise_s" in timings:
            per_step = timings["denoise_s"] / steps
            result["extrapolated_50_steps_wall_s"] = first.wall_s + per_step * (50 - steps)
    return result


def _record(stdout: str) -> dict | None:
    try:
        doc = json.loads(stdout)
    except ValueError:
        return None
    clips = doc.get("outputs") if isinstance(doc, dict) else None
    item = clips[0] if clips else doc
    rec = item.get("record", item) if isinstance(item, dict) else {}
    return {k: rec[k] for k in ("timings", "dtype", "memory_policy", "device") if k in rec}


def batch(quick: bool) -> dict:
    start = load_avg()
    help_run = run_child([fluxmusic_exe(), "batch", "--help"])
    if help_run.returncode != 0:
        return {"measured": False, "reason": "`fluxmusic batch` is not available"}
    # FMBENCH_BATCH_PROMPTS / FMBENCH_BATCH_STEPS shrink the run to fit a time budget.
    n = int(os.environ.get("FMBENCH_BATCH_PROMPTS", 4 if quick else 16))
    steps = int(os.environ.get("FMBENCH_BATCH_STEPS", 2 if quick else 5))
    prompts = list(CAPTIONS[:n])
    parts = _components()
    with tempfile.TemporaryDirectory(prefix="fm-batch-") as tmp:
        cache = Path(tmp) / "cache"
        plist = Path(tmp) / "prompts.txt"
        plist.write_text("\n".join(prompts) + "\n")
        cmd = [fluxmusic_exe(), "batch", str(plist), "-o", str(Path(tmp) / "batch"),
               "--steps", str(steps), "--seed", "1", "-q", *_args(parts)]  # fmt: skip
        b = run_child(cmd, env={"FLUXMUSIC_CACHE": str(cache), "HF_HUB_OFFLINE": "1"})
        if b.returncode != 0:
            raise RuntimeError(f"batch exited {b.returncode}: {b.stderr.strip()[-600:]}")
        shutil.rmtree(cache)
        singles = [
            _generate(parts, cache, Path(tmp) / f"g{i}.wav", steps, prompt=p)
            for i, p in enumerate(prompts)
        ]
    single_s = sum(r.wall_s for r in singles)
    out = {
        "prompts": n,
        "steps": steps,
        "batch_wall_s": b.wall_s,
        "batch_peak_rss_mb": b.peak_rss_mb,
        "generate_wall_s_total": single_s,
        "generate_wall_s_each": [r.wall_s for r in singles],
        "generate_peak_rss_mb_max": max(r.peak_rss_mb for r in singles),
        "clips_per_hour_batch": 3600 * n / b.wall_s,
        "clips_per_hour_generate": 3600 * n / single_s,
    }
    if steps != 50:
        # Both ways run one prompt per forward pass, so 50 steps add the same denoising time to
        # each clip; the step time is the `step` section's bf16 engine median (an input, not
        # measured here).
        step_s = float(os.environ.get("FMBENCH_STEP_S", "2.79"))
        extra_s = n * (50 - steps) * step_s
        out["extrapolated_50_steps"] = {
            "step_s_assumed": step_s,
            "batch_wall_s": b.wall_s + extra_s,
            "generate_wall_s_total": single_s + extra_s,
            "clips_per_hour_batch": 3600 * n / (b.wall_s + extra_s),
            "clips_per_hour_generate": 3600 * n / (single_s + extra_s),
        }
        out["note"] = (
            f"{steps} steps per clip (not 50): the saving is per-process start-up "
            "and loading, which does not depend on the step count"
        )
    return {
        **out,
        "load_avg": {"start": start, "end": load_avg()},
    }


def t5xxl(quick: bool) -> dict:
    start = load_avg()
    free_gb = shutil.disk_usage(WORK.parent).free / 2**30
    avail_gb = _mem_available_gb()
    if free_gb < 15 or avail_gb < 14:
        return {
            "measured": False,
            "reason": f"needs ~15 GB disk and ~14 GB RAM; have {free_gb:.0f} / {avail_gb:.0f}",
        }
    parts = _components(t5=fixtures.t5_xxl(WORK))
    steps = 2 if quick else 5
    out: dict = {"steps": steps}
    with tempfile.TemporaryDirectory(prefix="fm-t5-") as tmp:
        for policy in ("sequential", "resident"):
            cache = Path(tmp) / f"cache-{policy}"
            run = _generate(parts, cache, Path(tmp) / f"{policy}.wav", steps, "--memory", policy)
            out[policy] = {"wall_s": run.wall_s, "peak_rss_mb": run.peak_rss_mb,
                           "record": _record(run.stdout)}  # fmt: skip
    out["load_avg"] = {"start": start, "end": load_avg()}
    return out


def _mem_available_gb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 2**20
    return 0.0


def run_section(name: str, quick: bool) -> dict:
    return {"clip": clip, "batch": batch, "t5xxl": t5xxl}[name](quick)


def summary_rows(name: str, r: dict) -> list[tuple[str, str]]:
    if "error" in r:
        return [("error", r["error"][:200])]
    if r.get("measured") is False:
        return [("not measured", r["reason"])]
    if name == "clip":
        f = r["first_run"]
        rows = [(f"generate 10.24 s, {r['steps']} steps",
                 f"{f['wall_s']:.1f} s, peak RSS {f['peak_rss_mb']:.0f} MB")]  # fmt: skip
        if "extrapolated_50_steps_wall_s" in r:
            extra = r["extrapolated_50_steps_wall_s"]
            rows.append(("  extrapolated to 50 steps", f"{extra:.1f} s"))
        seen = r["seen_prompt_without_t5_weights"]
        rows.append(("seen prompt runs without T5 weights", str(seen)))
        if "second_run" in r:
            rows.append(("  second run wall", f"{r['second_run']['wall_s']:.1f} s"))
        return rows
    if name == "batch":
        return [
            (
                f"{r['prompts']} prompts x {r['steps']} steps: batch",
                f"{r['batch_wall_s']:.0f} s ({r['clips_per_hour_batch']:.0f} clips/h)",
            ),
            (
                f"{r['prompts']} separate generate runs",
                f"{r['generate_wall_s_total']:.0f} s ({r['clips_per_hour_generate']:.0f} clips/h)",
            ),
        ] + [
            (
                "  extrapolated to 50 steps: batch / generate",
                f"{x['clips_per_hour_batch']:.1f} / {x['clips_per_hour_generate']:.1f} clips/h",
            )
            for x in [r.get("extrapolated_50_steps")]
            if x
        ]
    return [(f"T5-XXL + small, --memory {p}",
             f"{r[p]['wall_s']:.0f} s, peak RSS {r[p]['peak_rss_mb'] / 1024:.2f} GB")
            for p in ("sequential", "resident") if p in r]  # fmt: skip
