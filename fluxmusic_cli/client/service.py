"""The run service's twin for a server: items in, clips written here, events out.

`RemoteRunService.run(items, on_event)` has the interface of `runs.service.RunService.run`,
so the commands' reporting and the folder layer (manifest, resume) work with either. Each item
goes to the server as a job (an edit's recording uploaded first, once); its progress comes
from the job's event stream; its clip, record and latent are fetched and written here by the
item's writer, whole or not at all. A job the server refuses or fails is an `ItemFailed`
with the server's sentence. Leaving early (Ctrl-C, or a sink that raises) cancels the jobs
this run still has on the server.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections import deque
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fluxmusic_cli.client.api import QueueFull, ServerAPI
from fluxmusic_cli.client.jobs import job_body
from fluxmusic_cli.errors import BadAudioError, FluxMusicError, ServerError, UsageError
from fluxmusic_cli.runs.events import (
    EventSink,
    ItemDone,
    ItemFailed,
    ItemStarted,
    RunEvent,
    Summary,
)
from fluxmusic_cli.runs.plan import Failure, Item

if TYPE_CHECKING:
    from fluxmusic_cli.engine.requests import EditSource
    from fluxmusic_cli.metadata import GenerationRecord

Progress = Callable[[Any], None]  # takes the engine's ProgressEvent


class RemoteRunService:
    """Makes the clips of items on the server behind `api` and writes them here.

    `given`: the option names the user gave (sent even at their defaults); `defaults`: the
    server's values of the options a job may leave out; `window`: jobs queued on the server at
    a time (its --max-batch may put them in one forward pass); `inputs`: recordings the server
    has already, by SHA-256 ("job:ID" of a clip it made); `recordings`: the bytes of recordings
    that are not files (stdin), by SHA-256.
    """

    def __init__(
        self,
        api: ServerAPI,
        *,
        given: Collection[str] = (),
        defaults: Mapping[str, Any] | None = None,
        progress: Progress | None = None,
        window: int = 1,
        inputs: Mapping[str, str] | None = None,
        recordings: Mapping[str, bytes] | None = None,
    ) -> None:
        self.api = api
        self.given = frozenset(given)
        self.defaults = dict(defaults or {})
        self.progress = progress
        self.window = max(1, window)
        self.inputs = dict(inputs or {})
        self.recordings = dict(recordings or {})

    def run(self, items: Sequence[Item], on_event: EventSink | None = None) -> Summary:
        """Make every item on the server, reporting each through `on_event`."""
        return _RemoteRun(self, on_event).run(items)


class _RemoteRun:
    """One call of `RemoteRunService.run`: its summary, its jobs in flight."""

    def __init__(self, service: RemoteRunService, on_event: EventSink | None) -> None:
        self.service = service
        self.api = service.api
        self.on_event = on_event
        self.summary = Summary()
        self.flight: deque[tuple[Item, str]] = deque()

    def run(self, items: Sequence[Item]) -> Summary:
        start = time.perf_counter()
        waiting = deque(items)
        try:
            while waiting or self.flight:
                while waiting and len(self.flight) < self.service.window:
                    try:
                        self._submit(waiting[0])
                    except QueueFull:
                        if not self.flight:
                            raise
                        break  # ours are ahead in the queue: take one, then try again
                    waiting.popleft()
                if self.flight:
                    self._finish(*self.flight[0])
        finally:
            for _, job_id in self.flight:  # left early: nothing of ours runs on
                with contextlib.suppress(FluxMusicError):
                    self.api.cancel(job_id)
            self.summary.elapsed_s = time.perf_counter() - start
        return self.summary

    def _emit(self, event: RunEvent) -> None:
        self.summary.tell(event, self.on_event)

    def _fail(self, item: Item, exc: FluxMusicError) -> None:
        self._emit(ItemFailed(Failure(item.row, exc.message, item.name, item.prompt), exc))

    def _submit(self, item: Item) -> None:
        """Queue `item`'s job (a refused one fails the item with the server's sentence)."""
        try:
            ref = self._input(item) if item.edit is not None else None
            body = job_body(
                item, given=self.service.given, defaults=self.service.defaults, input_ref=ref
            )
            job_id = self.api.submit(body)
        except UsageError as exc:
            self._emit(ItemStarted(item))
            self._fail(item, exc)
            return
        self.flight.append((item, job_id))
        self._emit(ItemStarted(item))

    def _input(self, item: Item) -> str:
        """The edit's recording on the server: a clip it made, or an upload (once per run)."""
        source = item.edit.source
        ref = self.service.inputs.get(source.sha256)
        if ref is None:
            data = self.service.recordings.get(source.sha256)
            if data is None:
                data = _read_again(source)
            ref = f"upload:{self.api.upload(data)}"
            self.service.inputs[source.sha256] = ref
        return ref

    def _finish(self, item: Item, job_id: str) -> None:
        """Follow the oldest job to its end, then write its clip (or fail the item)."""
        view = self.api.follow(job_id, self._progress)
        self.flight.popleft()
        if view.get("status") != "succeeded":
            why = view.get("error") or f"The job ended {view.get('status')} on the server."
            self._fail(item, ServerError(str(why)))
            return
        data = self.api.audio(job_id)
        latent = self.api.latent(job_id) if item.writer.save_latent else None
        record = _record(view, item, self.api.url, job_id)
        said = [w for w in view.get("warnings") or [] if isinstance(w, str)]
        said = [w for w in said if w not in self._input_notes(item)]
        self.summary.warn(said)
        try:
            written = item.writer.write_encoded(data, record, item.path, latent=latent)
        except (BadAudioError, UsageError) as exc:
            self._fail(item, exc)
            return
        self._emit(ItemDone(item, written, run_warnings=tuple(said)))

    def _input_notes(self, item: Item) -> tuple[str, ...]:
        """What the server notes of an edit's input that this command has said already (in
        its own words): that a clip of the server's starts from its latent."""
        ref = "" if item.edit is None else self.service.inputs.get(item.edit.source.sha256, "")
        if not ref.startswith("job:"):
            return ()
        from fluxmusic_cli.edit_input import latent_note

        return (latent_note(f"{ref.removeprefix('job:')}.latent.safetensors"),)

    def _progress(self, view: dict[str, Any]) -> None:
        """The job's denoising steps as the engine's progress events (a finished job's last)."""
        if self.service.progress is None or view.get("status") not in ("running", "succeeded"):
            return
        progress = view.get("progress") or {}
        step, steps = progress.get("step"), progress.get("steps")
        if isinstance(step, int) and isinstance(steps, int) and steps > 0:
            from fluxmusic_cli.engine.pipeline import ProgressEvent

            self.service.progress(ProgressEvent("denoise", step, steps))


def _record(view: dict[str, Any], item: Item, url: str, job_id: str) -> GenerationRecord:
    """The job's record as this machine keeps it: where the server is and which job made it,
    and an edit's input as the command named it (the writer adds where the clip went)."""
    from fluxmusic_cli.metadata import GenerationRecord

    try:
        record = GenerationRecord.from_json(view.get("record") or {})
    except ValueError as exc:
        raise ServerError(
            f"The server at {url} sent the record of job {job_id} damaged: {exc}."
        ) from None
    extra = dict(record.extra)
    extra["server"] = {"url": url, "job": job_id}
    recorded = extra.get("input")
    if item.edit is not None and isinstance(recorded, dict):
        source = item.edit.source
        extra["input"] = {**recorded, "path": source.path, "latent_file": source.latent_file}
    return replace(record, extra=extra)


def _read_again(source: EditSource) -> bytes:
    """The recording's file, read again to upload it: the bytes that were checked, or refused."""
    try:
        data = Path(source.path).read_bytes()
    except OSError as exc:
        raise UsageError(f"Cannot read {source.path} again: {exc.strerror or exc}.") from None
    if hashlib.sha256(data).hexdigest() != source.sha256:
        raise UsageError(f"{source.path} changed while the command ran; run it again.")
    return data


def server_copy(api: ServerAPI, source: EditSource) -> str | None:
    """ "job:ID" when `source` is a clip the server at `api` made and keeps with the same
    latent as the sidecar beside it here (its record names the job; the latents are the same
    bytes), so an edit there starts from that latent as it does here; else None."""
    from fluxmusic_cli import latents
    from fluxmusic_cli.client.api import same_server
    from fluxmusic_cli.metadata import read_record

    if source.latent is None or source.path == "-":
        return None
    try:
        made = read_record(Path(source.path)).extra.get("server")
    except UsageError:
        return None
    if not isinstance(made, dict) or not same_server(str(made.get("url", "")), api.url):
        return None
    job_id = made.get("job")
    if not isinstance(job_id, str):
        return None
    try:
        theirs = api.latent(job_id)
        ours = latents.sidecar_path(Path(source.path)).read_bytes()
    except (FluxMusicError, OSError):
        return None
    return f"job:{job_id}" if theirs == ours else None
