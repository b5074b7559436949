"""`fluxmusic batch`: render a prompt list into a folder, resumably, optionally as one shard."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer

from fluxmusic_cli.cli import options as opt
from fluxmusic_cli.cli.runs import run_plan
from fluxmusic_cli.engine.pipeline import (
    DEFAULT_GUIDANCE,
    DEFAULT_NEGATIVE_PROMPT,
    DEFAULT_STEPS,
)
from fluxmusic_cli.engine.sampling import TRAINED_SECONDS
from fluxmusic_cli.engine.sources import DEFAULT_SOURCES

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


class InputFormat(str, Enum):
    auto = "auto"
    txt = "txt"
    csv = "csv"
    jsonl = "jsonl"


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
    output: opt.OutDir,
    fmt: opt.Format = opt.FormatChoice.wav,
    batch_size: opt.BatchSize = 1,
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
    json_out: opt.JsonLines = False,
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
