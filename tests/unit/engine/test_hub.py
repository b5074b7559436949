"""Downloads, cache, conversion and pre-flight, against a local fake of the hub's HTTP endpoint.

Only the transport is fake: huggingface_hub really downloads into its cache layout, and the
real converter turns a real (tiny) torch pickle into safetensors.
"""

from __future__ import annotations

import io
import os
import shutil
from collections import namedtuple

import pytest
from fakehub import start_fake_hub

from fluxmusic_cli.engine import cache, conversion, hub, paths, preflight, registry
from fluxmusic_cli.engine.sources import parse_ref
from fluxmusic_cli.errors import ModelMissingError


@pytest.fixture
def fake_hub(monkeypatch):
    server = start_fake_hub(monkeypatch)
    yield server
    server.stop()


def clap_files(weights: bytes = b"W" * 3000, *, weights_name: str = "model.safetensors") -> dict:
    files = {name: f"{name} contents".encode() for name in registry.CLAP.files}
    files.pop("model.safetensors")
    files[weights_name] = weights
    return files


def tiny_release_pt() -> bytes:
    """A released-style pickle: {"ema": state dict with FLUX key names}, tiny sizes."""
    import torch

    hidden, head = 64, 32
    g = torch.Generator().manual_seed(0)
    shapes = {
        "img_in.weight": (hidden, 32),
        "txt_in.weight": (hidden, 16),
        "time_in.in_layer.weight": (hidden, 256),
        "vector_in.in_layer.weight": (hidden, 8),
        "final_layer.linear.weight": (32, hidden),
        "double_blocks.0.img_attn.norm.query_norm.scale": (head,),
        "double_blocks.0.img_mlp.0.weight": (4 * hidden, hidden),
        "single_blocks.0.linear1.weight": (8, hidden),
    }
    sd = {k: torch.randn(s, generator=g) for k, s in shapes.items()}
    buf = io.BytesIO()
    torch.save({"ema": sd, "steps": 1}, buf)
    return buf.getvalue()


def test_download_lands_in_the_hub_cache_and_is_reused_without_requests(fake_hub):
    repo = fake_hub.add(registry.CLAP.repo_id, clap_files())
    ref = parse_ref("clap", registry.CLAP.repo_id)
    assert not cache.is_cached(ref)

    seen = []
    root = hub.ensure_local(ref, progress=lambda label, done, total: seen.append((label, done)))

    repo_dir = hub.hub_cache_dir() / "models--laion--larger_clap_music"
    assert root == repo_dir / "snapshots" / repo.commit
    for name, data in repo.files.items():
        assert (root / name).read_bytes() == data
    assert cache.is_cached(ref) and cache.where(ref) == root
    assert ("laion/larger_clap_music/model.safetensors", 3000) in seen
    # Every file after the first is pinned to the resolved commit, so the snapshot is consistent.
    assert all(repo.commit in r.path for r in fake_hub.seen("HEAD")[1:])

    before = len(fake_hub.requests)
    assert hub.ensure_local(ref) == root
    assert len(fake_hub.requests) == before


def test_weights_under_the_older_name_and_absent_tokenizer_files_are_accepted(fake_hub):
    files = clap_files(weights_name="pytorch_model.bin")
    del files["tokenizer.json"]
    fake_hub.add(registry.CLAP.repo_id, files)
    ref = parse_ref("clap", registry.CLAP.repo_id)

    root = hub.ensure_local(ref)

    assert (root / "pytorch_model.bin").read_bytes() == files["pytorch_model.bin"]
    assert not (root / "model.safetensors").exists()
    assert cache.is_cached(ref)
    # The absences are remembered: a refresh does not ask for model.safetensors again.
    before = len(fake_hub.seen(contains="model.safetensors"))
    hub.ensure_local(ref, refresh=True)
    assert len(fake_hub.seen(contains="model.safetensors")) == before


def test_missing_required_file_names_repo_and_file(fake_hub):
    files = clap_files()
    del files["vocab.json"]
    fake_hub.add(registry.CLAP.repo_id, files)
    with pytest.raises(ModelMissingError, match=r"larger_clap_music .*has no file vocab\.json"):
        hub.ensure_local(parse_ref("clap", registry.CLAP.repo_id))


def test_unknown_repo_is_reported_as_not_found(fake_hub):
    with pytest.raises(ModelMissingError, match=r"someone/nothing was not found"):
        hub.ensure_local(parse_ref("clap", "someone/nothing"))


def test_interrupted_transfer_resumes_with_a_range_request(fake_hub):
    from huggingface_hub import constants

    # huggingface_hub keeps what it received in whole chunks, so cut after the first chunk.
    chunk = constants.DOWNLOAD_CHUNK_SIZE
    weights = os.urandom(chunk + 300_000)
    fake_hub.add(registry.CLAP.repo_id, clap_files(weights))
    fake_hub.drop_after["model.safetensors"] = chunk + 100_000

    root = hub.ensure_local(parse_ref("clap", registry.CLAP.repo_id))

    assert (root / "model.safetensors").read_bytes() == weights
    ranges = [r.headers.get("range") for r in fake_hub.seen("GET", "model.safetensors")]
    assert ranges == [None, f"bytes={chunk}-"]


def test_offline_without_files_names_what_is_missing_and_the_command(fake_hub, monkeypatch):
    fake_hub.add(registry.CLAP.repo_id, clap_files())
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    with pytest.raises(ModelMissingError) as info:
        hub.ensure_local(parse_ref("clap", registry.CLAP.repo_id))

    err = info.value
    assert "larger_clap_music) is not in the local cache" in err.message
    assert "HF_HUB_OFFLINE" in err.message
    assert "`fluxmusic download clap`" in err.hint
    assert err.exit_code == 3 and err.message.count(". ") == 0
    assert fake_hub.requests == []


def test_offline_with_some_files_missing_names_them(fake_hub, monkeypatch):
    fake_hub.add(registry.CLAP.repo_id, clap_files())
    root = hub.ensure_local(parse_ref("clap", registry.CLAP.repo_id))
    (root / "vocab.json").unlink()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    with pytest.raises(ModelMissingError, match=r"only partly .*\(missing: vocab\.json\)"):
        hub.ensure_local(parse_ref("clap", registry.CLAP.repo_id))


def test_offline_with_cached_files_works_without_network(fake_hub, monkeypatch):
    fake_hub.add(registry.CLAP.repo_id, clap_files())
    ref = parse_ref("clap", registry.CLAP.repo_id)
    root = hub.ensure_local(ref)
    fake_hub.stop()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    count = len(fake_hub.requests)

    assert hub.ensure_local(ref, refresh=True) == root
    assert len(fake_hub.requests) == count


def test_gated_repo_without_token_says_accept_the_licence(fake_hub, monkeypatch):
    comp = registry.T5_SOURCES["t5-sd3"]
    fake_hub.add(comp.repo_id, {f: b"x" * 10 for f in comp.files}, gated=True)
    fake_hub.tokens.add("hf_good")
    ref = parse_ref("t5", "sd3")

    with pytest.raises(ModelMissingError) as info:
        hub.ensure_local(ref)
    assert "is gated" in info.value.message
    assert "licence" in info.value.hint and "HF_TOKEN" in info.value.hint
    assert "--token" in info.value.hint

    with pytest.raises(ModelMissingError, match="is gated"):
        hub.ensure_local(ref, token="hf_wrong")

    monkeypatch.setenv("HF_TOKEN", "hf_good")
    root = hub.ensure_local(ref)
    assert (root / "text_encoder_3" / "config.json").read_bytes() == b"x" * 10


def test_released_pt_is_converted_once_and_reused_without_the_pt(fake_hub):
    from safetensors.torch import load_file

    fake_hub.add(registry.FLUXMUSIC_REPO, {"musicflow_s.pt": tiny_release_pt()})
    ref = parse_ref("transformer", "small")

    out = conversion.ensure_transformer(ref)

    assert out.parent == paths.converted_dir() and out.name.startswith("small-")
    tensors = load_file(str(out))
    assert tensors["img_in.weight"].shape == (64, 32) and "steps" not in tensors
    assert cache.is_cached(ref) and cache.where(ref) == out
    stamp, requests = out.stat().st_mtime_ns, len(fake_hub.requests)

    assert conversion.ensure_transformer(ref) == out
    assert out.stat().st_mtime_ns == stamp and len(fake_hub.requests) == requests

    # With the .pt gone from the hub cache, a refresh asks for its etag only and keeps the file.
    shutil.rmtree(hub.repo_cache_dir(registry.FLUXMUSIC_REPO))
    assert conversion.ensure_transformer(ref, refresh=True) == out
    assert [r.method for r in fake_hub.requests[requests:]] == ["HEAD"]
    assert out.stat().st_mtime_ns == stamp


def test_offline_transformer_names_the_download_command(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelMissingError) as info:
        conversion.ensure_transformer(parse_ref("transformer", "base"))
    assert "`fluxmusic download base`" in info.value.hint


def test_plan_reports_exact_sizes_gating_access_and_memory(fake_hub):
    comp = registry.T5_SOURCES["t5-sd3"]
    fake_hub.add(comp.repo_id, {f: b"x" * 100 for f in comp.files}, gated=True)
    fake_hub.add(registry.CLAP.repo_id, clap_files(b"W" * 500))
    fake_hub.tokens.add("hf_good")
    refs = [parse_ref("t5", "sd3"), parse_ref("clap", registry.CLAP.repo_id)]

    plan = preflight.plan_download(refs)
    t5, clap = plan.components
    assert (t5.gated, t5.access, t5.size_exact) == (True, "no", True)
    assert t5.fetch_bytes == 100 * len(comp.files)
    assert clap.access == "not needed"
    assert clap.fetch_bytes == sum(map(len, clap_files(b"W" * 500).values()))
    t5_params, clap_params = registry.PARAMS_BY_KIND["t5"], registry.PARAMS_BY_KIND["clap"]
    assert plan.memory_bytes("fp32") == 4 * (t5_params + clap_params)
    assert plan.peak_memory_bytes("bf16") == 2 * t5_params
    with pytest.raises(ModelMissingError, match="is gated"):
        plan.check()

    assert preflight.plan_download(refs, token="hf_good").components[0].access == "yes"

    hub.ensure_local(refs[1])
    cached = preflight.plan_download(refs[1:])
    assert cached.nothing_to_do and cached.fetch_bytes == 0


def test_plan_offline_uses_registry_sizes_and_unknown_access(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    plan = preflight.plan_download([parse_ref("transformer", "small"), parse_ref("t5", "sd3")])
    small, t5 = plan.components
    assert small.fetch_bytes == small.convert_bytes == registry.VARIANTS["small"].size_bytes
    assert t5.access == "unknown" and not t5.size_exact


def test_not_enough_disk_space_refuses_to_start(fake_hub, monkeypatch):
    pt = tiny_release_pt()
    fake_hub.add(registry.FLUXMUSIC_REPO, {"musicflow_s.pt": pt})
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**12, 0, len(pt)))

    plan = preflight.plan_download([parse_ref("transformer", "small")])

    # The .pt and its conversion both land on this one disk.
    assert [d.needed_bytes for d in plan.disks] == [2 * len(pt)]
    with pytest.raises(ModelMissingError, match=r"Not enough free disk space"):
        plan.check()


def test_offline_plan_with_missing_files_refuses_with_the_download_command(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    plan = preflight.plan_download([parse_ref("transformer", "small")])
    with pytest.raises(ModelMissingError, match="HF_HUB_OFFLINE is set") as info:
        plan.check()
    assert "`fluxmusic download small`" in info.value.hint


def test_network_failure_without_cache_says_retry_or_use_local_paths():
    from huggingface_hub.errors import LocalEntryNotFoundError

    ref = parse_ref("clap", registry.CLAP.repo_id)
    err = hub.translate_error(LocalEntryNotFoundError("connection refused"), ref, ref.hub.repo_id)
    assert isinstance(err, ModelMissingError)
    assert "Could not reach the hub" in err.message and "local paths" in err.hint


def test_cache_listing_and_removal(fake_hub):
    fake_hub.add(registry.CLAP.repo_id, clap_files())
    fake_hub.add(registry.FLUXMUSIC_REPO, {"musicflow_s.pt": tiny_release_pt()})
    hub.ensure_local(parse_ref("clap", registry.CLAP.repo_id))
    converted = conversion.ensure_transformer(parse_ref("transformer", "small"))

    entries = {e.name: e for e in cache.list_cache()}
    assert set(entries) == {
        registry.CLAP.repo_id,
        registry.FLUXMUSIC_REPO,
        f"converted/{converted.name}",
    }
    assert entries[f"converted/{converted.name}"].size_bytes == converted.stat().st_size

    (small,) = cache.find_cache_entries("small")
    cache.remove_cache_entry(small)
    assert not converted.exists() and not converted.with_suffix(".json").exists()
    (clap,) = cache.find_cache_entries("clap")
    cache.remove_cache_entry(clap)
    assert not hub.repo_cache_dir(registry.CLAP.repo_id).exists()
    assert [e.name for e in cache.list_cache()] == [registry.FLUXMUSIC_REPO]
