"""What the page at `/` needs from the server, against a real `fluxmusic serve` process: the
page's files (open, with their Content-Security-Policy, nothing from another origin in them),
the stream of every job's changes (`/v1/events`, with Last-Event-ID), each clip's spectrogram
and waveform peaks, and the session cookie on every route the page uses."""

from __future__ import annotations

import fnmatch
import http.client
import json
import os
import re
import struct
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from installed import needs_script
from served import FINAL

from fluxmusic_cli.server import page

pytestmark = [pytest.mark.e2e, needs_script]

STATIC = Path(page.__file__).with_name("static")
ROOT = Path(__file__).resolve().parents[2]
CLIP = {"command": "generate", "prompt": "a short test tone", "steps": 2, "duration": 1.0}
STREAM_S = 60  # the longest a stream is read waiting for its next event
MAX_EVENTS = 200  # and the most events read from it


@pytest.fixture(scope="module")
def clip(server):
    """A finished generate job (with its latent, as the page asks)."""
    api = server.client()
    job_id = api.submit(save_latent=True, seed=11, **CLIP)
    assert api.wait(job_id)["status"] == "succeeded"
    return job_id


def port_of(server) -> int:
    return urlsplit(server.url).port


class Stream:
    """`GET /v1/events` read one event at a time: (event, id, data)."""

    def __init__(self, server, headers: dict[str, str] | None = None, token: bool = True):
        parts = urlsplit(server.url)
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=STREAM_S)
        sent = dict(headers or {})
        if token:
            sent["Authorization"] = f"Bearer {server.token}"
        self.conn.request("GET", "/v1/events", headers=sent)
        self.resp = self.conn.getresponse()
        self.status = self.resp.status

    def next(self) -> tuple[str, str, dict]:
        event: dict[str, str] = {}
        for _ in range(10_000):
            line = self.resp.fp.readline()
            assert line, "the stream ended"
            text = line.decode().rstrip("\r\n")
            if text == "":
                if "data" in event:
                    return (
                        event.get("event", "message"),
                        event.get("id", ""),
                        json.loads(event["data"]),
                    )
                event = {}
            elif not text.startswith(":"):
                key, _, value = text.partition(": ")
                event[key] = value
        raise AssertionError("no event in 10000 lines")

    def until(self, check) -> list[tuple[str, str, dict]]:
        """Events up to and including the first that `check` accepts (bounded in count)."""
        seen = []
        for _ in range(MAX_EVENTS):
            seen.append(self.next())
            if check(*seen[-1]):
                return seen
        raise AssertionError(f"not in {MAX_EVENTS} events: {seen[-3:]}")

    def close(self) -> None:
        self.conn.close()


# -- the page's files ---------------------------------------------------------------------------


def test_the_page_is_served_without_a_token_under_a_strict_content_security_policy(server):
    reply = server.client(token=None).get("/")
    assert reply.status == 200 and reply.headers["content-type"].startswith("text/html")
    csp = reply.headers["content-security-policy"]
    directives = [d.strip() for d in csp.split(";")]
    assert "default-src 'self'" in directives
    assert "unsafe" not in csp and "*" not in csp and "data:" not in csp
    assert reply.headers["x-content-type-options"] == "nosniff"
    assert reply.body == (STATIC / "index.html").read_bytes()


def test_the_page_scripts_and_styles_are_served_by_name_only(server):
    api = server.client(token=None)
    for name, kind in [("page.js", "text/javascript"), ("page.css", "text/css"),
                       ("icon.svg", "image/svg+xml")]:  # fmt: skip
        reply = api.get(f"/static/{name}")
        assert reply.status == 200 and reply.headers["content-type"].startswith(kind), name
        assert reply.body == (STATIC / name).read_bytes()
        assert "default-src 'self'" in reply.headers["content-security-policy"]
    for path in ["/static/index.htm", "/static/../server.json", "/static/..%2Fserver.json",
                 "/static/%2e%2e/jobs.sqlite3", "/static/", "/static/page.js/x"]:  # fmt: skip
        reply = api.get(path)
        assert reply.status in (401, 404), (path, reply.status)
        assert server.token.encode() not in reply.body and b"SQLite" not in reply.body


def test_the_page_files_hold_no_data_and_the_api_still_needs_the_token(server, clip):
    api = server.client(token=None)
    for path in ["/v1/jobs", f"/v1/jobs/{clip}", "/v1/events", f"/v1/jobs/{clip}/audio",
                 f"/v1/jobs/{clip}/spectrogram.png", f"/v1/jobs/{clip}/peaks"]:  # fmt: skip
        assert api.get(path).status == 401, path
    for path in ["/", "/static/page.js"]:
        assert clip not in api.get(path).body.decode()


@pytest.mark.parametrize("host", ["evil.example", "evil.example:{port}", "127.0.0.1.evil.example"])
def test_the_page_is_refused_under_a_foreign_host(server, host):
    header = {"Host": host.format(port=port_of(server))}
    for path in ["/", "/static/page.js", "/static/page.css", "/v1/events"]:
        assert server.client(token=None).get(path, headers=header).status == 421, path


def test_the_shipped_page_names_no_other_origin_and_runs_nothing_inline():
    html = (STATIC / "index.html").read_text()
    texts = {p.name: p.read_text() for p in STATIC.iterdir()}
    for name, text in texts.items():
        urls = re.findall(r"[a-z][a-z0-9+.-]*://[^\s\"'<>)]*|//[a-z0-9.-]+\.[a-z]{2,}", text, re.I)
        allowed = {"http://www.w3.org/2000/svg"} if name.endswith(".svg") else set()
        assert set(urls) <= allowed, (name, urls)
        assert "@import" not in text and "url(" not in text, name
    assert re.findall(r"<script[^>]*>", html) == ['<script src="/static/page.js" defer>']
    assert "<style" not in html and " style=" not in html and "javascript:" not in html
    assert not re.search(r"\son[a-z]+=", html)  # no inline event handlers
    linked = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert linked and all(link.startswith("/static/") for link in linked), linked


def test_every_shipped_page_file_is_served_and_packaged():
    shipped = sorted(p.name for p in STATIC.iterdir())
    assert shipped == sorted([page.INDEX, *page.ASSETS])
    pyproject = (ROOT / "pyproject.toml").read_text()
    found = re.search(r'^"fluxmusic_cli\.server" = \[(.*)\]$', pyproject, re.M)
    assert found, "no package-data for the page in pyproject.toml"
    globs = [g.strip().strip('"') for g in found.group(1).split(",")]
    for name in shipped:
        assert any(fnmatch.fnmatch(f"static/{name}", g) for g in globs), name


# -- the stream of every job ------------------------------------------------------------------


def test_the_events_stream_starts_with_every_job_then_follows_a_new_one(server, clip):
    api = server.client()
    stream = Stream(server)
    try:
        assert stream.status == 200
        assert stream.resp.getheader("content-type").startswith("text/event-stream")
        kind, first_id, data = stream.next()
        assert kind == "jobs" and first_id
        listed = api.get("/v1/jobs").json()["jobs"]
        assert [j["id"] for j in data["jobs"]] == [j["id"] for j in listed]
        assert clip in [j["id"] for j in data["jobs"]]
        job_id = api.submit(**CLIP)
        seen = stream.until(lambda k, i, d: d.get("id") == job_id and d["status"] in FINAL)
    finally:
        stream.close()
    mine = [(k, d) for k, _, d in seen if d.get("id") == job_id]
    assert all(k == "job" for k, _ in mine) and mine[-1][1]["status"] == "succeeded"
    assert mine[-1][1] == api.job(job_id)  # the view, as GET /v1/jobs/ID gives it
    steps = [d["progress"]["step"] for _, d in mine]
    assert steps == sorted(steps) and steps[-1] == 2
    ids = [int(i.rsplit("-", 1)[1]) for _, i, _ in seen]
    assert ids == sorted(ids) and ids[0] > int(first_id.rsplit("-", 1)[1])


def test_last_event_id_resumes_with_what_changed_and_an_unknown_one_gets_the_list(server):
    api = server.client()
    stream = Stream(server)
    try:
        _, last_id, _ = stream.next()
    finally:
        stream.close()
    job_id = api.submit(**CLIP)
    assert api.wait(job_id)["status"] == "succeeded"
    resumed = Stream(server, {"Last-Event-ID": last_id})
    try:
        kind, resumed_id, data = resumed.next()  # the job's latest state, once
    finally:
        resumed.close()
    assert (kind, data["id"], data["status"]) == ("job", job_id, "succeeded")
    assert resumed_id.split("-")[0] == last_id.split("-")[0]
    for unknown in ["7", "0-1", f"{last_id.split('-')[0]}-999999999", "nonsense"]:
        fresh = Stream(server, {"Last-Event-ID": unknown})
        try:
            kind, _, data = fresh.next()
        finally:
            fresh.close()
        assert kind == "jobs" and job_id in [j["id"] for j in data["jobs"]], unknown


def test_a_deleted_job_is_announced_on_the_stream(server):
    api = server.client()
    job_id = api.submit(**CLIP)
    assert api.wait(job_id)["status"] == "succeeded"
    stream = Stream(server)
    try:
        stream.next()  # the list
        assert api.request("DELETE", f"/v1/jobs/{job_id}").status == 204
        seen = stream.until(lambda k, i, d: k == "deleted")
    finally:
        stream.close()
    assert seen[-1][2] == {"id": job_id}


# -- a clip's pictures ------------------------------------------------------------------------


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_a_clip_has_its_spectrogram_drawn_once_and_kept_beside_it(server, clip):
    api = server.client()
    reply = api.get(f"/v1/jobs/{clip}/spectrogram.png")
    assert reply.status == 200 and reply.headers["content-type"] == "image/png"
    assert png_size(reply.body) == (720, 160)
    kept = server.data_dir / "outputs" / f"{clip}.spectrogram.png"
    assert kept.read_bytes() == reply.body
    stamp = kept.stat().st_mtime_ns
    assert api.get(f"/v1/jobs/{clip}/spectrogram.png").body == reply.body
    assert kept.stat().st_mtime_ns == stamp  # served from the file, not drawn again


def test_a_clip_has_its_waveform_peaks_in_its_own_seconds(server, clip):
    from served import samples

    api = server.client()
    reply = api.get(f"/v1/jobs/{clip}/peaks")
    assert reply.status == 200 and reply.headers["content-type"].startswith("application/json")
    data = reply.json()
    audio = samples(api.audio(clip))
    assert data["sample_rate"] == 16000
    assert data["duration"] == pytest.approx(audio.shape[0] / 16000)
    assert data["duration"] == pytest.approx(CLIP["duration"], abs=0.01)
    assert 0 < len(data["peaks"]) <= 1000
    assert all(-1 <= lo <= hi <= 1 for lo, hi in data["peaks"])
    loudest = max(abs(x) for pair in data["peaks"] for x in pair)
    assert loudest == pytest.approx(abs(audio.astype(float)).max() / 32768, abs=2e-3)


def test_pictures_of_an_unknown_unfinished_or_deleted_job_are_refused(server):
    api = server.client()
    for path in ["spectrogram.png", "peaks"]:
        assert api.get(f"/v1/jobs/{uuid.uuid4()}/{path}").status == 404
        assert api.get(f"/v1/jobs/not-an-id/{path}").status == 404
    long_job = api.submit(**{**CLIP, "steps": 50})  # dropped, or stopped at its next step
    assert api.request("DELETE", f"/v1/jobs/{long_job}").status in (200, 202)
    assert api.wait(long_job)["status"] == "cancelled"
    for path in ["spectrogram.png", "peaks"]:
        reply = api.get(f"/v1/jobs/{long_job}/{path}")
        assert reply.status == 409 and "cancelled" in reply.json()["error"]
    job_id = api.submit(**CLIP)
    assert api.wait(job_id)["status"] == "succeeded"
    assert api.get(f"/v1/jobs/{job_id}/peaks").status == 200
    outputs = server.data_dir / "outputs"
    assert (outputs / f"{job_id}.peaks.json").exists()
    assert api.request("DELETE", f"/v1/jobs/{job_id}").status == 204
    assert not [p for p in os.listdir(outputs) if p.startswith(job_id)]
    for path in ["spectrogram.png", "peaks"]:
        assert api.get(f"/v1/jobs/{job_id}/{path}").status == 404


def test_a_link_planted_in_place_of_a_picture_is_replaced_never_followed(server, tmp_path):
    api = server.client()
    job_id = api.submit(**CLIP)
    assert api.wait(job_id)["status"] == "succeeded"
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0")
    planted = server.data_dir / "outputs" / f"{job_id}.spectrogram.png"
    os.symlink(secret, planted)
    reply = api.get(f"/v1/jobs/{job_id}/spectrogram.png")
    assert reply.status == 200 and png_size(reply.body) == (720, 160)
    assert not planted.is_symlink() and secret.read_text() == "root:x:0:0"


def test_the_new_routes_are_in_the_openapi_document_and_the_page_is_not(server):
    schema = server.client().get("/v1/openapi.json").json()
    paths = schema["paths"]
    assert "text/event-stream" in paths["/v1/events"]["get"]["responses"]["200"]["content"]
    picture = paths["/v1/jobs/{job_id}/spectrogram.png"]["get"]
    assert "image/png" in picture["responses"]["200"]["content"]
    assert "/v1/jobs/{job_id}/peaks" in paths
    assert "/" not in paths and not any(p.startswith("/static") for p in paths)
    generate = next(
        v for v in paths["/v1/jobs"]["post"]["requestBody"]["content"]["application/json"][
            "schema"]["oneOf"] if v["title"] == "generate"
    )  # fmt: skip
    assert generate["properties"]["encoders"]["enum"] == ["both", "t5", "clap"]


# -- the session cookie on everything the page does ----------------------------------------------


def test_the_login_cookie_opens_every_route_the_page_uses(server, clip):
    link = server.client().request("POST", "/v1/login-links").json()["url"]
    api = server.client(token=None)
    landed = api.get(link[len(server.url) :])
    assert landed.status == 303 and landed.headers["location"] == "/"
    cookie = {"Cookie": landed.headers["set-cookie"].split(";", 1)[0]}
    # What a browser sends with the page's own requests.
    same = {**cookie, "Origin": server.url, "Sec-Fetch-Site": "same-origin"}
    for path in ["/", "/v1/engine", "/v1/openapi.json", "/v1/jobs", f"/v1/jobs/{clip}",
                 f"/v1/jobs/{clip}/spectrogram.png", f"/v1/jobs/{clip}/peaks"]:  # fmt: skip
        assert api.get(path, headers=cookie).status == 200, path
    ranged = api.get(f"/v1/jobs/{clip}/audio", headers={**cookie, "Range": "bytes=0-99"})
    assert ranged.status == 206 and len(ranged.body) == 100
    stream = Stream(server, cookie, token=False)
    try:
        assert stream.status == 200 and stream.next()[0] == "jobs"
    finally:
        stream.close()
    made = api.request("POST", "/v1/jobs", headers=same, json_body=CLIP)
    assert made.status == 202
    job_id = made.json()["id"]
    edit = {"command": "repaint", "input": f"job:{clip}", "region": ["0.2:0.6"], "steps": 2}
    repaint = api.request("POST", "/v1/jobs", headers=same, json_body=edit)
    assert repaint.status == 202
    api_token = server.client()
    for made_id in (job_id, repaint.json()["id"]):
        assert api_token.wait(made_id)["status"] == "succeeded"
    assert api.request("DELETE", f"/v1/jobs/{job_id}", headers=same).status == 204
    cross = {**cookie, "Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}
    assert api.request("POST", "/v1/jobs", headers=cross, json_body=CLIP).status == 403
    assert api.request("DELETE", f"/v1/jobs/{clip}", headers=cross).status == 403
