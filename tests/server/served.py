"""A real `fluxmusic serve` process on the tiny bundle (127.0.0.1, port 0), and a small HTTP
client for it that sets any header (Host, Origin) the tests need. Every wait is bounded."""

from __future__ import annotations

import http.client
import json
import os
import queue
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import soundfile as sf
from installed import FLUXMUSIC

START_S = 180  # a cold start imports torch and builds the engine
JOB_S = 180
FINAL = ("succeeded", "failed", "cancelled", "interrupted")
ENGINE = ["--device", "cpu", "--dtype", "fp32", "--threads", "2"]


def server_env(home: Path) -> dict[str, str]:
    """The test process's environment with its own caches (the module-scoped server starts
    before any test's isolated folders exist), offline, two threads."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "FLUXMUSIC_TOKEN",
                                                             "FLUXMUSIC_DEBUG")}  # fmt: skip
    env.update(
        FLUXMUSIC_CACHE=str(home / "fluxmusic-cache"), HF_HOME=str(home / "hf-home"),
        HF_HUB_CACHE=str(home / "hf-home" / "hub"), HF_HUB_OFFLINE="1",
        HF_HUB_DISABLE_TELEMETRY="1", XDG_CONFIG_HOME=str(home / "config"), NO_COLOR="1",
        OMP_NUM_THREADS="2",
    )  # fmt: skip
    return env


@dataclass
class Reply:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Client:
    url: str
    token: str | None = None
    timeout: float = 60.0

    @property
    def netloc(self) -> str:
        return urlsplit(self.url).netloc

    def connection(self) -> http.client.HTTPConnection:
        parts = urlsplit(self.url)
        return http.client.HTTPConnection(parts.hostname, parts.port, timeout=self.timeout)

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        token: str | None = None,
    ) -> Reply:
        sent = dict(headers or {})
        auth = token if token is not None else self.token
        if auth and not any(k.lower() == "authorization" for k in sent):
            sent["Authorization"] = f"Bearer {auth}"
        if json_body is not None:
            body = json.dumps(json_body).encode()
            sent.setdefault("Content-Type", "application/json")
        conn = self.connection()
        try:
            conn.request(method, path, body=body, headers=sent)
            resp = conn.getresponse()
            data = resp.read()
            return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
        finally:
            conn.close()

    def get(self, path: str, **kw) -> Reply:
        return self.request("GET", path, **kw)

    def submit(self, **fields) -> str:
        reply = self.request("POST", "/v1/jobs", json_body=fields)
        assert reply.status == 202, reply.body
        return reply.json()["id"]

    def job(self, job_id: str) -> dict[str, Any]:
        reply = self.get(f"/v1/jobs/{job_id}")
        assert reply.status == 200, reply.body
        return reply.json()

    def wait(self, job_id: str, until=FINAL, timeout: float = JOB_S) -> dict[str, Any]:
        """Poll a job until its status is one of `until` (bounded in time)."""
        deadline = time.monotonic() + timeout
        while True:
            view = self.job(job_id)
            if view["status"] in until:
                return view
            assert time.monotonic() < deadline, f"job {job_id} still {view['status']}"
            time.sleep(0.02)

    def wait_for_step(self, job_id: str, step: int, timeout: float = JOB_S) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            view = self.job(job_id)
            if view["progress"]["step"] >= step or view["status"] in FINAL:
                return view
            assert time.monotonic() < deadline, f"job {job_id} never reached step {step}"
            time.sleep(0.01)

    def audio(self, job_id: str) -> bytes:
        reply = self.get(f"/v1/jobs/{job_id}/audio")
        assert reply.status == 200, reply.body
        return reply.body

    def events(self, job_id: str, last_id: str | None = None, stop_after: int | None = None):
        """(status, [(id, data), ...]) of a job's event stream, read to its end (or until
        `stop_after` events, then the connection is dropped)."""
        headers = {"Authorization": f"Bearer {self.token}"}
        if last_id is not None:
            headers["Last-Event-ID"] = last_id
        conn = self.connection()
        out: list[tuple[str, dict]] = []
        try:
            conn.request("GET", f"/v1/jobs/{job_id}/events", headers=headers)
            resp = conn.getresponse()
            if resp.status != 200:
                resp.read()
                return resp.status, out
            assert resp.getheader("content-type", "").startswith("text/event-stream")
            event: dict[str, str] = {}
            for _ in range(100_000):
                line = resp.fp.readline()
                if not line:
                    break
                text = line.decode().rstrip("\r\n")
                if text == "":
                    if "data" in event:
                        out.append((event.get("id", ""), json.loads(event["data"])))
                        if stop_after is not None and len(out) >= stop_after:
                            break
                    event = {}
                elif not text.startswith(":"):
                    key, _, value = text.partition(": ")
                    event[key] = value
            return resp.status, out
        finally:
            conn.close()


@dataclass
class Server:
    proc: subprocess.Popen
    data_dir: Path
    url: str
    token: str
    lines: list[str]
    stderr_path: Path
    home: Path
    _reader: threading.Thread | None = field(default=None, repr=False)

    def client(self, token: str | None = "own") -> Client:
        return Client(self.url, self.token if token == "own" else token)

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 120) -> int:
        """Send `sig` and wait; the exit status (killed if it does not go in time)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        return self.proc.returncode


def start(
    tiny_bundle, data_dir: Path, home: Path, *extra: str, env: dict[str, str] | None = None
) -> Server:
    """Start `fluxmusic serve --port 0` and wait for its first line (bounded)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    home.mkdir(parents=True, exist_ok=True)
    stderr_path = data_dir.parent / f"{data_dir.name}-stderr-{time.monotonic_ns()}.txt"
    cmd = [str(FLUXMUSIC), "serve", "--host", "127.0.0.1", "--port", "0", "--data-dir",
           str(data_dir), *tiny_bundle.cli_args(), *ENGINE, *extra]  # fmt: skip
    err = open(stderr_path, "wb")  # noqa: SIM115 - the process owns it while it runs
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=err, env={**server_env(home), **(env or {})},
        cwd=data_dir.parent,
    )  # fmt: skip
    err.close()
    lines: list[str] = []
    got: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            lines.append(line)
            got.put(line)
        got.put(None)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        try:
            first = got.get(timeout=START_S)
        except queue.Empty:
            raise AssertionError(
                f"no first line in {START_S} s: {stderr_path.read_text()}"
            ) from None
        if first is None:
            proc.wait(timeout=30)
            raise AssertionError(f"serve exited {proc.returncode}: {stderr_path.read_text()}")
        for _ in range(2):  # the token and login lines follow at once
            got.get(timeout=30)
        url = first.removeprefix("fluxmusic serving on ")
        token = json.loads((data_dir / "server.json").read_text())["token"]
    except BaseException:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        raise
    return Server(proc, data_dir, url, token, lines, stderr_path, home, reader)


def stopped(server: Server) -> None:
    """Teardown: SIGTERM, then SIGKILL if it lingers."""
    server.stop(signal.SIGTERM, timeout=60)


def recording(path, seconds: float = 1.5, rate: int = 22050) -> bytes:
    """A stereo recording that is not the model's own (another rate, two channels)."""
    t = np.arange(int(seconds * rate)) / rate
    left = 0.3 * np.sin(2 * np.pi * 196 * t)
    right = 0.2 * np.sin(2 * np.pi * 293.7 * t)
    sf.write(path, np.stack([left, right], axis=1).astype(np.float32), rate)
    return path.read_bytes()


def samples(data_or_path) -> np.ndarray:
    import io

    source = io.BytesIO(data_or_path) if isinstance(data_or_path, bytes) else data_or_path
    data, _ = sf.read(source, dtype="int16")
    return data


def run_in_process(args: list[str], env: dict[str, str]) -> int:
    """The console entry point in this process with `env` set (for module-scoped fixtures,
    where the `run_cli` fixture is not available); its exit status."""
    import sys

    import pytest

    from fluxmusic_cli.cli.app import main

    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        mp.setattr(sys, "argv", ["fluxmusic", *args])
        try:
            main()
        except SystemExit as exc:
            return exc.code or 0
    return 0
