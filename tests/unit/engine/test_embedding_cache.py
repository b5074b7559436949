"""The embedding store: round trips, atomic writes, the prompt size cap and its switches."""

from __future__ import annotations

import os

import pytest
import torch

from fluxmusic_cli.engine import paths
from fluxmusic_cli.engine.embedding_cache import EmbeddingCache, EmbeddingKey


def _key(prompt: str, mode: str = "training", revision: str = "main") -> EmbeddingKey:
    return EmbeddingKey("hub:owner/t5@main", revision, mode, prompt)


def _set_age(cache: EmbeddingCache, key: EmbeddingKey, seconds_ago: int) -> None:
    t = 1_700_000_000 - seconds_ago
    os.utime(cache.path_for(key), (t, t))


def test_put_then_get_returns_float32_copy(tmp_path):
    cache = EmbeddingCache(tmp_path)
    value = torch.randn(4, 3, dtype=torch.bfloat16)
    cache.put(_key("warm piano"), value)
    got = cache.get(_key("warm piano"))
    assert got.dtype == torch.float32
    assert torch.equal(got, value.float())


def test_every_key_field_separates_entries(tmp_path):
    cache = EmbeddingCache(tmp_path)
    cache.put(_key("a"), torch.zeros(2))
    assert cache.get(_key("a", mode="reference-script")) is None
    assert cache.get(_key("a", revision="other")) is None
    assert cache.get(EmbeddingKey("local:/x", "main", "training", "a")) is None
    assert cache.get(_key("b")) is None
    assert cache.get(_key("a")) is not None


def test_put_leaves_no_temporary_file(tmp_path):
    cache = EmbeddingCache(tmp_path)
    cache.put(_key(""), torch.ones(3))
    cache.put(_key("x"), torch.ones(3))
    names = sorted(p.name for p in tmp_path.rglob("*") if p.is_file())
    assert len(names) == 2
    assert all(n.endswith(".safetensors") and not n.startswith(".") for n in names)


def test_unreadable_or_foreign_file_is_a_miss(tmp_path):
    cache = EmbeddingCache(tmp_path)
    key, other = _key("a"), _key("b")
    cache.put(other, torch.ones(2))
    cache.path_for(key).parent.mkdir(parents=True, exist_ok=True)
    os.replace(cache.path_for(other), cache.path_for(key))  # right name, wrong metadata
    assert cache.get(key) is None
    cache.path_for(key).write_bytes(b"not a safetensors file")
    assert cache.get(key) is None
    cache.put(key, torch.ones(2))
    assert cache.get(key) is not None


def test_cap_evicts_least_recently_used_prompts_but_never_empty(tmp_path):
    cache = EmbeddingCache(tmp_path)
    cache.put(_key(""), torch.zeros(256))
    _set_age(cache, _key(""), 10_000)
    cache.put(_key("old"), torch.zeros(256))
    _set_age(cache, _key("old"), 300)
    one = cache.path_for(_key("old")).stat().st_size
    cache.max_prompt_bytes = 2 * one + 100  # room for two prompt entries, not three
    cache.put(_key("used"), torch.zeros(256))
    _set_age(cache, _key("used"), 200)
    assert cache.get(_key("used")) is not None  # a hit makes it the most recent
    cache.put(_key("new"), torch.zeros(256))
    assert cache.get(_key("old")) is None
    assert cache.get(_key("used")) is not None
    assert cache.get(_key("new")) is not None
    assert cache.get(_key("")) is not None
    assert cache.size_bytes(prompts_only=True) <= cache.max_prompt_bytes


def test_disabled_prompt_store_keeps_only_empty_embeddings(tmp_path):
    cache = EmbeddingCache(tmp_path, store_prompts=False)
    assert cache.put(_key("piano"), torch.ones(2)) is None
    assert cache.get(_key("piano")) is None
    assert cache.put(_key(""), torch.ones(2)) is not None
    assert cache.get(_key("")) is not None


def test_size_and_clear(tmp_path):
    cache = EmbeddingCache(tmp_path)
    assert cache.size_bytes() == 0
    cache.put(_key(""), torch.ones(64))
    cache.put(_key("x"), torch.ones(64))
    total = cache.size_bytes()
    prompts = cache.size_bytes(prompts_only=True)
    assert 0 < prompts < total
    assert cache.clear(keep_empty=True) == prompts
    assert cache.get(_key("x")) is None and cache.get(_key("")) is not None
    assert cache.clear() == total - prompts
    assert cache.size_bytes() == 0


def test_info_round_trips(tmp_path):
    cache = EmbeddingCache(tmp_path)
    cache.put(_key("long"), torch.ones(2), {"truncation": "{}"})
    assert cache.load(_key("long")).info == {"truncation": "{}"}


def test_default_root_is_the_tool_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("FLUXMUSIC_CACHE", str(tmp_path / "c"))
    cache = EmbeddingCache()
    assert cache.root == paths.embeddings_dir() == tmp_path / "c" / "embeddings"
    cache.put(_key(""), torch.ones(1))
    assert cache.path_for(_key("")).is_relative_to(tmp_path / "c" / "embeddings")


@pytest.mark.parametrize("prompt", ["", "x"])
def test_nothing_is_created_before_a_write(tmp_path, prompt):
    cache = EmbeddingCache(tmp_path / "never")
    assert cache.get(_key(prompt)) is None
    assert cache.size_bytes() == 0
    assert not (tmp_path / "never").exists()
