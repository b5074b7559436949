"""A tiny stand-in for the Hugging Face hub's HTTP endpoint, for download tests.

It serves what huggingface_hub asks for: `HEAD/GET /{repo}/resolve/{revision}/{file}` with
ETag, X-Repo-Commit, Content-Length and Range support; `/api/models/{repo}[/revision/{rev}]`
(file list with sizes, gating) and `/api/models/{repo}/auth-check`. Errors carry the
`X-Error-Code` headers the real hub sends (GatedRepo, RepoNotFound, EntryNotFound,
RevisionNotFound). Every request is recorded so tests can check what went over the wire.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit


@dataclass
class FakeRepo:
    repo_id: str
    files: dict[str, bytes]
    gated: bool = False
    commit: str = ""
    advertised: dict[str, int] = field(default_factory=dict)  # sizes the file list claims

    def __post_init__(self) -> None:
        if not self.commit:
            digest = hashlib.sha1(self.repo_id.encode())
            for name in sorted(self.files):
                digest.update(name.encode() + self.files[name])
            self.commit = digest.hexdigest()

    def etag(self, name: str) -> str:
        return hashlib.sha256(self.files[name]).hexdigest()


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names


@dataclass
class FakeHub:
    repos: dict[str, FakeRepo] = field(default_factory=dict)
    tokens: set[str] = field(default_factory=set)
    requests: list[Seen] = field(default_factory=list)
    # file name -> bytes to send before cutting the connection, on the next full GET only
    drop_after: dict[str, int] = field(default_factory=dict)

    def add(
        self,
        repo_id: str,
        files: dict[str, bytes],
        *,
        gated: bool = False,
        advertised: dict[str, int] | None = None,
    ) -> FakeRepo:
        repo = FakeRepo(repo_id, dict(files), gated=gated, advertised=dict(advertised or {}))
        self.repos[repo_id] = repo
        return repo

    def start(self) -> str:
        hub = self

        class Handler(_Handler):
            owner = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )
        self._thread.start()
        host, port = self._server.server_address[:2]
        self.url = f"http://{host}:{port}"
        return self.url

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def seen(self, method: str | None = None, contains: str = "") -> list[Seen]:
        return [
            r
            for r in self.requests
            if (method is None or r.method == method) and contains in r.path
        ]


_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")
_API = re.compile(
    r"^/api/models/(?P<repo>[^/]+/[^/]+?)(?:/revision/(?P<rev>[^/]+)|/(?P<auth>auth-check))?$"
)


class _Handler(BaseHTTPRequestHandler):
    owner: FakeHub
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 - silence the default stderr log
        return

    def do_HEAD(self) -> None:
        self._route("HEAD")

    def do_GET(self) -> None:
        self._route("GET")

    # -- helpers --------------------------------------------------------------------------

    def _send(self, status: int, headers: dict[str, str] | None = None, body: bytes = b"") -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, status: int, code: str, message: str, extra: dict | None = None) -> None:
        headers = {"X-Error-Code": code, "X-Error-Message": message, **(extra or {})}
        self._send(status, headers, json.dumps({"error": message}).encode())

    def _authorised(self, repo: FakeRepo) -> int | None:
        """None when allowed, else the status the hub answers with (401 anonymous, 403 other)."""
        if not repo.gated:
            return None
        auth = self.headers.get("Authorization", "")
        token = auth[len("Bearer ") :] if auth.startswith("Bearer ") else ""
        if token in self.owner.tokens:
            return None
        return 403 if token else 401

    # -- routing --------------------------------------------------------------------------

    def _route(self, method: str) -> None:
        path = unquote(urlsplit(self.path).path)
        self.owner.requests.append(
            Seen(method, self.path, {k.lower(): v for k, v in self.headers.items()})
        )
        if (m := _RESOLVE.match(path)) is not None:
            return self._resolve(m["repo"], m["rev"], m["file"])
        if (m := _API.match(path)) is not None and method == "GET":
            return self._api(m["repo"], m["rev"], bool(m["auth"]))
        self._send(404, body=b"not found")

    def _repo(self, repo_id: str) -> FakeRepo | None:
        repo = self.owner.repos.get(repo_id)
        if repo is None:
            self._error(404, "RepoNotFound", "Repository not found")
        return repo

    def _resolve(self, repo_id: str, rev: str, name: str) -> None:
        repo = self._repo(repo_id)
        if repo is None:
            return
        denied = self._authorised(repo)
        if denied is not None:
            return self._error(denied, "GatedRepo", f"Access to model {repo_id} is restricted.")
        if rev not in ("main", repo.commit):
            return self._error(404, "RevisionNotFound", "Invalid rev id")
        if name not in repo.files:
            return self._error(
                404, "EntryNotFound", "Entry not found", {"X-Repo-Commit": repo.commit}
            )
        data = repo.files[name]
        headers = {
            "ETag": f'"{repo.etag(name)}"',
            "X-Repo-Commit": repo.commit,
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        start = 0
        rng = self.headers.get("Range")
        if rng and (m := re.match(r"bytes=(\d+)-$", rng)) and self.command == "GET":
            start = int(m[1])
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        status = 206 if start else 200
        body = data[start:]
        cut = self.owner.drop_after.pop(name, None) if self.command == "GET" and not start else None
        if cut is None:
            return self._send(status, headers, body)
        # Announce the whole body, send part of it, then drop the connection mid-transfer.
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[:cut])
        self.wfile.flush()
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)

    def _api(self, repo_id: str, rev: str | None, auth_check: bool) -> None:
        repo = self._repo(repo_id)
        if repo is None:
            return
        if auth_check:
            denied = self._authorised(repo)
            if denied is not None:
                return self._error(denied, "GatedRepo", f"Access to model {repo_id} is restricted.")
            return self._send(200, {"Content-Type": "application/json"}, b"{}")
        if rev not in (None, "main", repo.commit):
            return self._error(404, "RevisionNotFound", "Invalid rev id")
        siblings = []
        for name, data in sorted(repo.files.items()):
            size = repo.advertised.get(name, len(data))
            siblings.append(
                {
                    "rfilename": name,
                    "size": size,
                    "blobId": hashlib.sha1(data).hexdigest(),
                    "lfs": {"size": size, "sha256": repo.etag(name), "pointerSize": 134},
                }
            )
        info = {
            "id": repo.repo_id,
            "sha": repo.commit,
            "private": False,
            "gated": "manual" if repo.gated else False,
            "siblings": siblings,
        }
        self._send(200, {"Content-Type": "application/json"}, json.dumps(info).encode())


def start_fake_hub(monkeypatch) -> FakeHub:
    """Start a fake hub and point huggingface_hub (and the tool) at it, online.

    huggingface_hub copied HF_HUB_OFFLINE into its constants at import, so that copy is
    switched off too; the tool itself reads the environment at call time.
    """
    import huggingface_hub.constants as hf_constants

    hub = FakeHub()
    monkeypatch.setenv("HF_ENDPOINT", hub.start())
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    return hub


def folder_files(folder) -> dict[str, bytes]:
    """Every file under `folder`, by its path relative to it, as a repo to serve."""
    from pathlib import Path

    folder = Path(folder)
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def serve_tiny_bundle(hub: FakeHub, bundle, *, advertised: dict | None = None) -> FakeHub:
    """Publish a tiny bundle under the default repos (small, the default T5, CLAP, AudioLDM 2);
    `advertised` overrides the small checkpoint's announced size."""
    from fluxmusic_cli.engine import registry

    small = registry.get_variant("small")
    extra = {} if advertised is None else {"advertised": advertised}
    hub.add(small.repo_id, {small.filename: bundle.model.read_bytes()}, **extra)
    hub.add(registry.T5_SOURCES[registry.DEFAULT_T5].repo_id, folder_files(bundle.t5))
    hub.add(registry.CLAP.repo_id, folder_files(bundle.clap))
    hub.add(registry.AUDIOLDM2.repo_id, folder_files(bundle.audioldm2))
    return hub
