"""The tiny T5 and CLAP repos: hub file layouts, real tokenizers, determinism, loadability."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

from fluxmusic_cli.tinybundle import write_tiny_clap, write_tiny_t5

WORDS = ("piano", "guitar", "drums", "violin", "bass", "choir", "synth")


def _files(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def _keys(path):
    with safe_open(str(path), framework="pt") as f:
        return set(f.keys())


def _word_ids(tokenizer):
    return [tuple(tokenizer(w, add_special_tokens=False)["input_ids"]) for w in WORDS]


@pytest.fixture(scope="module")
def t5_root(tmp_path_factory):
    return write_tiny_t5(tmp_path_factory.mktemp("t5"))


@pytest.fixture(scope="module")
def sd3_root(tmp_path_factory):
    return write_tiny_t5(tmp_path_factory.mktemp("sd3"), layout="sd3")


@pytest.fixture(scope="module")
def clap_root(tmp_path_factory):
    return write_tiny_clap(tmp_path_factory.mktemp("clap"))


def test_encoder_only_layout_matches_city96(t5_root):
    assert _files(t5_root) == [
        "config.json",
        "model.safetensors",
        "special_tokens_map.json",
        "spiece.model",
        "tokenizer_config.json",
    ]
    config = json.loads((t5_root / "config.json").read_text())
    assert config["architectures"] == ["T5EncoderModel"]
    assert config["feed_forward_proj"] == "gated-gelu"
    assert config["tie_word_embeddings"] is False
    assert config["relative_attention_num_buckets"] == 32
    assert config["d_model"] == 32
    with safe_open(str(t5_root / "model.safetensors"), framework="pt") as f:
        assert f.get_tensor("shared.weight").dtype == torch.bfloat16


def test_sd3_layout_has_two_indexed_shards(sd3_root):
    assert _files(sd3_root) == [
        "text_encoder_3/config.json",
        "text_encoder_3/model-00001-of-00002.safetensors",
        "text_encoder_3/model-00002-of-00002.safetensors",
        "text_encoder_3/model.safetensors.index.json",
        "tokenizer_3/special_tokens_map.json",
        "tokenizer_3/spiece.model",
        "tokenizer_3/tokenizer.json",
        "tokenizer_3/tokenizer_config.json",
    ]
    enc = sd3_root / "text_encoder_3"
    index = json.loads((enc / "model.safetensors.index.json").read_text())
    for shard in set(index["weight_map"].values()):
        keys = _keys(enc / shard)
        assert keys
        assert keys == {k for k, v in index["weight_map"].items() if v == shard}


def test_t5_tokenizer_is_t5_shaped_and_keeps_words_apart(t5_root, sd3_root):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(t5_root)
    assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2)
    assert tok.convert_ids_to_tokens(1) == "</s>"
    ids = _word_ids(tok)
    assert len(set(ids)) == len(WORDS)
    assert all(2 not in word for word in ids)
    # the SD3 copy ships a converted tokenizer.json; it must read text the same way
    assert _word_ids(AutoTokenizer.from_pretrained(sd3_root / "tokenizer_3")) == ids


def test_d_model_is_honoured(tmp_path):
    from transformers import T5EncoderModel

    model = T5EncoderModel.from_pretrained(write_tiny_t5(tmp_path, d_model=48))
    out = model(input_ids=torch.tensor([[5, 6, 1]])).last_hidden_state
    assert out.shape == (1, 3, 48)


def test_clap_repo_is_a_whole_clap_model(clap_root):
    assert _files(clap_root) == [
        "config.json",
        "merges.txt",
        "model.safetensors",
        "preprocessor_config.json",
        "special_tokens_map.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.json",
    ]
    prefixes = {k.split(".")[0] for k in _keys(clap_root / "model.safetensors")}
    assert {"text_model", "audio_model", "text_projection", "audio_projection"} <= prefixes


def test_clap_tokenizer_is_roberta_shaped_and_keeps_words_apart(clap_root):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(clap_root)
    assert (tok.bos_token_id, tok.pad_token_id, tok.eos_token_id) == (0, 1, 2)
    ids = _word_ids(tok)
    assert len(set(ids)) == len(WORDS)
    assert all(word and tok.unk_token_id not in word for word in ids)


def test_clap_pooled_text_width_is_hidden(tmp_path):
    from transformers import AutoTokenizer, ClapModel

    root = write_tiny_clap(tmp_path, hidden=24)
    model = ClapModel.from_pretrained(root)
    ids = AutoTokenizer.from_pretrained(root)(["warm piano"], return_tensors="pt")
    assert model.text_model(**ids).pooler_output.shape == (1, 24)


def test_clap_audio_tower_embeds_feature_extractor_output(clap_root):
    import numpy as np
    from transformers import ClapFeatureExtractor, ClapModel

    fe = ClapFeatureExtractor.from_pretrained(clap_root)
    assert fe.sampling_rate == 48_000
    wave = np.random.default_rng(0).standard_normal(48_000).astype(np.float32)
    feats = fe([wave], sampling_rate=48_000, return_tensors="pt")
    with torch.no_grad():
        out = ClapModel.from_pretrained(clap_root).get_audio_features(**feats)
    emb = getattr(out, "pooler_output", out)
    assert emb.shape == (1, 16)
    assert torch.isfinite(emb).all()


@pytest.mark.parametrize("writer", ["t5", "sd3", "clap"])
def test_bundles_are_deterministic(tmp_path, writer):
    def write(root):
        if writer == "clap":
            return write_tiny_clap(root)
        return write_tiny_t5(root, layout="sd3" if writer == "sd3" else "encoder-only")

    a, b = write(tmp_path / "a"), write(tmp_path / "b")
    assert _files(a) == _files(b)
    for name in _files(a):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_seed_changes_weights(tmp_path):
    a = write_tiny_t5(tmp_path / "a", seed=0)
    b = write_tiny_t5(tmp_path / "b", seed=1)
    assert (a / "model.safetensors").read_bytes() != (b / "model.safetensors").read_bytes()
