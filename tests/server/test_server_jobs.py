"""Jobs through a real `fluxmusic serve` process: the same samples as the commands run locally,
the job views, events, audio with Range, deleting, and many clients at once."""

from __future__ import annotations

import threading
import uuid

import numpy as np
import pytest
from installed import needs_script
from served import ENGINE, recording, run_in_process, samples, server_env

from fluxmusic_cli import __version__

pytestmark = [pytest.mark.e2e, needs_script]

GEN = {"prompt": "slow piano", "seed": 3, "steps": 2, "duration": 1.0}
GEN_ARGS = ["slow piano", "--seed", "3", "--steps", "2", "--duration", "1.0"]


@pytest.fixture(scope="module")
def generated(server, tiny_bundle, tmp_path_factory):
    """A generate job with its latent saved, and the same command run locally (on a first run:
    nothing in its prompt cache)."""
    api = server.client()
    job_id = api.submit(command="generate", save_latent=True, **GEN)
    folder = tmp_path_factory.mktemp("local")
    local = folder / "local.wav"
    args = ["generate", *GEN_ARGS, "--save-latent", "-o", str(local), "-q",
            *tiny_bundle.cli_args(), *ENGINE]  # fmt: skip
    assert run_in_process(args, server_env(folder / "home")) == 0
    view = api.wait(job_id)
    assert view["status"] == "succeeded", view
    return job_id, local


def test_health_needs_no_token_and_names_the_api(server):
    reply = server.client(token=None).get("/v1/health")
    assert reply.status == 200
    assert reply.json() == {"status": "ok", "api": 1, "version": __version__}


def test_a_generate_job_gives_the_samples_of_generate_run_locally(server, generated):
    job_id, local = generated
    api = server.client()
    served = api.audio(job_id)
    assert np.array_equal(samples(served), samples(local))
    view = api.job(job_id)
    assert view["command"] == "generate" and view["error"] is None
    assert view["progress"] == {"step": 2, "steps": 2}
    record = view["record"]
    assert (record["prompt"], record["seed"], record["steps"]) == ("slow piano", 3, 2)
    assert record["output"] == f"job:{job_id}" and record["latent_file"]
    assert view["created"] <= view["started"] <= view["finished"]


EDITS = [
    ("remix", {"strength": 0.6}, ["--strength", "0.6"]),
    ("repaint", {"region": ["0.2:0.6"]}, ["--region", "0.2:0.6"]),
    ("extend", {"add": 1.0}, ["--add", "1.0"]),
    ("loop", {"seam": 0.32}, ["--seam", "0.32"]),
]


@pytest.mark.parametrize("command, fields, flags", EDITS, ids=[e[0] for e in EDITS])
def test_an_edit_of_a_job_gives_the_samples_of_the_command_on_its_file(
    server, generated, tiny_bundle, tmp_path, run_cli, command, fields, flags
):
    """input "job:ID" starts from the job's exact latent, as the command starts from the
    latent sidecar beside the file; the prompt comes from the input's record in both."""
    source_id, local = generated
    api = server.client()
    job_id = api.submit(command=command, input=f"job:{source_id}", seed=5, steps=2, **fields)
    out = tmp_path / "edit.wav"
    code, _, err = run_cli([command, str(local), *flags, "--seed", "5", "--steps", "2",
                            "-o", str(out), *tiny_bundle.cli_args(), *ENGINE])  # fmt: skip
    assert code == 0, err
    view = api.wait(job_id)
    assert view["status"] == "succeeded", view
    assert np.array_equal(samples(api.audio(job_id)), samples(out))
    record = view["record"]
    assert record["prompt"] == "slow piano"  # taken from the input's record
    assert record["input"]["path"] == f"job:{source_id}" and record["input"]["from_latent"]


@pytest.mark.parametrize("command, fields, flags", EDITS, ids=[e[0] for e in EDITS])
def test_an_edit_of_an_upload_gives_the_samples_of_the_command_on_the_file(
    server, tiny_bundle, tmp_path, run_cli, command, fields, flags
):
    take = tmp_path / "take.wav"
    api = server.client()
    reply = api.request("PUT", "/v1/uploads", body=recording(take))
    assert reply.status == 201, reply.body
    upload = reply.json()["id"]
    job_id = api.submit(
        command=command, input=f"upload:{upload}", prompt="a cello", seed=5, steps=2, **fields
    )
    out = tmp_path / "edit.wav"
    code, _, err = run_cli([command, str(take), "a cello", *flags, "--seed", "5", "--steps",
                            "2", "-o", str(out), *tiny_bundle.cli_args(), *ENGINE])  # fmt: skip
    assert code == 0, err
    view = api.wait(job_id)
    assert view["status"] == "succeeded", view
    assert np.array_equal(samples(api.audio(job_id)), samples(out))
    assert view["record"]["input"]["path"] == f"upload:{upload}"
    assert view["record"]["input"]["sample_rate"] == 22050


def test_a_refused_job_gets_the_sentence_the_command_line_gives(server, run_cli):
    api = server.client()
    reply = api.request("POST", "/v1/jobs", json_body={"command": "generate", "prompt": "x",
                                                          "steps": 0})  # fmt: skip
    code, _, err = run_cli(["generate", "x", "--steps", "0"])
    assert reply.status == 422 and code == 2
    assert reply.json()["error"] in " ".join(err.split())


@pytest.mark.parametrize(
    "body, words",
    [
        ({"command": "generate"}, "Give a prompt"),
        ({"command": "generate", "prompt": "  "}, "Empty prompt"),
        ({"command": "generate", "prompt": "x", "tempo": 120}, "Unknown field 'tempo'"),
        ({"command": "generate", "prompt": "x", "output": "a.wav"}, "Unknown field 'output'"),
        ({"command": "generate", "prompt": "x", "model": "base"}, "--model is an engine option"),
        ({"command": "generate", "prompt": "x", "device": "cuda"}, "--device is an engine"),
        ({"command": "generate", "prompt": "x", "guidance": -1}, "--guidance"),
        ({"command": "generate", "prompt": "x", "encoders": "all"}, "--encoders"),
        ({"command": "generate", "prompt": "x", "format": "aiff"}, "Unknown format"),
        ({"command": "generate", "prompt": "x", "loop": "yes"}, "loop takes true or false"),
        ({"command": "generate", "prompt": "x", "duration": 2, "loop": True, "seam": 0.24},
         "Seam 0.24 s is not a multiple of 0.16"),
        ({"command": "generate", "prompt": "x", "guidance_interval": "0.8:0.2"},
         "Guidance interval needs"),
        ({"command": "remix", "prompt": "x"}, "Give the input to remix"),
        ({"command": "repaint", "prompt": "x", "input": f"upload:{uuid.uuid4()}"},
         "is not an upload on this server"),
        ({"command": "sing", "prompt": "x"}, "Unknown command 'sing'"),
        (["generate"], "A job is a JSON object"),
    ],
)  # fmt: skip
def test_bad_jobs_are_refused_with_one_sentence(server, body, words):
    reply = server.client().request("POST", "/v1/jobs", json_body=body)
    assert reply.status == 422
    assert words in reply.json()["error"]


def test_a_body_that_is_not_json_is_a_bad_request(server):
    reply = server.client().request("POST", "/v1/jobs", body=b"{command: generate")
    assert reply.status == 400 and "not JSON" in reply.json()["error"]


def test_jobs_are_listed_newest_first_and_viewed_with_their_fields(server):
    api = server.client()
    first = api.submit(command="generate", prompt="first", steps=1, duration=0.32)
    second = api.submit(command="generate", prompt="second", steps=1, duration=0.32)
    ids = [job["id"] for job in api.get("/v1/jobs").json()["jobs"]]
    assert ids.index(second) < ids.index(first)
    view = api.wait(second)
    assert {"id", "command", "status", "progress", "error", "record", "created",
            "finished"} <= set(view)  # fmt: skip
    assert view["status"] == "succeeded" and view["record"]["prompt"] == "second"
    assert uuid.UUID(first).version == 4 and str(uuid.UUID(first)) == first


@pytest.mark.parametrize("path", ["/v1/jobs/{}", "/v1/jobs/{}/audio", "/v1/jobs/{}/events"])
def test_an_unknown_job_is_not_found(server, path):
    api = server.client()
    for job_id in (str(uuid.uuid4()), "not-an-id"):
        reply = api.get(path.format(job_id))
        assert reply.status == 404, (path, reply.body)
        assert "error" in reply.json()
    assert api.request("DELETE", f"/v1/jobs/{uuid.uuid4()}").status == 404


def test_events_end_with_the_final_status_and_last_event_id_resumes(server):
    api = server.client()
    job_id = api.submit(command="generate", prompt="events", steps=4, duration=0.32)
    status, events = api.events(job_id)
    assert status == 200 and events
    ids = [int(i) for i, _ in events]
    assert ids == sorted(set(ids))
    assert events[-1][1]["status"] == "succeeded"
    assert all(e["status"] not in ("succeeded", "failed") for _, e in events[:-1])
    assert events[-1][1]["progress"] == {"step": 4, "steps": 4}
    # Resuming after an early event gives only what came after it, ending the same way.
    status, resumed = api.events(job_id, last_id=events[0][0])
    assert status == 200 and resumed
    assert all(int(i) > ids[0] for i, _ in resumed)
    assert resumed[-1] == events[-1]
    # After the last one there is nothing more: 204 tells a browser to stop reconnecting.
    status, after = api.events(job_id, last_id=events[-1][0])
    assert (status, after) == (204, [])


def test_a_client_that_leaves_an_event_stream_does_not_affect_its_job(server):
    api = server.client()
    job_id = api.submit(command="generate", prompt="walk away", steps=6, duration=0.32)
    status, first = api.events(job_id, stop_after=1)
    assert status == 200 and len(first) == 1
    assert api.wait(job_id)["status"] == "succeeded"


def test_audio_is_served_in_the_jobs_format_with_range_requests(server):
    api = server.client()
    job_id = api.submit(command="generate", prompt="ranges", steps=1, duration=0.32,
                        format="flac")  # fmt: skip
    api.wait(job_id)
    whole = api.get(f"/v1/jobs/{job_id}/audio")
    assert whole.status == 200 and whole.headers["content-type"] == "audio/flac"
    assert whole.headers["accept-ranges"] == "bytes" and whole.body[:4] == b"fLaC"
    part = api.get(f"/v1/jobs/{job_id}/audio", headers={"Range": "bytes=10-109"})
    assert part.status == 206 and part.body == whole.body[10:110]
    assert part.headers["content-range"] == f"bytes 10-109/{len(whole.body)}"


def test_deleting_a_finished_job_removes_it_and_its_files(server):
    api = server.client()
    job_id = api.submit(command="generate", prompt="gone", steps=1, duration=0.32,
                        save_latent=True)  # fmt: skip
    api.wait(job_id)
    outputs = server.data_dir / "outputs"
    assert len(list(outputs.glob(f"{job_id}.*"))) == 3  # audio, record, latent
    assert api.request("DELETE", f"/v1/jobs/{job_id}").status == 204
    assert api.get(f"/v1/jobs/{job_id}").status == 404
    assert list(outputs.glob(f"{job_id}*")) == []


def test_fifteen_jobs_from_five_concurrent_clients_all_succeed(server):
    ids: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def client(k: int) -> None:
        try:
            api = server.client()
            mine = [api.submit(command="generate", prompt=f"client {k} clip {n}", steps=1,
                               duration=0.32, seed=n) for n in range(3)]  # fmt: skip
            with lock:
                ids.extend(mine)
            for job_id in mine:
                assert api.wait(job_id)["status"] == "succeeded"
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not errors, errors
    assert len(ids) == 15 and len(set(ids)) == 15
    listed = {job["id"] for job in server.client().get("/v1/jobs").json()["jobs"]}
    assert set(ids) <= listed


def test_the_engine_route_tells_the_fixed_options_and_the_models_stay_warm(
    server, generated, tiny_bundle
):
    reply = server.client().get("/v1/engine")
    assert reply.status == 200
    info = reply.json()
    assert info["options"]["model"] == str(tiny_bundle.model)
    assert (info["options"]["device"], info["options"]["dtype"]) == ("cpu", "fp32")
    assert info["resolved"]["device"] == "cpu" and "token" not in info["options"]
    assert info["loaded"] is True  # --keep-alive 30m: still loaded after the jobs above


def test_the_openapi_schema_is_served_and_no_documentation_page(server):
    api = server.client()
    schema = api.get("/v1/openapi.json").json()
    assert {"/v1/jobs", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/events", "/v1/jobs/{job_id}/audio",
            "/v1/uploads", "/v1/health", "/v1/engine"} <= set(schema["paths"])  # fmt: skip
    assert schema["components"]["securitySchemes"]["token"]["scheme"] == "bearer"
    body = schema["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]["application/json"]
    commands = {v["title"] for v in body["schema"]["oneOf"]}
    assert commands == {"generate", "remix", "repaint", "extend", "loop"}
    for page in ("/docs", "/redoc"):  # `/` is the page itself: test_server_page.py
        assert api.get(page).status == 404


def test_serving_on_loopback_prints_where_and_no_network_warning(server):
    assert server.lines[0] == f"fluxmusic serving on {server.url}"
    assert server.url.startswith("http://127.0.0.1:")
    assert str(server.data_dir / "server.json") in server.lines[1]
    assert "/login?code=" in server.lines[2]
    assert "reachable from the network" not in server.stderr


def test_no_cors_headers_without_cors_origin(server):
    api = server.client()
    for origin in ("http://localhost:3000", server.url, "null"):
        for reply in (
            api.get("/v1/jobs", headers={"Origin": origin}),
            api.request("OPTIONS", "/v1/jobs", headers={
                "Origin": origin, "Access-Control-Request-Method": "POST"}),
        ):  # fmt: skip
            assert not any(k.startswith("access-control-") for k in reply.headers)
