"""`fluxmusic generate` and `fluxmusic info`: make clips from prompts, read a clip's record."""

from __future__ import annotations

import secrets
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from fluxmusic_cli.cli import options as opt
from fluxmusic_cli.cli.console import emit_json, refuse_binary_to_terminal, write_stdout
from fluxmusic_cli.cli.option_group import Shared, shared_options
from fluxmusic_cli.cli.reporting import report_clips, written_name
from fluxmusic_cli.engine.editing import DEFAULT_CONTEXT, DEFAULT_SEAM
from fluxmusic_cli.engine.sampling import TRAINED_SECONDS
from fluxmusic_cli.errors import UsageError

# Request fields that come straight from option values; the loop and long-form ones are
# run-wide (no Item carries them).
LOOP_KEYS = ("loop", "seam", "context")
REQUEST_KEYS = ("negative_prompt", "steps", "guidance", "duration", *LOOP_KEYS)
CHUNK = 4  # clips per engine call: each chunk is written as soon as it is decoded

GENERATE_HELP = """Generate music from a text prompt.

[bold]Examples[/bold]

  fluxmusic generate "warm lo-fi piano, vinyl crackle" -o piano.mp3

  fluxmusic generate "epic orchestral trailer" --seed 7 -n 3 --guidance 3.5

  cat prompts.txt | fluxmusic generate - -o clips/ --encoders clap

  fluxmusic generate "jazz trio" -o - | ffplay -nodisp -

  fluxmusic generate --from-record piano.json --steps 100
"""


def register(app: typer.Typer) -> None:
    app.command("generate", help=GENERATE_HELP, no_args_is_help=True)(generate)
    app.command("info", help="Show the generation record of an audio file (tags or sidecar).")(info)


@shared_options("sampling", "engine", "output")
def generate(
    ctx: typer.Context,
    prompt: Annotated[
        str | None,
        typer.Argument(
            help="What the music should be; '-' reads one prompt per line from stdin.",
            show_default=False,
        ),
    ] = None,
    output: opt.OutputPath = None,
    num_outputs: Annotated[
        int,
        typer.Option(
            "--num-outputs",
            "-n",
            min=1,
            max=1000,
            help="Variations per prompt (seeds s, s+1, ...).",
            rich_help_panel=opt.OUTPUT,
        ),
    ] = 1,
    from_record: opt.FromRecord = None,
    duration: opt.Duration = TRAINED_SECONDS,
    context: opt.Context = DEFAULT_CONTEXT,
    loop: Annotated[
        bool,
        typer.Option(
            "--loop",
            help="Make each clip a seamless loop (a whole period: the duration rounded up to "
            "80 ms).",
            rich_help_panel=opt.EDITING,
        ),
    ] = False,
    seam: opt.Seam = DEFAULT_SEAM,
    *,
    shared: Shared,
) -> None:
    values: dict[str, Any] = dict(shared.values)
    values.update(duration=duration, context=context, loop=loop, seam=seam)
    if from_record is not None:
        prompt = _apply_record(ctx, from_record, values, prompt)
    prompts = _read_prompts(prompt)
    to_stdout = output is not None and str(output) == "-"
    if to_stdout and values["json_out"]:
        raise UsageError("-o - writes audio to stdout, so --json cannot share it; drop one.")
    base_seed = values["seed"] if values["seed"] is not None else secrets.randbelow(2**31)
    plan = [(p, base_seed + k) for p in prompts for k in range(num_outputs)]
    if to_stdout and len(plan) > 1:
        raise UsageError("-o - takes exactly one clip; give one prompt and no -n.")
    if to_stdout:
        refuse_binary_to_terminal()

    from fluxmusic_cli.cli.progress import step_bars
    from fluxmusic_cli.cli.setup import make_engine
    from fluxmusic_cli.engine.pipeline import GenerationRequest

    GenerationRequest(
        prompts=(plan[0][0],), seeds=(plan[0][1],), **{k: values[k] for k in REQUEST_KEYS}
    ).check()  # bad sampling values are refused before anything loads
    targets = None if to_stdout else _targets(plan, output, len(prompts), values)
    quiet = values["quiet"]
    with step_bars(quiet) as bars:
        engine = make_engine(
            Shared(values).engine_options(), progress=bars, yes=values["yes"], quiet=quiet
        )
        written, warnings = _run(engine, _items(plan, targets, values), targets, values)
    report_clips(written, warnings, json_out=values["json_out"], quiet=quiet)


def _items(plan: list[tuple[str, int]], targets: list[Path] | None, values: dict[str, Any]):
    """The plan as the run loop's items, each named by its file (`-`: stdout)."""
    from dataclasses import fields

    from fluxmusic_cli.batchrun import Item
    from fluxmusic_cli.engine.pipeline import ClipSettings

    settings = ClipSettings(**{f.name: values[f.name] for f in fields(ClipSettings)})
    paths = targets or [None] * len(plan)
    return [
        Item(
            index=k,
            name=path.stem if path else "-",
            prompt=prompt,
            seed=seed,
            settings=settings,
            fmt=path.suffix.lower().lstrip(".") if path else "wav",
        )
        for k, ((prompt, seed), path) in enumerate(zip(plan, paths, strict=True))
    ]


def _run(engine, items, targets: list[Path] | None, values: dict[str, Any]):
    """Make and write the clips through the run loop `batch` uses, CHUNK to an engine call;
    returns the written clips and the warnings (a clip's own named by its file)."""
    from fluxmusic_cli.batchrun import RunLoop
    from fluxmusic_cli.output import WrittenClip, check_target

    written: list[WrittenClip] = []
    warnings: list[str] = []

    def target(item) -> Path | None:
        if targets is None:
            return None
        # Checked again: a file may have appeared while the model ran.
        check_target(targets[item.index], force=values["force"], save_latent=values["save_latent"])
        return targets[item.index]

    def collect(event) -> None:
        if event.kind != "item_done":
            return
        warnings.extend(w for w in run.summary.warnings if w not in warnings)
        clip = WrittenClip(Path(event.path) if event.path else None, event.record, event.warnings)
        written.append(clip)
        warnings.extend(f"{written_name(clip)}: {w}" for w in clip.warnings)

    writer = Shared(values).clip_writer(stdout=write_stdout)
    run = RunLoop(
        engine, writer, target, batch_size=CHUNK, request={k: values[k] for k in LOOP_KEYS},
        keep_going=False, encode_ahead=False, on_event=collect,
    )  # fmt: skip
    run.run(items)
    warnings.extend(w for w in run.summary.warnings if w not in warnings)
    return written, warnings


def _apply_record(
    ctx: typer.Context, path: Path, values: dict[str, Any], prompt: str | None
) -> str:
    """Fill every option the user did not type from the record; return the prompt to use."""
    from fluxmusic_cli.cli.replay import replay_record

    _, replay = replay_record(ctx, path, "generate", values)
    return prompt if prompt is not None else replay["prompt"]


def _read_prompts(prompt: str | None) -> list[str]:
    if prompt is None:
        raise UsageError("Give a prompt, '-' to read prompts from stdin, or --from-record.")
    if prompt != "-":
        if not prompt.strip():
            raise UsageError(
                'Empty prompt: describe the music, e.g. "warm lo-fi piano, vinyl crackle".'
            )
        return [prompt.strip()]
    if sys.stdin.isatty():
        raise UsageError("'-' reads prompts from stdin, but stdin is a terminal; pipe them in.")
    from fluxmusic_cli.prompts import parse_prompts

    # The reader `batch` uses for .txt lists: blank lines and # comments are skipped.
    return [row.prompt for row in parse_prompts(sys.stdin.read(), "txt", source="stdin").rows]


def _targets(
    plan: list[tuple[str, int]], output: Path | None, n_prompts: int, values: dict[str, Any]
) -> list[Path]:
    """One path per planned clip, all checked before any generation starts."""
    from fluxmusic_cli.audio import slugify
    from fluxmusic_cli.output import check_target, output_folder

    as_dir = output_folder(output)
    if as_dir:
        from fluxmusic_cli.atomic import make_folder

        make_folder(output)
    paths: list[Path] = []
    for i, (prompt, seed) in enumerate(plan):
        if output is None or as_dir:
            folder = output if as_dir else Path(".")
            path = folder / f"{slugify(prompt)}-s{seed}.wav"
        elif len(plan) == 1:
            path = output
        else:
            tag = f"-{i // (len(plan) // n_prompts) + 1}" if n_prompts > 1 else ""
            path = output.with_name(f"{output.stem}{tag}-s{seed}{output.suffix}")
        k = 2
        candidate = path
        while candidate in paths:
            candidate = path.with_name(f"{path.stem}-{k}{path.suffix}")
            k += 1
        check_target(
            candidate, force=values["force"], sample_rate=values["sample_rate"],
            save_latent=values["save_latent"],
        )  # fmt: skip
        paths.append(candidate)
    return paths


def info(
    path: Annotated[Path, typer.Argument(help="Audio file or its NAME.json record.")],
    json_out: opt.Json = False,
) -> None:
    """Print the generation record of an audio file."""
    from rich.table import Table

    from fluxmusic_cli.metadata import read_record

    record = read_record(path)
    if json_out:
        emit_json(record)
        return
    table = Table(title=str(path), show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    for key, value in record.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items() if not isinstance(v, dict))
        table.add_row(key, str(value))
    from rich.console import Console

    Console().print(table)
