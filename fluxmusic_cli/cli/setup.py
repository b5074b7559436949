"""Building the engine for a command: options, first-use downloads, progress wiring."""

from __future__ import annotations

from fluxmusic_cli.engine.pipeline import Engine, ProgressCallback
from fluxmusic_cli.engine.requests import EngineOptions


def make_engine(
    options: EngineOptions, *, progress: ProgressCallback | None, yes: bool, quiet: bool
) -> Engine:
    """An engine for `options`; missing hub files are fetched first, after a pre-flight summary
    (and a question when the download is large, unless `yes`)."""
    from fluxmusic_cli.cli.downloads import ensure_downloaded

    engine = Engine(options, progress=progress)
    ensure_downloaded(engine.required_refs(), token=options.token, yes=yes, quiet=quiet)
    return engine
