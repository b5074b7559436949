"""`fluxmusic generate` and `fluxmusic info`: make clips from prompts, read a clip's record."""

from __future__ import annotations

import secrets
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from fluxmusic_cli.cli import options as opt
from fluxmusic_cli.cli.console import emit_json, err, warn
from fluxmusic_cli.engine.pipeline import (
    DEFAULT_GUIDANCE,
    DEFAULT_NEGATIVE_PROMPT,
    DEFAULT_STEPS,
)
from fluxmusic_cli.engine.sampling import TRAINED_SECONDS
from fluxmusic_cli.engine.sources import DEFAULT_SOURCES
from fluxmusic_cli.errors import UsageError

# Options a record can replay that configure the engine rather than the request.
ENGINE_KEYS = ("model", "t5", "clap", "vae_vocoder", "encoders", "conditioning", "device", "dtype")
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
    from_record: Annotated[
        Path | None,
        typer.Option(
            "--from-record",
            help="Replay a generation record (NAME.json or a tagged audio file); explicit "
            "flags win.",
            show_default=False,
        ),
    ] = None,
    model: opt.Model = DEFAULT_SOURCES["transformer"],
    t5: opt.T5 = DEFAULT_SOURCES["t5"],
    clap: opt.Clap = DEFAULT_SOURCES["clap"],
    vae_vocoder: opt.VaeVocoder = DEFAULT_SOURCES["audioldm2"],
    encoders: opt.EncodersOpt = opt.EncodersChoice.both,
    conditioning: opt.ConditioningOpt = opt.ConditioningChoice.training,
    steps: opt.Steps = DEFAULT_STEPS,
    guidance: opt.Guidance = DEFAULT_GUIDANCE,
    negative_prompt: opt.Negative = DEFAULT_NEGATIVE_PROMPT,
    seed: opt.Seed = None,
    duration: opt.Duration = TRAINED_SECONDS,
    device: opt.DeviceOpt = opt.DeviceChoice.auto,
    dtype: opt.DtypeOpt = opt.DtypeChoice.auto,
    memory: opt.MemoryOpt = opt.MemoryChoice.auto,
    token: opt.Token = None,
    compile_model: opt.Compile = False,
    threads: opt.Threads = None,
    lora: opt.Lora = None,
    sample_rate: opt.SampleRate = 16000,
    peak_normalize: opt.PeakNormalize = False,
    force: opt.Force = False,
    json_out: opt.Json = False,
    quiet: opt.Quiet = False,
    yes: opt.Yes = False,
) -> None:
    values: dict[str, Any] = dict(
        model=model, t5=t5, clap=clap, vae_vocoder=vae_vocoder, encoders=encoders,
        conditioning=conditioning, steps=steps, guidance=guidance,
        negative_prompt=negative_prompt, seed=seed, duration=duration, device=device,
        dtype=dtype, sample_rate=sample_rate, peak_normalize=peak_normalize,
    )  # fmt: skip
    values["lora"] = lora
    if from_record is not None:
        prompt = _apply_record(ctx, from_record, values, prompt)
    prompts = _read_prompts(prompt)
    to_stdout = output is not None and str(output) == "-"
    if to_stdout and json_out:
        raise UsageError("-o - writes audio to stdout, so --json cannot share it; drop one.")
    base_seed = values["seed"] if values["seed"] is not None else secrets.randbelow(2**31)
    plan = [(p, base_seed + k) for p in prompts for k in range(num_outputs)]
    if to_stdout and len(plan) > 1:
        raise UsageError("-o - takes exactly one clip; give one prompt and no -n.")
    targets = [] if to_stdout else _targets(plan, output, len(prompts), force=force)

    from fluxmusic_cli import output as out
    from fluxmusic_cli.cli.progress import step_bars
    from fluxmusic_cli.cli.setup import make_engine
    from fluxmusic_cli.engine.pipeline import GenerationRequest

    engine_options = opt.engine_options(
        **{k: values[k] for k in ENGINE_KEYS}, memory=memory, token=token,
        compile=compile_model, threads=threads, loras=opt.loras(values["lora"]),
    )  # fmt: skip
    written: list[out.WrittenClip] = []
    warnings: list[str] = []
    with step_bars(quiet) as bars:
        engine = make_engine(engine_options, progress=bars, yes=yes, quiet=quiet)
        for start in range(0, len(plan), CHUNK):
            chunk = plan[start : start + CHUNK]
            request = GenerationRequest(
                prompts=tuple(p for p, _ in chunk),
                seeds=tuple(s for _, s in chunk),
                negative_prompt=values["negative_prompt"],
                steps=values["steps"],
                guidance=values["guidance"],
                duration=values["duration"],
            )
            result = engine.generate(request)
            warnings += [w for w in result.warnings if w not in warnings]
            for i, clip in enumerate(result.clips):
                opts = dict(
                    sample_rate=values["sample_rate"], peak_normalize=values["peak_normalize"]
                )
                if to_stdout:
                    data, item = out.clip_wav_bytes(clip, **opts)
                    sys.stdout.buffer.write(data)
                    sys.stdout.flush()
                else:
                    item = out.write_clip(clip, targets[start + i], force=force, **opts)
                written.append(item)
                warnings += [f"{_name(item)}: {w}" for w in item.warnings]
    _report(written, warnings, json_out=json_out, quiet=quiet)


def _apply_record(
    ctx: typer.Context, path: Path, values: dict[str, Any], prompt: str | None
) -> str:
    """Fill every option the user did not type from the record; return the prompt to use."""
    from fluxmusic_cli.metadata import read_record, replay_settings

    replay = replay_settings(read_record(path))
    for name, value in replay.items():
        if name == "prompt" or name not in values:
            continue
        source = ctx.get_parameter_source(name)
        if source is None or source.name in ("DEFAULT", "DEFAULT_MAP"):
            values[name] = value
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
    prompts = [line.strip() for line in sys.stdin.read().splitlines() if line.strip()]
    if not prompts:
        raise UsageError("No prompts on stdin (blank lines are skipped).")
    return prompts


def _targets(
    plan: list[tuple[str, int]], output: Path | None, n_prompts: int, *, force: bool
) -> list[Path]:
    """One path per planned clip, all checked before any generation starts."""
    from fluxmusic_cli.audio import slugify
    from fluxmusic_cli.output import check_target

    # Typer's Path drops a trailing slash, so a path without an extension names a folder.
    as_dir = output is not None and (output.is_dir() or not output.suffix)
    if as_dir:
        output.mkdir(parents=True, exist_ok=True)
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
        check_target(candidate, force=force)
        paths.append(candidate)
    return paths


def _name(item) -> str:
    return str(item.path) if item.path is not None else "stdout"


def _report(written, warnings: list[str], *, json_out: bool, quiet: bool) -> None:
    for w in warnings:
        warn(w)
    if json_out:
        emit_json(
            {
                "outputs": [
                    {"path": str(w.path) if w.path else "-", "record": w.record} for w in written
                ],
                "warnings": warnings,
            }
        )
        return
    if quiet:
        return
    for w in written:
        r = w.record
        lufs = f", {r['lufs']:.1f} LUFS" if r.get("lufs") is not None else ""
        err.print(
            f"[green]wrote[/green] {_name(w)}  ({r['duration']:g} s, {r['output_sample_rate']} Hz, "
            f"seed {r['seed']}, peak {r['peak']:.2f}{lufs})"
        )


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
