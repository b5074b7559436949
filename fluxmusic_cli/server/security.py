"""The checks every request passes before a route sees it, safe by default.

1. Host: the Host header must name the bound address, `localhost`, `127.0.0.1` or an
   `--allowed-host`, on every route and every bind address; anything else is a DNS rebinding
   attempt (421).
2. CORS: none at all unless `--cors-origin` names the origin (never `*`); then that origin, and
   only it, is answered (preflights included).
3. Cross-site: a state-changing request (POST, PUT, DELETE, PATCH) whose `Origin` is another
   site, or whose `Sec-Fetch-Site` says it came from one, is refused (403), unless its origin
   is a `--cors-origin`.
4. Who: `Authorization: Bearer TOKEN` (compared in constant time), or the session cookie a
   one-time login link sets; else 401. Only `/v1/health`, the login link and the page's own
   files (`/` and its scripts and styles, which hold no data) need neither.
"""

from __future__ import annotations

import hmac
import json
import secrets
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fluxmusic_cli.server.config import ServerConfig
from fluxmusic_cli.server.page import PATHS as PAGE_PATHS

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

COOKIE = "fluxmusic_session"
OPEN_PATHS = ("/v1/health", "/login", *PAGE_PATHS)
STATE_CHANGING = ("POST", "PUT", "DELETE", "PATCH")
CORS_METHODS = "GET, POST, PUT, DELETE"
CORS_HEADERS = "Authorization, Content-Type, Last-Event-ID, Range"
CORS_EXPOSED = "Retry-After, Content-Range, Accept-Ranges, Content-Length, Content-Disposition"


class Sessions:
    """One-time login codes and the sessions they open (in memory: a restart logs out)."""

    def __init__(self) -> None:
        self._codes: set[str] = set()
        self._sessions: set[str] = set()
        self._lock = threading.Lock()

    def new_code(self) -> str:
        code = secrets.token_urlsafe(24)
        with self._lock:
            self._codes.add(code)
        return code

    def redeem(self, code: str) -> str | None:
        """A new session for an unused code (which is used up), else None."""
        with self._lock:
            match = next((c for c in self._codes if hmac.compare_digest(c, code)), None)
            if match is None:
                return None
            self._codes.discard(match)
            session = secrets.token_urlsafe(32)
            self._sessions.add(session)
            return session

    def valid(self, session: str) -> bool:
        with self._lock:
            return any(hmac.compare_digest(s, session) for s in self._sessions)


def host_name(header: str | None) -> str | None:
    """The host a Host header names, without its port ("[::1]:8677" -> "::1")."""
    if not header:
        return None
    value = header.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        return value[1:end]
    if value.count(":") == 1:
        value, _, port = value.partition(":")
        if not port.isdigit():
            return None
    return value


class Guard:
    """ASGI middleware: the checks above, in that order, then the app."""

    def __init__(self, app: ASGIApp, config: ServerConfig, sessions: Sessions) -> None:
        self.app = app
        self.config = config
        self.sessions = sessions
        self._token = config.token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        host = headers.get("host")
        if host_name(host) not in self.config.host_names:
            await _refuse(
                send,
                421,
                "This server does not answer to that Host; name it by "
                "127.0.0.1, localhost or a host given with --allowed-host.",
            )
            return
        origin = headers.get("origin")
        cors = origin is not None and origin.lower() in self.config.cors_origins
        method = scope["method"]
        if cors and method == "OPTIONS" and "access-control-request-method" in headers:
            await _preflight(send, origin)
            return
        if method in STATE_CHANGING and not cors and _cross_site(headers, origin, host):
            await _refuse(
                send,
                403,
                "Cross-site requests may not change anything here; "
                "start the server with --cors-origin to allow an origin.",
            )
            return
        if scope["path"] not in OPEN_PATHS and not self._authorised(headers):
            await _refuse(
                send,
                401,
                "Give the server's token as 'Authorization: Bearer TOKEN' "
                "(it is in DATA_DIR/server.json).",
                {"www-authenticate": "Bearer"},
            )
            return
        if cors:
            send = _with_cors(send, origin)
        await self.app(scope, receive, send)

    def _authorised(self, headers: dict[str, str]) -> bool:
        auth = headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token:
            return hmac.compare_digest(token.strip().encode(), self._token)
        session = _cookie(headers.get("cookie", ""), COOKIE)
        return session is not None and self.sessions.valid(session)


def _cross_site(headers: dict[str, str], origin: str | None, host: str | None) -> bool:
    """Whether a browser says the request comes from another site: Sec-Fetch-Site, or an
    Origin whose host and port are not the Host (http, or https behind a TLS proxy)."""
    fetch_site = headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site.lower() not in ("same-origin", "none"):
        return True
    if origin is None:
        return False
    scheme, _, netloc = origin.lower().partition("://")
    return scheme not in ("http", "https") or netloc != (host or "").lower()


def _headers(scope: Scope) -> dict[str, str]:
    """Request headers by lower-case name (a repeated header: its first value)."""
    out: dict[str, str] = {}
    for name, value in scope.get("headers", []):
        out.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
    return out


def _cookie(header: str, name: str) -> str | None:
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name and value:
            return value
    return None


async def _refuse(send: Send, status: int, message: str, extra: dict[str, str] | None = None):
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.encode(), v.encode()) for k, v in (extra or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _preflight(send: Send, origin: str) -> None:
    headers = [
        (b"access-control-allow-origin", origin.encode("latin-1")),
        (b"access-control-allow-methods", CORS_METHODS.encode()),
        (b"access-control-allow-headers", CORS_HEADERS.encode()),
        (b"access-control-max-age", b"600"),
        (b"vary", b"Origin"),
        (b"content-length", b"0"),
    ]
    await send({"type": "http.response.start", "status": 204, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


def _with_cors(send: Send, origin: str) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = dict(message)
            message["headers"] = [
                *message.get("headers", []),
                (b"access-control-allow-origin", origin.encode("latin-1")),
                (b"access-control-expose-headers", CORS_EXPOSED.encode()),
                (b"vary", b"Origin"),
            ]
        await send(message)

    return wrapped
