"""One command for every FluxMusic speed and memory figure (random weights, real sizes).

    python benchmarks/run.py [--quick] [--only step,clip,startup,load,batch,peers,gpu] [--out F]

`--only train,prepare` (opt-in) times fine-tuning steps and preparation.
`--only passes` (opt-in) counts what --guidance-interval and --cache save; `--only attention`
(opt-in) times attention kernels at every head size; `--only roofline` (opt-in) times guided
steps of small and base against the matmul roofline, with both bf16 attention paths;
`--only t5-8bit` (opt-in) times T5-XXL layers in bf16 against 8-bit torchao/quanto weights.
`--only serve` (opt-in) compares a cold `generate` with a request to a warm server (fixed
cost per clip) and sends 100 jobs from 10 concurrent clients to a server on the tiny bundle.
`--only longform` (opt-in) compares 30 s and 60 s long-form windows with one long window and
checks the 5-minute memory target. `--only help` (opt-in) times `fluxmusic --help` alone
(what `startup` reports first, without the full-size first step). `--only compile` (opt-in)
times the bf16 step under
torch.compile on the CPU. `--only load-released`
(opt-in) writes large, giant-full and giant at real size (up to 17 GB), times loading, deletes
them. `--only t5xxl`
(opt-in too) writes a real-size T5-XXL (9.5 GB) and compares
the memory policies. `peers` may be narrowed: `--only musicgen-small,audioldm2`.
Results go to a JSON file (default benchmarks/results/latest.json) and a table on stdout.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, load_avg, machine_facts, write_json  # noqa: E402

DEFAULT = ("step", "startup", "load", "clip", "batch", "peers", "gpu")
PEERS = ("musicgen-small", "musicgen-medium", "audioldm2")
MODULES = {
    "step": "step",
    "compile": "step",
    "startup": "startup",
    "help": "startup",
    "load": "startup",
    "load-released": "startup",
    "clip": "clip",
    "batch": "clip",
    "t5xxl": "clip",
    "gpu": "gpu",
    "train": "train",
    "prepare": "train",
    "longform": "longform",
    "passes": "passes",
    "attention": "attention",
    "roofline": "roofline",
    "t5-8bit": "t5quant",
    "serve": "serve",
    **{p: "peers" for p in PEERS},
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer steps and repeats (smoke test)")
    ap.add_argument("--only", default=",".join(DEFAULT), help="comma-separated sections")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "latest.json")
    args = ap.parse_args(argv)

    wanted: list[str] = []
    for name in args.only.split(","):
        name = name.strip()
        if name == "peers":
            wanted += PEERS
        elif name in MODULES:
            wanted.append(name)
        elif name:
            ap.error(f"unknown section {name!r}; known: {', '.join(sorted({*MODULES, 'peers'}))}")

    report = {"machine": machine_facts(), "quick": args.quick, "sections": {}}
    print(f"# {report['machine']['cpu']}, {report['machine']['physical_cores']} cores, "
          f"torch {report['machine']['torch']}, load {load_avg():.2f}", flush=True)  # fmt: skip
    rows: list[tuple[str, str, str]] = []
    for name in dict.fromkeys(wanted):
        module = importlib.import_module(MODULES[name])
        t0 = time.perf_counter()
        print(f"## {name} ...", flush=True)
        try:
            result = module.run_section(name, args.quick)
        except Exception as exc:  # one failing section must not lose the others' figures
            result = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
            print(result["traceback"], file=sys.stderr)
        result["section_wall_s"] = round(time.perf_counter() - t0, 1)
        report["sections"][name] = result
        write_json(args.out, report)
        for key, value in module.summary_rows(name, result):
            rows.append((name, key, value))
            print(f"  {key:48s} {value}", flush=True)
    print(f"\nwritten to {args.out}")
    width = max((len(k) for _, k, _ in rows), default=10)
    for section, key, value in rows:
        print(f"{section:15s} {key:{width}s}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
