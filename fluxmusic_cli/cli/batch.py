"""`fluxmusic batch`: render a prompt list into a folder, resumably, optionally as one shard."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer

from fluxmusic_cli.cli import options as opt
from fluxmusic_cli.cli.option_group import Shared, shared_options
from fluxmusic_cli.cli.runs import run_plan

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

  fluxmusic batch cues.txt -o cues/ --server http://127.0.0.1:8677
"""


class InputFormat(str, Enum):
    auto = "auto"
    txt = "txt"
    csv = "csv"
    jsonl = "jsonl"


ShardOpt = Annotated[
    str | None,
    typer.Option(
        "--shard",
        metavar="K/N",
        help="Render only every N-th row starting at row K (K from 0), so N machines or GPUs "
        "can share one list and one folder.",
        show_default=False,
    ),
]
BatchSeed = Annotated[
    int,
    opt.seed_option(
        "Row n (from 1) gets seed SEED + n - 1 unless it has a seed column, so reruns and "
        "shards agree.",
        rich_help_panel=opt.SAMPLING,
    ),
]
InputFormatOpt = Annotated[
    InputFormat,
    typer.Option("--input-format", help="Format of the prompt list (auto: from the extension)."),
]


def register(app: typer.Typer) -> None:
    app.command("batch", help=BATCH_HELP, no_args_is_help=True)(batch)


@shared_options(
    "sampling",
    "length",
    "engine",
    "output",
    "client",
    seed=(BatchSeed, 0),
    json_out=(opt.JsonLines, False),
)
def batch(
    ctx: typer.Context,
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
    *,
    shared: Shared,
) -> None:
    from fluxmusic_cli.cli.remote import connect
    from fluxmusic_cli.engine.requests import GenerateSettings
    from fluxmusic_cli.engine.sampling import latent_length
    from fluxmusic_cli.prompts import read_prompts
    from fluxmusic_cli.runs.plan import Settings, parse_shard, plan_batch

    latent_length(shared.length.duration)  # a bad --duration is refused before anything is read
    remote, shared = connect(ctx, shared)
    table = read_prompts(
        prompts_file, fmt=None if input_format is InputFormat.auto else input_format.value
    )
    settings = Settings(
        clip=shared.clip_settings(GenerateSettings, duration=shared.length.duration),
        seed=shared.sampling.seed,
        fmt=fmt.value,
        writer=shared.output.clip_writer(),
    )
    plan = plan_batch(table, output, settings, parse_shard(shard) if shard else None)
    engine_options = shared.engine.engine_options()
    run_plan(
        plan, settings, engine_options, shared, batch_size=batch_size, label="rows", remote=remote
    )
