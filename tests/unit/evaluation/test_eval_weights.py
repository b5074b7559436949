"""Checked weight downloads; only the network transport is replaced."""

from __future__ import annotations

import dataclasses
import hashlib
import io

import pytest

from fluxmusic_cli.errors import CheckpointError, ModelMissingError
from fluxmusic_cli.evaluation import weights

PAYLOAD = b"tiny weights " * 1000


class FakeResponse(io.BytesIO):
    headers = {"Content-Length": str(len(PAYLOAD))}


@pytest.fixture
def served(monkeypatch):
    calls = []

    def open_url(url):
        calls.append(url)
        return FakeResponse(PAYLOAD)

    monkeypatch.setattr(weights, "_open_url", open_url)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return calls


def spec_for(payload: bytes, **changes) -> weights.WeightFile:
    base = dataclasses.replace(
        weights.VGGISH, filename="test.pth", sha256=hashlib.sha256(payload).hexdigest()
    )
    return dataclasses.replace(base, **changes)


def test_download_checks_the_digest_reports_progress_and_caches(served):
    seen = []
    spec = spec_for(PAYLOAD)
    got = weights.ensure_weights(spec, progress=lambda done, total: seen.append((done, total)))
    assert got.source == "download" and got.verified
    assert got.path == weights.weights_dir() / "test.pth" and got.path.read_bytes() == PAYLOAD
    assert seen[-1] == (len(PAYLOAD), len(PAYLOAD))
    again = weights.ensure_weights(spec)
    assert again.source == "cache" and len(served) == 1


def test_a_download_with_the_wrong_digest_is_discarded(served):
    spec = spec_for(b"something else")
    with pytest.raises(CheckpointError, match="does not match its published SHA-256"):
        weights.ensure_weights(spec)
    assert list(weights.weights_dir().iterdir()) == []


def test_offline_mode_names_what_is_missing_without_touching_the_network(monkeypatch):
    monkeypatch.setattr(weights, "_open_url", lambda url: pytest.fail("network used"))
    with pytest.raises(ModelMissingError) as info:
        weights.ensure_weights(weights.PANNS_CNN14_16K)
    assert "Cnn14_16k_mAP=0.438.pth" in str(info.value)
    assert "--panns-weights" in str(info.value)


def test_a_user_file_is_used_and_flagged_when_it_is_not_the_published_checkpoint(tmp_path):
    path = tmp_path / "mine.pth"
    path.write_bytes(PAYLOAD)
    got = weights.ensure_weights(weights.VGGISH, path)
    assert got.source == "user" and not got.verified
    assert got.sha256 == hashlib.sha256(PAYLOAD).hexdigest()
    with pytest.raises(ModelMissingError, match="no such file"):
        weights.ensure_weights(weights.VGGISH, tmp_path / "absent.pth")


def test_published_vggish_digest_agrees_with_its_torch_hub_file_name():
    # torch.hub names files NAME-<first 8 hex digits of the SHA-256>.pth
    assert weights.VGGISH.sha256.startswith(weights.VGGISH.filename.split("-")[1][:8])
