"""The worker: one thread per device that runs queued jobs in order on one engine.

The models load on the first job and stay loaded (warm) until the worker has been idle for
`--keep-alive` (0: as soon as the queue is empty; -1: never); the next job loads them again.
A job is cancelled at its next denoising step: the engine's progress callback raises
`Cancelled` when the job was asked to stop (DELETE) or the server is stopping, so the engine
itself knows nothing of jobs. A job that fails (bad audio, out of memory after the run loop's
halving, a full disk) fails with its sentence, and the worker goes on.
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from fluxmusic_cli.errors import Cancelled, FluxMusicError, OutOfMemoryError, first_line
from fluxmusic_cli.server import store as st
from fluxmusic_cli.server.execute import Outcome, Prepared, run_jobs

POLL_S = 0.25  # how often an idle worker looks at the stop flag
LOOK_AHEAD = 4  # queued jobs looked at per place in a forward batch, for --max-batch


class Worker:
    def __init__(
        self,
        service,
        build_engine: Callable[[Callable], object],
        *,
        keep_alive: float | None,
        max_batch: int = 1,
    ) -> None:
        self.service = service
        self._build_engine = build_engine
        self.keep_alive = keep_alive
        self.max_batch = max_batch
        self._engine = None
        self._running: list[str] = []
        self._thread = threading.Thread(target=self._loop, name="fluxmusic-worker", daemon=True)

    def engine(self):
        """The engine, built when needed (after a release, a fresh one: its caches go too)."""
        if self._engine is None:
            self._engine = self._build_engine(self.on_progress)
        return self._engine

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the worker to stop (after `service.request_stop()`); whether it did."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # -- the engine's progress callback ----------------------------------------------------------

    def on_progress(self, event) -> None:
        running = self._running
        if not running:
            return
        if event.stage == "denoise":
            self.service.progress(running, event.completed, event.total)
        if event.stage in ("denoise", "decode") and (
            self.service.stopping or any(self.service.cancel_requested(j) for j in running)
        ):
            raise Cancelled("The job was cancelled.")

    # -- the loop ----------------------------------------------------------------------------------

    def _loop(self) -> None:
        # torch gives this thread the engine's CPU thread count itself (checked: the samples
        # equal the command line's, which runs on the main thread).
        idle_since = time.monotonic()
        try:
            while not self.service.stopping:
                group = self._take()
                if group:
                    self._run(group)
                    idle_since = time.monotonic()
                    if self.keep_alive == 0 and not self.service.queued(1):
                        self._release()
                    continue
                idle = time.monotonic() - idle_since
                if self.service.loaded and self.keep_alive is not None and idle >= self.keep_alive:
                    self._release()
                wait = POLL_S
                if self.service.loaded and self.keep_alive is not None:
                    wait = min(wait, max(0.01, self.keep_alive - idle))
                self.service.wait_for_work(wait)
        finally:
            self._release()

    def _take(self) -> list[Prepared]:
        """The next job and, with --max-batch, queued generate jobs that can share its forward
        pass; marked running. A job that cannot run any more (its input gone) fails here."""
        rows = self.service.queued(1 if self.max_batch == 1 else self.max_batch * LOOK_AHEAD)
        if not rows:
            return []
        try:
            first = self.service.prepare(rows[0])
        except FluxMusicError as exc:
            self.service.finish(rows[0].id, st.FAILED, error=exc.message)
            return []
        group, key = [first], first.batch_key()
        for row in rows[1:] if key is not None else ():
            if len(group) == self.max_batch:
                break
            if row.command != "generate":
                continue
            try:
                prepared = self.service.prepare(row)
            except FluxMusicError:
                continue  # it fails with its sentence when its turn comes
            if prepared.batch_key() == key:
                group.append(prepared)
        started = set(self.service.start([p.job_id for p in group]))
        return [p for p in group if p.job_id in started]

    def _run(self, group: list[Prepared]) -> None:
        ids = [p.job_id for p in group]
        targets = [self.service.outputs_path(p.job_id, p.job.format) for p in group]
        finished: set[str] = set()

        def on_outcome(k: int, outcome: Outcome) -> None:
            job_id = ids[k]
            finished.add(job_id)
            if outcome.error is not None:
                self.service.finish(
                    job_id, st.FAILED, error=outcome.error, warnings=outcome.warnings
                )
                return
            record = {**outcome.record, "output": f"job:{job_id}"}  # the path is the server's
            self.service.finish(
                job_id,
                st.SUCCEEDED,
                record=record,
                output=Path(targets[k]).name,
                warnings=outcome.warnings,
            )

        def fail_rest(status: str, error: str) -> None:
            for job_id in ids:
                if job_id not in finished:
                    self.service.finish(job_id, status, error=error)

        try:
            engine = self.engine()
            self._running = ids
            self.service.loaded = True
            run_jobs(engine, group, targets, on_outcome)
        except Cancelled:
            self._cancelled([i for i in ids if i not in finished])
        except OutOfMemoryError as exc:
            fail_rest(st.FAILED, exc.message)
            self._release()  # start the next job from empty memory
        except FluxMusicError as exc:
            fail_rest(st.FAILED, exc.message)
        except Exception as exc:  # noqa: BLE001 - one job's bug must not stop the server
            traceback.print_exc(file=sys.stderr)
            fail_rest(
                st.FAILED,
                f"The job failed on an internal error ({type(exc).__name__}: {first_line(exc)}); "
                "the server's log has the details.",
            )
        finally:
            self._running = []
            for job_id in ids:  # a run that ended without a word about a job
                row = self.service.find(job_id)
                if row is not None and row.status == st.RUNNING:
                    self.service.finish(job_id, st.FAILED, error="The job ended without its clip.")

    def _cancelled(self, ids: list[str]) -> None:
        """After a stopped run: the jobs asked to stop are cancelled, the server's stop
        interrupts them all, and the rest of a forward batch goes back to the queue."""
        if self.service.stopping:
            for job_id in ids:
                self.service.finish(job_id, st.INTERRUPTED, error=st.INTERRUPTED_ERROR)
            return
        asked = [j for j in ids if self.service.cancel_requested(j)]
        for job_id in asked:
            self.service.finish(job_id, st.CANCELLED, error="Cancelled while it ran.")
        self.service.requeue([j for j in ids if j not in asked])

    def _release(self) -> None:
        """Let the models go (they load again on the next job)."""
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.close()
        self.service.loaded = False
