"""What `fluxmusic serve` was started with, checked once and fixed for the server's life."""

from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from fluxmusic_cli.errors import UsageError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8677
DEFAULT_MAX_QUEUE = 16
DEFAULT_MAX_UPLOAD_MB = 100
DEFAULT_KEEP_ALIVE = "30m"
JSON_LIMIT = 1024 * 1024  # bytes of a JSON request body
# Host names every server answers to, whatever it is bound to.
LOOPBACK_NAMES = ("localhost", "127.0.0.1")

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h)")


def parse_duration(text: str) -> float | None:
    """`--keep-alive`: seconds from "30s", "5m", "1h", "1h30m", "90" (seconds), "0"; None
    (never) from "-1" or any negative number."""
    value = text.strip().lower()
    try:
        number = float(value)
    except ValueError:
        number = None
    if number is not None:
        if not math.isfinite(number):
            raise UsageError(f"--keep-alive must be a finite duration, got {text!r}.")
        return None if number < 0 else number
    parts = _PART.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value:
        raise UsageError(
            f"--keep-alive takes a duration like 30s, 5m, 1h or 1h30m, 0 (release after each "
            f"job) or -1 (never); got {text!r}."
        )
    return sum(float(n) * _UNITS[u] for n, u in parts)


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps the server on this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_origin(origin: str) -> str:
    """A `--cors-origin`: scheme://host[:port], nothing more, never `*`."""
    if origin.strip() == "*":
        raise UsageError(
            "--cors-origin * would let every web page use the API; name each origin instead "
            "(e.g. http://localhost:3000)."
        )
    parts = urlsplit(origin)
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or parts.username
    ):
        raise UsageError(
            f"--cors-origin {origin!r} is not an origin; give scheme://host[:port], e.g. "
            "http://localhost:3000."
        )
    return origin.rstrip("/").lower()


def check_host_name(name: str) -> str:
    """An `--allowed-host`: a host name or address as a Host header carries it, without port."""
    value = name.strip().lower()
    if not value or any(c in value for c in "/@ \t") or value.count(":") == 1:
        raise UsageError(
            f"--allowed-host {name!r} is not a host name; give a name or address without a "
            "port or scheme (e.g. studio.local or 192.168.1.20)."
        )
    return value.strip("[]")


def check_token(token: str | None) -> str:
    """A --token / FLUXMUSIC_TOKEN as a Bearer header carries it ("" when none was given)."""
    if token is None:
        return ""
    if not token or any(c.isspace() or not c.isprintable() for c in token):
        raise UsageError("--token must be printable, without spaces or line breaks.")
    return token


@dataclass(frozen=True)
class ServerConfig:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    data_dir: Path = Path(".")
    token: str = ""
    max_queue: int = DEFAULT_MAX_QUEUE
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_MB * 1024 * 1024
    keep_alive: float | None = 30 * 60.0  # seconds idle before the models are released; None: never
    allowed_hosts: tuple[str, ...] = ()
    cors_origins: tuple[str, ...] = ()
    max_batch: int = 1
    json_limit: int = JSON_LIMIT

    @property
    def db_path(self) -> Path:
        return self.data_dir / "jobs.sqlite3"

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"

    @property
    def outputs_dir(self) -> Path:
        return self.data_dir / "outputs"

    @property
    def server_json(self) -> Path:
        from fluxmusic_cli.client.api import SERVER_JSON

        return self.data_dir / SERVER_JSON

    @property
    def host_names(self) -> frozenset[str]:
        """What a Host header may name (without its port): the bound address, the loopback
        names and every --allowed-host; anything else is a DNS rebinding attempt (421)."""
        return frozenset({self.host.lower().strip("[]"), *LOOPBACK_NAMES, *self.allowed_hosts})

    def url(self, port: int) -> str:
        """The address a client on this machine reaches the server at (a wildcard bind is
        reached through the loopback address)."""
        host = self.host
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"http://{host}:{port}"


def network_warning(host: str) -> str | None:
    """What binding beyond loopback means, said once at start; None on loopback."""
    if is_loopback(host):
        return None
    return (
        f"--host {host} makes the API reachable from the network: anyone who can reach this "
        "machine and has the token can run jobs and read their audio. Keep the token secret, "
        "and name the host clients use with --allowed-host."
    )


def default_data_dir() -> Path:
    """The platform's user data folder for fluxmusic, `server/` inside it (where clients look
    for the token, so the one definition is theirs)."""
    from fluxmusic_cli.client.api import default_data_dir as where

    return where()
