"""The command line as a client of a real `fluxmusic serve` (tiny bundle, 127.0.0.1, port 0):
the installed script with --server or FLUXMUSIC_HOST writes what a local run writes, adds one
job per clip, resumes folders, cancels its job on Ctrl-C, and refuses what it cannot do with one
sentence. The client runs in a home of its own, without any weights."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time

import numpy as np
import pytest
from installed import FLUXMUSIC, needs_script
from served import ENGINE, recording, samples, server_env, start, stopped

pytestmark = [pytest.mark.e2e, needs_script]

GEN = ["slow piano", "--seed", "3", "--steps", "2", "--duration", "1.0"]
EDITS = [
    ("remix", ["--strength", "0.6"]),
    ("repaint", ["--region", "0.2:0.6"]),
    ("extend", ["--add", "1.0"]),
    ("loop", ["--seam", "0.32"]),
]
CLIENT_S = 300


@pytest.fixture(scope="module")
def served(tiny_bundle, tmp_path_factory):
    """A server whose data folder is the default one of the clients' home, so they find its
    token in its server.json."""
    root = tmp_path_factory.mktemp("client")
    srv = start(tiny_bundle, root / "share" / "fluxmusic" / "server", root / "server-home")
    try:
        yield srv
    finally:
        stopped(srv)


@pytest.fixture
def client(served, tmp_path):
    """Run the installed script as a client in `tmp_path`, in a home with no weights and no
    caches, finding the server's token in its default data folder."""
    env = server_env(tmp_path / "client-home")
    env["XDG_DATA_HOME"] = str(served.data_dir.parent.parent)

    def run(*args: str, extra: dict[str, str] | None = None, server: bool = True,
            text: bool = True):  # fmt: skip
        flags = ["--server", served.url] if server else []
        return subprocess.run(
            [str(FLUXMUSIC), *args, *flags], cwd=tmp_path, capture_output=True, text=text,
            env={**env, **(extra or {})}, timeout=CLIENT_S,
        )  # fmt: skip

    return run


def _jobs(served) -> list[dict]:
    return served.client().get("/v1/jobs").json()["jobs"]


def _local(run_cli, tiny_bundle, *args: str) -> None:
    code, _, err = run_cli([*args, "--local", "-q", *tiny_bundle.cli_args(), *ENGINE])
    assert code == 0, err


def _sentence(err: str) -> str:
    return " ".join(err.split())


def test_generate_as_a_client_writes_the_local_samples_and_adds_one_job(
    served, client, tiny_bundle, run_cli, tmp_path
):
    before = len(_jobs(served))
    done = client("generate", *GEN, "-o", "remote.wav")
    assert done.returncode == 0, done.stderr
    jobs = _jobs(served)
    assert len(jobs) == before + 1 and jobs[0]["status"] == "succeeded"
    _local(run_cli, tiny_bundle, "generate", *GEN, "-o", str(tmp_path / "local.wav"))
    assert np.array_equal(samples(tmp_path / "remote.wav"), samples(tmp_path / "local.wav"))
    record = json.loads((tmp_path / "remote.json").read_text())
    assert record["server"] == {"url": served.url, "job": jobs[0]["id"]}
    assert record["output"] == str((tmp_path / "remote.wav").resolve())
    assert (record["prompt"], record["seed"], record["steps"]) == ("slow piano", 3, 2)

    # Replaying the record on the server makes the same clip again, as one more job.
    again = client("generate", "--from-record", "remote.json", "-o", "again.wav")
    assert again.returncode == 0, again.stderr
    assert len(_jobs(served)) == before + 2
    assert np.array_equal(samples(tmp_path / "again.wav"), samples(tmp_path / "local.wav"))


def test_a_clip_to_stdout_as_a_client_has_the_local_samples(client, tiny_bundle, run_cli, tmp_path):
    done = client("generate", *GEN, "-o", "-", text=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout[:4] == b"RIFF"
    _local(run_cli, tiny_bundle, "generate", *GEN, "-o", str(tmp_path / "local.wav"))
    assert np.array_equal(samples(done.stdout), samples(tmp_path / "local.wav"))
    assert [p.name for p in tmp_path.glob("*.json")] == ["local.json"]  # none for stdout


def test_the_run_services_twin_tells_the_same_events_and_the_jobs_progress(served, tmp_path):
    from fluxmusic_cli.client.api import ServerAPI
    from fluxmusic_cli.client.service import RemoteRunService
    from fluxmusic_cli.engine.requests import GenerateSettings
    from fluxmusic_cli.runs.plan import Item

    settings = GenerateSettings(steps=3, duration=0.32)
    items = [Item(index=k, name=f"c{k}", prompt=f"clip {k}", seed=k, settings=settings,
                  path=tmp_path / f"c{k}.wav") for k in range(2)]  # fmt: skip
    events, progress = [], []
    service = RemoteRunService(ServerAPI(served.url, served.token), progress=progress.append,
                               window=2)  # fmt: skip
    summary = service.run(items, events.append)
    assert [e.kind for e in events] == ["item_started"] * 2 + ["item_done"] * 2
    assert [e.written.path for e in summary.done] == [i.path for i in items]
    assert all(i.path.is_file() and i.path.with_suffix(".json").is_file() for i in items)
    assert {(e.stage, e.completed, e.total) for e in progress} >= {("denoise", 3, 3)}


def test_only_the_options_given_are_sent_and_the_server_fills_in_the_rest(served, client):
    done = client("generate", "quiet strings", "--steps", "2", "--duration", "0.5",
                  "--guidance", "7", "-o", "x.wav", "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    request = _jobs(served)[0]["request"]
    # Typed (even at its default), or what the client decided itself (seed, format).
    assert {"steps", "duration", "guidance", "seed", "format", "prompt"} <= set(request)
    assert not {"negative_prompt", "encoders", "sample_rate", "cache"} & set(request)
    outputs = json.loads(done.stdout)["outputs"]
    assert outputs[0]["path"] == "x.wav" and outputs[0]["record"]["guidance"] == 7.0


@pytest.mark.parametrize("command, flags", EDITS, ids=[e[0] for e in EDITS])
def test_an_edit_as_a_client_uploads_the_recording_and_writes_the_local_samples(
    served, client, tiny_bundle, run_cli, tmp_path, command, flags
):
    take = tmp_path / "take.wav"
    recording(take)
    args = [command, str(take), "a cello", *flags, "--seed", "5", "--steps", "2"]
    before = len(_jobs(served))
    done = client(*args, "-o", "remote.wav")
    assert done.returncode == 0, done.stderr
    jobs = _jobs(served)
    assert len(jobs) == before + 1
    assert jobs[0]["command"] == command and jobs[0]["request"]["input"].startswith("upload:")
    _local(run_cli, tiny_bundle, *args, "-o", str(tmp_path / "local.wav"))
    assert np.array_equal(samples(tmp_path / "remote.wav"), samples(tmp_path / "local.wav"))
    record = json.loads((tmp_path / "remote.json").read_text())
    assert record["input"]["path"] == str(take)  # as typed, so --from-record finds it here


def test_an_edit_of_a_clip_the_server_made_starts_from_its_latent_as_locally(
    served, client, tiny_bundle, run_cli, tmp_path
):
    made = client("generate", *GEN, "--save-latent", "-o", "made.wav")
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "made.latent.safetensors").is_file()
    done = client("remix", "made.wav", "--strength", "0.6", "--seed", "5", "--steps", "2",
                  "-o", "remote.wav")  # fmt: skip
    assert done.returncode == 0, done.stderr
    made_by = json.loads((tmp_path / "made.json").read_text())["server"]["job"]
    assert _jobs(served)[0]["request"]["input"] == f"job:{made_by}"
    _local(run_cli, tiny_bundle, "remix", str(tmp_path / "made.wav"), "--strength", "0.6",
           "--seed", "5", "--steps", "2", "-o", str(tmp_path / "local.wav"))  # fmt: skip
    assert np.array_equal(samples(tmp_path / "remote.wav"), samples(tmp_path / "local.wav"))
    assert json.loads((tmp_path / "remote.json").read_text())["input"]["from_latent"] is True


def test_batch_as_a_client_writes_its_folder_and_a_rerun_skips_the_finished_rows(
    served, client, tmp_path
):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("slow piano\nfast drums\n")
    args = ["batch", "prompts.txt", "-o", "out", "--steps", "2", "--duration", "0.5", "--json"]
    before = len(_jobs(served))
    first = client(*args)
    assert first.returncode == 0, first.stderr
    assert len(_jobs(served)) == before + 2
    lines = (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["name"] for line in lines) == [
        "fast-drums-0002", "slow-piano-0001"
    ]  # fmt: skip
    assert (tmp_path / "out" / "slow-piano-0001.json").is_file()

    prompts.write_text("slow piano\nfast drums\njazz trio\n")
    second = client(*args)
    assert second.returncode == 0, second.stderr
    events = [json.loads(line) for line in second.stdout.splitlines()]
    assert [e["event"] for e in events if e["event"] != "item_started"] == [
        "item_skipped", "item_skipped", "item_done", "summary"
    ]  # fmt: skip
    assert events[-1]["done"] == 1 and events[-1]["skipped"] == 2
    assert len(_jobs(served)) == before + 3


def test_vary_as_a_client_writes_its_grid_and_page_and_a_rerun_makes_nothing(
    served, client, tmp_path
):
    args = ["vary", "slow piano", "-o", "grid", "--seeds", "1-2", "--guidance", "3,7",
            "--steps", "2", "--duration", "0.5", "-q"]  # fmt: skip
    before = len(_jobs(served))
    first = client(*args)
    assert first.returncode == 0, first.stderr
    grid = tmp_path / "grid"
    assert len(list(grid.glob("seed*_cfg*_steps2_both.wav"))) == 4
    assert (grid / "index.html").is_file() and (grid / "grid.png").is_file()
    assert len((grid / "manifest.jsonl").read_text().splitlines()) == 4
    assert len(_jobs(served)) == before + 4
    again = client(*args)
    assert again.returncode == 0, again.stderr
    assert len(_jobs(served)) == before + 4


def test_ctrl_c_cancels_the_clients_job_on_the_server(served, tmp_path):
    env = server_env(tmp_path / "client-home")
    env.update(FLUXMUSIC_TOKEN=served.token, FLUXMUSIC_HOST=served.url)
    proc = subprocess.Popen(
        [str(FLUXMUSIC), "generate", "a very long job", "--steps", "1000", "--duration", "10",
         "-o", "long.wav"], cwd=tmp_path, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    try:
        api = served.client()
        deadline = time.monotonic() + 120
        job = None
        while job is None:
            assert time.monotonic() < deadline and proc.poll() is None, "the job never ran"
            top = _jobs(served)[0]
            if top["request"].get("prompt") == "a very long job" and top["progress"]["step"]:
                job = top
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 130
        assert "interrupted" in proc.stderr.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    view = api.wait(job["id"])
    assert view["status"] == "cancelled" and view["progress"]["step"] < 1000
    assert not (tmp_path / "long.wav").exists()


def test_an_engine_option_the_server_does_not_run_is_refused_naming_both(served, client):
    before = len(_jobs(served))
    done = client("generate", "x", "--model", "base", "-o", "x.wav")
    assert done.returncode == 2
    said = _sentence(done.stderr)
    assert "--model base is not what the server" in said
    assert served.url in said and "musicflow_tiny" in said
    # The same value as the server's is no difference.
    same = client("generate", "x", "--device", "cpu", "--steps", "1", "--duration", "0.32",
                  "-o", "y.wav")  # fmt: skip
    assert same.returncode == 0, same.stderr
    assert len(_jobs(served)) == before + 1


def test_local_runs_here_even_when_fluxmusic_host_names_a_server(
    run_cli, tiny_bundle, tmp_path, monkeypatch
):
    monkeypatch.setenv("FLUXMUSIC_HOST", f"http://127.0.0.1:{_closed_port()}")
    out = tmp_path / "here.wav"
    code, _, err = run_cli(["generate", "x", "--steps", "1", "--duration", "0.32", "--local",
                            "-o", str(out), *tiny_bundle.cli_args(), *ENGINE])  # fmt: skip
    assert code == 0, err
    assert "server" not in json.loads(out.with_suffix(".json").read_text())


def test_a_server_that_cannot_be_reached_is_one_sentence(client):
    url = f"http://127.0.0.1:{_closed_port()}"
    done = client("generate", "x", "-o", "x.wav", server=False, extra={"FLUXMUSIC_HOST": url})
    assert done.returncode == 7
    assert _sentence(done.stderr) == (
        f"error: Cannot reach the fluxmusic server at {url}: nothing listens there; start it "
        "with `fluxmusic serve`, or add --local to run here."
    )


def test_a_wrong_token_is_one_sentence(client):
    done = client("generate", "x", "-o", "x.wav", extra={"FLUXMUSIC_TOKEN": "not-the-token"})
    assert done.returncode == 7
    assert "does not take this token" in _sentence(done.stderr)
    assert done.stderr.count("error:") == 1


def test_as_a_client_no_engine_is_built_and_nothing_is_downloaded(
    served, run_cli, tmp_path, monkeypatch
):
    """In a home with no weights (the default model is not on disk): nothing loads or plans
    a download, and the clip is written."""
    from fluxmusic_cli.cli import downloads
    from fluxmusic_cli.engine import hub, pipeline, preflight

    def refused(*args, **kwargs):
        raise AssertionError("a client must not build an engine or look for weights")

    monkeypatch.setattr(pipeline.Engine, "__init__", refused)
    for module, name in [(downloads, "ensure_downloaded"), (preflight, "plan_download"),
                         (hub, "ensure_local"), (hub, "local_state")]:  # fmt: skip
        monkeypatch.setattr(module, name, refused)
    monkeypatch.setenv("FLUXMUSIC_TOKEN", served.token)
    out = tmp_path / "clip.wav"
    code, _, err = run_cli(["generate", "x", "--steps", "1", "--duration", "0.32",
                            "--server", served.url, "-o", str(out)])  # fmt: skip
    assert code == 0, err
    assert out.is_file() and out.with_suffix(".json").is_file()


def test_server_and_local_together_are_refused(run_cli):
    code, _, err = run_cli(["generate", "x", "--server", "http://127.0.0.1:8677", "--local"])
    assert code == 2 and "--server and --local contradict" in err


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then let go)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
