"""Turn result JSON files from run.py into the Markdown tables of RESULTS.md.

python benchmarks/report.py benchmarks/results/full.json [more.json ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _la(r: dict) -> str:
    la = r.get("load_avg")
    return f"{la['start']:.1f} → {la['end']:.1f}" if la else "—"


def _section_step(s: dict | None) -> list[str]:
    out: list[str] = []
    if not (s and "runs" in s):
        return out
    out += [
        f"### Denoising step (small, 1024 + 256 tokens, batch 1, guided; load {_la(s)})",
        "",
        f"FLOPs per guided step: {s['flops_per_step']['total'] / 1e9:.1f} G "
        f"({s['flops_per_step']['linear'] / 1e9:.1f} linear + "
        f"{s['flops_per_step']['attention'] / 1e9:.1f} attention). "
        f"Matmul rate: {s['matmul_gflops']['fp32']:.0f} GFLOP/s fp32, "
        f"{s['matmul_gflops']['bf16']:.0f} GFLOP/s bf16. "
        f"Median of {s['measured_steps']} steps after one warm-up step.",
        "",
        "| path | s / step | roofline s | fraction of roofline |",
        "|---|---|---|---|",
    ]
    for name, v in s["runs"].items():
        out.append(f"| {name} | {v['s_per_step']:.2f} | {v['roofline_s']:.2f} | "
                   f"{100 * v['roofline_fraction']:.0f}% |")  # fmt: skip
    out += [
        "",
        f"Speed-up, fp32 engine over fp32 reference: {s['speedup_fp32']:.2f}x. "
        f"bf16 engine over fp32 reference: {s['speedup_bf16_vs_ref_fp32']:.2f}x. "
        f"bf16 engine over bf16-autocast reference: {s['speedup_bf16_vs_ref_bf16']:.2f}x.",
        f"Relative error after {s['measured_steps'] + 1} steps: fp32 engine vs reference "
        f"{s['rel_err_fp32_engine_vs_reference']:.1e}; bf16 engine vs fp32 reference "
        f"{s['rel_err_bf16_engine_vs_reference_fp32']:.1e}; bf16-autocast reference vs fp32 "
        f"reference {s['rel_err_bf16_reference_vs_reference_fp32']:.1e}. "
        f"RoPE tables rebuilt per forward: {1000 * s['rope_s_per_forward']:.1f} ms.",
        "",
    ]
    if "auto" in s:
        a = s["auto"]
        out += [
            f"`--dtype auto` (the default) ran {a['dtype']} (engine_auto): {a['reason']} "
            f"(short probe, bf16 needs {a['bf16_margin']}x); its step took "
            f"{a['vs_faster_explicit']:.2f}x the faster explicit dtype's.",
            "",
        ]
    return out


def _section_startup(st: dict | None) -> list[str]:
    out: list[str] = []
    if not (st and "help_s_median" in st):
        return out
    out += [f"### Start-up (load {_la(st)})", "",
            f"`fluxmusic --help`: {st['help_s_median']:.3f} s median "
            f"(imports torch: {st['help_imports_torch']}).", "",
            "| first step from | imports done | weights loaded | first step done | peak RSS |",
            "|---|---|---|---|---|"]  # fmt: skip
    for k, v in st["time_to_first_step"].items():
        out.append(f"| {k} | {v['import_s']:.1f} s | {v['loaded_s']:.1f} s | "
                   f"{v['first_step_done_s']:.1f} s | {v['peak_rss_mb']:.0f} MB |")  # fmt: skip
    out.append("")
    return out


def _section_load(ld: dict | None) -> list[str]:
    out: list[str] = []
    if not (ld and "variants" in ld):
        return out
    out += [f"### Loading weights (fresh process each, warm page cache; load {_la(ld)})", "",
            "| weights | file | load | peak RSS |", "|---|---|---|---|"]  # fmt: skip
    for k, v in ld["variants"].items():
        out.append(f"| {k} | {v['file_mb']:.0f} MB | {v['load_s_median']:.2f} s | "
                   f"{v['peak_rss_mb_max']:.0f} MB |")  # fmt: skip
    out.append("")
    return out


def _section_clip(c: dict | None) -> list[str]:
    out: list[str] = []
    if not (c and "first_run" in c):
        return out
    rec = c["first_run"].get("record") or {}
    out += [f"### Whole clip via `fluxmusic generate` (load {_la(c)})", "",
            f"10.24 s, {c['steps']} steps, dtype {rec.get('dtype', '?')}, memory policy "
            f"{rec.get('memory_policy', '?')}: **{c['first_run']['wall_s']:.1f} s** wall, "
            f"peak RSS {c['first_run']['peak_rss_mb']:.0f} MB; engine timings "
            f"{rec.get('timings', {})}. T5: {c['t5']}.",
            f"Same prompt again with T5's weights unreadable: "
            f"{'succeeded' if c['seen_prompt_without_t5_weights'] else 'FAILED'}"
            + (f", {c['second_run']['wall_s']:.1f} s wall"
               f" (timings {(c['second_run'].get('record') or {}).get('timings', {})})."
               if "second_run" in c else "."), ""]  # fmt: skip
    return out


def _section_batch(b: dict | None, quick: dict) -> list[str]:
    out: list[str] = []
    if not (b):
        return out
    tag = " (quick run)" if quick.get("batch") else ""
    if b.get("measured") is False or "error" in b:
        out += [f"### Batch{tag}", "", f"Not measured: {b.get('reason', b.get('error'))}", ""]
    else:
        out += [f"### Batch{tag} (load {_la(b)})", "",
                f"{b['prompts']} prompts, {b['steps']} steps each: `batch` "
                f"{b['batch_wall_s']:.0f} s ({b['clips_per_hour_batch']:.0f} clips/h) vs "
                f"separate `generate` runs {b['generate_wall_s_total']:.0f} s "
                f"({b['clips_per_hour_generate']:.0f} clips/h)."
                + (f" {b['note']}." if "note" in b else ""), ""]  # fmt: skip
    return out


def _section_peers(sections: dict | None) -> list[str]:
    out: list[str] = []
    peers = [k for k in ("musicgen-small", "musicgen-medium", "audioldm2") if k in sections]
    if peers:
        out += ["### Peers, 10 s of audio, random weights", "",
                "| model | params | s / clip | how | peak RSS | load |",
                "|---|---|---|---|---|---|"]  # fmt: skip
        for k in peers:
            p = sections[k]
            if "error" in p:
                out.append(f"| {k} | | error: {p['error'][:80]} | | | |")
                continue
            how = (f"extrapolated: {p.get('fixed_s', 0):.0f} s fixed + {p['s_per_unit']:.2f} s × "
                   f"{p['default_units']} {p['unit']}s (measured {p['units']})"
                   if p["extrapolated"] else f"measured, {p['units']} {p['unit']}s")  # fmt: skip
            out.append(f"| {k} | {p['params'] / 1e6:.0f} M | {p['s_per_10s_clip']:.0f} | {how} | "
                       f"{p['peak_rss_mb']:.0f} MB | {_la(p)} |")  # fmt: skip
        out.append("")
    return out


def _section_t5xxl(t5: dict | None) -> list[str]:
    out: list[str] = []
    if not (t5 and "sequential" in t5):
        return out
    out += [f"### T5-XXL + small, {t5['steps']} steps (load {_la(t5)})", "",
            "| --memory | wall | peak RSS | encode |", "|---|---|---|---|"]  # fmt: skip
    for policy in ("sequential", "resident"):
        v = t5[policy]
        enc = ((v.get("record") or {}).get("timings") or {}).get("encode_s", float("nan"))
        out.append(f"| {policy} | {v['wall_s']:.0f} s | {v['peak_rss_mb'] / 1024:.2f} GiB | "
                   f"{enc:.1f} s |")  # fmt: skip
    out.append("")
    return out


def _section_gpu(g: dict | None) -> list[str]:
    out: list[str] = []
    if not (g):
        return out
    if g.get("measured") is False:
        out += ["### GPU", "", f"Not measured: {g['reason']}.", ""]
    elif "runs" in g:
        out += [f"### GPU ({g['device']})", "", "| run | s / clip | peak GB |", "|---|---|---|"]
        for k, v in g["runs"].items():
            val = f"{v['s_per_clip']:.2f}" if "s_per_clip" in v else v.get("error")
            out.append(f"| {k} | {val} | {v.get('peak_mem_gb', 0):.1f} |")
        out.append("")
    return out


def render(paths: list[Path]) -> str:
    docs = [json.loads(p.read_text()) for p in paths]
    m = docs[0]["machine"]
    out = [
        f"Measured {m['date']} on {m['cpu']} ({m['physical_cores']} physical cores, "
        f"{m['logical_cpus']} logical, {m['mem_total_gb']} GB RAM, native bf16: "
        f"{m['native_bf16']}, torch CPU capability {m['cpu_capability']}, "
        f"{m['torch_threads']} torch threads); Python {m['python']}, torch {m['torch']}, "
        f"transformers {m['transformers']}, diffusers {m['diffusers']}.",
        "",
    ]
    sections: dict = {}
    quick: dict = {}
    for d in docs:
        for k, v in d["sections"].items():
            sections[k] = v
            quick[k] = d["quick"]
    out += _section_step(sections.get("step"))
    out += _section_startup(sections.get("startup"))
    out += _section_load(sections.get("load"))
    out += _section_clip(sections.get("clip"))
    out += _section_batch(sections.get("batch"), quick)
    out += _section_peers(sections)
    out += _section_t5xxl(sections.get("t5xxl"))
    out += _section_gpu(sections.get("gpu"))
    return "\n".join(out)


if __name__ == "__main__":
    print(render([Path(p) for p in sys.argv[1:]]))
