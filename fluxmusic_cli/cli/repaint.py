"""`fluxmusic repaint`: regenerate chosen stretches of a recording, keep the rest as it is."""

from __future__ import annotations

from typing import Annotated

import typer

from fluxmusic_cli.cli import options as opt
from fluxmusic_cli.cli.editing import EditCall, EditOptions, run_edit
from fluxmusic_cli.cli.option_group import Shared, shared_options
from fluxmusic_cli.engine.requests import DEFAULT_CROSSFADE

HELP = """Repaint parts of a recording: regenerate the regions, keep everything else.

Regions are seconds START:END (START: runs to the end), widened to the 80 ms grid; overlapping \
regions merge. Outside them (beyond --crossfade) you hear your own recording, untouched.

[bold]Examples[/bold]

  fluxmusic repaint song.wav "drum fill" --region 12.5:14 -o fixed.wav

  fluxmusic repaint song.wav --region 0:2 --region 30: --crossfade 0.2
"""


def register(app: typer.Typer) -> None:
    app.command("repaint", help=HELP, no_args_is_help=True)(repaint)


@shared_options("sampling", "engine", "output", "client")
def repaint(
    ctx: typer.Context,
    input_path: opt.InputAudio = None,
    prompt: opt.EditPrompt = None,
    output: opt.EditOutput = None,
    region: Annotated[
        list[str] | None,
        typer.Option(
            "--region",
            "-r",
            metavar="START:END",
            help="START:END in seconds to regenerate (START: to the end); repeatable.",
            rich_help_panel=opt.EDITING,
            show_default=False,
        ),
    ] = None,
    crossfade: opt.Crossfade = DEFAULT_CROSSFADE,
    from_record: opt.FromRecord = None,
    *,
    shared: Shared,
) -> None:
    options = EditOptions(region=region, crossfade=crossfade)
    run_edit(ctx, EditCall("repaint", input_path, prompt, output, options, from_record), shared)
