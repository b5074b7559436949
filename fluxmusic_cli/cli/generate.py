"""`fluxmusic generate` and `fluxmusic info`: make clips from prompts, read a clip's record."""

from __future__ import annotations

import secrets
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated

import typer

from fluxmusic_cli.cli import options as opt
from fluxmusic_cli.cli.console import emit_json, refuse_binary_to_terminal, write_stdout
from fluxmusic_cli.cli.numbers import number_option
from fluxmusic_cli.cli.option_group import OutputGroup, Shared, shared_options
from fluxmusic_cli.cli.remote import connect
from fluxmusic_cli.cli.replay import replay_record
from fluxmusic_cli.cli.reporting import run_clips
from fluxmusic_cli.engine.requests import DEFAULT_CONTEXT, DEFAULT_SEAM
from fluxmusic_cli.engine.sampling import TRAINED_SECONDS
from fluxmusic_cli.errors import UsageError

GENERATE_HELP = """Generate music from a text prompt.

[bold]Examples[/bold]

  fluxmusic generate "warm lo-fi piano, vinyl crackle" -o piano.mp3

  fluxmusic generate "epic orchestral trailer" --seed 7 -n 3 --guidance 3.5

  cat prompts.txt | fluxmusic generate - -o clips/ --encoders clap

  fluxmusic generate "jazz trio" -o - | ffplay -nodisp -

  fluxmusic generate --from-record piano.json --steps 100

  fluxmusic generate "ambient pad" --server http://127.0.0.1:8677 -o pad.wav
"""


def register(app: typer.Typer) -> None:
    app.command("generate", help=GENERATE_HELP, no_args_is_help=True)(generate)
    app.command("info", help="Show the generation record of an audio file (tags or sidecar).")(info)


@dataclass(frozen=True)
class Shape:
    """generate's own options: the length and shape of each clip (replayed by name)."""

    duration: float = TRAINED_SECONDS
    context: float = DEFAULT_CONTEXT
    loop: bool = False
    seam: float | None = DEFAULT_SEAM  # None: chosen to fit the loop


@shared_options("sampling", "engine", "output", "client")
def generate(
    ctx: typer.Context,
    prompt: Annotated[
        str | None,
        typer.Argument(
            help="What the music should be; '-' reads one prompt per line from stdin.",
            metavar="PROMPT",
            show_default=False,
        ),
    ] = None,
    output: opt.OutputPath = None,
    num_outputs: Annotated[
        int,
        number_option(
            "--num-outputs",
            "-n",
            whole=True,
            minimum=1,
            maximum=1000,
            metavar="N",
            help="Variations per prompt (seeds s, s+1, ...).",
            rich_help_panel=opt.OUTPUT,
        ),
    ] = 1,
    from_record: opt.FromRecord = None,
    duration: opt.Duration = Shape.duration,
    context: opt.Context = Shape.context,
    loop: Annotated[
        bool,
        typer.Option(
            "--loop",
            help="Make each clip a seamless loop (a whole period: the duration rounded up to "
            "80 ms).",
            rich_help_panel=opt.EDITING,
        ),
    ] = Shape.loop,
    seam: opt.Seam = Shape.seam,
    *,
    shared: Shared,
) -> None:
    shape = Shape(duration=duration, context=context, loop=loop, seam=seam)
    record = None
    if from_record is not None:
        record, shared, (shape,) = replay_record(ctx, from_record, "generate", shared, shape)
        prompt = prompt if prompt is not None else record.prompt
    remote, shared = connect(ctx, shared, record)
    prompts = _read_prompts(prompt)
    out = shared.output
    to_stdout = output is not None and str(output) == "-"
    if to_stdout and out.json_out:
        raise UsageError("-o - writes audio to stdout, so --json cannot share it; drop one.")
    seed = shared.sampling.seed
    base_seed = seed if seed is not None else secrets.randbelow(2**31)
    plan = [(p, base_seed + k) for p in prompts for k in range(num_outputs)]
    if to_stdout and len(plan) > 1:
        raise UsageError("-o - takes exactly one clip; give one prompt and no -n.")
    if to_stdout:
        refuse_binary_to_terminal()

    from fluxmusic_cli.engine.requests import GenerateSettings

    # Bad sampling values are refused before anything loads.
    settings = shared.clip_settings(GenerateSettings, **asdict(shape))
    settings.check()
    engine_options = shared.engine.engine_options()
    engine_options.check_clip(settings)
    targets = [None] * len(plan) if to_stdout else _targets(plan, output, len(prompts), out)
    writer = out.clip_writer(overwrite=out.force, stdout=write_stdout)
    items = _items(plan, targets, settings, writer)
    run_clips(engine_options, items, shared, remote)


def _items(plan: list[tuple[str, int]], targets: list[Path | None], settings, writer):
    """The plan as the run service's items, each named by its file (`-`: stdout)."""
    from fluxmusic_cli.runs.plan import Item

    return [
        Item(
            index=k,
            name=path.stem if path else "-",
            prompt=prompt,
            seed=seed,
            settings=settings,
            path=path,
            writer=writer,
        )
        for k, ((prompt, seed), path) in enumerate(zip(plan, targets, strict=True))
    ]


def _read_prompts(prompt: str | None) -> list[str]:
    if prompt is None:
        raise UsageError("Give a prompt, '-' to read prompts from stdin, or --from-record.")
    if prompt != "-":
        if not prompt.strip():
            raise UsageError(
                'Empty prompt: describe the music, e.g. "warm lo-fi piano, vinyl crackle".'
            )
        return [prompt.strip()]
    if sys.stdin.isatty():
        raise UsageError("'-' reads prompts from stdin, but stdin is a terminal; pipe them in.")
    from fluxmusic_cli.prompts import parse_prompts

    # The reader `batch` uses for .txt lists: blank lines and # comments are skipped.
    return [row.prompt for row in parse_prompts(sys.stdin.read(), "txt", source="stdin").rows]


def _targets(
    plan: list[tuple[str, int]], output: Path | None, n_prompts: int, out: OutputGroup
) -> list[Path]:
    """One path per planned clip, all checked before any generation starts."""
    from fluxmusic_cli.audio import slugify
    from fluxmusic_cli.output import check_target, output_folder

    as_dir = output_folder(output)
    if as_dir:
        from fluxmusic_cli.atomic import make_folder

        make_folder(output)
    paths: list[Path] = []
    for i, (prompt, seed) in enumerate(plan):
        if output is None or as_dir:
            folder = output if as_dir else Path(".")
            path = folder / f"{slugify(prompt)}-s{seed}.wav"
        elif len(plan) == 1:
            path = output
        else:
            tag = f"-{i // (len(plan) // n_prompts) + 1}" if n_prompts > 1 else ""
            path = output.with_name(f"{output.stem}{tag}-s{seed}{output.suffix}")
        k = 2
        candidate = path
        while candidate in paths:
            candidate = path.with_name(f"{path.stem}-{k}{path.suffix}")
            k += 1
        check_target(
            candidate, force=out.force, sample_rate=out.sample_rate, save_latent=out.save_latent
        )
        paths.append(candidate)
    return paths


def info(
    path: Annotated[
        Path, typer.Argument(help="Audio file or its NAME.json record.", metavar="FILE")
    ],
    json_out: opt.Json = False,
) -> None:
    """Print the generation record of an audio file."""
    from rich.table import Table

    from fluxmusic_cli.metadata import read_record

    data = read_record(path).to_json()
    if json_out:
        emit_json(data)
        return
    table = Table(title=str(path), show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    for key, value in data.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items() if not isinstance(v, dict))
        table.add_row(key, str(value))
    from rich.console import Console

    Console().print(table)
