"""Section `serve`: what a warm `fluxmusic serve` saves per clip, and a server under many clients.

    python benchmarks/run.py --only serve [--quick]

Cold against warm. The same clip (the small variant at real size with random weights, using
the `clip` section's components; 10.24 s; 2 and 8 steps) is made by a cold `fluxmusic
generate` (a fresh process with a fresh prompt cache) and by a request to a warm server (its
models loaded by an earlier request). Both run in one run, side by side. A clip's fixed cost is
its wall time minus the denoising and decoding that its record times. For the command, that is
process start, imports, loading and encoding. For the request, it is HTTP, the queue, encoding
its new prompt, writing and downloading. The CLI as a client (`fluxmusic generate --server`,
a fresh process that loads no model) is timed the same way.

Many clients. 100 jobs come from 10 concurrent clients on the tiny bundle, after one job (not
counted) that loads the models. The check: every id is distinct, every job succeeded and is
listed once, and every clip was downloaded, distinct, with its own prompt and seed in its
record. Reported: latency from submit to downloaded clip (p50, p95), and the server's RSS after
10 jobs and after 100.

Every server runs on 127.0.0.1 with a free port and its own data folder, and is stopped
(SIGTERM, then SIGKILL) however the section ends.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import queue
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from common import fluxmusic_exe, load_avg, run_child

WORK = Path("/tmp/fluxmusic-bench")
PROMPT = "A calm piano melody with soft strings and gentle rain in the background."
START_S = 600  # a server's first line (it checks its weights before it listens)
JOB_S = 1800  # one job, at most
TARGET = 0.1  # a warm request's fixed cost, at most this share of the cold command's


@dataclass
class Served:
    proc: subprocess.Popen
    url: str
    token: str

    def rss_mb(self) -> float:
        return _status_kb(self.proc.pid, "VmRSS") / 1024

    def api(self):
        from fluxmusic_cli.client.api import ServerAPI

        return ServerAPI(self.url, self.token, timeout=JOB_S)


@contextlib.contextmanager
def serving(engine_args: list[str], data_dir: Path, env: dict[str, str]) -> Iterator[Served]:
    """`fluxmusic serve --port 0` with `engine_args`, until the block ends (then stopped)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    log = open(data_dir.parent / f"{data_dir.name}-stderr.txt", "wb")  # noqa: SIM115
    cmd = [fluxmusic_exe(), "serve", "--host", "127.0.0.1", "--port", "0", "--data-dir",
           str(data_dir), *engine_args]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, env={**os.environ, **env})
    log.close()
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        for raw in proc.stdout:
            lines.put(raw.decode(errors="replace").rstrip("\n"))
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    try:
        try:
            first = lines.get(timeout=START_S)
        except queue.Empty:
            first = None
        if first is None or not first.startswith("fluxmusic serving on "):
            err = (data_dir.parent / f"{data_dir.name}-stderr.txt").read_text(errors="replace")
            raise RuntimeError(f"serve did not start: {err.strip()[-600:]}")
        token = json.loads((data_dir / "server.json").read_text())["token"]
        yield Served(proc, first.removeprefix("fluxmusic serving on "), token)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)


def _status_kb(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def request(api, body: dict) -> tuple[float, dict, bytes]:
    """(wall seconds, final view, audio bytes) of one job: submit, follow, download."""
    t0 = time.perf_counter()
    job_id = api.submit(body)
    view = api.follow(job_id, lambda _: None)
    audio = api.audio(job_id) if view["status"] == "succeeded" else b""
    return time.perf_counter() - t0, view, audio


def _fixed(wall: float, record: dict | None) -> dict:
    """A clip's wall time split into denoising + decoding (its record's) and the rest."""
    timings = (record or {}).get("timings") or {}
    work = float(timings.get("denoise_s", 0.0)) + float(timings.get("decode_s", 0.0))
    return {
        "wall_s": round(wall, 3),
        "denoise_decode_s": round(work, 3),
        "fixed_s": round(wall - work, 3),
        "timings": timings,
        "dtype": (record or {}).get("dtype"),
        "memory_policy": (record or {}).get("memory_policy"),
    }


def _json_record(stdout: str) -> dict | None:
    try:
        return json.loads(stdout)["outputs"][0]["record"]
    except (ValueError, KeyError, IndexError, TypeError):
        return None


def cold_vs_warm(
    engine_args: list[str],
    steps: tuple[int, ...],
    *,
    repeats: int = 3,
    duration: float = 10.24,
    work: Path,
) -> dict:
    """For each step count: a cold `generate`, `repeats` requests to a warm server and one
    `generate --server`, all of one clip length, each with a prompt no run saw before."""
    exe = fluxmusic_exe()
    out: dict = {"duration_s": duration, "steps": {}}
    takes = iter(range(1, 10_000))
    clip = ["--duration", f"{duration:g}", "--seed", "1"]

    def prompt() -> str:
        return f"{PROMPT} (take {next(takes)})"

    with serving(engine_args, work / "data", {"FLUXMUSIC_CACHE": str(work / "server-cache"),
                                              "HF_HUB_OFFLINE": "1"}) as served:  # fmt: skip
        api = served.api()
        t0 = time.perf_counter()
        _, first, _ = request(api, {"command": "generate", "prompt": prompt(), "steps": 1,
                                    "duration": duration})  # fmt: skip
        out["server_first_request_s"] = round(time.perf_counter() - t0, 3)
        out["server_first_request_status"] = first["status"]
        for n in steps:
            row: dict = {}
            cache = work / f"cold-cache-{n}"
            cold = run_child(
                [exe, "generate", prompt(), "-o", str(work / f"cold-{n}.wav"), "--steps",
                 str(n), *clip, "--json", "-q", "--force", *engine_args],
                env={"FLUXMUSIC_CACHE": str(cache), "HF_HUB_OFFLINE": "1"},
            )  # fmt: skip
            if cold.returncode != 0:
                raise RuntimeError(f"generate exited {cold.returncode}: {cold.stderr[-600:]}")
            row["cold_generate"] = {**_fixed(cold.wall_s, _json_record(cold.stdout)),
                                    "peak_rss_mb": round(cold.peak_rss_mb, 1)}  # fmt: skip
            warm = []
            for _ in range(repeats):
                body = {"command": "generate", "prompt": prompt(), "steps": n, "seed": 1,
                        "duration": duration}  # fmt: skip
                wall, view, audio = request(api, body)
                if view["status"] != "succeeded" or not audio:
                    raise RuntimeError(f"a warm request ended {view['status']}: {view['error']}")
                warm.append(_fixed(wall, view["record"]))
            row["warm_requests"] = warm
            best = sorted(warm, key=lambda r: r["fixed_s"])[len(warm) // 2]  # the median one
            row["warm_request"] = best
            client = run_child(
                [exe, "generate", prompt(), "-o", str(work / f"client-{n}.wav"), "--steps",
                 str(n), *clip, "--json", "-q", "--force", "--server", served.url],
                env={"FLUXMUSIC_TOKEN": served.token},
            )  # fmt: skip
            if client.returncode != 0:
                raise RuntimeError(f"the client exited {client.returncode}: {client.stderr[-600:]}")
            row["client_command"] = {**_fixed(client.wall_s, _json_record(client.stdout)),
                                     "peak_rss_mb": round(client.peak_rss_mb, 1)}  # fmt: skip
            cold_fixed = row["cold_generate"]["fixed_s"]
            row["warm_over_cold_fixed"] = best["fixed_s"] / cold_fixed
            row["client_over_cold_fixed"] = row["client_command"]["fixed_s"] / cold_fixed
            row["holds"] = row["warm_over_cold_fixed"] <= TARGET
            out["steps"][str(n)] = row
        out["server_rss_mb"] = round(served.rss_mb(), 1)
        out["server_peak_rss_mb"] = round(_status_kb(served.proc.pid, "VmHWM") / 1024, 1)
    return out


def many_clients(
    engine_args: list[str],
    *,
    clients: int = 10,
    per_client: int = 10,
    steps: int = 2,
    duration: float = 1.0,
    early: int = 10,
    work: Path,
) -> dict:
    """`clients` threads, each sending `per_client` jobs one after another (submit, follow its
    events, download), against one server; what came back is checked job by job."""
    import numpy as np

    total = clients * per_client
    done: list[dict] = []
    errors: list[str] = []
    lock = threading.Lock()
    rss: dict[str, float] = {}

    with serving(engine_args, work / "many-data", {"FLUXMUSIC_CACHE": str(work / "many-cache"),
                                                   "HF_HUB_OFFLINE": "1"}) as served:  # fmt: skip
        rss["at_start"] = served.rss_mb()
        # One job first, not counted: the models load on it, so the latencies are a warm
        # server's.
        body = {"command": "generate", "prompt": "warm up", "steps": steps, "duration": duration}
        warm_up, first, _ = request(served.api(), body)
        rss["after_warm_up"] = served.rss_mb()

        def client(k: int) -> None:
            api = served.api()
            for n in range(per_client):
                body = {"command": "generate", "prompt": f"client {k} clip {n}",
                        "seed": 1000 * k + n, "steps": steps, "duration": duration}  # fmt: skip
                try:
                    wall, view, audio = request(api, body)
                except Exception as exc:  # noqa: BLE001 - counted as lost, said in the result
                    with lock:
                        errors.append(f"client {k} job {n}: {type(exc).__name__}: {exc}")
                    continue
                record = view.get("record") or {}
                with lock:
                    done.append({
                        "id": view["id"], "status": view["status"], "latency_s": wall,
                        "sha256": hashlib.sha256(audio).hexdigest() if audio else None,
                        "own": record.get("prompt") == body["prompt"]
                        and record.get("seed") == body["seed"],
                    })  # fmt: skip
                    if len(done) == early:
                        rss["after_early"] = served.rss_mb()

        t0 = time.perf_counter()
        threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=JOB_S * per_client)
        wall = time.perf_counter() - t0
        rss["after_all"] = served.rss_mb()
        listed = [j["id"] for j in served.api().jobs()]
    ids = [d["id"] for d in done]
    ok = [d for d in done if d["status"] == "succeeded" and d["sha256"] and d["own"]]
    latencies = np.array([d["latency_s"] for d in done]) if done else np.array([float("nan")])
    return {
        "jobs": total,
        "clients": clients,
        "steps": steps,
        "duration_s": duration,
        "succeeded_and_checked": len(ok),
        "lost": total - len(ok),
        "duplicated_ids": len(ids) - len(set(ids)),
        "distinct_outputs": len({d["sha256"] for d in ok}),
        "listed_once": sum(listed.count(i) == 1 for i in set(ids)),
        "errors": errors[:5],
        "latency_s": {
            "p50": round(float(np.percentile(latencies, 50)), 3),
            "p95": round(float(np.percentile(latencies, 95)), 3),
            "max": round(float(latencies.max()), 3),
        },
        "warm_up_s": round(warm_up, 3),
        "warm_up_status": first["status"],
        "wall_s": round(wall, 2),
        "jobs_per_s": round(len(ok) / wall, 2),
        "server_rss_mb": {k: round(v, 1) for k, v in rss.items()},
        "rss_jobs_early": early,
    }


def run_section(name: str, quick: bool) -> dict:
    import clip as clip_section
    import torch
    from common import matmul_rate

    from fluxmusic_cli.tinybundle.bundle import build_tiny_bundle

    start = load_avg()
    rates = {"fp32": matmul_rate(torch.float32), "bf16": matmul_rate(torch.bfloat16)}
    parts = clip_section._args(clip_section._components())
    with tempfile.TemporaryDirectory(prefix="fm-serve-") as tmp:
        work = Path(tmp)
        tiny = build_tiny_bundle(work / "tiny")
        steps = (2,) if quick else (2, 8)
        warm = cold_vs_warm(parts, steps, repeats=1 if quick else 3, work=work / "warm")
        many = many_clients(
            [*tiny.cli_args(), "--device", "cpu", "--dtype", "fp32"],
            clients=4 if quick else 10, per_client=5 if quick else 10, work=work / "many",
        )  # fmt: skip
    return {
        "components": "small at real size (random weights), T5 at XXL width with 2 of 24 "
        "layers, real-size CLAP and AudioLDM 2 VAE/vocoder (the clip section's)",
        "matmul_gflops_best_burst": {k: round(v, 1) for k, v in rates.items()},
        "cold_vs_warm": warm,
        "many_clients": many,
        "load_avg": {"start": start, "end": load_avg()},
    }


def summary_rows(name: str, r: dict) -> list[tuple[str, str]]:
    if "error" in r:
        return [("error", r["error"][:200])]
    rows: list[tuple[str, str]] = []
    for n, row in r["cold_vs_warm"]["steps"].items():
        cold, warm, cli = row["cold_generate"], row["warm_request"], row["client_command"]
        rows += [
            (f"{n} steps: cold generate, fixed / wall",
             f"{cold['fixed_s']:.2f} s / {cold['wall_s']:.1f} s"),
            (f"{n} steps: warm request, fixed / wall",
             f"{warm['fixed_s']:.2f} s / {warm['wall_s']:.1f} s"),
            (f"{n} steps: warm / cold fixed cost",
             f"{row['warm_over_cold_fixed']:.3f} (target <= {TARGET}: "
             f"{'holds' if row['holds'] else 'misses'})"),
            (f"{n} steps: generate --server, fixed / wall",
             f"{cli['fixed_s']:.2f} s / {cli['wall_s']:.1f} s "
             f"({row['client_over_cold_fixed']:.3f} of cold)"),
        ]  # fmt: skip
    m = r["many_clients"]
    lat, rss = m["latency_s"], m["server_rss_mb"]
    rows += [
        (f"{m['jobs']} jobs from {m['clients']} clients: lost / duplicated",
         f"{m['lost']} / {m['duplicated_ids']} ({m['distinct_outputs']} distinct clips)"),
        ("  latency p50 / p95", f"{lat['p50']:.2f} s / {lat['p95']:.2f} s"),
        (f"  server RSS after {m['rss_jobs_early']} / {m['jobs']} jobs",
         f"{rss.get('after_early', float('nan')):.0f} / {rss['after_all']:.0f} MB"),
    ]  # fmt: skip
    return rows
