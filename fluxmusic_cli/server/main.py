"""A server's life, in order: the data folder, the job store, the engine, the socket, the
announcement, serving, and the stop (no new jobs, the running one stopped at its next step)."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from fluxmusic_cli import __version__
from fluxmusic_cli.errors import UsageError
from fluxmusic_cli.server import store as st
from fluxmusic_cli.server.config import ServerConfig, network_warning

STOP_WAIT_S = 60  # how long a stopping server waits for the running job's next step


def run_server(
    config: ServerConfig,
    engine_options,
    *,
    check_downloads: Callable[[object], None],
    say: Callable[[str], None],
    log: Callable[[str], None],
    warn: Callable[[str], None],
) -> None:
    """Serve until SIGTERM or Ctrl-C. `check_downloads(engine)` fetches missing weights before
    anything is served; `say` prints a line on stdout (the first: where the server listens),
    `log` and `warn` on stderr."""
    from fluxmusic_cli.engine.pipeline import Engine
    from fluxmusic_cli.server import http
    from fluxmusic_cli.server.app import create_app
    from fluxmusic_cli.server.execute import describe
    from fluxmusic_cli.server.security import Sessions
    from fluxmusic_cli.server.service import JobService
    from fluxmusic_cli.server.worker import Worker

    with contextlib.ExitStack() as held:
        # 1. The data folder, ours alone while we run, and the token.
        held.enter_context(_hold(config.data_dir))
        config = replace(config, token=_token(config))

        # 2. The job store, after a stop: what ran is interrupted, what waited runs.
        store = st.JobStore(config.db_path)
        held.callback(store.close)
        service = JobService(store, config, engine_options=engine_options, engine_info={})
        interrupted = service.recover()
        if interrupted:
            log(f"{len(interrupted)} job(s) were running when the server stopped: interrupted.")

        # 3. The socket (port 0: a free one), then the engine, its weights on disk.
        warning = network_warning(config.host)
        if warning:
            warn(warning)
        sock = held.enter_context(http.bind(config.host, config.port))
        worker = Worker(
            service,
            lambda progress: Engine(engine_options, progress=progress),
            keep_alive=config.keep_alive,
            max_batch=config.max_batch,
        )
        engine = worker.engine()
        check_downloads(engine)
        service.engine_info = {**describe(engine), "max_batch": config.max_batch}

        # 4. Say where, then serve until a stop signal.
        port = sock.getsockname()[1]
        url = config.url(port)
        _write_server_json(config, url)
        shown = config.host if ":" not in config.host else f"[{config.host}]"
        say(f"fluxmusic serving on http://{shown}:{port}")
        say(f"token: in {config.server_json} (send it as 'Authorization: Bearer TOKEN')")
        sessions = Sessions()
        say(f"login link for a browser (works once): {url}/login?code={sessions.new_code()}")
        service.subscribe(_job_log(service, log))
        worker.start()
        try:
            http.run(create_app(service, config, sessions), sock, service.request_stop)
        finally:
            # 5. No new jobs; the running one stops at its next step (interrupted).
            service.request_stop()
            if not worker.join(STOP_WAIT_S):
                warn("the running job did not reach its next step in time; stopping anyway.")


def _hold(data_dir: Path):
    """Create the data folder (private to this user) and lock it: two servers on one job store
    would run each other's jobs."""
    from fluxmusic_cli import atomic

    if not data_dir.exists():
        with contextlib.suppress(OSError):
            data_dir.mkdir(parents=True, mode=0o700)
    atomic.make_folder(data_dir)
    handle = open(data_dir / ".lock", "a+b")  # noqa: SIM115 - held for the server's life
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks
        return handle
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise UsageError(
            f"Another fluxmusic server uses {data_dir}; stop it, or give this one another "
            "--data-dir."
        ) from None
    except OSError:
        pass  # a file system without locks: two servers are not kept apart
    return handle


def _token(config: ServerConfig) -> str:
    """--token / FLUXMUSIC_TOKEN, else the one kept in server.json, else a new one."""
    if config.token:
        return config.token
    try:
        kept = json.loads(config.server_json.read_text(encoding="utf-8")).get("token")
    except (OSError, ValueError, AttributeError):
        kept = None
    if isinstance(kept, str) and kept.strip():
        return kept
    return secrets.token_urlsafe(32)


def _write_server_json(config: ServerConfig, url: str) -> None:
    """Where a client finds the server and its token: url, pid and token, readable by this
    user alone (0600), written whole."""
    from fluxmusic_cli import atomic

    data = {"url": url, "pid": os.getpid(), "token": config.token, "version": __version__}
    with atomic.writing(config.server_json, private=True) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(data, indent=2) + "\n")


def _job_log(service, log: Callable[[str], None]):
    """One line on stderr as each job finishes."""

    def listener(job_id: str, status: str) -> None:
        if status not in st.FINAL:
            return
        row = service.find(job_id)
        if row is None:
            return
        error = f": {row.error}" if row.error and status != st.SUCCEEDED else ""
        log(f"job {job_id} ({row.command}) {status}{error}")

    return listener
