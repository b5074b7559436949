"""A server's jobs over time, through real `fluxmusic serve` processes: cancelling within one
step, a full queue, queued jobs sharing a forward pass, models released when idle, and a
kill -9, a SIGTERM and a Ctrl-C followed by restarts on the same data folder."""

from __future__ import annotations

import signal
import time
import uuid

import pytest
from installed import needs_script
from served import start, stopped

pytestmark = [pytest.mark.e2e, needs_script]

# A job that would run for minutes on the tiny bundle: it is stopped long before.
LONG = {"command": "generate", "prompt": "a long job", "steps": 1000, "duration": 1.0}
SHORT = {"command": "generate", "steps": 2, "duration": 0.32}


@pytest.fixture(scope="module")
def busy(tiny_bundle, tmp_path_factory):
    """Two places in the queue, models released as soon as it is empty, pairs of jobs in one
    forward pass."""
    root = tmp_path_factory.mktemp("busy")
    srv = start(tiny_bundle, root / "data", root / "home", "--max-queue", "2", "--keep-alive",
                "0", "--max-batch", "2")  # fmt: skip
    try:
        yield srv
    finally:
        stopped(srv)


def test_a_running_job_is_cancelled_within_one_step(busy):
    api = busy.client()
    job_id = api.submit(**LONG)
    api.wait_for_step(job_id, 2)
    reply = api.request("DELETE", f"/v1/jobs/{job_id}")
    assert reply.status == 202
    at_cancel = reply.json()["progress"]["step"]
    view = api.wait(job_id)
    assert view["status"] == "cancelled" and view["error"]
    assert at_cancel <= view["progress"]["step"] <= at_cancel + 1
    assert view["progress"]["steps"] == 1000 and view["record"] is None
    assert list((busy.data_dir / "outputs").glob(f"{job_id}*")) == []
    assert api.get(f"/v1/jobs/{job_id}/audio").status == 409


def test_a_job_past_max_queue_gets_429_with_retry_after(busy):
    api = busy.client()
    running = api.submit(**LONG)
    api.wait_for_step(running, 1)
    waiting = [api.submit(prompt=f"waits {k}", **SHORT) for k in range(2)]
    reply = api.request("POST", "/v1/jobs", json_body={"prompt": "one too many", **SHORT})
    assert reply.status == 429 and "--max-queue" in reply.json()["error"]
    assert int(reply.headers["retry-after"]) >= 1
    # A queued job deleted is dropped: cancelled, never started.
    dropped = api.request("DELETE", f"/v1/jobs/{waiting[0]}")
    assert dropped.status == 200 and dropped.json()["status"] == "cancelled"
    assert api.request("POST", "/v1/jobs", json_body={"prompt": "fits now", **SHORT}).status == 202
    for job_id in [running, *waiting[1:]]:
        api.request("DELETE", f"/v1/jobs/{job_id}")
    view = api.wait(waiting[0])
    assert view["status"] == "cancelled" and view["started"] is None


def test_compatible_queued_jobs_share_a_forward_pass_and_the_models_go_when_idle(busy):
    api = busy.client()
    for job in api.get("/v1/jobs").json()["jobs"]:  # the previous test's leftovers
        if job["status"] in ("queued", "running"):
            api.wait(job["id"])
    blocker = api.submit(**LONG)
    api.wait_for_step(blocker, 1)
    pair = [api.submit(prompt=f"pair {k}", seed=k, **SHORT) for k in range(2)]
    api.request("DELETE", f"/v1/jobs/{blocker}")
    views = [api.wait(job_id) for job_id in pair]
    assert [v["status"] for v in views] == ["succeeded", "succeeded"]
    assert views[0]["started"] == views[1]["started"]  # started together, one forward pass
    assert [v["record"]["forward_batch"] for v in views] == [2, 2]
    assert [v["record"]["prompt"] for v in views] == ["pair 0", "pair 1"]
    # --keep-alive 0: the models are released once the queue is empty.
    deadline = time.monotonic() + 60
    while api.get("/v1/engine").json()["loaded"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert api.get("/v1/engine").json()["loaded"] is False


def test_a_job_that_fails_says_why_and_the_server_goes_on(busy):
    """An edit whose input job is deleted while it waits fails with that sentence; the next
    job runs."""
    api = busy.client()
    source = api.submit(prompt="to be deleted", **SHORT)
    assert api.wait(source)["status"] == "succeeded"
    blocker = api.submit(**LONG)
    api.wait_for_step(blocker, 1)
    edit = api.submit(command="remix", input=f"job:{source}", steps=2)
    assert api.request("DELETE", f"/v1/jobs/{source}").status == 204
    api.request("DELETE", f"/v1/jobs/{blocker}")
    view = api.wait(edit)
    assert view["status"] == "failed"
    assert view["error"] == f"input job:{source} is not a job on this server."
    after = api.submit(prompt="after a failure", **SHORT)
    assert api.wait(after)["status"] == "succeeded"


def test_kill_9_then_restart_interrupts_the_running_job_and_runs_the_queued_one(
    tiny_bundle, tmp_path
):
    data, home = tmp_path / "data", tmp_path / "home"
    first = start(tiny_bundle, data, home)
    try:
        api = first.client()
        old = api.submit(prompt="before the crash", **SHORT)
        assert api.wait(old)["status"] == "succeeded"
        old_audio = api.audio(old)
        killed = api.submit(**LONG)
        api.wait_for_step(killed, 1)
        queued = api.submit(prompt="waits through the crash", **SHORT)
        assert api.job(queued)["status"] == "queued"
        first.stop(signal.SIGKILL)
        assert first.proc.returncode == -signal.SIGKILL
    finally:
        stopped(first)

    orphan = data / "uploads" / str(uuid.uuid4())  # kept by a kill before it was listed
    orphan.write_bytes(b"RIFF")
    second = start(tiny_bundle, data, home)
    try:
        assert not orphan.exists()
        api = second.client()
        assert api.wait(queued)["status"] == "succeeded"
        view = api.job(killed)
        assert view["status"] == "interrupted" and "stopped while this job ran" in view["error"]
        assert api.get(f"/v1/jobs/{killed}/audio").status == 409
        assert list((data / "outputs").glob(f"{killed}*")) == []
        assert api.audio(old) == old_audio
        assert second.token == first.token  # kept in server.json

        # SIGTERM: the running job stops at its next step, the queued one waits, exit 0.
        stopped_job = api.submit(**LONG)
        api.wait_for_step(stopped_job, 1)
        waiting = api.submit(prompt="waits through the stop", **SHORT)
        assert second.stop(signal.SIGTERM) == 0
        assert "interrupted" in second.stderr
    finally:
        stopped(second)

    third = start(tiny_bundle, data, home)
    try:
        api = third.client()
        assert api.job(stopped_job)["status"] == "interrupted"
        assert api.wait(waiting)["status"] == "succeeded"
        assert third.stop(signal.SIGINT) == 0  # Ctrl-C
    finally:
        stopped(third)
