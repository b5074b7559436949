"""Running a folder plan (`batch`, `vary`): progress on stderr or JSON events on stdout, and
the closing summary table."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fluxmusic_cli.cli.console import emit_json_line, err, warn
from fluxmusic_cli.cli.option_group import Shared
from fluxmusic_cli.engine.requests import EngineOptions
from fluxmusic_cli.errors import PartialFailure

if TYPE_CHECKING:
    from fluxmusic_cli.cli.remote import Remote


def run_plan(
    plan,
    settings,
    engine_options: EngineOptions,
    shared: Shared,
    *,
    batch_size: int,
    label: str,
    remote: Remote | None = None,
):
    """Run a folder plan here or on `remote`, with progress on stderr (or JSON events on
    stdout) and a closing summary. Returns the summary; raises PartialFailure when any item
    failed. On a server, `batch_size` jobs are queued at a time."""
    import dataclasses

    from fluxmusic_cli.cli.progress import step_bars
    from fluxmusic_cli.manifest import check_ours
    from fluxmusic_cli.output import check_encodable
    from fluxmusic_cli.runs.folder import FolderRun

    out = shared.output
    # Refused before any model loads.
    settings.clip.check()
    engine_options.check_clip(settings.clip)
    check_encodable(settings.fmt, settings.writer.sample_rate)
    check_ours(plan.out_dir, force=out.force)  # a manifest of the user's is not appended to
    engine_options = dataclasses.replace(engine_options, forward_batch=batch_size)
    quiet = out.quiet or out.json_out
    with step_bars(quiet) as bars:
        if remote is not None:
            service, identity = remote.service(bars, window=batch_size), remote.identity
        else:
            from fluxmusic_cli.cli.setup import make_engine
            from fluxmusic_cli.runs.folder import engine_identity
            from fluxmusic_cli.runs.service import RunService

            engine = make_engine(engine_options, progress=bars, yes=shared.engine.yes, quiet=quiet)
            service = RunService(engine, batch_size=batch_size)
            identity = engine_identity(engine)
        report = _Reporter(bars, json_out=out.json_out, quiet=out.quiet)
        folder = FolderRun(identity, plan, force=out.force)
        try:
            todo = folder.prepare(report).todo
            report.start(len(todo))
            summary = folder.run(service, todo, report)
        except KeyboardInterrupt:
            if out.json_out:
                emit_json_line({**folder.summary.to_json(plan), "interrupted": True})
            raise
        finally:
            folder.close()
    for w in summary.warnings:
        warn(w)
    if out.json_out:
        emit_json_line(summary.to_json(plan))
    elif not out.quiet:
        _summary_table(plan, summary, label)
    if summary.failed:
        total = len(summary.failed) + len(summary.done) + len(summary.skipped)
        raise PartialFailure(
            f"{len(summary.failed)} of {total} {label} failed; the others are in {plan.out_dir}.",
            hint="Fix the rows named above and run the same command again: finished clips are "
            "skipped.",
        )
    return summary


class _Reporter:
    """Turns run events into JSON lines or an items bar with rate and ETA."""

    def __init__(self, bars, *, json_out: bool, quiet: bool) -> None:
        self.bars = bars
        self.json_out = json_out
        self.quiet = quiet
        self.task = None
        self.done = 0
        self.started: float | None = None

    def start(self, todo: int) -> None:
        import time

        self.started = time.perf_counter()
        self.task = self.bars.add_task("items", total=todo)

    def __call__(self, event) -> None:
        if self.json_out:
            emit_json_line(event.to_json())
            return
        if event.kind == "item_failed" and not self.quiet:
            warn(f"row {event.row} ({event.name or 'no name'}): {event.reason}")
        if event.kind in ("item_done", "item_failed") and self.task is not None:
            self._advance()

    def _advance(self) -> None:
        import time

        self.done += 1
        self.bars.advance(self.task)
        elapsed = time.perf_counter() - (self.started or time.perf_counter())
        if self.bars.progress is not None and elapsed > 0:
            rate = self.done / elapsed
            text = f"items ({rate:.2f}/s)" if rate >= 1 else f"items ({60 * rate:.1f}/min)"
            self.bars.progress.update(self.task, description=text)


def _summary_table(plan, summary, label: str) -> None:
    from rich.table import Table

    counts = Table(title=f"{plan.out_dir}", show_header=False, title_justify="left")
    counts.add_column("what")
    counts.add_column("count", justify="right")
    counts.add_row("[green]written[/green]", str(len(summary.done)))
    counts.add_row("already finished (skipped)", str(len(summary.skipped)))
    counts.add_row("[red]failed[/red]" if summary.failed else "failed", str(len(summary.failed)))
    if plan.shard is not None:
        mine = len(plan.items) + len(plan.failures)
        counts.add_row(f"other shards' {label} (shard {plan.shard})", str(plan.total - mine))
    counts.add_row("time", f"{summary.elapsed_s:.1f} s")
    err.print(counts)
    if summary.failed:
        failures = Table(title="failed", title_justify="left")
        failures.add_column("row", justify="right")
        failures.add_column("name")
        failures.add_column("reason", overflow="fold")
        for e in summary.failed:
            failures.add_row(str(e.row), e.name or "", e.reason or "")
        err.print(failures)
    err.print(f"manifest: {plan.out_dir / 'manifest.jsonl'}")
