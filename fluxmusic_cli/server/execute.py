"""The one place a job meets the engine: a parsed job becomes the item the command would
build (checked as the command checks it: its settings from the same option groups) and runs
through the same run service as the command, so a job computes exactly what the command
computes locally.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from fluxmusic_cli.engine.requests import EngineOptions
from fluxmusic_cli.errors import UsageError
from fluxmusic_cli.runs.plan import Item
from fluxmusic_cli.server.jobs import JobRequest


@dataclass(frozen=True)
class InputAudio:
    """An edit's input as the service found it: a job's output file (its latent sidecar
    beside it) or an upload's bytes, and the record that goes with it, if any."""

    ref: str  # "upload:ID" or "job:ID": what the record names as the input
    path: Path | None = None
    data: bytes | None = None
    record: dict[str, Any] | None = None


Resolve = Callable[[str], InputAudio]


@dataclass(frozen=True)
class Prepared:
    """A job checked and ready to run: the run service's item for its clip (its prompt, an
    edit's recording loaded; no path yet) and what was noted on the way."""

    job_id: str
    job: JobRequest
    item: Item
    notes: tuple[str, ...] = ()

    def batch_key(self) -> tuple | None:
        """Jobs with equal keys can share one forward pass (generate only; each job keeps its
        own writer)."""
        return None if self.item.edit is not None else self.item.group


def prepare(job_id: str, job: JobRequest, engine: EngineOptions, resolve: Resolve) -> Prepared:
    """Check `job` as its command checks a command line before any model loads (the settings,
    the output format); an edit's input is read and its plan made. Raises UsageError with the
    command's sentence."""
    from fluxmusic_cli.cli.option_group import Shared
    from fluxmusic_cli.engine.requests import GenerateSettings
    from fluxmusic_cli.output import check_encodable

    o = job.options
    shared = Shared.of(dict(o))
    settings = shared.clip_settings(GenerateSettings, **{k: o[k] for k in _SHAPE if k in o})
    settings.check()
    engine.check_clip(settings)
    check_encodable(job.format, shared.output.sample_rate)
    item = Item(
        index=0,
        name=job_id,
        prompt=job.prompt or "",
        seed=job.seed,
        settings=settings,
        path=None,
        writer=shared.output.clip_writer(),
    )
    if job.command == "generate":
        return Prepared(job_id, job, item)
    return _prepare_edit(job_id, job, item, resolve)


# generate's own options that shape its clips (the rest of a job's options are the groups').
_SHAPE = ("duration", "loop", "seam", "context")


def _prepare_edit(job_id: str, job: JobRequest, item: Item, resolve: Resolve) -> Prepared:
    from fluxmusic_cli.cli.editing import EditOptions
    from fluxmusic_cli.edit_input import load_source
    from fluxmusic_cli.engine.edit_plan import plan_edit

    found = resolve(job.input)
    if found.path is not None:  # a job's output: its latent sidecar keeps the chain lossless
        source, notes = load_source(str(found.path))
    else:
        source, notes = load_source("-", found.data)
    source = replace(
        source,
        path=found.ref,
        latent_file=None if source.latent_file is None else Path(source.latent_file).name,
    )
    prompt = job.prompt
    if prompt is None:
        prompt = _input_prompt(found)
        if not prompt:
            raise UsageError(
                f"Give a prompt: {found.ref} carries no fluxmusic record to take one from."
            )
        notes.append(f'using the prompt of {found.ref}\'s record: "{prompt}"')
        job = replace(job, prompt=prompt)
    own = {f.name: job.options[f.name] for f in fields(EditOptions) if f.name in job.options}
    item = replace(item, prompt=prompt, edit=EditOptions(**own).edit(job.command, source))
    plan_edit(item.edit_request())
    return Prepared(job_id, job, item, notes=tuple(n for n in notes if n))


def _input_prompt(found: InputAudio) -> str:
    """The prompt of an edit's input: its job's record (as stored), or the tags of an upload."""
    from fluxmusic_cli.edit_input import input_record

    if found.record is not None:
        return str(found.record.get("prompt", "")).strip()
    typed = input_record("-", found.data) if found.data is not None else None
    return typed.prompt.strip() if typed is not None else ""


@dataclass
class Outcome:
    """What became of one job of a run: the record of its written clip (JSON), or the
    sentence it failed with."""

    record: dict[str, Any] | None = None
    error: str | None = None
    warnings: list[str] = field(default_factory=list)


def run_jobs(
    engine,
    jobs: Sequence[Prepared],
    targets: Sequence[Path],
    on_outcome: Callable[[int, Outcome], None],
) -> None:
    """Run one job, or a group of generate jobs with equal `batch_key`s in one forward pass,
    through the run service the commands use; `on_outcome(k, outcome)` as each job's clip is
    written or refused. Progress and cancelling go through the engine's progress callback
    (raising `Cancelled` there stops the run)."""
    from fluxmusic_cli.cli.reporting import CHUNK
    from fluxmusic_cli.runs.events import ItemDone, ItemFailed
    from fluxmusic_cli.runs.service import RunService

    items = [replace(j.item, index=k, path=Path(t)) for k, (j, t) in enumerate(zip(jobs, targets))]

    def on_event(event) -> None:
        if isinstance(event, ItemDone):
            k = event.item.index
            said = [*jobs[k].notes, *event.run_warnings, *event.written.warnings]
            on_outcome(k, Outcome(event.written.record.to_json(), warnings=said))
        elif isinstance(event, ItemFailed):
            k = event.failure.row - 1
            on_outcome(k, Outcome(error=event.reason, warnings=list(jobs[k].notes)))

    RunService(engine, batch_size=max(CHUNK, len(items))).run(items, on_event)


# EngineOptions fields a client has no business with (the Hugging Face token) or that the
# server sets itself.
_PRIVATE_OPTIONS = ("token", "offline", "prompt_cache")


def describe(engine) -> dict[str, Any]:
    """What `GET /v1/engine` tells clients: the options the server was started with (by
    EngineOptions field, as given), where they resolved to, and the model sources as records
    name them."""
    from fluxmusic_cli.runs.folder import engine_identity

    o = engine.options
    options = {f.name: getattr(o, f.name) for f in fields(o) if f.name not in _PRIVATE_OPTIONS}
    options["loras"] = [f"{path}:{scale:g}" for path, scale in o.loras]
    return {
        "options": options,
        "resolved": {
            "device": engine.placement.device,
            "dtype": engine.placement.dtype,
            "text_device": engine.store.text_placement.device,
        },
        "identity": engine_identity(engine),
    }
