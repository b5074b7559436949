"""Building the engine for a command: options, first-use downloads, progress wiring."""

from __future__ import annotations

from fluxmusic_cli.cli.options import ModelArgs
from fluxmusic_cli.engine.pipeline import Engine, ProgressCallback


def make_engine(
    args: ModelArgs, *, progress: ProgressCallback | None, yes: bool, quiet: bool
) -> Engine:
    """An engine for `args`; missing hub files are fetched first, after a pre-flight summary
    (and a question when the download is large, unless `yes`)."""
    from fluxmusic_cli.cli.models import ensure_downloaded

    engine = Engine(args.engine_options(), progress=progress)
    ensure_downloaded(engine.required_refs(), token=args.token, yes=yes, quiet=quiet)
    return engine
