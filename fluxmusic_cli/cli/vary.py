"""`fluxmusic vary`: one prompt over seeds x guidance (x steps x encoders), with a web page."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fluxmusic_cli.cli import options as opt
from fluxmusic_cli.cli.console import emit_json_line, err
from fluxmusic_cli.cli.option_group import Shared, shared_options
from fluxmusic_cli.cli.runs import run_plan
from fluxmusic_cli.errors import PartialFailure, UsageError

VARY_HELP = """Hear one prompt across seeds and guidance scales (and steps, and encoders).

Writes one clip per combination, named by its values (seed1_cfg3.5_steps50_both.wav),
a manifest, index.html (one row per seed, one column per guidance value, each cell a
player and a mel spectrogram; works offline) and grid.png (all spectrograms, labelled).

[bold]Examples[/bold]

  fluxmusic vary "warm lo-fi piano" -o piano-grid/ --seeds 1-4 --guidance 2,3.5,7

  fluxmusic vary "epic trailer drums" -o enc/ --seeds 1,2 --encoders both,t5,clap

  fluxmusic vary "jazz trio" -o steps/ --steps 10,25,50 --guidance 3.5

  fluxmusic vary "string quartet" -o remixes/ --input demo.wav --strength 0.3,0.6,0.9

  fluxmusic vary "warm lo-fi piano" -o grid/ --server http://127.0.0.1:8677
"""

Seeds = Annotated[
    str,
    typer.Option(
        "--seeds",
        metavar="SEEDS",
        help="Rows: seeds as 1,2,3 or 1-8 (or both: 0-3,10).",
        rich_help_panel=opt.SAMPLING,
    ),
]
GuidanceAxis = Annotated[
    str,
    typer.Option(
        "--guidance",
        "--cfg",
        metavar="SCALES",
        help="Columns: guidance scales, e.g. 2,3.5,7.",
        rich_help_panel=opt.SAMPLING,
    ),
]
StepsAxis = Annotated[
    str,
    typer.Option(
        "--steps",
        metavar="COUNTS",
        help="Euler step counts, e.g. 25,50 (one table per value).",
        rich_help_panel=opt.SAMPLING,
    ),
]
EncodersAxis = Annotated[
    str,
    typer.Option(
        "--encoders",
        metavar="SUBSETS",
        help="Encoder subsets, e.g. both,t5,clap (one table per value), to hear what "
        "each text encoder adds.",
        rich_help_panel=opt.MODELS,
    ),
]


InputOpt = Annotated[
    str | None,
    typer.Option(
        "--input",
        metavar="FILE",
        help="Remix this recording instead of generating from noise (any format remix reads).",
        rich_help_panel=opt.EDITING,
        show_default=False,
    ),
]
StrengthAxis = Annotated[
    str,
    typer.Option(
        "--strength",
        metavar="STRENGTHS",
        help="With --input: remix strengths, e.g. 0.3,0.6,0.9 (one table per value).",
        rich_help_panel=opt.EDITING,
    ),
]


def register(app: typer.Typer) -> None:
    app.command("vary", help=VARY_HELP, no_args_is_help=True)(vary)


@shared_options(
    "sampling",
    "length",
    "engine",
    "output",
    "client",
    steps=None,
    guidance=None,
    seed=None,
    encoders=None,
    save_latent=None,
    json_out=(opt.JsonLines, False),
)
def vary(
    ctx: typer.Context,
    prompt: Annotated[
        str, typer.Argument(help="What the music should be.", metavar="PROMPT", show_default=False)
    ],
    output: opt.OutDir,
    seeds: Seeds = "0-3",
    guidance: GuidanceAxis = "3.5,7",
    steps: StepsAxis = "50",
    encoders: EncodersAxis = "both",
    input_path: InputOpt = None,
    strength: StrengthAxis = "0.5",
    fmt: opt.Format = opt.FormatChoice.wav,
    batch_size: opt.BatchSize = 1,
    *,
    shared: Shared,
) -> None:
    from fluxmusic_cli.cli.remote import connect
    from fluxmusic_cli.engine.requests import GenerateSettings
    from fluxmusic_cli.engine.sampling import latent_length
    from fluxmusic_cli.manifest import read_manifest
    from fluxmusic_cli.runs import vary as grid
    from fluxmusic_cli.runs.plan import Settings

    duration = shared.length.duration
    latent_length(duration)
    typed = ctx.get_parameter_source("strength")
    if input_path is None and typed is not None and typed.name == "COMMANDLINE":
        raise UsageError(
            "--strength sets the remix strengths of a grid over a recording, so it needs "
            "--input FILE; without one, leave --strength out."
        )
    remote, shared = connect(ctx, shared)
    if remote is not None and "encoders" not in remote.given:
        encoders = remote.encoders  # the server's, as for every command
    source = None
    if input_path is not None:
        from fluxmusic_cli.edit_input import load_source

        if input_path == "-":
            raise UsageError("vary --input needs a file (the grid reads it once per cell).")
        source, notes = load_source(input_path)
        from fluxmusic_cli.engine.audio_in import prepare

        prepare(source.samples, name=input_path)  # silent or too short: refused now
        if remote is not None:  # uploaded once for every cell
            source = remote.edit_source(source, notes)
    axes = grid.Axes(
        seeds=grid.parse_seeds(seeds),
        guidance=grid.parse_guidance(guidance),
        steps=grid.parse_steps(steps),
        encoders=grid.parse_encoders(encoders),
        strengths=[None] if source is None else grid.parse_strengths(strength),
    )
    settings = Settings(
        # Each cell puts its own steps, guidance and encoders in these.
        clip=shared.clip_settings(GenerateSettings, duration=duration),
        seed=axes.seeds[0],
        fmt=fmt.value,
        writer=shared.output.clip_writer(),
    )
    plan = grid.plan_vary(prompt, output, axes, settings, source)
    force = shared.output.force
    grid.check_files(plan, force=force, source=None if input_path is None else Path(input_path))
    engine_options = shared.engine.engine_options(encoders=axes.encoders[0])
    failure: PartialFailure | None = None
    try:
        run_plan(
            plan,
            settings,
            engine_options,
            shared,
            batch_size=batch_size,
            label="clips",
            remote=remote,
        )
    except PartialFailure as exc:
        failure = exc  # the page still shows every clip that was made
    engine = shared.engine
    model = engine.model if remote is None else remote.model
    page_settings = {
        "model": Path(model).name if Path(model).exists() else model,
        "negative prompt": repr(shared.sampling.negative_prompt),
        "duration": f"{duration:g} s" if source is None else None,
        "remix of": input_path,
        "conditioning": engine.conditioning if remote is None else remote.conditioning,
    }
    index, picture = grid.render_page(
        plan, axes, read_manifest(plan.out_dir), title_settings=page_settings, force=force
    )
    if shared.output.json_out:
        emit_json_line({"event": "page", "index": str(index), "grid": str(picture)})
    elif not shared.output.quiet:
        err.print(f"[green]page[/green] {index}\n[green]grid[/green] {picture}")
    if failure is not None:
        raise failure
