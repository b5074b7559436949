"""`fluxmusic remix`: a recording re-imagined in another style, as much as --strength says."""

from __future__ import annotations

from typing import Annotated

import typer

from fluxmusic_cli.cli import options as opt
from fluxmusic_cli.cli.editing import EditCall, EditOptions, run_edit
from fluxmusic_cli.cli.numbers import number_option
from fluxmusic_cli.cli.option_group import Shared, shared_options
from fluxmusic_cli.engine.requests import DEFAULT_CROSSFADE, DEFAULT_STRENGTH

HELP = """Remix a recording: keep its shape, change its sound to the prompt.

The recording is noised part of the way (--strength) and sampled back towards the prompt: 0 \
gives the recording back (through the VAE), 1 ignores it (plain generation, same seed).

[bold]Examples[/bold]

  fluxmusic remix demo.wav "jazz trio, brushed drums" --strength 0.6 -o jazz.wav

  fluxmusic generate "lo-fi piano" -o - | fluxmusic remix - "string quartet" -o strings.flac
"""


def register(app: typer.Typer) -> None:
    app.command("remix", help=HELP, no_args_is_help=True)(remix)


@shared_options("sampling", "engine", "output", "client")
def remix(
    ctx: typer.Context,
    input_path: opt.InputAudio = None,
    prompt: opt.EditPrompt = None,
    output: opt.EditOutput = None,
    strength: Annotated[
        float,
        number_option(
            "--strength",
            metavar="S",
            help="How far from the recording to go: 0 keeps it, 1 ignores it.",
            rich_help_panel=opt.EDITING,
        ),
    ] = DEFAULT_STRENGTH,
    crossfade: opt.Crossfade = DEFAULT_CROSSFADE,
    from_record: opt.FromRecord = None,
    *,
    shared: Shared,
) -> None:
    options = EditOptions(strength=strength, crossfade=crossfade)
    run_edit(ctx, EditCall("remix", input_path, prompt, output, options, from_record), shared)
