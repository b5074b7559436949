"""The download service: fetch missing weights with a pre-flight summary and, when large, a
question; shared by every command that loads models (first use) and by `fluxmusic download`.

Thin: the engine (`engine.hub`, `engine.preflight`) plans and fetches; this module shows the
plan, asks, and draws the bars on stderr.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import typer
from rich import box
from rich.table import Table

from fluxmusic_cli.cli.console import err, info
from fluxmusic_cli.engine import cache, conversion, preflight
from fluxmusic_cli.engine.preflight import DownloadPlan, human_bytes
from fluxmusic_cli.engine.sources import DEFAULT_SOURCES, ComponentRef, parse_ref
from fluxmusic_cli.errors import UsageError

ASK_ABOVE_BYTES = 4 * 10**9
COMPONENT_NAMES = {"t5": "t5", "clap": "clap", "vae-vocoder": "audioldm2", "audioldm2": "audioldm2"}


def _interactive() -> bool:
    return sys.stdin.isatty() and err.is_terminal


def render_plan(plan: DownloadPlan) -> None:
    """The pre-flight summary, on stderr."""
    table = Table(title="Pre-flight", title_justify="left", box=box.SIMPLE_HEAD, show_edge=False)
    table.add_column("component")
    table.add_column("source", overflow="fold")
    table.add_column("size", justify="right", no_wrap=True)
    table.add_column("status")
    for c in plan.components:
        if c.cached:
            status = "[green]on disk[/green]"
        elif c.fetch_bytes == 0 and c.convert_bytes:
            status = "to convert"
        else:
            status = "to fetch" + (" + convert" if c.convert_bytes else "")
        if c.gated and not c.cached:
            status += {
                "yes": ", gated: token has access",
                "no": ", [red]gated: no access with the current token[/red]",
            }.get(c.access, ", gated: access unknown offline")
        size = human_bytes(c.size_bytes) + ("" if c.size_exact else "*")
        table.add_row(c.label, c.source, size, status)
    err.print(table)
    for disk in plan.disks:
        err.print(
            f"Needed on disk: {human_bytes(disk.needed_bytes)} in {disk.path} "
            f"({human_bytes(disk.free_bytes)} free)."
        )
    err.print(
        f"To download: {human_bytes(plan.fetch_bytes)}; to convert: "
        f"{human_bytes(plan.convert_bytes)}. Memory for these weights: "
        f"{human_bytes(plan.memory_bytes('fp32'))} in fp32, "
        f"{human_bytes(plan.memory_bytes('bf16'))} in bf16 "
        f"(largest part {human_bytes(plan.peak_memory_bytes('bf16'))} in bf16)."
    )
    if any(not c.size_exact and not c.cached for c in plan.components):
        err.print("* size as published; the hub was not asked.")


def confirm_plan(plan: DownloadPlan, *, yes: bool) -> None:
    """Ask before a large download (the answer defaults to no); refuse without a terminal
    unless `yes`."""
    if yes or plan.fetch_bytes <= ASK_ABOVE_BYTES:
        return
    size = human_bytes(plan.fetch_bytes)
    confirm(
        f"Download {size}?",
        refusal=f"This would download {size} and there is no terminal to confirm it; "
        "pass --yes to go ahead.",
        declined="Nothing was downloaded; run again with --yes, or answer y, to fetch it.",
        default=False,
    )


def confirm(question: str, *, refusal: str, declined: str, default: bool) -> None:
    """Ask `question` on the terminal; without one, refuse with `refusal` (a usage error).
    A "no" is the user's choice, not a failure: `declined` is said and the exit code is 0."""
    if not _interactive():
        raise UsageError(refusal)
    from rich.prompt import Confirm

    if not Confirm.ask(question, console=err, default=default):
        info(declined)
        raise typer.Exit(0)


class _Bars:
    """Rich download bars fed by the engine's progress callback."""

    def __init__(self, progress) -> None:
        self.progress = progress
        self.tasks: dict[str, int] = {}

    def __call__(self, label: str, done: int, total: int | None) -> None:
        if label not in self.tasks:
            self.tasks[label] = self.progress.add_task(label.rsplit("/", 1)[-1], total=total)
        self.progress.update(self.tasks[label], completed=done, total=total)


def fetch(
    refs: Sequence[ComponentRef], *, token: str | None, quiet: bool, refresh: bool = False
) -> list[Path]:
    """Download with bars on stderr (none when quiet or not a terminal)."""
    from huggingface_hub.utils import disable_progress_bars

    if quiet or not err.is_terminal:
        disable_progress_bars()
        return conversion.fetch_all(refs, token=token, refresh=refresh)
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err) as progress:
        return conversion.fetch_all(refs, token=token, refresh=refresh, progress=_Bars(progress))


def ensure_downloaded(
    refs: Sequence[ComponentRef],
    *,
    token: str | None = None,
    yes: bool = False,
    quiet: bool = False,
) -> list[Path]:
    """Fetch what is missing for `refs`, after the pre-flight summary and, if large, a question.

    Returns one local path per ref, in order (the converted checkpoint for a released variant).
    Nothing is shown and no request is made when everything is already on disk.
    """
    if all(cache.is_cached(r) for r in refs):
        return conversion.fetch_all(refs, token=token)
    plan = preflight.plan_download(refs, token=token)
    if not quiet:
        render_plan(plan)
    plan.check()
    confirm_plan(plan, yes=yes)
    return fetch(refs, token=token, quiet=quiet)


def download_refs(
    what: Sequence[str], *, encoders: str, t5: str, clap: str, vae_vocoder: str
) -> list[ComponentRef]:
    """The refs `fluxmusic download WHAT...` fetches (see the command's help for the rule)."""
    keys = [w.strip().lower() for w in what]
    variants = [w for w, k in zip(what, keys, strict=True) if k not in COMPONENT_NAMES]
    parts = [COMPONENT_NAMES[k] for k in keys if k in COMPONENT_NAMES]
    if not what:
        variants = [DEFAULT_SOURCES["transformer"]]
    if variants:
        parts += (["t5", "clap"] if encoders == "both" else [encoders]) + ["audioldm2"]
    sources = {"t5": t5, "clap": clap, "audioldm2": vae_vocoder}
    refs = [parse_ref("transformer", v) for v in dict.fromkeys(variants)]
    refs += [parse_ref(kind, sources[kind]) for kind in dict.fromkeys(parts)]  # type: ignore[arg-type]
    return refs
