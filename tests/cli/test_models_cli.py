"""`fluxmusic models`, `download` and `cache`, through Typer's runner against a fake hub."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from fakehub import start_fake_hub
from typer.testing import CliRunner

from fluxmusic_cli.cli.app import app
from fluxmusic_cli.engine import hub, paths, registry
from fluxmusic_cli.engine.sources import parse_ref
from fluxmusic_cli.errors import ModelMissingError, UsageError

runner = CliRunner()


@pytest.fixture
def fake_hub(monkeypatch):
    server = start_fake_hub(monkeypatch)
    yield server
    server.stop()


def small_files(names, size: int = 50) -> dict[str, bytes]:
    return {name: name.encode().ljust(size, b".") for name in names}


def test_models_json_lists_variants_and_components_with_cache_state(fake_hub):
    fake_hub.add(registry.CLAP.repo_id, small_files(registry.CLAP.files))
    assert runner.invoke(app, ["download", "clap", "--yes", "--no-embeddings", "-q"]).exit_code == 0

    result = runner.invoke(app, ["models", "--json"])

    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert set(registry.VARIANTS) <= set(rows)
    assert {"t5-city96", "t5-sd3", "clap", "vae-vocoder"} <= set(rows)
    assert "audioldm2" not in json.dumps([r["name"] + r["kind"] for r in rows.values()])
    assert rows["clap"]["cached"] == "yes" and rows["clap"]["where"].startswith(
        str(hub.hub_cache_dir())
    )
    assert rows["small"]["cached"] == "no" and rows["small"]["download_bytes"] == 569_462_050
    assert rows["t5-sd3"]["gated"] is True


def test_download_json_reports_plan_and_paths(fake_hub):
    repo = fake_hub.add(registry.CLAP.repo_id, small_files(registry.CLAP.files))

    result = runner.invoke(app, ["download", "clap", "--yes", "--json", "--no-embeddings"])

    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    (planned,) = doc["plan"]["components"]
    assert planned["source"] == registry.CLAP.repo_id and planned["size_exact"] is True
    assert doc["plan"]["fetch_bytes"] == 50 * len(registry.CLAP.files)
    root = doc["paths"]["clap"]
    assert root.endswith(repo.commit)
    with open(os.path.join(root, "vocab.json"), "rb") as fh:
        assert fh.read() == repo.files["vocab.json"]


def test_large_download_without_terminal_or_yes_is_refused(fake_hub):
    big = {"model.safetensors": 5 * 10**9}
    fake_hub.add(registry.CLAP.repo_id, small_files(registry.CLAP.files), advertised=big)

    result = runner.invoke(app, ["download", "clap", "--no-embeddings"])

    assert isinstance(result.exception, UsageError)
    assert "pass --yes" in result.exception.message
    assert "5.00 GB" in result.stderr
    assert not hub.is_cached(parse_ref("clap", registry.CLAP.repo_id))


def test_download_gated_repo_without_token_stops_before_fetching(fake_hub):
    comp = registry.T5_SOURCES["t5-sd3"]
    fake_hub.add(comp.repo_id, small_files(comp.files), gated=True)

    result = runner.invoke(app, ["download", "t5", "--t5", "t5-sd3", "--yes"])

    assert isinstance(result.exception, ModelMissingError)
    assert "is gated" in result.exception.message and "HF_TOKEN" in result.exception.hint
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


def test_cache_path_list_and_rm(fake_hub):
    fake_hub.add(registry.CLAP.repo_id, small_files(registry.CLAP.files))
    runner.invoke(app, ["download", "clap", "--yes", "--no-embeddings", "-q"])
    converted = paths.converted_dir() / "small-0123456789abcdef.safetensors"
    converted.parent.mkdir(parents=True)
    converted.write_bytes(b"x" * 1000)
    converted.with_suffix(".json").write_text(json.dumps({"variant": "small"}))

    assert runner.invoke(app, ["cache", "path"]).stdout.strip() == str(paths.cache_dir())
    assert runner.invoke(app, ["cache", "path", "--hub"]).stdout.strip() == str(hub.hub_cache_dir())

    listing = json.loads(runner.invoke(app, ["cache", "list", "--json"]).stdout)
    sizes = {e["name"]: e["size_bytes"] for e in listing["entries"]}
    assert sizes["converted/small-0123456789abcdef.safetensors"] == 1000
    assert sizes[registry.CLAP.repo_id] >= 50 * len(registry.CLAP.files)
    assert listing["total_bytes"] == sum(sizes.values())
    table = runner.invoke(app, ["cache", "list"]).stdout
    assert "laion/larger_clap_music" in table and "total" in table

    refused = runner.invoke(app, ["cache", "rm", "clap"])
    assert isinstance(refused.exception, UsageError) and "--yes" in refused.exception.message
    unknown = runner.invoke(app, ["cache", "rm", "nothing-like-this", "--yes"])
    assert isinstance(unknown.exception, UsageError) and "entries:" in unknown.exception.message

    done = runner.invoke(app, ["cache", "rm", "small", "clap", "--yes"])
    assert done.exit_code == 0, done.output
    assert not converted.exists() and not hub.repo_cache_dir(registry.CLAP.repo_id).exists()
    assert json.loads(runner.invoke(app, ["cache", "list", "--json"]).stdout)["entries"] == []


def test_download_stores_empty_prompt_embeddings_so_encoders_need_not_load_again(
    fake_hub, tmp_path, monkeypatch
):
    from fluxmusic_cli.engine.conditioning import MODES
    from fluxmusic_cli.tinybundle import write_tiny_clap, write_tiny_t5

    t5_dir, clap_dir = write_tiny_t5(tmp_path / "t5"), write_tiny_clap(tmp_path / "clap")
    t5_repo = registry.T5_SOURCES[registry.DEFAULT_T5].repo_id
    for repo_id, folder in ((t5_repo, t5_dir), (registry.CLAP.repo_id, clap_dir)):
        fake_hub.add(repo_id, {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()})

    result = runner.invoke(app, ["download", "t5", "clap", "--yes", "--json"])

    assert result.exit_code == 0, result.output
    stored = json.loads(result.stdout)["empty_embeddings"]
    assert {(s["encoder"], s["mode"]) for s in stored} == {
        (k, m) for k in ("t5", "clap") for m in MODES
    }
    assert len(list((paths.embeddings_dir() / "empty").glob("*.safetensors"))) == 2 * len(MODES)
