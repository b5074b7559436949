"""What `remix`, `repaint`, `extend` and `loop` share: reading INPUT (a file or stdin), the
prompt from INPUT's record when none is given, replaying a record, checking everything before
a model loads, running the edit and writing the result."""

from __future__ import annotations

import secrets
import sys
from pathlib import Path
from typing import Any

import typer

from fluxmusic_cli.cli.console import info
from fluxmusic_cli.cli.option_group import Shared
from fluxmusic_cli.errors import UsageError


def run_edit(
    ctx: typer.Context,
    operation: str,
    input_path: str | None,
    prompt: str | None,
    output: Path | None,
    shared: Shared,
    own: dict[str, Any],
    from_record: Path | None,
) -> None:
    """Run one edit end to end; `own` holds the operation's options by their parameter names."""
    from fluxmusic_cli.edit_input import load_source

    values = dict(shared.values)
    values.update(own)
    replayed_input = None
    if from_record is not None:
        replayed_input, prompt = _apply_record(ctx, operation, from_record, values, prompt)
    input_path = input_path or replayed_input
    if input_path is None:
        raise UsageError("Give INPUT, the recording to work on.")
    to_stdout = output is not None and str(output) == "-"
    if to_stdout and values["json_out"]:
        raise UsageError("-o - writes audio to stdout, so --json cannot share it; drop one.")
    if to_stdout:
        from fluxmusic_cli.cli.console import refuse_binary_to_terminal

        refuse_binary_to_terminal()
    data = _read_stdin() if input_path == "-" else None

    # 1. The recording, and the prompt (given, replayed, or from INPUT's own record).
    source, notes = load_source(input_path, data)
    if from_record is not None:
        _check_input_hash(from_record, source.sha256, input_path)
    if prompt is None:
        prompt = _prompt_of_input(input_path, data)
        notes.append(f'using the prompt of {_shown(input_path)}\'s record: "{_quote(prompt)}"')
    seed = values["seed"] if values["seed"] is not None else secrets.randbelow(2**31)

    # 2. The request, checked with the recording's length before any model loads.
    request = edit_request(operation, source, prompt, seed, values)
    from fluxmusic_cli.engine.edit_plan import plan_edit

    plan_edit(request)
    target = None if to_stdout else _target(output, input_path, operation, seed, values)

    # 3. Run it and write the result.
    from fluxmusic_cli.cli.progress import step_bars
    from fluxmusic_cli.cli.reporting import report_clips, written_name
    from fluxmusic_cli.cli.setup import make_engine

    quiet = values["quiet"]
    if not quiet:
        for note in notes:
            info(note)
    engine_options = Shared(values).engine_options()
    with step_bars(quiet) as bars:
        engine = make_engine(engine_options, progress=bars, yes=values["yes"], quiet=quiet)
        result = engine.edit(request)
    item = _write(result.clips[0], target, values)
    warnings = list(result.warnings) + [f"{written_name(item)}: {w}" for w in item.warnings]
    report_clips([item], warnings, json_out=values["json_out"], quiet=quiet)


def _write(clip, target: Path | None, values: dict[str, Any]):
    """The edited clip to its file (with record and, if asked, latent), or WAV on stdout."""
    from fluxmusic_cli.cli.console import write_stdout
    from fluxmusic_cli.output import check_target

    if target is not None:  # checked again: a file may have appeared while the model ran
        check_target(target, force=values["force"], save_latent=values["save_latent"])
    return Shared(values).clip_writer(stdout=write_stdout).write(clip, target)


def _prompt_of_input(input_path: str, data: bytes | None) -> str:
    from fluxmusic_cli.edit_input import input_record

    record = input_record(input_path, data)
    if record is None or not str(record.get("prompt", "")).strip():
        raise UsageError(
            f"Give a PROMPT: {_shown(input_path)} carries no fluxmusic record to take one from."
        )
    return str(record["prompt"])


def edit_request(operation: str, source, prompt: str, seed: int, values: dict[str, Any]):
    """The EditRequest of an operation from its option values (by parameter name)."""
    from fluxmusic_cli.engine.editing import EditRequest, parse_region

    fields: dict[str, Any] = dict(
        operation=operation, source=source, prompt=prompt, seed=seed,
        negative_prompt=values["negative_prompt"], steps=values["steps"],
        guidance=values["guidance"], crossfade=values["crossfade"],
    )  # fmt: skip
    if operation == "remix":
        fields["strength"] = values["strength"]
    elif operation == "repaint":
        fields["regions"] = tuple(parse_region(r) for r in values["region"] or ())
    elif operation == "extend":
        fields.update(add=values["add"], to=values["to"], context=values["context"])
    else:
        fields["seam"] = values["seam"]
    return EditRequest(**fields)


def _target(output: Path | None, input_path: str, operation: str, seed: int, values) -> Path:
    """The output file, checked (extension, existing files, folder) before any model loads."""
    from fluxmusic_cli import atomic
    from fluxmusic_cli.output import check_target, output_folder

    stem = "recording" if input_path == "-" else Path(input_path).stem
    name = f"{stem}-{operation}-s{seed}.wav"
    if output is None:
        path = Path(name)
    elif output_folder(output):
        atomic.make_folder(output)
        path = output / name
    else:
        path = output
    check_target(
        path, force=values["force"], sample_rate=values["sample_rate"],
        save_latent=values["save_latent"],
    )  # fmt: skip
    return path


def _apply_record(
    ctx: typer.Context, operation: str, path: Path, values: dict[str, Any], prompt: str | None
) -> tuple[str | None, str | None]:
    """Fill every option the user did not type from the record; (its input path, prompt)."""
    from fluxmusic_cli.cli.replay import replay_record

    record, replay = replay_record(ctx, path, operation, values)
    recorded_input = (record.get("input") or {}).get("path")
    return recorded_input, prompt if prompt is not None else replay["prompt"]


def _check_input_hash(path: Path, sha256: str, input_path: str) -> None:
    from fluxmusic_cli.metadata import read_record

    recorded = (read_record(path).get("input") or {}).get("sha256")
    if recorded and recorded != sha256:
        raise UsageError(
            f"{_shown(input_path)} is not the recording {path} was made from (its SHA-256 "
            "differs); replaying would not reproduce it."
        )


def _read_stdin() -> bytes:
    if sys.stdin is None or sys.stdin.isatty():
        raise UsageError("INPUT '-' reads the recording from stdin, but stdin is a terminal.")
    data = sys.stdin.buffer.read()
    if not data:
        raise UsageError("INPUT '-' read nothing from stdin.")
    return data


def _shown(input_path: str) -> str:
    return "stdin" if input_path == "-" else input_path


def _quote(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
