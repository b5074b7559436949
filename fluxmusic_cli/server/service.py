"""The job service: what the HTTP layer (and, later, any other front) asks of the server.

It knows nothing of HTTP: it takes job bodies and upload files, answers with job views and
raises one-sentence errors, and tells subscribers which job changed. The worker takes its jobs
from here and reports back here.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import os
import stat
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fluxmusic_cli.errors import FluxMusicError, UsageError
from fluxmusic_cli.server import store as st
from fluxmusic_cli.server.config import ServerConfig
from fluxmusic_cli.server.jobs import is_id, new_id, parse_job, parse_ref

Listener = Callable[[str, str], None]  # (job id, its status) after every change


class UnknownJob(FluxMusicError):
    """No job has this id (404)."""


class NoAudio(FluxMusicError):
    """The job has no file to serve (yet, or any more) (409)."""


class QueueFull(FluxMusicError):
    """As many jobs wait as --max-queue allows (429)."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Stopping(FluxMusicError):
    """The server is shutting down and takes no new jobs (503)."""


@dataclass(frozen=True)
class Deleted:
    """What DELETE did: "cancelled" (a queued job, dropped), "cancelling" (a running one,
    stopping at its next step) or "deleted" (a finished one, with its files)."""

    outcome: str
    view: dict[str, Any] | None


class JobService:
    def __init__(
        self,
        store: st.JobStore,
        config: ServerConfig,
        *,
        engine_options,
        engine_info: Mapping[str, Any],
        workers: int = 1,
    ) -> None:
        self.store = store
        self.config = config
        self.engine_options = engine_options  # EngineOptions the server was started with
        self.engine_info = dict(engine_info)
        self.workers = workers
        self.stopping = False  # set from a signal handler: a plain flag, read by polling
        self.loaded = False  # whether the worker holds the models (kept warm)
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()
        self._work = threading.Condition()
        self._cancel: set[str] = set()
        self._durations: collections.deque[float] = collections.deque(maxlen=20)

    # -- starting and stopping ---------------------------------------------------------------

    def recover(self) -> list[str]:
        """After a stop (even kill -9): running jobs become interrupted and lose any file they
        left; temporary files of dead writers go. Returns the interrupted ids."""
        from fluxmusic_cli import atomic

        for folder in (self.config.uploads_dir, self.config.outputs_dir):
            atomic.make_folder(folder)
            atomic.clean_leftovers(folder)
        rows = self.store.recover()
        for row in rows:
            self._remove_files(row.id)
        self._remove_orphan_uploads()
        return [r.id for r in rows]

    def _remove_orphan_uploads(self) -> None:
        """Upload files the store does not list (a kill between keeping one and listing it)."""
        with contextlib.suppress(OSError):
            for entry in os.scandir(self.config.uploads_dir):
                if is_id(entry.name) and self.store.upload(entry.name) is None:
                    with contextlib.suppress(OSError):
                        os.unlink(entry.path)

    def request_stop(self) -> None:
        """Take no more jobs; the running one stops at its next step. Only sets flags, so a
        signal handler may call it."""
        self.stopping = True

    # -- jobs ----------------------------------------------------------------------------------

    def defaults(self) -> dict[str, Any]:
        """The server's values of the options a job may set for itself."""
        return {"encoders": self.engine_options.encoders}

    def submit(self, body: Any) -> dict[str, Any]:
        """Check a job body as the command line would and queue it; its view (queued, with its
        position). Raises UsageError, QueueFull or Stopping."""
        from fluxmusic_cli.server.execute import prepare

        if self.stopping:
            raise Stopping("The server is stopping and takes no new jobs.")
        limit = self.config.max_queue + self.workers
        if self.store.unfinished() >= limit:  # before reading an edit's input for nothing
            raise self._full()
        job = parse_job(body, self.defaults())
        job_id = new_id()
        prepared = prepare(job_id, job, self.engine_options, self.resolve_input)
        row = self.store.add(job_id, job.command, prepared.job.to_json(), limit=limit)
        if row is None:
            raise self._full()
        self._changed(row.id, row.status)
        with self._work:
            self._work.notify_all()
        return row.view(self.store.position(row))

    def _full(self) -> QueueFull:
        return QueueFull(
            f"{self.config.max_queue} jobs wait already (--max-queue); try again later.",
            retry_after=self.retry_after(),
        )

    def retry_after(self) -> int:
        """Seconds until a place in the queue is likely free: a recent job's duration."""
        if not self._durations:
            return 5
        return max(1, round(sum(self._durations) / len(self._durations)))

    def jobs(self) -> list[dict[str, Any]]:
        return [self.view(row) for row in self.store.jobs()]

    def find(self, job_id: str) -> st.JobRow | None:
        return self.store.get(job_id) if is_id(job_id) else None

    def row(self, job_id: str) -> st.JobRow:
        row = self.find(job_id)
        if row is None:
            raise UnknownJob(f"No job {job_id!r} on this server.")
        return row

    def view(self, row: st.JobRow) -> dict[str, Any]:
        """A job as the API shows it (with its place in the queue while it waits)."""
        return row.view(self.store.position(row))

    def job(self, job_id: str) -> dict[str, Any]:
        return self.view(self.row(job_id))

    def delete(self, job_id: str) -> Deleted:
        """A queued job is dropped (cancelled), a running one stops at its next step, a
        finished one is deleted with its files."""
        row = self.row(job_id)
        if row.status == st.QUEUED and self.store.finish(
            job_id, st.CANCELLED, error="Cancelled before it ran."
        ):
            self._changed(job_id, st.CANCELLED)
            return Deleted("cancelled", self.job(job_id))
        row = self.row(job_id)
        if row.status == st.RUNNING:
            with self._lock:
                self._cancel.add(job_id)
            return Deleted("cancelling", self.job(job_id))
        gone = self.store.delete(job_id)
        if gone is None:  # it changed under us; say what it is now
            return Deleted("cancelling", self.job(job_id))
        self._remove_files(job_id)
        self._changed(job_id, "deleted")
        return Deleted("deleted", None)

    def audio(self, job_id: str) -> tuple[Path, str]:
        """(file, format) of a succeeded job's clip."""
        row = self.row(job_id)
        if row.status != st.SUCCEEDED or not row.output:
            raise NoAudio(f"Job {job_id} has no audio: it is {row.status}.")
        return self._own_file(self.config.outputs_dir / row.output, job_id), row.request["format"]

    def latent(self, job_id: str) -> Path:
        """The exact final latent of a succeeded job made with save_latent."""
        from fluxmusic_cli import latents

        audio, _ = self.audio(job_id)
        path = latents.sidecar_path(audio)
        if not (self.row(job_id).record or {}).get("latent_file"):
            raise NoAudio(f"Job {job_id} kept no latent (submit it with save_latent).")
        return self._own_file(path, job_id)

    def spectrogram(self, job_id: str) -> Path:
        """The PNG of a succeeded job's mel spectrogram (drawn the first time, then kept)."""
        return self._own_file(self._pictures(job_id).spectrogram, job_id)

    def peaks(self, job_id: str) -> Path:
        """The JSON of a succeeded job's waveform peaks and duration (drawn once, then kept)."""
        return self._own_file(self._pictures(job_id).peaks, job_id)

    def _pictures(self, job_id: str):
        from fluxmusic_cli.server import pictures

        audio, _ = self.audio(job_id)
        made = pictures.ensure(audio)
        if self.find(job_id) is None:  # deleted while they were drawn: they go too
            self._remove_files(job_id)
            raise UnknownJob(f"No job {job_id!r} on this server.")
        return made

    @staticmethod
    def _own_file(path: Path, job_id: str) -> Path:
        """A file the server wrote, refused when it was replaced by a link or removed."""
        try:
            info = os.lstat(path)
        except OSError:
            raise NoAudio(f"Job {job_id}'s file is gone from the server.") from None
        if not stat.S_ISREG(info.st_mode):
            raise NoAudio(f"Job {job_id}'s file is not a plain file any more; it is not served.")
        return path

    def _remove_files(self, job_id: str) -> None:
        folder = self.config.outputs_dir
        with contextlib.suppress(OSError):
            for entry in os.scandir(folder):
                if entry.name.split(".", 1)[0] == job_id:
                    with contextlib.suppress(OSError):
                        os.unlink(entry.path)

    # -- inputs and uploads ---------------------------------------------------------------------

    def resolve_input(self, ref: str):
        """An edit's "upload:ID" or "job:ID" as the file the server keeps for it."""
        from fluxmusic_cli.server.execute import InputAudio

        kind, ref_id = parse_ref(ref, "input")
        if kind == "job":
            row = self.store.get(ref_id)
            if row is None:
                raise UsageError(f"input job:{ref_id} is not a job on this server.")
            if row.status != st.SUCCEEDED:
                raise UsageError(f"input job:{ref_id} has no audio: it is {row.status}.")
            try:
                path = self._own_file(self.config.outputs_dir / row.output, ref_id)
            except NoAudio as exc:
                raise UsageError(f"input job:{ref_id}: {exc.message}") from None
            return InputAudio(ref, path=path, record=row.record)
        upload = self.store.upload(ref_id)
        if upload is None:
            raise UsageError(f"input upload:{ref_id} is not an upload on this server.")
        data = self._upload_bytes(ref_id, upload)
        return InputAudio(ref, data=data)

    def _upload_bytes(self, upload_id: str, upload: st.UploadRow) -> bytes:
        """An upload's bytes, read without following links, checked against what was kept."""
        path = self.config.uploads_dir / upload_id
        changed = UsageError(
            f"upload:{upload_id} is not the file that was uploaded any more; upload it again."
        )
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            raise changed from None
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                raise changed
            data = fh.read(upload.bytes + 1)
        if len(data) != upload.bytes or hashlib.sha256(data).hexdigest() != upload.sha256:
            raise changed
        return data

    def add_upload(self, tmp: Path) -> str:
        """Keep an uploaded file (its temporary copy) when it reads as audio; its id. Raises
        UsageError (and keeps nothing) when it does not."""
        from fluxmusic_cli.engine.audio_in import read_recording

        try:
            data = tmp.read_bytes()
            read_recording("the upload", data)
            upload_id = new_id()
            os.replace(tmp, self.config.uploads_dir / upload_id)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self.store.add_upload(upload_id, len(data), hashlib.sha256(data).hexdigest())
        return upload_id

    # -- events ----------------------------------------------------------------------------------

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call `listener(job_id, status)` after every change of any job (from any thread; keep
        it short); returns the function that unsubscribes."""
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock, contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return unsubscribe

    def _changed(self, job_id: str, status: str) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            with contextlib.suppress(Exception):  # a listener's trouble is not the job's
                listener(job_id, status)

    # -- the worker's side --------------------------------------------------------------------

    def wait_for_work(self, timeout: float) -> None:
        with self._work:
            if not self.store.queued(1):
                self._work.wait(timeout)

    def queued(self, limit: int) -> list[st.JobRow]:
        return self.store.queued(limit)

    def prepare(self, row: st.JobRow):
        """A stored job parsed and checked again, ready for the engine (the same checks as at
        submit; an input may have gone since)."""
        from fluxmusic_cli.server.execute import prepare

        job = parse_job(row.request, self.defaults())
        return prepare(row.id, job, self.engine_options, self.resolve_input)

    def start(self, job_ids: list[str]) -> list[str]:
        started = self.store.start(job_ids)
        for job_id in started:
            self._changed(job_id, st.RUNNING)
        return started

    def progress(self, job_ids: list[str], step: int, steps: int) -> None:
        self.store.progress(job_ids, step, steps)
        for job_id in job_ids:
            self._changed(job_id, st.RUNNING)

    def cancel_requested(self, job_id: str) -> bool:
        return job_id in self._cancel

    def finish(self, job_id: str, status: str, **fields: Any) -> None:
        row = self.store.get(job_id)
        if self.store.finish(job_id, status, **fields):
            if row is not None and row.started and status == st.SUCCEEDED:
                self._durations.append(_seconds_since(row.started))
            self._changed(job_id, status)
        with self._lock:
            self._cancel.discard(job_id)

    def requeue(self, job_ids: list[str]) -> None:
        self.store.requeue(job_ids)
        for job_id in job_ids:
            self._changed(job_id, st.QUEUED)
        with self._work:
            self._work.notify_all()

    def outputs_path(self, job_id: str, fmt: str) -> Path:
        return self.config.outputs_dir / f"{job_id}.{fmt}"


def _seconds_since(iso: str) -> float:
    from datetime import datetime, timezone

    started = datetime.fromisoformat(iso)
    return max(0.0, (datetime.now(timezone.utc) - started).total_seconds())
