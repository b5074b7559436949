"""What a job asks for: the body of `POST /v1/jobs`, read off the commands' own options.

A job is one clip of `generate`, `remix`, `repaint`, `extend` or `loop`. Its fields are that
command's long options with dashes as underscores, parsed by the command's own parser, so a
job gets the defaults, the checks and the sentences of the command line; plus `prompt`,
`format` and, for an edit, `input` ("upload:ID" or "job:ID"). The engine options are fixed
when the server starts (a job naming one is refused), except the ones a clip may choose for
itself; options that only mean something on a terminal (-o, --json, --force, ...) are unknown.
"""

from __future__ import annotations

import functools
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from fluxmusic_cli.engine.requests import OPERATIONS
from fluxmusic_cli.errors import UsageError
from fluxmusic_cli.formats import SUPPORTED_FORMATS

COMMANDS: tuple[str, ...] = ("generate", *OPERATIONS)
EDITS: tuple[str, ...] = OPERATIONS
# Options with no meaning for a job: where the file goes, how a terminal shows the run,
# replaying a local record, asking before a download, which server to send the clips to.
TERMINAL_ONLY = frozenset(
    {"output", "num_outputs", "from_record", "force", "json_out", "quiet", "server", "local"}
)
# Engine options a clip may choose for itself (the server's value is the default); the rest of
# the engine group is fixed for the server's life.
PER_JOB_ENGINE: tuple[str, ...] = ("encoders",)
# Fields that are not options of the command.
OWN_FIELDS: tuple[str, ...] = ("command", "prompt", "input", "format")
DEFAULT_FORMAT = "wav"
INPUT_KINDS = ("upload", "job")
MAX_SEED_DRAWN = 2**31  # a seed left out is drawn below this, as the command line does


@dataclass(frozen=True)
class Field:
    """One option of a command as a job field."""

    name: str  # JSON name: the long flag without dashes, '-' as '_'
    param: str  # the command's parameter name
    flag: str  # --the-long-flag
    negative: str | None  # --no-flag, for a boolean that has one
    is_flag: bool
    multiple: bool
    default: Any


def _click_command(command: str):
    """The command as the command line parses it (Click, through Typer)."""
    return _cli().commands[command]


@functools.cache
def _cli():
    import typer.main

    from fluxmusic_cli.cli.app import app

    return typer.main.get_command(app)


@functools.cache
def command_fields(command: str) -> dict[str, Field]:
    """Every option of `command`, by JSON name."""
    out: dict[str, Field] = {}
    for p in _click_command(command).params:
        if p.param_type_name != "option":
            continue
        flag = next(o for o in p.opts if o.startswith("--"))
        negative = next((o for o in p.secondary_opts if o.startswith("--")), None)
        name = flag[2:].replace("-", "_")
        out[name] = Field(
            name, p.name, flag, negative, bool(p.is_flag), bool(p.multiple), p.default
        )
    return out


def _engine_params() -> tuple[str, ...]:
    from fluxmusic_cli.cli.option_group import GROUPS

    return tuple(GROUPS["engine"])


@functools.cache
def fixed_fields(command: str) -> dict[str, Field]:
    """The engine options `serve` fixes at start, by JSON name."""
    fixed = set(_engine_params()) - set(PER_JOB_ENGINE) - {"yes"}
    return {n: f for n, f in command_fields(command).items() if f.param in fixed}


@functools.cache
def job_fields(command: str) -> dict[str, Field]:
    """The options a job of `command` may set, by JSON name."""
    refused = TERMINAL_ONLY | {"yes"} | {f.param for f in fixed_fields(command).values()}
    return {n: f for n, f in command_fields(command).items() if f.param not in refused}


@dataclass(frozen=True)
class JobRequest:
    """One job, parsed: what the command would have received, plus the server's own fields."""

    command: str
    prompt: str | None  # an edit without one takes its input's (resolved at submit)
    seed: int
    format: str
    input: str | None  # "upload:ID" or "job:ID" (edits)
    options: Mapping[str, Any]  # every option value by parameter name, as the command gets it
    given: Mapping[str, Any] = field(default_factory=dict)  # the option fields as sent

    @property
    def is_edit(self) -> bool:
        return self.command in EDITS

    def to_json(self) -> dict[str, Any]:
        """The job as stored and shown: what was sent, with the seed drawn and the prompt
        found; parsing it again gives this request."""
        out: dict[str, Any] = {"command": self.command}
        if self.prompt is not None:
            out["prompt"] = self.prompt
        if self.input is not None:
            out["input"] = self.input
        out.update(self.given)
        out.update(seed=self.seed, format=self.format)
        return out


def parse_job(body: Any, defaults: Mapping[str, Any]) -> JobRequest:
    """Read a job body; `defaults` holds the server's values of the per-job engine options.

    Raises UsageError with one sentence for anything the command line would refuse, a field
    the server fixed, an unknown field, and an input that is not an upload or a job.
    """
    if not isinstance(body, dict):
        raise UsageError('A job is a JSON object, e.g. {"command": "generate", "prompt": "..."}.')
    command = body.get("command")
    if command not in COMMANDS:
        raise UsageError(
            f"Unknown command {command!r}; a job's command is one of {', '.join(COMMANDS)}."
        )
    fields = job_fields(command)
    fixed = fixed_fields(command)
    given: dict[str, Any] = {}
    for key, value in body.items():
        if key in OWN_FIELDS:
            continue
        if key in fixed:
            raise UsageError(
                f"{fixed[key].flag} is an engine option, fixed when the server started; start "
                f"`fluxmusic serve` with the {fixed[key].flag} you want instead."
            )
        if key not in fields:
            own = ["prompt", "input", "format"] if command in EDITS else ["prompt", "format"]
            raise UsageError(
                f"Unknown field {key!r} for {command}; its fields are {', '.join([*own, *fields])}."
            )
        if value is not None:
            given[key] = value
    options = _parse_options(command, given)
    for name in PER_JOB_ENGINE:
        if name not in given and name in defaults:
            options[fields[name].param] = defaults[name]
    seed = options["seed"] if options["seed"] is not None else secrets.randbelow(MAX_SEED_DRAWN)
    given.pop("seed", None)
    return JobRequest(
        command=command,
        prompt=_prompt(command, body.get("prompt")),
        seed=seed,
        format=_format(body.get("format")),
        input=_input(command, body.get("input")),
        options=options,
        given=given,
    )


def _parse_options(command: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """The command line's own parser over the given fields: its defaults, conversions, ranges
    and choices, and its sentence for a bad value."""
    fields = job_fields(command)
    args: list[str] = []
    for key, value in given.items():
        args.extend(_as_args(fields[key], value))
    args.append("--")  # no positional arguments; keeps a command's no-args help away
    try:
        ctx = _click_command(command).make_context(command, args)
    except Exception as exc:  # Click's usage errors (typer vendors click: matched by shape)
        message = getattr(exc, "format_message", None)
        if callable(message) and isinstance(getattr(exc, "exit_code", None), int):
            raise UsageError(message()) from None
        raise
    wanted = {f.param for f in fields.values()}
    return {k: v.value if isinstance(v, Enum) else v for k, v in ctx.params.items() if k in wanted}


def _as_args(f: Field, value: Any) -> list[str]:
    """A JSON value as the command line would spell it."""
    if f.multiple:
        if not isinstance(value, list) or not all(_scalar(v) for v in value):
            raise UsageError(f"{f.name} takes a list of values (one per {f.flag}).")
        return [f"{f.flag}={_text(v)}" for v in value]
    if f.is_flag:
        if not isinstance(value, bool):
            raise UsageError(f"{f.name} takes true or false.")
        if value:
            return [f.flag]
        return [f.negative] if f.negative else []
    if not _scalar(value):
        raise UsageError(f"{f.name} takes a single value, got {type(value).__name__}.")
    return [f"{f.flag}={_text(value)}"]


def _scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float))


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value) if isinstance(value, float) else str(value)


def _prompt(command: str, prompt: Any) -> str | None:
    if prompt is None:
        if command in EDITS:
            return None  # the input's record has one, or the submit says it is missing
        raise UsageError('Give a prompt: what the music should be, e.g. "warm lo-fi piano".')
    if not isinstance(prompt, str):
        raise UsageError("prompt takes a string.")
    if not prompt.strip():
        raise UsageError(
            'Empty prompt: describe the music, e.g. "warm lo-fi piano, vinyl crackle".'
        )
    return prompt.strip()


def _format(value: Any) -> str:
    if value is None:
        return DEFAULT_FORMAT
    if not isinstance(value, str) or value.lower() not in SUPPORTED_FORMATS:
        raise UsageError(f"Unknown format {value!r}; choose one of {', '.join(SUPPORTED_FORMATS)}.")
    return value.lower()


def _input(command: str, value: Any) -> str | None:
    if command not in EDITS:
        if value is not None:
            raise UsageError(f"{command} takes no input; remix, repaint, extend and loop do.")
        return None
    if value is None:
        raise UsageError(f'Give the input to {command}: "upload:ID" (PUT /v1/uploads) or "job:ID".')
    kind, ref = parse_ref(value, "input")
    return f"{kind}:{ref}"


def parse_ref(value: Any, what: str) -> tuple[str, str]:
    """("upload" | "job", ID) from "upload:ID" / "job:ID", the ID a uuid4 the server made;
    anything else (a path, a URL, an encoded or relative name) is refused."""
    kind, _, ref = value.partition(":") if isinstance(value, str) else ("", "", "")
    if kind not in INPUT_KINDS or not is_id(ref):
        shown = value if isinstance(value, str) and len(value) <= 80 else type(value).__name__
        raise UsageError(
            f'{what} must be "upload:ID" or "job:ID" with an ID this server gave, got {shown!r}; '
            "files on the server are never named by path."
        )
    return kind, ref


def new_id() -> str:
    return str(uuid.uuid4())


def is_id(text: str) -> bool:
    """Whether `text` is an id as the server writes them (a canonical uuid4)."""
    try:
        parsed = uuid.UUID(text)
    except (ValueError, AttributeError, TypeError):
        return False
    return parsed.version == 4 and str(parsed) == text


def request_schema() -> dict[str, Any]:
    """The body of POST /v1/jobs as JSON Schema, for the OpenAPI document: one object per
    command, its fields and defaults read off the command."""
    variants = []
    for command in COMMANDS:
        props: dict[str, Any] = {
            "command": {"const": command},
            "prompt": {"type": "string"},
            "format": {"enum": list(SUPPORTED_FORMATS), "default": DEFAULT_FORMAT},
        }
        if command in EDITS:
            props["input"] = {"type": "string", "pattern": "^(upload|job):[0-9a-f-]{36}$"}
        for name, f in job_fields(command).items():
            props[name] = _schema(f)
        required = ["command", "input"] if command in EDITS else ["command", "prompt"]
        variants.append(
            {
                "title": command,
                "type": "object",
                "properties": props,
                "required": required,
                "additionalProperties": False,
            }
        )
    return {"oneOf": variants}


def _schema(f: Field) -> dict[str, Any]:
    default = f.default.value if isinstance(f.default, Enum) else f.default
    choices = [m.value for m in type(f.default)] if isinstance(f.default, Enum) else None
    if f.multiple:
        return {"type": "array", "items": {"type": "string"}}
    if f.is_flag:
        return {"type": "boolean", "default": bool(default)}
    kind = {bool: "boolean", int: "integer", float: "number", str: "string"}.get(type(default))
    out: dict[str, Any] = {"type": kind} if kind else {}
    if default is not None:
        out["default"] = default
    if choices:
        out["enum"] = choices
    return out
