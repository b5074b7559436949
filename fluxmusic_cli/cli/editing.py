"""What `remix`, `repaint`, `extend` and `loop` share: reading INPUT (a file or stdin), the
prompt from INPUT's record when none is given, replaying a record, checking everything before
a model loads, running the edit (here or on a server, which gets the recording uploaded) and
writing the result."""

from __future__ import annotations

import secrets
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import typer

from fluxmusic_cli.cli.console import info
from fluxmusic_cli.cli.option_group import Shared
from fluxmusic_cli.engine.requests import (
    DEFAULT_CONTEXT,
    DEFAULT_CROSSFADE,
    DEFAULT_SEAM,
    DEFAULT_STRENGTH,
)
from fluxmusic_cli.errors import UsageError


@dataclass(frozen=True)
class EditOptions:
    """The editing commands' own options, by parameter name (each command takes some; the
    rest keep their defaults)."""

    strength: float = DEFAULT_STRENGTH
    region: list[str] | None = None
    add: float | None = None
    to: float | None = None
    context: float = DEFAULT_CONTEXT
    seam: float | None = DEFAULT_SEAM  # None: chosen to fit the loop
    crossfade: float = DEFAULT_CROSSFADE

    def edit(self, operation: str, source):
        """What the run service needs to make this edit of `source`."""
        from fluxmusic_cli.engine.editing import parse_region
        from fluxmusic_cli.runs.plan import Edit

        return Edit(
            operation=operation,
            source=source,
            strength=self.strength,
            regions=tuple(parse_region(r) for r in self.region or ()),
            add=self.add,
            to=self.to,
            context=self.context,
            seam=self.seam,
            crossfade=self.crossfade,
        )


@dataclass(frozen=True)
class EditCall:
    """One editing command as typed: which operation, its arguments and options."""

    operation: str
    input_path: str | None
    prompt: str | None
    output: Path | None
    options: EditOptions
    from_record: Path | None


def run_edit(ctx: typer.Context, call: EditCall, shared: Shared) -> None:
    """Run one edit end to end."""
    from fluxmusic_cli.cli.remote import connect
    from fluxmusic_cli.edit_input import load_source

    options, prompt, replayed_input, record = call.options, call.prompt, None, None
    if call.from_record is not None:
        from fluxmusic_cli.cli.replay import replay_record

        record, shared, (options,) = replay_record(
            ctx, call.from_record, call.operation, shared, options
        )
        replayed_input = _recorded_input(record).get("path")
        prompt = prompt if prompt is not None else record.prompt
    remote, shared = connect(ctx, shared, record)
    input_path = call.input_path or replayed_input
    if input_path is None:
        raise UsageError("Give INPUT, the recording to work on.")
    out = shared.output
    to_stdout = call.output is not None and str(call.output) == "-"
    if to_stdout and out.json_out:
        raise UsageError("-o - writes audio to stdout, so --json cannot share it; drop one.")
    if to_stdout:
        from fluxmusic_cli.cli.console import refuse_binary_to_terminal

        refuse_binary_to_terminal()
    data = _read_stdin() if input_path == "-" else None

    # 1. The recording, and the prompt (given, replayed, or from INPUT's own record).
    source, notes = load_source(input_path, data)
    if call.from_record is not None:
        _check_input_hash(call.from_record, source.sha256, input_path)
    if prompt is None:
        prompt = _prompt_of_input(input_path, data)
        notes.append(f'using the prompt of {_shown(input_path)}\'s record: "{_quote(prompt)}"')
    if remote is not None:  # the recording goes to the server (its latent only if it has it)
        source = remote.edit_source(source, notes, data)
    seed = shared.sampling.seed
    seed = seed if seed is not None else secrets.randbelow(2**31)

    # 2. The item, checked with the recording's length before any model loads.
    from fluxmusic_cli.cli.console import write_stdout
    from fluxmusic_cli.engine.edit_plan import plan_edit
    from fluxmusic_cli.engine.requests import GenerateSettings
    from fluxmusic_cli.runs.plan import Item

    item = Item(
        index=0,
        name="-",
        prompt=prompt,
        seed=seed,
        settings=shared.clip_settings(GenerateSettings),
        path=None,
        writer=out.clip_writer(overwrite=out.force, stdout=write_stdout),
        edit=options.edit(call.operation, source),
    )
    notes += plan_edit(item.edit_request()).notes
    engine_options = shared.engine.engine_options()
    engine_options.check_clip(item.settings)
    if not to_stdout:
        target = _target(call.output, input_path, call.operation, seed, out)
        item = replace(item, name=target.stem, path=target)

    # 3. Run it and write the result.
    from fluxmusic_cli.cli.reporting import run_clips

    if not out.quiet:
        for note in notes:
            info(note)
    run_clips(engine_options, [item], shared, remote)


def _prompt_of_input(input_path: str, data: bytes | None) -> str:
    from fluxmusic_cli.edit_input import input_record

    record = input_record(input_path, data)
    if record is None or not str(record.prompt).strip():
        raise UsageError(
            f"Give a PROMPT: {_shown(input_path)} carries no fluxmusic record to take one from."
        )
    return str(record.prompt)


def _target(output: Path | None, input_path: str, operation: str, seed: int, out) -> Path:
    """The output file, checked (not the input, extension, existing files, folder) before any
    model loads."""
    from fluxmusic_cli import atomic
    from fluxmusic_cli.output import check_target, output_folder, refuse_own_input

    stem = "recording" if input_path == "-" else Path(input_path).stem
    name = f"{stem}-{operation}-s{seed}.wav"
    if output is None:
        path = Path(name)
    elif output_folder(output):
        atomic.make_folder(output)
        path = output / name
    else:
        path = output
    if input_path != "-":
        refuse_own_input(path, Path(input_path), save_latent=out.save_latent)
    check_target(path, force=out.force, sample_rate=out.sample_rate, save_latent=out.save_latent)
    return path


def _check_input_hash(path: Path, sha256: str, input_path: str) -> None:
    from fluxmusic_cli.metadata import read_record

    recorded = _recorded_input(read_record(path)).get("sha256")
    if recorded and recorded != sha256:
        raise UsageError(
            f"{_shown(input_path)} is not the recording {path} was made from (its SHA-256 "
            "differs); replaying would not reproduce it."
        )


def _recorded_input(record) -> dict:
    """What an edit's record says of its input: its path and SHA-256 as text, where given."""
    given = record.extra.get("input") or {}
    return {k: v for k, v in given.items() if k in ("path", "sha256") and isinstance(v, str)}


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
