"""`fluxmusic eval`: FAD, KL, IS and CLAP score of a folder of generated clips."""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from fluxmusic_cli.cli import config, tiny
from fluxmusic_cli.cli.console import emit_json, err, info, warn
from fluxmusic_cli.cli.numbers import number_option
from fluxmusic_cli.cli.options import DeviceChoice, DeviceOpt, Json, Quiet
from fluxmusic_cli.errors import UsageError
from fluxmusic_cli.evaluation.scores import FAD_EMBEDDERS, METRICS, PER_FILE_COLUMNS

EXAMPLE = (
    "Example: fluxmusic eval out/musiccaps --reference data/musiccaps-wav "
    "--prompts musiccaps.csv --per-file scores.csv"
)


def _metric_list(value: str | None) -> tuple[str, ...] | None:
    if not value:
        return None
    return tuple(m.strip().lower() for m in value.split(",") if m.strip())


def _set_line(label: str, s: Any) -> str:
    rates = ", ".join(f"{r} Hz" for r in s.sample_rates)
    return (
        f"{label}: {s.n} clips, {s.duration_min_s:.2f}-{s.duration_max_s:.2f} s "
        f"(mean {s.duration_mean_s:.2f} s), {rates}, {s.folder}"
    )


def _print_table(report: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Evaluation", title_justify="left")
    table.add_column("Metric")
    table.add_column("Value", justify="right")
    table.add_column("Based on")
    for metric in METRICS.values():
        if metric.name in report.metrics:
            for row in metric.table(report.metrics):
                table.add_row(*row)
    out = Console(highlight=False)
    out.print(table)
    out.print(_set_line("Generated", report.generated))
    if report.reference is not None:
        out.print(_set_line("Reference", report.reference))
    out.print(f"Resampling: {report.resampler}")


def _check_per_file(path: Path, force: bool) -> None:
    """Refuse, before anything is scored, an audio file name (CSV would replace the clip), an
    existing file without --force, or a folder that does not exist."""
    from fluxmusic_cli.formats import SUPPORTED_SUFFIXES
    from fluxmusic_cli.output import check_file

    if path.suffix.lower() in SUPPORTED_SUFFIXES:
        raise UsageError(
            f"--per-file {path} names an audio file; the per-file scores are CSV, so give a "
            "name ending in .csv."
        )
    check_file(path, force=force)


def _write_per_file(path: Path, report: Any, quiet: bool, force: bool) -> None:
    from fluxmusic_cli.output import writing

    existed = path.exists()
    fields = [f.name for f in dataclasses.fields(report.per_file[0])] if report.per_file else []
    with writing(path, force=force) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        for row in report.per_file:
            writer.writerow(
                {k: ("" if v is None else v) for k, v in dataclasses.asdict(row).items()}
            )
    if not quiet:
        info(f"Per-file scores {'replaced in' if existed else 'written to'} {path}")


@contextmanager
def _progress_hooks(quiet: bool) -> Iterator[Any]:
    """`Hooks` that draw Rich bars on stderr (none when quiet)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from fluxmusic_cli.evaluation.request import Hooks

    if quiet:
        yield Hooks()
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=err, transient=True) as bars:
        current: dict[str, Any] = {}
        downloads: dict[str, Any] = {}

        def stage(label: str, total: int) -> None:
            current["task"] = bars.add_task(label, total=total)

        def advance() -> None:
            if "task" in current:
                bars.advance(current["task"])

        def download(name: str, done: int, total: int | None) -> None:
            if name not in downloads:
                downloads[name] = bars.add_task(f"Downloading {name} weights", total=total)
            bars.update(downloads[name], completed=done, total=total)

        yield Hooks(stage=stage, advance=advance, download=download)


def eval_command(
    generated: Annotated[
        Path, typer.Argument(help="Folder of generated clips.", metavar="GENERATED_DIR")
    ],
    reference: Annotated[
        Path | None,
        typer.Option(
            "--reference",
            metavar="DIR",
            help="Folder of reference recordings (needed for FAD and KL).",
        ),
    ] = None,
    prompts: Annotated[
        Path | None,
        typer.Option(
            "--prompts",
            metavar="FILE",
            help="CSV/JSONL with an id column (name/id/ytid/file) and a prompt "
            "column (prompt/caption/text); wins over manifest and sidecar prompts.",
        ),
    ] = None,
    metrics: Annotated[
        str | None,
        typer.Option(
            "--metrics",
            metavar="METRICS",
            help=f"Comma list of {','.join(METRICS)} (default: all the inputs allow).",
        ),
    ] = None,
    fad_embedder: Annotated[
        str,
        typer.Option(
            "--fad-embedder",
            metavar="vggish|clap",
            help="Embeddings for FAD: vggish (as the paper) or clap.",
        ),
    ] = "vggish",
    fad_inf: Annotated[
        bool,
        typer.Option(
            "--fad-inf", help="Also report FAD-infinity (intercept of FAD against 1/n, with R^2)."
        ),
    ] = False,
    sqrtm_compat: Annotated[
        bool,
        typer.Option(
            "--sqrtm-compat",
            help="Take Tr sqrt(S1 S2) with scipy's sqrtm, as audioldm_eval does, "
            "instead of the symmetric eigenvalue route.",
        ),
    ] = False,
    vggish_weights: Annotated[
        Path | None,
        typer.Option(
            "--vggish-weights",
            metavar="FILE",
            help="Local vggish-10086976.pth (skips the download).",
        ),
    ] = None,
    panns_weights: Annotated[
        Path | None,
        typer.Option(
            "--panns-weights",
            metavar="FILE",
            help="Local Cnn14_16k_mAP=0.438.pth (skips the download).",
        ),
    ] = None,
    clap_model: Annotated[
        str,
        typer.Option(
            "--clap",
            "--clap-model",
            metavar="REPO|DIR",
            help="CLAP for the CLAP score: hub repo id or local folder (the source generate's "
            "--clap takes; default also from $FLUXMUSIC_CLAP or the config file).",
        ),
    ] = config.Default("clap"),
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            metavar="tiny",
            help="tiny: random stand-ins for VGGish, PANNs and CLAP, made on first use, to try "
            "eval without downloading (the scores mean nothing). Default: the published models "
            "(tiny when $FLUXMUSIC_MODEL or the config file says tiny).",
            show_default=False,
        ),
    ] = None,
    no_cache: Annotated[
        bool,
        typer.Option(
            "--no-cache", help="Recompute every embedding instead of reusing cached ones."
        ),
    ] = False,
    allow_missing: Annotated[
        bool,
        typer.Option(
            "--allow-missing",
            help="Score only ids present in both sets / clips with prompts, "
            "with a warning, instead of stopping.",
        ),
    ] = False,
    is_splits: Annotated[
        int,
        number_option(
            "--is-splits", whole=True, minimum=1, maximum=1000, metavar="N", help="IS splits."
        ),
    ] = 10,
    device: DeviceOpt = DeviceChoice.auto,
    per_file: Annotated[
        Path | None,
        typer.Option(
            "--per-file",
            metavar="CSV",
            help=f"Write one row per clip ({', '.join(PER_FILE_COLUMNS)}) to this CSV.",
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", "-f", help="Replace an existing --per-file CSV.")
    ] = False,
    json_output: Json = False,
    quiet: Quiet = False,
) -> None:
    """Score generated clips with FAD (VGGish), KL and IS (PANNs CNN14) and the CLAP score."""
    from fluxmusic_cli.evaluation.request import EvalRequest
    from fluxmusic_cli.evaluation.runner import run_eval

    vggish_weights, panns_weights, clap_model = tiny.eval_sources(
        model, vggish_weights, panns_weights, clap_model
    )
    if fad_embedder not in FAD_EMBEDDERS:
        raise UsageError(
            f"--fad-embedder must be {' or '.join(FAD_EMBEDDERS)}, not {fad_embedder!r}."
        )
    if per_file is not None:
        _check_per_file(per_file, force)
    request = EvalRequest(
        generated=generated,
        reference=reference,
        prompts_file=prompts,
        metrics=_metric_list(metrics),
        fad_embedder=fad_embedder,
        fad_infinity=fad_inf,
        sqrt_method="sqrtm" if sqrtm_compat else "eigh",
        vggish_weights=vggish_weights,
        panns_weights=panns_weights,
        clap_model=clap_model,
        use_cache=not no_cache,
        allow_missing=allow_missing,
        is_splits=is_splits,
        device=device.value,
    )
    with _progress_hooks(quiet) as hooks:
        report = run_eval(request, hooks)

    for message in report.warnings:
        warn(message)
    if not quiet:
        for note in report.notes:
            info(f"[dim]note:[/dim] {note}")
    if per_file is not None:
        _write_per_file(per_file, report, quiet, force)
    if json_output:
        from fluxmusic_cli import __version__

        emit_json({"tool": "fluxmusic", "version": __version__, **report.to_dict()})
    else:
        _print_table(report)


def register(app: typer.Typer) -> None:
    app.command("eval", help=f"{eval_command.__doc__}\n\n{EXAMPLE}")(eval_command)
