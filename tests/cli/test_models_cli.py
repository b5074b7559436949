"""`fluxmusic models`, `download` and `cache`, through the console entry point, on a fake hub."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from fakehub import start_fake_hub

from fluxmusic_cli.engine import cache, hub, paths, registry
from fluxmusic_cli.engine.sources import parse_ref


@pytest.fixture
def fake_hub(monkeypatch):
    server = start_fake_hub(monkeypatch)
    yield server
    server.stop()


def small_files(names, size: int = 50) -> dict[str, bytes]:
    return {name: name.encode().ljust(size, b".") for name in names}


def test_models_json_lists_variants_and_components_with_cache_state(fake_hub, run_cli):
    fake_hub.add(registry.CLAP.repo_id, small_files(registry.CLAP.files))
    assert run_cli(["download", "clap", "--yes", "--no-embeddings", "-q"])[0] == 0

    code, out, err = run_cli(["models", "--json"])

    assert code == 0, err
    rows = {r["name"]: r for r in json.loads(out)}
    assert set(registry.VARIANTS) <= set(rows)
    assert {"t5-city96", "t5-sd3", "clap", "vae-vocoder"} <= set(rows)
    assert "audioldm2" not in json.dumps([r["name"] + r["kind"] for r in rows.values()])
    assert rows["clap"]["cached"] == "yes" and rows["clap"]["where"].startswith(
        str(hub.hub_cache_dir())
    )
    assert rows["small"]["cached"] == "no" and rows["small"]["download_bytes"] == 569_462_050
    assert rows["t5-sd3"]["gated"] is True


def test_download_json_reports_plan_and_paths(fake_hub, run_cli):
    repo = fake_hub.add(registry.CLAP.repo_id, small_files(registry.CLAP.files))

    code, out, err = run_cli(["download", "clap", "--yes", "--json", "--no-embeddings"])

    assert code == 0, err
    doc = json.loads(out)
    (planned,) = doc["plan"]["components"]
    assert planned["source"] == registry.CLAP.repo_id and planned["size_exact"] is True
    assert doc["plan"]["fetch_bytes"] == 50 * len(registry.CLAP.files)
    root = doc["paths"]["clap"]
    assert root.endswith(repo.commit)
    with open(os.path.join(root, "vocab.json"), "rb") as fh:
        assert fh.read() == repo.files["vocab.json"]


def test_large_download_without_terminal_or_yes_is_refused(fake_hub, run_cli):
    big = {"model.safetensors": 5 * 10**9}
    fake_hub.add(registry.CLAP.repo_id, small_files(registry.CLAP.files), advertised=big)

    code, _, err = run_cli(["download", "clap", "--no-embeddings"], stdin="")

    assert code == 2  # a usage error
    assert "pass --yes" in err
    assert "5.00 GB" in err
    assert not cache.is_cached(parse_ref("clap", registry.CLAP.repo_id))


def test_download_gated_repo_without_token_stops_before_fetching(fake_hub, run_cli):
    comp = registry.T5_SOURCES["t5-sd3"]
    fake_hub.add(comp.repo_id, small_files(comp.files), gated=True)

    code, _, err = run_cli(["download", "t5", "--t5", "t5-sd3", "--yes"])

    assert code == 3  # a model that cannot be fetched
    assert "is gated" in err and "HF_TOKEN" in err
    assert fake_hub.seen(contains="/resolve/") == []


def test_offline_download_exits_3_with_one_sentence(tmp_path):
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "FLUXMUSIC_CACHE": str(tmp_path / "fm"),
        "HF_HUB_CACHE": str(tmp_path / "hub"),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "fluxmusic_cli", "download", "clap", "--quiet"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 3
    lines = proc.stderr.strip().splitlines()
    assert lines[0].startswith("error: HF_HUB_OFFLINE is set and these are not on disk: CLAP")
    assert "`fluxmusic download clap`" in lines[1]
    assert "Traceback" not in proc.stderr


def test_cache_path_list_and_rm(fake_hub, run_cli):
    fake_hub.add(registry.CLAP.repo_id, small_files(registry.CLAP.files))
    assert run_cli(["download", "clap", "--yes", "--no-embeddings", "-q"])[0] == 0
    converted = paths.converted_dir() / "small-0123456789abcdef.safetensors"
    converted.parent.mkdir(parents=True)
    converted.write_bytes(b"x" * 1000)
    converted.with_suffix(".json").write_text(json.dumps({"variant": "small"}))

    assert run_cli(["cache", "path"])[1].strip() == str(paths.cache_dir())
    assert run_cli(["cache", "path", "--hub"])[1].strip() == str(hub.hub_cache_dir())

    listing = json.loads(run_cli(["cache", "list", "--json"])[1])
    sizes = {e["name"]: e["size_bytes"] for e in listing["entries"]}
    assert sizes["converted/small-0123456789abcdef.safetensors"] == 1000
    assert sizes[registry.CLAP.repo_id] >= 50 * len(registry.CLAP.files)
    assert listing["total_bytes"] == sum(sizes.values())
    table = run_cli(["cache", "list"])[1]
    assert "laion/larger_clap_music" in table and "total" in table

    code, _, err = run_cli(["cache", "rm", "clap"], stdin="")
    assert code == 2 and "--yes" in err
    code, _, err = run_cli(["cache", "rm", "nothing-like-this", "--yes"])
    assert code == 2 and "entries:" in err

    code, _, err = run_cli(["cache", "rm", "small", "clap", "--yes"])
    assert code == 0, err
    assert not converted.exists() and not hub.repo_cache_dir(registry.CLAP.repo_id).exists()
    assert json.loads(run_cli(["cache", "list", "--json"])[1])["entries"] == []


def test_download_stores_empty_prompt_embeddings_so_encoders_need_not_load_again(
    fake_hub, tmp_path, run_cli
):
    from fluxmusic_cli.engine.conditioning import MODES
    from fluxmusic_cli.tinybundle import write_tiny_clap, write_tiny_t5

    t5_dir, clap_dir = write_tiny_t5(tmp_path / "t5"), write_tiny_clap(tmp_path / "clap")
    t5_repo = registry.T5_SOURCES[registry.DEFAULT_T5].repo_id
    for repo_id, folder in ((t5_repo, t5_dir), (registry.CLAP.repo_id, clap_dir)):
        fake_hub.add(repo_id, {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()})

    code, out, err = run_cli(["download", "t5", "clap", "--yes", "--json"])

    assert code == 0, err
    stored = json.loads(out)["empty_embeddings"]
    assert {(s["encoder"], s["mode"]) for s in stored} == {
        (k, m) for k in ("t5", "clap") for m in MODES
    }
    assert len(list((paths.embeddings_dir() / "empty").glob("*.safetensors"))) == 2 * len(MODES)
