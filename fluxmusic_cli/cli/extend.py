"""`fluxmusic extend`: continue a recording, window after 10.24 s window."""

from __future__ import annotations

from typing import Annotated

import typer

from fluxmusic_cli.cli import options as opt
from fluxmusic_cli.cli.editing import EditCall, EditOptions, run_edit
from fluxmusic_cli.cli.numbers import number_option
from fluxmusic_cli.cli.option_group import Shared, shared_options
from fluxmusic_cli.engine.requests import DEFAULT_CONTEXT, DEFAULT_CROSSFADE

HELP = """Extend a recording: continue it for --add seconds, or up to --to seconds in all.

The recording is cut to whole 80 ms and kept as it is; each new window continues from the last \
--context seconds, so any length up to 300 s costs time linear in its length.

[bold]Examples[/bold]

  fluxmusic extend intro.wav "building synthwave" --add 20 -o longer.wav

  fluxmusic generate "ambient pad" -o - | fluxmusic extend - --to 60 -o pad.flac
"""

Seconds = float | None


def register(app: typer.Typer) -> None:
    app.command("extend", help=HELP, no_args_is_help=True)(extend)


@shared_options("sampling", "engine", "output", "client")
def extend(
    ctx: typer.Context,
    input_path: opt.InputAudio = None,
    prompt: opt.EditPrompt = None,
    output: opt.EditOutput = None,
    add: Annotated[
        Seconds,
        number_option(
            "--add",
            metavar="SECONDS",
            help="Seconds of new music after the recording.",
            rich_help_panel=opt.EDITING,
            show_default=False,
        ),
    ] = None,
    to: Annotated[
        Seconds,
        number_option(
            "--to",
            metavar="SECONDS",
            help="Total length in seconds (instead of --add).",
            rich_help_panel=opt.EDITING,
            show_default=False,
        ),
    ] = None,
    context: opt.Context = DEFAULT_CONTEXT,
    crossfade: opt.Crossfade = DEFAULT_CROSSFADE,
    from_record: opt.FromRecord = None,
    *,
    shared: Shared,
) -> None:
    options = EditOptions(add=add, to=to, context=context, crossfade=crossfade)
    run_edit(ctx, EditCall("extend", input_path, prompt, output, options, from_record), shared)
