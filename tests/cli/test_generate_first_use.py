"""The default path a new user takes: no local paths, weights fetched from the hub on first
use (a local fake of the hub's HTTP endpoint serving tiny bundles under the real repo ids)."""

from __future__ import annotations

import json

import pytest
import soundfile as sf
from fakehub import serve_tiny_bundle, start_fake_hub

FAST = ["--steps", "2", "--duration", "0.48", "--device", "cpu", "--dtype", "fp32"]


@pytest.fixture
def hub_with_tiny_weights(monkeypatch, tiny_bundle):
    server = serve_tiny_bundle(start_fake_hub(monkeypatch), tiny_bundle)
    yield server
    server.stop()


def test_first_generate_downloads_then_runs_offline(
    hub_with_tiny_weights, monkeypatch, run_cli, tmp_path
):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(["generate", "first tune", "-o", "a.wav", "--seed", "1", "--yes", *FAST])
    assert code == 0, err
    record = json.loads((tmp_path / "a.json").read_text())
    assert record["model"]["variant"] == "small"
    assert record["model"]["file"].endswith(".safetensors")  # converted once in the tool cache
    fetched = {r.path for r in hub_with_tiny_weights.requests if r.method == "GET"}
    assert any("musicflow_s.pt" in p for p in fetched)

    hub_with_tiny_weights.requests.clear()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, _, err = run_cli(["generate", "first tune", "-o", "b.wav", "--seed", "1", *FAST])
    assert code == 0, err
    assert hub_with_tiny_weights.requests == []
    assert (sf.read(tmp_path / "a.wav")[0] == sf.read(tmp_path / "b.wav")[0]).all()


def test_offline_without_weights_says_what_to_download(monkeypatch, run_cli, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, _, err = run_cli(["generate", "tune", *FAST])
    assert code == 3
    assert "fluxmusic download" in err and "Traceback" not in err
