"""The one place a job meets the engine: a parsed job becomes the request the command would
build (checked as the command checks it), and runs through the same code as the command, so a
job computes exactly what the command computes locally.

`generate` jobs go through the run loop `fluxmusic generate` uses (`batchrun.RunLoop`); edits
through `Engine.edit` and the `ClipWriter`, as `cli/editing.py` runs them. When the run service
lands (issue 19) it replaces `run_jobs` and `prepare`; the worker and the HTTP layer stay.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from fluxmusic_cli.engine.pipeline import EngineOptions
from fluxmusic_cli.errors import UsageError
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
    """A job checked and ready to run: its request (with the prompt an edit took from its
    input) and, for an edit, the engine's request with the recording loaded."""

    job_id: str
    job: JobRequest
    edit: Any = None  # EditRequest
    notes: tuple[str, ...] = ()

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.job.options)

    def pass_options(self, engine: EngineOptions) -> EngineOptions:
        """The engine options this job runs with: the server's, with the job's encoders and
        fewer-passes settings (per clip, as the run service will make them)."""
        o = self.options
        return replace(engine, encoders=o["encoders"], guidance_interval=o["guidance_interval"],
                       cache=o["cache"])  # fmt: skip

    def batch_key(self) -> tuple | None:
        """Jobs with equal keys can share one forward pass (generate only)."""
        if self.job.command != "generate":
            return None
        o = self.options
        from fluxmusic_cli.cli.generate import LOOP_KEYS

        return (
            _clip_settings(o),
            tuple(o[k] for k in LOOP_KEYS),
            o["sample_rate"], o["peak_normalize"], o["save_latent"],
            o["guidance_interval"], o["cache"],
        )  # fmt: skip


def prepare(job_id: str, job: JobRequest, engine: EngineOptions, resolve: Resolve) -> Prepared:
    """Check `job` as its command checks a command line before any model loads (the request,
    the output format, the fewer-passes options); an edit's input is read and its plan made.
    Raises UsageError with the command's sentence."""
    from fluxmusic_cli.output import check_encodable

    o = job.options
    probe = Prepared(job_id, job)
    probe.pass_options(engine).check()
    check_encodable(job.format, o["sample_rate"])
    if job.command == "generate":
        from fluxmusic_cli.cli.generate import REQUEST_KEYS
        from fluxmusic_cli.engine.pipeline import GenerationRequest

        GenerationRequest(
            prompts=(job.prompt,), seeds=(job.seed,), **{k: o[k] for k in REQUEST_KEYS}
        ).check()
        return probe
    return _prepare_edit(job_id, job, resolve)


def _prepare_edit(job_id: str, job: JobRequest, resolve: Resolve) -> Prepared:
    from fluxmusic_cli.cli.editing import edit_request
    from fluxmusic_cli.edit_input import input_record, load_source
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
        record = found.record
        if record is None and found.data is not None:
            record = input_record("-", found.data)
        prompt = str((record or {}).get("prompt", "")).strip()
        if not prompt:
            raise UsageError(
                f"Give a prompt: {found.ref} carries no fluxmusic record to take one from."
            )
        notes.append(f'using the prompt of {found.ref}\'s record: "{prompt}"')
        job = replace(job, prompt=prompt)
    request = edit_request(job.command, source, prompt, job.seed, dict(job.options))
    request = replace(request, encoders=job.options["encoders"])
    plan_edit(request)
    return Prepared(job_id, job, edit=request, notes=tuple(n for n in notes if n))


@dataclass
class Outcome:
    """What became of one job of a run: the record of its written clip (JSON), or the
    sentence it failed with."""

    record: dict[str, Any] | None = None
    error: str | None = None
    warnings: list[str] = field(default_factory=list)


def _as_json(record: Any) -> dict[str, Any]:
    """A written clip's record as JSON, whether the writer hands it typed or already JSON."""
    return dict(record) if isinstance(record, dict) else record.to_json()


def run_jobs(
    engine,
    jobs: Sequence[Prepared],
    targets: Sequence[Path],
    on_outcome: Callable[[int, Outcome], None],
) -> None:
    """Run one job, or a group of generate jobs with equal `batch_key`s in one forward pass;
    `on_outcome(k, outcome)` as each job's clip is written or refused. Progress and cancelling
    go through the engine's progress callback (raising `Cancelled` there stops the run)."""
    first = jobs[0]
    with _options(engine, first.pass_options(engine.options)):
        try:
            if first.edit is not None:
                on_outcome(0, _edit(engine, first, targets[0]))
            else:
                _generate(engine, jobs, targets, on_outcome)
        finally:
            for job in jobs:
                negative = job.options["negative_prompt"]
                engine.forget([job.job.prompt, negative], encoders=job.options["encoders"])


def _generate(engine, jobs: Sequence[Prepared], targets: Sequence[Path], on_outcome) -> None:
    """As `fluxmusic generate` runs its clips: items through the run loop, one writer."""
    from fluxmusic_cli.batchrun import Item, RunLoop
    from fluxmusic_cli.cli.generate import CHUNK, LOOP_KEYS
    from fluxmusic_cli.output import ClipWriter

    o = jobs[0].options
    items = [
        Item(index=k, name=job.job_id, fmt=job.job.format, prompt=job.job.prompt,
             seed=job.job.seed, settings=_clip_settings(job.options))
        for k, job in enumerate(jobs)
    ]  # fmt: skip

    def collect(event) -> None:
        k = event.row - 1
        if event.kind == "item_done":
            warnings = [*run.summary.warnings, *event.warnings]
            on_outcome(k, Outcome(_as_json(event.record), warnings=warnings))
        elif event.kind == "item_failed":
            on_outcome(k, Outcome(error=event.reason, warnings=list(run.summary.warnings)))

    writer = ClipWriter(sample_rate=o["sample_rate"], peak_normalize=o["peak_normalize"],
                        save_latent=o["save_latent"])  # fmt: skip
    run = RunLoop(
        engine, writer, lambda item: targets[item.index], batch_size=max(CHUNK, len(jobs)),
        request={k: o[k] for k in LOOP_KEYS}, keep_going=True, encode_ahead=False,
        on_event=collect,
    )  # fmt: skip
    run.run(items)


def _edit(engine, job: Prepared, target: Path) -> Outcome:
    """As `cli/editing.py` runs an edit: the engine's edit, written by the ClipWriter."""
    from fluxmusic_cli.output import ClipWriter

    o = job.options
    result = engine.edit(job.edit)
    writer = ClipWriter(sample_rate=o["sample_rate"], peak_normalize=o["peak_normalize"],
                        save_latent=o["save_latent"])  # fmt: skip
    written = writer.write(result.clips[0], target)
    warnings = [*job.notes, *result.warnings, *written.warnings]
    return Outcome(_as_json(written.record), warnings=warnings)


@contextlib.contextmanager
def _options(engine, options: EngineOptions) -> Iterator[None]:
    """The engine reads the fewer-passes options off its `options` while it samples; a job's
    own are swapped in for its run (the worker runs one job at a time per engine). Goes when
    they become per-clip sampling settings."""
    saved = engine.options
    engine.options = replace(
        saved, guidance_interval=options.guidance_interval, cache=options.cache
    )
    try:
        yield
    finally:
        engine.options = saved


def _clip_settings(options: dict[str, Any]):
    from fluxmusic_cli.engine.pipeline import ClipSettings

    return ClipSettings(**{f.name: options[f.name] for f in fields(ClipSettings)})


# EngineOptions fields a client has no business with (the Hugging Face token) or that the
# server sets itself.
_PRIVATE_OPTIONS = ("token", "offline", "prompt_cache")


def describe(engine) -> dict[str, Any]:
    """What `GET /v1/engine` tells clients: the options the server was started with (by
    EngineOptions field, as given), where they resolved to, and the model sources as records
    name them."""
    from fluxmusic_cli.batchrun import engine_identity

    o = engine.options
    options = {f.name: getattr(o, f.name) for f in fields(o) if f.name not in _PRIVATE_OPTIONS}
    options["guidance_interval"] = list(o.guidance_interval) if o.guidance_interval else None
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
