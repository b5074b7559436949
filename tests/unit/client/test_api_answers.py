"""What the client makes of a server's answers: each status that is not the one asked for is
one sentence with its exit code. The transport is a canned HTTP server on 127.0.0.1."""

from __future__ import annotations

import http.server
import json
import threading

import pytest

from fluxmusic_cli.client.api import QueueFull, ServerAPI, find_token, same_server, server_url
from fluxmusic_cli.errors import ServerError, UsageError


@pytest.fixture
def canned():
    """A server answering every request with the (status, headers, body) in `answer`."""
    answer: dict = {"reply": (200, {}, b"{}")}

    class Handler(http.server.BaseHTTPRequestHandler):
        def _reply(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            status, headers, body = answer["reply"]
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = _reply

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", answer
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _error(text: str) -> bytes:
    return json.dumps({"error": text}).encode()


@pytest.mark.parametrize(
    "status, headers, body, kind, words",
    [
        (422, {}, _error("Steps must be between 1 and 1000, got 0."), UsageError,
         "Steps must be between 1 and 1000, got 0."),
        (413, {}, _error("An upload may hold at most 1 MiB."), UsageError, "at most 1 MiB"),
        (401, {}, _error("No token."), ServerError, "does not take this token"),
        (421, {}, _error("Host."), ServerError, "does not answer to the name 127.0.0.1"),
        (429, {"Retry-After": "12"}, _error("Full."), QueueFull, "try again in about 12 s"),
        (503, {}, _error("The server is stopping."), ServerError,
         "failed (HTTP 503): The server is stopping."),
        (500, {}, b"<html>oops</html>", ServerError, "failed (HTTP 500)."),
    ],
)  # fmt: skip
def test_each_refusal_is_one_sentence_with_its_exit_code(canned, status, headers, body, kind,
                                                         words):  # fmt: skip
    url, answer = canned
    answer["reply"] = (status, headers, body)
    with pytest.raises(kind) as caught:
        ServerAPI(url, token="t").submit({"command": "generate", "prompt": "x"})
    assert words in caught.value.message
    assert "\n" not in caught.value.message
    assert caught.value.exit_code == (2 if kind is UsageError else 7)


def test_a_server_without_a_token_asks_for_one(canned):
    url, answer = canned
    answer["reply"] = (401, {}, _error("No token."))
    with pytest.raises(ServerError, match="needs its token: set FLUXMUSIC_TOKEN"):
        ServerAPI(url).engine()


def test_something_else_than_a_fluxmusic_server_is_said_so(canned):
    url, answer = canned
    answer["reply"] = (200, {}, b"<html>hello</html>")
    with pytest.raises(ServerError, match="does not answer as a fluxmusic server"):
        ServerAPI(url).health()
    answer["reply"] = (200, {}, json.dumps({"status": "ok", "api": 2}).encode())
    with pytest.raises(ServerError, match="speaks API 2"):
        ServerAPI(url).health()


@pytest.mark.parametrize(
    "text, url",
    [("127.0.0.1:8677", "http://127.0.0.1:8677"), ("HTTP://Studio.local:80/", "http://studio.local:80"),
     ("https://music.example/fm/", "https://music.example/fm")],
)  # fmt: skip
def test_server_addresses_are_read_with_http_by_default(text, url):
    assert server_url(text) == url


@pytest.mark.parametrize("text", ["ftp://x:1", "http://", "http://x:99999", "http://a@x:1",
                                  "http://x:1/?q=1"])  # fmt: skip
def test_a_bad_server_address_is_one_sentence(text):
    with pytest.raises(UsageError, match="is not a server address"):
        server_url(text)


def test_the_token_comes_from_the_environment_or_the_server_json_of_that_server(
    tmp_path, monkeypatch
):
    monkeypatch.delenv("FLUXMUSIC_TOKEN", raising=False)
    kept = {"url": "http://127.0.0.1:8677", "pid": 1, "token": "kept-token"}
    (tmp_path / "server.json").write_text(json.dumps(kept))
    assert find_token("http://localhost:8677", tmp_path) == "kept-token"
    assert find_token("http://127.0.0.1:9000", tmp_path) is None  # another server
    monkeypatch.setenv("FLUXMUSIC_TOKEN", "env-token")
    assert find_token("http://127.0.0.1:9000", tmp_path) == "env-token"
    assert same_server("http://[::1]:8677", "http://localhost:8677")
