"""Making a command's few clips and saying what was written: one line per clip on stderr, or
one JSON document on stdout."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from fluxmusic_cli.cli.console import emit_json, err, warn
from fluxmusic_cli.cli.option_group import Shared
from fluxmusic_cli.engine.requests import EngineOptions

if TYPE_CHECKING:
    from fluxmusic_cli.cli.remote import Remote

# Clips per engine call of `generate`: each call's clips are written as soon as it is decoded
# (on a server: jobs queued at a time).
CHUNK = 4


def run_clips(
    engine_options: EngineOptions, items: Sequence, shared: Shared, remote: Remote | None = None
) -> None:
    """Make `items` (generate's clips, or one edit) here or on `remote`, with progress bars on
    stderr, stop at the first that fails (with its error), and report what was written."""
    from fluxmusic_cli.cli.progress import step_bars
    from fluxmusic_cli.runs.events import ItemDone, ItemFailed

    out = shared.output
    written = []

    def on_event(event) -> None:
        if isinstance(event, ItemFailed) and event.error is not None:
            raise event.error
        if isinstance(event, ItemDone):
            written.append(event.written)

    with step_bars(out.quiet) as bars:
        if remote is not None:
            service = remote.service(bars, window=CHUNK)
        else:
            from fluxmusic_cli.cli.setup import make_engine
            from fluxmusic_cli.runs.service import RunService

            engine = make_engine(
                engine_options, progress=bars, yes=shared.engine.yes, quiet=out.quiet
            )
            service = RunService(engine, batch_size=CHUNK)
        summary = service.run(items, on_event)
    warnings = summary.warnings + [f"{w.shown}: {x}" for w in written for x in w.warnings]
    report_clips(written, warnings, json_out=out.json_out, quiet=out.quiet)


def report_clips(written, warnings: list[str], *, json_out: bool, quiet: bool) -> None:
    for w in warnings:
        warn(w)
    if json_out:
        emit_json(
            {
                "outputs": [
                    {"path": str(w.path) if w.path else "-", "record": w.record.to_json()}
                    for w in written
                ],
                "warnings": warnings,
            }
        )
        return
    if quiet:
        return
    for w in written:
        r = w.record
        lufs = f", {r.lufs:.1f} LUFS" if r.lufs is not None else ""
        what = "" if (r.operation or "generate") == "generate" else f"{r.operation}, "
        err.print(
            f"[green]wrote[/green] {w.shown}  ({what}{r.duration:g} s, "
            f"{r.output_sample_rate} Hz, seed {r.seed}, peak {r.peak:.2f}{lufs})"
        )
