"""`fluxmusic loop`: make a recording repeat without a click."""

from __future__ import annotations

import typer

from fluxmusic_cli.cli import options as opt
from fluxmusic_cli.cli.editing import EditCall, EditOptions, run_edit
from fluxmusic_cli.cli.option_group import Shared, shared_options
from fluxmusic_cli.engine.requests import DEFAULT_CROSSFADE, DEFAULT_SEAM

HELP = """Make a seamless loop of a recording: its end is regenerated to flow into its start.

The --seam seconds around the loop point are repainted; the rest is your recording. The loop \
is one whole period long (the length rounded up to 80 ms), ready to repeat.

[bold]Examples[/bold]

  fluxmusic loop groove.wav -o groove-loop.wav

  fluxmusic loop beat.flac "tight funk drums" --seam 1.28 -o beat-loop.flac
"""


def register(app: typer.Typer) -> None:
    app.command("loop", help=HELP, no_args_is_help=True)(loop)


@shared_options("sampling", "engine", "output", "client")
def loop(
    ctx: typer.Context,
    input_path: opt.InputAudio = None,
    prompt: opt.EditPrompt = None,
    output: opt.EditOutput = None,
    seam: opt.Seam = DEFAULT_SEAM,
    crossfade: opt.Crossfade = DEFAULT_CROSSFADE,
    from_record: opt.FromRecord = None,
    *,
    shared: Shared,
) -> None:
    options = EditOptions(seam=seam, crossfade=crossfade)
    run_edit(ctx, EditCall("loop", input_path, prompt, output, options, from_record), shared)
