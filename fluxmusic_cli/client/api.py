"""The HTTP client of `fluxmusic serve`, over the standard library's http.client.

It speaks the server's API (`/v1/...`) and nothing more. Every answer that is not the one
asked for becomes one sentence: a server that cannot be reached, that does not take the token
(401) or the host name (421), whose queue is full (429) or that fails (5xx) is a ServerError
(exit 7); a request the server refuses (422, 413) is a UsageError carrying the server's own
sentence, the one the command line gives when it runs the same thing locally (exit 2).

Where a client finds the token: FLUXMUSIC_TOKEN, else the `server.json` a server keeps in its
data folder (the default one), when the URL there is the server asked for.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from fluxmusic_cli.errors import ServerError, UsageError

API = 1  # the API version this client speaks (GET /v1/health says the server's)
TOKEN_ENV = "FLUXMUSIC_TOKEN"
SERVER_JSON = "server.json"  # in a server's data folder: its url, pid and token (mode 0600)
FINAL = ("succeeded", "failed", "cancelled", "interrupted")
TIMEOUT_S = 30.0  # one request and its answer
STREAM_TIMEOUT_S = 60.0  # silence on an event stream (the server says something every 15 s)
TRANSFER_TIMEOUT_S = 300.0  # an upload or a download
RECONNECTS = 5  # event streams broken in a row before the job is given up on
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


def default_data_dir() -> Path:
    """The data folder `fluxmusic serve` uses without --data-dir: the platform's user data
    folder for fluxmusic, `server/` inside it."""
    from platformdirs import user_data_dir

    return Path(user_data_dir("fluxmusic", appauthor=False)) / "server"


def server_url(text: str) -> str:
    """`--server` / FLUXMUSIC_HOST as a base URL, scheme://host:port[/path] (http when no
    scheme is given); anything else is one sentence."""
    raw = text.strip()
    if "://" not in raw:
        raw = f"http://{raw}"
    parts = urlsplit(raw)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or port == -1
        or parts.query
        or parts.fragment
        or parts.username
        or parts.password
    ):
        raise UsageError(
            f"--server {text!r} is not a server address; give http://HOST:PORT, as "
            "`fluxmusic serve` prints it (e.g. http://127.0.0.1:8677)."
        )
    return urlunsplit((parts.scheme, parts.netloc.lower(), parts.path.rstrip("/"), "", ""))


def same_server(a: str, b: str) -> bool:
    """Whether two server URLs name one server (loopback names count as one)."""
    try:
        pa, pb = urlsplit(server_url(a)), urlsplit(server_url(b))
    except UsageError:
        return False

    def where(p) -> tuple:
        host = (p.hostname or "").lower()
        port = p.port or (443 if p.scheme == "https" else 80)
        return ("loopback" if host in _LOOPBACK else host, port, p.scheme, p.path)

    return where(pa) == where(pb)


def find_token(url: str, data_dir: Path | None = None) -> str | None:
    """FLUXMUSIC_TOKEN, else the token in the server.json of `data_dir` (default: the server's
    default data folder) when that file names the server at `url`; None when neither does."""
    token = os.environ.get(TOKEN_ENV, "").strip()
    if token:
        return token
    path = (data_dir if data_dir is not None else default_data_dir()) / SERVER_JSON
    try:
        kept = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(kept, dict) or not same_server(str(kept.get("url", "")), url):
        return None
    token = kept.get("token")
    return token.strip() if isinstance(token, str) and token.strip() else None


@dataclass
class Reply:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            return None

    @property
    def error(self) -> str:
        """The server's sentence (`{"error": ...}`), or "" when it gave none."""
        data = self.json()
        text = data.get("error") if isinstance(data, dict) else None
        return text.strip() if isinstance(text, str) else ""


class QueueFull(ServerError):
    """The server's queue is full (429); `retry_after` seconds is its guess of when not."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass
class ServerAPI:
    """The API of one server at `url`, with `token` (None: none was found)."""

    url: str
    token: str | None = None
    timeout: float = TIMEOUT_S
    _parts: Any = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.url = server_url(self.url)
        self._parts = urlsplit(self.url)

    # -- requests --------------------------------------------------------------------------

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        https = self._parts.scheme == "https"
        kind = http.client.HTTPSConnection if https else http.client.HTTPConnection
        return kind(self._parts.hostname, self._parts.port, timeout=timeout)

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": _agent()}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        headers.update(extra or {})
        return headers

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> Reply:
        """One request and its whole answer; a server that cannot be reached is one sentence."""
        sent = dict(headers or {})
        if json_body is not None:
            body = json.dumps(json_body).encode("utf-8")
            sent["Content-Type"] = "application/json"
        conn = self._connection(timeout or self.timeout)
        try:
            conn.request(method, self._parts.path + path, body=body, headers=self._headers(sent))
            resp = conn.getresponse()
            data = resp.read()
            return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
        except (OSError, http.client.HTTPException) as exc:
            raise self._unreachable(exc) from None
        finally:
            conn.close()

    def _unreachable(self, exc: BaseException) -> ServerError:
        if isinstance(exc, ConnectionRefusedError):
            why = "nothing listens there"
        elif isinstance(exc, (socket.timeout, TimeoutError)):
            why = "it did not answer in time"
        elif isinstance(exc, socket.gaierror):
            why = f"the host name {self._parts.hostname} is not known"
        elif isinstance(exc, (http.client.HTTPException, ConnectionError)):
            why = "the connection broke"
        else:
            why = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        return ServerError(
            f"Cannot reach the fluxmusic server at {self.url}: {why}; start it with "
            "`fluxmusic serve`, or add --local to run here."
        )

    def _checked(
        self, reply: Reply, *, ok: tuple[int, ...] = (200,), job: str | None = None
    ) -> Reply:
        """`reply` when its status is one of `ok`, else the sentence its status means."""
        if reply.status in ok:
            return reply
        said = reply.error
        if reply.status == 401:
            if not self.token:
                raise ServerError(
                    f"The server at {self.url} needs its token: set {TOKEN_ENV} to the token in "
                    f"the server's {SERVER_JSON} (in its data folder)."
                )
            raise ServerError(
                f"The server at {self.url} does not take this token ({TOKEN_ENV} or "
                f"{SERVER_JSON}); use the one in the server's {SERVER_JSON}."
            )
        if reply.status == 421:
            raise ServerError(
                f"The server at {self.url} does not answer to the name {self._parts.hostname}; "
                f"start it with --allowed-host {self._parts.hostname}, or use the address it "
                "prints."
            )
        if reply.status == 429:
            retry = _int(reply.headers.get("retry-after"), 5)
            raise QueueFull(
                f"The server at {self.url} has a full queue (--max-queue); try again in about "
                f"{retry} s.",
                retry,
            )
        if reply.status in (413, 422):
            raise UsageError(said or f"The server at {self.url} refused the request.")
        if reply.status == 404 and job is not None:
            raise ServerError(f"The server at {self.url} has no job {job} (any more).")
        if reply.status >= 500:
            detail = f": {said}" if said else ""
            raise ServerError(f"The server at {self.url} failed (HTTP {reply.status}){detail}.")
        detail = f": {said}" if said else ""
        raise ServerError(f"The server at {self.url} answered HTTP {reply.status}{detail}.")

    def _json(self, reply: Reply, what: str) -> dict[str, Any]:
        data = reply.json()
        if not isinstance(data, dict):
            raise ServerError(f"The server at {self.url} sent {what} that is not a JSON object.")
        return data

    # -- the routes ------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """GET /v1/health: refused when it is not a fluxmusic server speaking this API."""
        reply = self._checked(self.request("GET", "/v1/health"))
        data = reply.json()
        if not isinstance(data, dict) or data.get("status") != "ok" or "api" not in data:
            raise ServerError(f"{self.url} does not answer as a fluxmusic server.")
        if data["api"] != API:
            raise ServerError(
                f"The server at {self.url} speaks API {data['api']}, this fluxmusic speaks "
                f"{API}; use the same version on both sides."
            )
        return data

    def engine(self) -> dict[str, Any]:
        """GET /v1/engine: the engine options the server runs with, and its model identity."""
        data = self._json(self._checked(self.request("GET", "/v1/engine")), "its engine")
        if not isinstance(data.get("options"), dict) or not isinstance(data.get("identity"), dict):
            raise ServerError(f"The server at {self.url} did not say which engine it runs.")
        return data

    def submit(self, body: dict[str, Any]) -> str:
        """POST /v1/jobs: the new job's id. A refused job is a UsageError with its sentence."""
        reply = self._checked(self.request("POST", "/v1/jobs", json_body=body), ok=(202,))
        job_id = self._json(reply, "a job").get("id")
        if not isinstance(job_id, str):
            raise ServerError(f"The server at {self.url} queued a job without an id.")
        return job_id

    def job(self, job_id: str) -> dict[str, Any]:
        return self._json(self._checked(self.request("GET", _job(job_id)), job=job_id), "a job")

    def jobs(self) -> list[dict[str, Any]]:
        listed = self._json(self._checked(self.request("GET", "/v1/jobs")), "its jobs").get("jobs")
        return listed if isinstance(listed, list) else []

    def audio(self, job_id: str) -> bytes:
        reply = self.request("GET", f"{_job(job_id)}/audio", timeout=TRANSFER_TIMEOUT_S)
        return self._checked(reply, job=job_id).body

    def latent(self, job_id: str) -> bytes:
        reply = self.request("GET", f"{_job(job_id)}/latent", timeout=TRANSFER_TIMEOUT_S)
        return self._checked(reply, job=job_id).body

    def upload(self, data: bytes) -> str:
        """PUT /v1/uploads: the recording's id on the server."""
        reply = self.request(
            "PUT",
            "/v1/uploads",
            body=data,
            timeout=TRANSFER_TIMEOUT_S,
            headers={"Content-Type": "application/octet-stream"},
        )
        upload_id = self._json(self._checked(reply, ok=(201,)), "an upload").get("id")
        if not isinstance(upload_id, str):
            raise ServerError(f"The server at {self.url} kept an upload without an id.")
        return upload_id

    def cancel(self, job_id: str) -> None:
        """DELETE a job that has not finished: dropped when queued, stopped at its next step
        when running. A finished job is left alone (DELETE would remove its files)."""
        view = self.job(job_id)
        if view.get("status") not in FINAL:
            self._checked(self.request("DELETE", _job(job_id)), ok=(200, 202, 204), job=job_id)

    # -- following a job -------------------------------------------------------------------

    def follow(self, job_id: str, on_view: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        """Follow a job's event stream to its final status, calling `on_view` with each state
        it tells; the final view. A broken stream is resumed (Last-Event-ID) a few times."""
        last: str | None = None
        broken = 0
        while True:
            try:
                for event_id, view in self._events(job_id, last):
                    last = event_id or last
                    broken = 0
                    on_view(view)
                    if view.get("status") in FINAL:
                        return view
            except ServerError:
                if broken >= RECONNECTS:
                    raise
            # The stream ended before the final status (a restart, a proxy): the job itself.
            view = self.job(job_id)
            if view.get("status") in FINAL:
                on_view(view)
                return view
            broken += 1
            if broken > RECONNECTS:
                raise ServerError(
                    f"The server at {self.url} stopped telling how job {job_id} goes."
                )
            time.sleep(min(0.25 * 2**broken, 4.0))

    def _events(self, job_id: str, last: str | None) -> Iterator[tuple[str, dict[str, Any]]]:
        """(id, view) of each event of one connection to the job's stream, until it ends."""
        headers = {"Accept": "text/event-stream"}
        if last is not None:
            headers["Last-Event-ID"] = last
        conn = self._connection(STREAM_TIMEOUT_S)
        try:
            try:
                conn.request(
                    "GET",
                    f"{self._parts.path}{_job(job_id)}/events",
                    headers=self._headers(headers),
                )
                resp = conn.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                raise self._unreachable(exc) from None
            if resp.status == 204:  # nothing after `last`: the job is final
                return
            if resp.status != 200:
                self._checked(Reply(resp.status, {}, resp.read()), job=job_id)
            yield from _read_events(resp, self._unreachable)
        finally:
            conn.close()


def _read_events(resp, unreachable) -> Iterator[tuple[str, dict[str, Any]]]:
    """Server-sent events: `id:` and `data:` lines, an empty line ending each event."""
    event_id, data = "", []
    while True:
        try:
            raw = resp.readline()
        except (OSError, http.client.HTTPException) as exc:
            raise unreachable(exc) from None
        if not raw:
            return
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if line == "":
            if data:
                try:
                    view = json.loads("\n".join(data))
                except ValueError:
                    view = None
                if isinstance(view, dict):
                    yield event_id, view
            event_id, data = "", []
        elif line.startswith(":"):
            continue  # a keep-alive comment
        else:
            key, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if key == "id":
                event_id = value
            elif key == "data":
                data.append(value)


def _job(job_id: str) -> str:
    return f"/v1/jobs/{quote(job_id, safe='')}"


def _int(text: str | None, default: int) -> int:
    try:
        return max(1, int(str(text)))
    except ValueError:
        return default


def _agent() -> str:
    from fluxmusic_cli import __version__

    return f"fluxmusic/{__version__}"
