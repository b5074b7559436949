"""`fluxmusic batch`: render a prompt list into a folder, resumably, optionally as one shard."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from fluxmusic_cli.cli import options as opt
from fluxmusic_cli.cli.console import emit_json_line, err, warn
from fluxmusic_cli.engine.pipeline import (
    DEFAULT_GUIDANCE,
    DEFAULT_NEGATIVE_PROMPT,
    DEFAULT_STEPS,
    EngineOptions,
)
from fluxmusic_cli.engine.sampling import TRAINED_SECONDS
from fluxmusic_cli.engine.sources import DEFAULT_SOURCES
from fluxmusic_cli.errors import PartialFailure

BATCH_HELP = """Generate one clip per prompt of a list, into a folder; rerun to resume.

[bold]Prompt lists[/bold]

  .txt    one prompt a line; blank lines and # comments are skipped

  .csv    a prompt or caption column; name, seed, duration, guidance, steps
          and negative_prompt columns override the options for their row

  .jsonl  one object a line, with the same fields

  -       stdin (JSON lines when the first line starts with {, else text)

MusicCaps (ytid) and Song Describer (caption_id) CSVs name clips by their id.
Finished clips are listed in OUT_DIR/manifest.jsonl and skipped next time.

[bold]Examples[/bold]

  fluxmusic batch cues.txt -o cues/ --format mp3

  fluxmusic batch musiccaps.csv -o mc/ --batch-size 8 --json > events.jsonl

  fluxmusic batch captions.csv -o out/ --shard 0/4   # 1/4, 2/4, 3/4 elsewhere
"""


class FormatChoice(str, Enum):
    wav = "wav"
    flac = "flac"
    mp3 = "mp3"
    ogg = "ogg"


class InputFormat(str, Enum):
    auto = "auto"
    txt = "txt"
    csv = "csv"
    jsonl = "jsonl"


OutDir = Annotated[
    Path,
    typer.Option(
        "--output", "-o", help="Folder for the clips, their records and manifest.jsonl.",
        rich_help_panel=opt.OUTPUT, show_default=False,
    ),
]  # fmt: skip
Format = Annotated[
    FormatChoice,
    typer.Option("--format", help="Audio format of every clip.", rich_help_panel=opt.OUTPUT),
]
BatchSize = Annotated[
    int,
    typer.Option(
        "--batch-size", "-b", min=1, max=256,
        help="Prompts per forward pass. 1 keeps every clip bit-identical to `generate`; more "
        "is faster on GPUs (clips then agree to about 1e-6). Rows with other steps, guidance, "
        "duration or negative prompt go in their own passes.",
        rich_help_panel=opt.SAMPLING,
    ),
]  # fmt: skip
ShardOpt = Annotated[
    str | None,
    typer.Option(
        "--shard", metavar="K/N",
        help="Render only every N-th row starting at row K (K from 0), so N machines or GPUs "
        "can share one list and one folder.",
        show_default=False,
    ),
]  # fmt: skip
BatchSeed = Annotated[
    int,
    typer.Option(
        "--seed", "-s", min=0,
        help="Row n (from 1) gets seed SEED + n - 1 unless it has a seed column, so reruns "
        "and shards agree.",
        rich_help_panel=opt.SAMPLING,
    ),
]  # fmt: skip
JsonLines = Annotated[
    bool,
    typer.Option(
        "--json",
        help="Newline-delimited JSON events on stdout: item_started, item_done, item_skipped, "
        "item_failed, summary.",
        rich_help_panel=opt.OUTPUT,
    ),
]
InputFormatOpt = Annotated[
    InputFormat,
    typer.Option("--input-format", help="Format of the prompt list (auto: from the extension)."),
]


def register(app: typer.Typer) -> None:
    app.command("batch", help=BATCH_HELP, no_args_is_help=True)(batch)


def batch(
    prompts_file: Annotated[
        str,
        typer.Argument(
            help="Prompt list (.txt, .csv, .jsonl) or - for stdin.", metavar="PROMPTS_FILE"
        ),
    ],
    output: OutDir,
    fmt: Format = FormatChoice.wav,
    batch_size: BatchSize = 1,
    shard: ShardOpt = None,
    input_format: InputFormatOpt = InputFormat.auto,
    model: opt.Model = DEFAULT_SOURCES["transformer"],
    t5: opt.T5 = DEFAULT_SOURCES["t5"],
    clap: opt.Clap = DEFAULT_SOURCES["clap"],
    vae_vocoder: opt.VaeVocoder = DEFAULT_SOURCES["audioldm2"],
    encoders: opt.EncodersOpt = opt.EncodersChoice.both,
    conditioning: opt.ConditioningOpt = opt.ConditioningChoice.training,
    steps: opt.Steps = DEFAULT_STEPS,
    guidance: opt.Guidance = DEFAULT_GUIDANCE,
    negative_prompt: opt.Negative = DEFAULT_NEGATIVE_PROMPT,
    seed: BatchSeed = 0,
    duration: opt.Duration = TRAINED_SECONDS,
    device: opt.DeviceOpt = opt.DeviceChoice.auto,
    dtype: opt.DtypeOpt = opt.DtypeChoice.auto,
    memory: opt.MemoryOpt = opt.MemoryChoice.auto,
    token: opt.Token = None,
    compile_model: opt.Compile = False,
    threads: opt.Threads = None,
    lora: opt.Lora = None,
    text_device: opt.TextDeviceOpt = opt.TextDeviceChoice.auto,
    guidance_interval: opt.GuidanceIntervalOpt = None,
    cache: opt.CacheOpt = None,
    sample_rate: opt.SampleRate = 16000,
    peak_normalize: opt.PeakNormalize = False,
    save_latent: opt.SaveLatent = False,
    force: opt.Force = False,
    json_out: JsonLines = False,
    quiet: opt.Quiet = False,
    yes: opt.Yes = False,
) -> None:
    from fluxmusic_cli import batchrun
    from fluxmusic_cli.engine.sampling import latent_length
    from fluxmusic_cli.prompts import read_prompts

    latent_length(duration)  # a bad --duration is a usage error before anything is read
    table = read_prompts(
        prompts_file, fmt=None if input_format is InputFormat.auto else input_format.value
    )
    settings = batchrun.Settings(
        steps=steps, guidance=guidance, negative_prompt=negative_prompt, duration=duration,
        seed=seed, encoders=encoders.value, fmt=fmt.value, sample_rate=sample_rate,
        peak_normalize=peak_normalize, save_latent=save_latent,
    )  # fmt: skip
    plan = batchrun.plan_batch(
        table, output, settings, batchrun.parse_shard(shard) if shard else None
    )
    engine_options = opt.engine_options(
        model=model, t5=t5, clap=clap, vae_vocoder=vae_vocoder, encoders=encoders.value,
        conditioning=conditioning.value, device=device.value, dtype=dtype.value,
        memory=memory.value, token=token, compile=compile_model, threads=threads,
        loras=opt.loras(lora),
        guidance_interval=guidance_interval, cache=cache, text_device=text_device,
    )  # fmt: skip
    run_plan(plan, settings, engine_options, batch_size=batch_size, force=force,
             json_out=json_out, quiet=quiet, yes=yes, label="rows")  # fmt: skip


def run_plan(
    plan,
    settings,
    engine_options: EngineOptions,
    *,
    batch_size: int,
    force: bool,
    json_out: bool,
    quiet: bool,
    yes: bool,
    label: str,
):
    """Run a plan with progress on stderr (or JSON events on stdout) and a closing summary.

    Shared with `vary`. Returns the summary; raises PartialFailure when any item failed.
    """
    import dataclasses

    from fluxmusic_cli.batchrun import BatchRunner
    from fluxmusic_cli.output import check_encodable

    check_encodable(settings.fmt, settings.sample_rate)  # before any model loads
    from fluxmusic_cli.cli.progress import step_bars
    from fluxmusic_cli.cli.setup import make_engine

    engine_options = dataclasses.replace(engine_options, forward_batch=batch_size)

    with step_bars(quiet or json_out) as bars:
        engine = make_engine(engine_options, progress=bars, yes=yes, quiet=quiet or json_out)
        report = _Reporter(bars, json_out=json_out, quiet=quiet)
        runner = BatchRunner(engine, plan, settings, batch_size=batch_size, force=force,
                             on_event=report)  # fmt: skip
        try:
            todo = runner.prepare().todo
            report.start(len(todo))
            summary = runner.run(todo)
        except KeyboardInterrupt:
            if json_out:
                emit_json_line({**runner.summary.to_json(plan), "interrupted": True})
            raise
        finally:
            runner.close()
    for w in summary.warnings:
        warn(w)
    if json_out:
        emit_json_line(summary.to_json(plan))
    elif not quiet:
        _summary_table(plan, summary, label)
    if summary.failed:
        total = len(summary.failed) + len(summary.done) + len(summary.skipped)
        raise PartialFailure(
            f"{len(summary.failed)} of {total} {label} failed; the others are in {plan.out_dir}.",
            hint="Fix the rows named above and run the same command again: finished clips are "
            "skipped.",
        )
    return summary


class _Reporter:
    """Turns run events into JSON lines or an items bar with rate and ETA."""

    def __init__(self, bars, *, json_out: bool, quiet: bool) -> None:
        self.bars = bars
        self.json_out = json_out
        self.quiet = quiet
        self.task = None
        self.done = 0
        self.started: float | None = None

    def start(self, todo: int) -> None:
        import time

        self.started = time.perf_counter()
        self.task = self.bars.add_task("items", total=todo)

    def __call__(self, event) -> None:
        if self.json_out:
            emit_json_line(event.to_json())
            return
        if event.kind == "item_failed" and not self.quiet:
            warn(f"row {event.row} ({event.name or 'no name'}): {event.reason}")
        if event.kind in ("item_done", "item_failed") and self.task is not None:
            self._advance()

    def _advance(self) -> None:
        import time

        self.done += 1
        self.bars.advance(self.task)
        elapsed = time.perf_counter() - (self.started or time.perf_counter())
        if self.bars.progress is not None and elapsed > 0:
            rate = self.done / elapsed
            text = f"items ({rate:.2f}/s)" if rate >= 1 else f"items ({60 * rate:.1f}/min)"
            self.bars.progress.update(self.task, description=text)


def _summary_table(plan, summary, label: str) -> None:
    from rich.table import Table

    counts = Table(title=f"{plan.out_dir}", show_header=False, title_justify="left")
    counts.add_column("what")
    counts.add_column("count", justify="right")
    counts.add_row("[green]written[/green]", str(len(summary.done)))
    counts.add_row("already finished (skipped)", str(len(summary.skipped)))
    counts.add_row("[red]failed[/red]" if summary.failed else "failed", str(len(summary.failed)))
    if plan.shard is not None:
        mine = len(plan.items) + len(plan.failures)
        counts.add_row(f"other shards' {label} (shard {plan.shard})", str(plan.total - mine))
    counts.add_row("time", f"{summary.elapsed_s:.1f} s")
    err.print(counts)
    if summary.failed:
        failures = Table(title="failed", title_justify="left")
        failures.add_column("row", justify="right")
        failures.add_column("name")
        failures.add_column("reason", overflow="fold")
        for e in summary.failed:
            failures.add_row(str(e.row), e.name or "", e.reason or "")
        err.print(failures)
    err.print(f"manifest: {plan.out_dir / 'manifest.jsonl'}")
