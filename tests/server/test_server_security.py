"""The server's security points, each against a real `fluxmusic serve` process: the token,
the Host check (DNS rebinding), cross-site changes, CORS, paths in every field, planted
symlinks, body and upload limits, random ids, server.json's mode, the login link's cookie,
and the warning when binding beyond loopback."""

from __future__ import annotations

import http.client
import os
import socket
import stat
import subprocess
import sys
import uuid
from urllib.parse import urlsplit

import pytest
from installed import FLUXMUSIC, needs_script
from served import ENGINE, recording, server_env, start, stopped

pytestmark = [pytest.mark.e2e, needs_script]

TOKEN = "a-token-the-tests-chose-1234"
CORS = "http://localhost:3000"
ALLOWED = "studio.test"
MIB = 1024 * 1024
NOT_A_JOB = {"command": "generate", "prompt": "x", "steps": 0}  # refused (422) after the checks


@pytest.fixture(scope="module")
def guarded(tiny_bundle, tmp_path_factory):
    root = tmp_path_factory.mktemp("guarded")
    srv = start(
        tiny_bundle, root / "data", root / "home", "--token", TOKEN, "--max-upload-mb", "1",
        "--allowed-host", ALLOWED, "--cors-origin", CORS,
    )  # fmt: skip
    try:
        yield srv
    finally:
        stopped(srv)


@pytest.fixture(scope="module")
def finished(guarded):
    """A short generate job, finished."""
    api = guarded.client()
    job_id = api.submit(command="generate", prompt="short", steps=1, duration=0.32)
    assert api.wait(job_id)["status"] == "succeeded"
    return job_id


def port_of(server) -> int:
    return urlsplit(server.url).port


def routes(job_id: str) -> list[tuple[str, str]]:
    return [
        ("GET", "/v1/jobs"), ("POST", "/v1/jobs"), ("GET", f"/v1/jobs/{job_id}"),
        ("GET", f"/v1/jobs/{job_id}/events"), ("GET", f"/v1/jobs/{job_id}/audio"),
        ("GET", f"/v1/jobs/{job_id}/latent"), ("DELETE", f"/v1/jobs/{job_id}"),
        ("GET", f"/v1/jobs/{job_id}/spectrogram.png"), ("GET", f"/v1/jobs/{job_id}/peaks"),
        ("PUT", "/v1/uploads"), ("GET", "/v1/engine"), ("GET", "/v1/openapi.json"),
        ("POST", "/v1/login-links"), ("GET", "/no/such/route"),
    ]  # fmt: skip


def test_the_token_given_with_token_is_the_one_kept_in_server_json(guarded):
    assert guarded.token == TOKEN


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong", f"Bearer {TOKEN[:-1]}", f"Bearer {TOKEN}x", f"Basic {TOKEN}",
     TOKEN, "Bearer"],
)  # fmt: skip
def test_every_route_but_health_needs_the_token(guarded, finished, authorization):
    api = guarded.client(token=None)
    headers = {} if authorization is None else {"Authorization": authorization}
    for method, path in routes(finished):
        reply = api.request(method, path, headers=headers, body=b"{}")
        assert reply.status == 401, (method, path, reply.body)
        assert reply.headers["www-authenticate"] == "Bearer"
    assert api.get("/v1/health", headers=headers).status == 200


def test_the_right_token_opens_every_route(guarded, finished):
    api = guarded.client()
    for method, path in routes(finished):
        if method == "DELETE":
            continue
        assert api.request(method, path, body=b"{}").status != 401, (method, path)


@pytest.mark.parametrize(
    "host",
    ["evil.example", "evil.example:{port}", "127.0.0.1.evil.example", "localhost.evil.example",
     "studio.test.evil.example", "[::2]:{port}", "0.0.0.0:{port}", "attacker@127.0.0.1"],
)  # fmt: skip
def test_a_foreign_host_is_refused_on_every_route_health_included(guarded, finished, host):
    api = guarded.client()
    header = {"Host": host.format(port=port_of(guarded))}
    for method, path in [("GET", "/v1/health"), ("GET", "/login?code=x"), *routes(finished)]:
        reply = api.request(method, path, headers=header, body=b"{}")
        assert reply.status == 421, (method, path, reply.body)


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "LOCALHOST",
                                  f"{ALLOWED}:{{port}}", "127.0.0.1"])  # fmt: skip
def test_the_bound_address_localhost_and_allowed_hosts_are_answered(guarded, host):
    header = {"Host": host.format(port=port_of(guarded))}
    assert guarded.client().get("/v1/jobs", headers=header).status == 200


@pytest.mark.parametrize(
    "headers",
    [{"Origin": "http://evil.example"}, {"Origin": "null"}, {"Origin": "http://localhost:3001"},
     {"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"},
     {"Origin": "http://evil.example", "Sec-Fetch-Site": "same-origin"},
     {"Origin": "ftp://127.0.0.1:{port}"}, {"Origin": "http://127.0.0.1:{port}.evil.example"}],
)  # fmt: skip
def test_a_cross_site_change_is_refused(guarded, finished, headers):
    api = guarded.client()
    headers = {k: v.format(port=port_of(guarded)) for k, v in headers.items()}
    changes = [("POST", "/v1/jobs"), ("PUT", "/v1/uploads"), ("DELETE", f"/v1/jobs/{finished}"),
               ("POST", "/v1/login-links")]  # fmt: skip
    for method, path in changes:
        reply = api.request(method, path, headers=headers, json_body=NOT_A_JOB)
        assert reply.status == 403, (method, path, reply.body)
    assert api.get(f"/v1/jobs/{finished}").status == 200  # the job is still there


def test_a_same_origin_or_configured_origin_change_passes_the_check(guarded):
    api = guarded.client()
    allowed = [
        {"Origin": guarded.url},
        {"Sec-Fetch-Site": "same-origin"},
        {"Sec-Fetch-Site": "none"},
        {"Origin": CORS, "Sec-Fetch-Site": "cross-site"},
        {"Origin": guarded.url.replace("http://", "https://")},  # the page behind a TLS proxy
    ]
    for headers in allowed:
        reply = api.request("POST", "/v1/jobs", headers=headers, json_body=NOT_A_JOB)
        assert reply.status == 422, (headers, reply.body)


def test_cors_headers_go_to_the_configured_origin_only_and_never_a_star(guarded):
    api = guarded.client()
    ours = api.get("/v1/jobs", headers={"Origin": CORS})
    assert ours.headers["access-control-allow-origin"] == CORS
    other = api.get("/v1/jobs", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in other.headers
    plain = api.get("/v1/jobs")
    assert not any(k.startswith("access-control-") for k in plain.headers)
    pre = api.request("OPTIONS", "/v1/jobs", token="", headers={
        "Origin": CORS, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})  # fmt: skip
    assert pre.status == 204 and pre.headers["access-control-allow-origin"] == CORS
    assert "POST" in pre.headers["access-control-allow-methods"]
    foreign = api.request("OPTIONS", "/v1/jobs", token="", headers={
        "Origin": "http://evil.example", "Access-Control-Request-Method": "POST"})  # fmt: skip
    assert "access-control-allow-origin" not in foreign.headers
    assert all(r.headers.get("access-control-allow-origin") != "*" for r in (ours, pre, other))


def test_cors_star_is_refused_at_start(run_cli, tmp_path):
    code, _, err = run_cli(["serve", "--cors-origin", "*", "--data-dir", str(tmp_path)])
    assert code == 2 and "--cors-origin *" in err


@pytest.mark.parametrize(
    "value",
    ["/etc/passwd", "../x", "..", "file:///etc/passwd", "upload:../../etc/passwd",
     "upload:%2e%2e%2fetc%2fpasswd", "upload:..%2F..%2Fetc%2Fpasswd", "job:..\\..\\etc\\passwd",
     "upload:/etc/passwd", "upload:C:\\Windows\\win.ini", "http://127.0.0.1/x.wav",
     "upload:00000000-0000-0000-0000-000000000000", "job:{upper}", "upload: {id}",
     "upload:{id}/../../etc/passwd", "upload:{id}%00", "job:{id}\\..\\x", ["upload:{id}"],
     {"path": "/etc/passwd"}, 7],
)  # fmt: skip
def test_a_path_in_the_input_field_is_refused(guarded, value):
    some = str(uuid.uuid4())

    def fill(v):
        return v.format(id=some, upper=some.upper()) if isinstance(v, str) else v

    value = [fill(v) for v in value] if isinstance(value, list) else fill(value)
    reply = guarded.client().request(
        "POST", "/v1/jobs", json_body={"command": "remix", "prompt": "x", "input": value}
    )
    assert reply.status == 422, reply.body
    assert "root:" not in reply.body.decode()


@pytest.mark.parametrize("field, value", [
    ("format", "../../x"), ("format", "/etc/passwd"), ("format", "wav/../../x"),
    ("output", "/tmp/x.wav"), ("from_record", "/etc/passwd"), ("lora", ["/etc/passwd"]),
    ("model", "/etc/passwd"), ("t5", "../../x"), ("clap", "file:///etc/passwd"),
    ("vae_vocoder", "/etc"), ("input", "/etc/passwd"),
])  # fmt: skip
def test_no_other_field_takes_a_path(guarded, field, value):
    body = {"command": "generate", "prompt": "x", field: value}
    reply = guarded.client().request("POST", "/v1/jobs", json_body=body)
    assert reply.status == 422, (field, reply.body)


@pytest.mark.parametrize(
    "path",
    ["/v1/jobs/..%2F..%2Fetc%2Fpasswd", "/v1/jobs/%2e%2e%2f%2e%2e%2fetc%2fpasswd/audio",
     "/v1/jobs/../../etc/passwd", "/v1/jobs/..\\..\\etc\\passwd/audio", "/v1/uploads/..%2Fx",
     "/v1/jobs/%2Fetc%2Fpasswd/audio", "/v1/jobs/file:%2F%2F%2Fetc%2Fpasswd/audio"],
)  # fmt: skip
def test_a_path_in_the_url_reaches_no_file(guarded, path):
    reply = guarded.client().get(path)
    assert reply.status in (404, 405), (path, reply.status)
    assert b"root:" not in reply.body


def test_uploads_are_kept_under_ids_the_server_made(guarded, tmp_path):
    api = guarded.client()
    named = {"Content-Disposition": 'attachment; filename="../../evil.wav"'}
    body = recording(tmp_path / "a.wav")
    reply = api.request("PUT", "/v1/uploads?name=../../evil.wav", body=body, headers=named)
    assert reply.status == 201
    upload = reply.json()["id"]
    assert uuid.UUID(upload).version == 4 and str(uuid.UUID(upload)) == upload
    kept = sorted(p.name for p in (guarded.data_dir / "uploads").iterdir())
    assert upload in kept and all(str(uuid.UUID(name)) == name for name in kept)
    assert not (guarded.data_dir.parent / "evil.wav").exists()


def test_a_symlink_planted_in_the_upload_folder_is_not_an_upload(guarded, tmp_path):
    outside = tmp_path / "outside.wav"
    recording(outside)
    planted = str(uuid.uuid4())
    os.symlink(outside, guarded.data_dir / "uploads" / planted)
    reply = guarded.client().request("POST", "/v1/jobs", json_body={
        "command": "remix", "prompt": "x", "input": f"upload:{planted}", "steps": 1})  # fmt: skip
    assert reply.status == 422 and "not an upload on this server" in reply.json()["error"]


def test_an_upload_replaced_by_a_symlink_is_refused(guarded, tmp_path):
    api = guarded.client()
    upload = api.request("PUT", "/v1/uploads", body=recording(tmp_path / "a.wav")).json()["id"]
    other = tmp_path / "other.wav"
    recording(other, seconds=2.0)
    kept = guarded.data_dir / "uploads" / upload
    kept.unlink()
    os.symlink(other, kept)
    reply = api.request("POST", "/v1/jobs", json_body={
        "command": "remix", "prompt": "x", "input": f"upload:{upload}", "steps": 1})  # fmt: skip
    assert reply.status == 422 and "not the file that was uploaded" in reply.json()["error"]


def test_a_job_output_replaced_by_a_symlink_is_not_served(guarded, tmp_path):
    api = guarded.client()
    job_id = api.submit(command="generate", prompt="swapped", steps=1, duration=0.32)
    api.wait(job_id)
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0")
    audio = guarded.data_dir / "outputs" / f"{job_id}.wav"
    audio.unlink()
    os.symlink(secret, audio)
    reply = api.get(f"/v1/jobs/{job_id}/audio")
    assert reply.status == 409 and b"root:" not in reply.body
    edit = api.request("POST", "/v1/jobs", json_body={
        "command": "loop", "input": f"job:{job_id}", "steps": 1})  # fmt: skip
    assert edit.status == 422


def _chunked(api, method: str, path: str, chunks, headers: dict[str, str]):
    """A request whose body goes out in chunks, without a Content-Length."""
    parts = urlsplit(api.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        conn.request(method, path, body=iter(chunks), headers={
            "Authorization": f"Bearer {api.token}", **headers}, encode_chunked=True)  # fmt: skip
        resp = conn.getresponse()
        return resp.status, resp.read()
    except (BrokenPipeError, ConnectionResetError):
        return None, b""
    finally:
        conn.close()


def test_json_bodies_are_capped_at_one_mib(guarded):
    api = guarded.client()
    near = {"command": "generate", "prompt": "x", "pad": "y" * (MIB - 100)}
    assert api.request("POST", "/v1/jobs", json_body=near).status == 422  # read, then refused
    over = {"command": "generate", "prompt": "x", "pad": "y" * MIB}
    reply = api.request("POST", "/v1/jobs", json_body=over)
    assert reply.status == 413 and "1 MiB" in reply.json()["error"]
    status, _ = _chunked(api, "POST", "/v1/jobs", [b"{" + b" " * 65536] * 20,
                         {"Content-Type": "application/json"})  # fmt: skip
    assert status == 413


def test_an_upload_over_the_limit_is_refused_and_nothing_is_kept(guarded):
    api = guarded.client()
    folder = guarded.data_dir / "uploads"
    before = sorted(os.listdir(folder))
    reply = api.request("PUT", "/v1/uploads", body=b"RIFF" + b"\0" * MIB)
    assert reply.status == 413 and "--max-upload-mb" in reply.json()["error"]
    status, body = _chunked(api, "PUT", "/v1/uploads", [b"\0" * 65536] * 20, {})
    assert status == 413, body
    assert sorted(os.listdir(folder)) == before


def test_an_upload_that_is_not_audio_is_refused_and_nothing_is_kept(guarded):
    folder = guarded.data_dir / "uploads"
    before = sorted(os.listdir(folder))
    for body in (b"", b"not audio at all", b"RIFF" + b"\x01" * 5000):
        reply = guarded.client().request("PUT", "/v1/uploads", body=body)
        assert reply.status == 422, reply.body
        assert (
            "Cannot read the upload" in reply.json()["error"] or "upload" in reply.json()["error"]
        )
    assert sorted(os.listdir(folder)) == before


def test_server_json_is_private_and_says_where_the_server_is(guarded):
    import json

    path = guarded.data_dir / "server.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = json.loads(path.read_text())
    assert data["url"] == guarded.url and data["pid"] == guarded.proc.pid
    assert data["token"] == TOKEN


def test_the_login_link_sets_a_strict_cookie_that_authenticates_once(guarded):
    link = guarded.lines[2].rsplit(" ", 1)[1]
    assert link.startswith(f"{guarded.url}/login?code=")
    path = link[len(guarded.url) :]
    api = guarded.client(token=None)
    first = api.get(path)
    assert first.status == 303 and first.headers["location"] == "/"
    cookie = first.headers["set-cookie"]
    assert "fluxmusic_session=" in cookie and "HttpOnly" in cookie
    assert "samesite=strict" in cookie.lower()
    session = {"Cookie": cookie.split(";", 1)[0]}
    assert api.get("/v1/jobs", headers=session).status == 200
    same = {**session, "Origin": guarded.url}
    assert api.request("POST", "/v1/jobs", headers=same, json_body=NOT_A_JOB).status == 422
    cross = {**session, "Origin": "http://evil.example"}
    assert api.request("POST", "/v1/jobs", headers=cross, json_body=NOT_A_JOB).status == 403
    assert api.get(path).status == 401  # once only
    assert api.get("/v1/jobs", headers={"Cookie": "fluxmusic_session=guess"}).status == 401
    # A new link on request (with the token), good once too.
    made = guarded.client().request("POST", "/v1/login-links")
    assert made.status == 201
    again = made.json()["url"][len(guarded.url) :]
    assert api.get(again).status == 303 and api.get(again).status == 401


def test_a_second_server_on_the_same_data_folder_is_refused(guarded, run_cli):
    code, _, err = run_cli(["serve", "--port", "0", "--data-dir", str(guarded.data_dir)])
    assert code == 2 and "Another fluxmusic server uses" in err


def _serve_briefly(tiny_bundle, tmp_path, host: str, port: int):
    return subprocess.run(
        [str(FLUXMUSIC), "serve", "--host", host, "--port", str(port), "--data-dir",
         str(tmp_path / "data"), *tiny_bundle.cli_args(), *ENGINE],
        capture_output=True, text=True, timeout=120, env=server_env(tmp_path / "home"),
    )  # fmt: skip


def test_binding_beyond_loopback_warns_that_the_api_is_reachable(tiny_bundle, tmp_path):
    """192.0.2.1 (a documentation address no machine has) is beyond loopback and cannot be
    bound, so the warning shows and nothing ever listens."""
    proc = _serve_briefly(tiny_bundle, tmp_path, "192.0.2.1", 0)
    assert proc.returncode == 2 and proc.stdout == ""
    assert "reachable from the network" in proc.stderr and "token" in proc.stderr
    assert "Cannot listen on 192.0.2.1:0" in proc.stderr


@pytest.mark.skipif(sys.platform != "linux", reason="relies on Linux refusing 0.0.0.0:P while "
                    "127.0.0.1:P listens")  # fmt: skip
def test_binding_all_addresses_warns_that_the_api_is_reachable(tiny_bundle, tmp_path):
    """0.0.0.0 on a port this test holds on 127.0.0.1: the warning, then a refused bind."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        proc = _serve_briefly(tiny_bundle, tmp_path, "0.0.0.0", held.getsockname()[1])
    assert proc.returncode == 2 and proc.stdout == ""
    assert "--host 0.0.0.0 makes the API reachable from the network" in proc.stderr
