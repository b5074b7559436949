"""Text conditioning on tiny T5/CLAP repos: ids and masks per mode, loading, the conditioner."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from fluxmusic_cli.engine import conditioning as C
from fluxmusic_cli.engine import encoders
from fluxmusic_cli.engine.embedding_cache import EmbeddingCache
from fluxmusic_cli.engine.sources import ComponentRef, parse_ref
from fluxmusic_cli.errors import CheckpointError, ModelMissingError, UsageError
from fluxmusic_cli.tinybundle import write_tiny_clap, write_tiny_t5


def encode_t5(prompts, tokenizer, model, mode="training"):
    """One T5 forward pass over the tokenised prompts: (B, 256, d_model)."""
    return C.run_encoder(model, C.t5_inputs(prompts, tokenizer, mode), "cpu", "last_hidden_state")


def encode_clap(prompts, tokenizer, model, mode="training"):
    """One CLAP text-tower forward pass: the pooled output (B, hidden)."""
    return C.run_encoder(model, C.clap_inputs(prompts, tokenizer, mode), "cpu", "pooler_output")


LONG = "guitar drums " * 200  # 400 words, each one T5 token and one BPE token


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("text")
    return {
        "t5": write_tiny_t5(root / "t5"),
        "sd3": write_tiny_t5(root / "sd3", layout="sd3"),
        "clap": write_tiny_clap(root / "clap"),
    }


@pytest.fixture(scope="module")
def t5(bundles):
    return encoders.load_t5(bundles["t5"])


@pytest.fixture(scope="module")
def clap(bundles):
    return encoders.load_clap_text(bundles["clap"])


def _conditioner(bundles, tmp_path, **kw):
    kw.setdefault("cache", EmbeddingCache(tmp_path / "emb"))
    return C.TextConditioner(
        t5=kw.pop("t5", ComponentRef("t5", path=bundles["t5"])),
        clap=kw.pop("clap", ComponentRef("clap", path=bundles["clap"])),
        resolve=kw.pop("resolve", lambda ref: ref.path),
        **kw,
    )


# -- ids and masks ---------------------------------------------------------------------------


def test_t5_training_fills_with_id_1_and_masks_the_fill(t5):
    tok, _ = t5
    batch = C.t5_inputs(["piano guitar", ""], tok, "training")
    real = tok("piano guitar")["input_ids"]
    n = len(real)
    assert tok.pad_token_id == 0 and real[-1] == tok.eos_token_id == 1
    assert batch.input_ids.shape == (2, 256)
    assert batch.input_ids[0, :n].tolist() == real
    assert (batch.input_ids[0, n:] == 1).all()
    assert batch.attention_mask[0].tolist() == [1] * n + [0] * (256 - n)
    assert batch.input_ids[1].tolist() == [1] * 256  # "" is EOS alone, then fill
    assert batch.attention_mask[1].tolist() == [1] + [0] * 255
    assert batch.truncated == []


def test_t5_reference_script_pads_with_pad_id_and_runs_unmasked(t5):
    tok, _ = t5
    batch = C.t5_inputs(["piano guitar"], tok, "reference-script")
    real = tok("piano guitar")["input_ids"]
    assert batch.input_ids.shape == (1, 256)
    assert batch.input_ids[0].tolist() == real + [0] * (256 - len(real))
    assert batch.attention_mask is None


def test_t5_truncation_at_256_is_reported_at_the_first_unseen_word(t5):
    tok, _ = t5
    batch = C.t5_inputs(["piano", LONG], tok)
    expected = tok(LONG, truncation=True, max_length=256)["input_ids"]
    assert batch.input_ids[1].tolist() == expected
    assert batch.attention_mask[1].sum() == 256
    [cut] = batch.truncated
    assert (cut.encoder, cut.prompt, cut.limit) == ("t5", LONG, 256)
    assert cut.tokens == len(tok(LONG)["input_ids"]) > 256
    # every word before the reported one fits, and the reported one does not
    seen = LONG[: cut.dropped_from].rstrip()
    assert len(tok(seen)["input_ids"]) <= 256
    assert len(tok(f"{seen} {cut.first_dropped_word}")["input_ids"]) > 256
    assert cut.first_dropped_index == 256  # 255 one-token words + EOS fit
    assert cut.first_dropped_word == "drums"
    assert "word 256" in str(cut) and "T5" in str(cut)


def test_clap_training_is_77_tokens_with_mask_and_script_256_without(clap):
    tok, _ = clap
    train = C.clap_inputs(["piano guitar"], tok, "training")
    script = C.clap_inputs(["piano guitar"], tok, "reference-script")
    real = tok("piano guitar")["input_ids"]
    assert real[0] == tok.bos_token_id and real[-1] == tok.eos_token_id
    assert train.input_ids.shape == (1, 77)
    assert train.input_ids[0].tolist() == real + [tok.pad_token_id] * (77 - len(real))
    assert train.attention_mask[0].tolist() == [1] * len(real) + [0] * (77 - len(real))
    assert script.input_ids.shape == (1, 256)
    assert script.input_ids[0].tolist() == real + [tok.pad_token_id] * (256 - len(real))
    assert script.attention_mask is None


@pytest.mark.parametrize(("mode", "limit"), [("training", 77), ("reference-script", 256)])
def test_clap_truncation_matches_the_tokenizer(clap, mode, limit):
    tok, _ = clap
    batch = C.clap_inputs([LONG], tok, mode)
    assert batch.input_ids[0].tolist() == tok(LONG, truncation=True, max_length=limit)["input_ids"]
    [cut] = batch.truncated
    assert (cut.encoder, cut.limit) == ("clap", limit)
    seen = LONG[: cut.dropped_from].rstrip()
    assert len(tok(seen)["input_ids"]) <= limit
    assert len(tok(f"{seen} {cut.first_dropped_word}")["input_ids"]) > limit


def test_cutting_only_trailing_space_is_not_reported(clap):
    tok, _ = clap
    words = LONG.split()
    prompt = next(
        p
        for k in range(60, 90)
        if len(tok(p := " ".join(words[:k]) + " ")["input_ids"]) == 78
        and len(tok(p.rstrip())["input_ids"]) == 77
    )
    batch = C.clap_inputs([prompt], tok, "training")
    assert batch.input_ids[0].tolist() == tok(prompt, truncation=True, max_length=77)["input_ids"]
    assert batch.truncated == []


def test_unknown_mode_is_a_usage_error(t5):
    with pytest.raises(UsageError):
        C.t5_inputs(["x"], t5[0], "sampling")


# -- tokenizers and loading ------------------------------------------------------------------


def test_tokenizer_built_from_vocab_files_is_rejected(bundles):
    from transformers import RobertaTokenizer, T5Tokenizer

    empty_t5 = T5Tokenizer(vocab_file=str(bundles["t5"] / "spiece.model"))
    with pytest.raises(CheckpointError, match="same ids"):
        encoders.check_tokenizer(empty_t5, bundles["t5"])
    empty_bpe = RobertaTokenizer(
        vocab_file=str(bundles["clap"] / "vocab.json"),
        merges_file=str(bundles["clap"] / "merges.txt"),
    )
    with pytest.raises(CheckpointError):
        encoders.check_tokenizer(empty_bpe, bundles["clap"])


def test_loaded_tokenizers_keep_distinct_words_apart(bundles):
    for folder in (bundles["t5"], bundles["sd3"] / "tokenizer_3", bundles["clap"]):
        encoders.check_tokenizer(encoders.load_tokenizer(folder), folder)  # raises if not


def test_both_t5_layouts_load_and_agree(bundles, t5):
    assert encoders.t5_dirs(bundles["t5"]) == (bundles["t5"], bundles["t5"])
    assert encoders.t5_dirs(bundles["sd3"]) == (
        bundles["sd3"] / "text_encoder_3",
        bundles["sd3"] / "tokenizer_3",
    )
    tok2, model2 = encoders.load_t5(bundles["sd3"])
    a = encode_t5(["calm piano melody"], *t5)
    b = encode_t5(["calm piano melody"], tok2, model2)
    assert a.shape == b.shape == (1, 256, 32)
    assert a.dtype == torch.float32
    # same seed, stored in bf16 vs fp16: equal up to storage rounding
    torch.testing.assert_close(a, b, atol=0.05, rtol=0.05)


def test_folder_without_t5_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="text_encoder_3"):
        encoders.t5_dirs(tmp_path)


def test_t5_missing_tensor_is_a_checkpoint_error(bundles, tmp_path):
    root = shutil.copytree(bundles["t5"], tmp_path / "t5")
    state = load_file(root / "model.safetensors")
    del state["encoder.block.1.layer.1.DenseReluDense.wo.weight"]
    save_file(state, root / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="would stay random"):
        encoders.load_t5(root)


def test_clap_text_weights_equal_the_files(bundles, clap):
    _, model = clap
    with safe_open(str(bundles["clap"] / "model.safetensors"), framework="pt") as f:
        stored = {k: f.get_tensor(k) for k in f.keys() if k.startswith("text_model.")}  # noqa: SIM118
    state = model.state_dict()
    params = {name for name, _ in model.named_parameters()}
    assert params <= {k.removeprefix("text_model.") for k in stored}
    for key, value in stored.items():
        assert torch.equal(state[key.removeprefix("text_model.")], value), key


def test_clap_without_text_tower_is_a_checkpoint_error(bundles, tmp_path):
    root = shutil.copytree(bundles["clap"], tmp_path / "clap")
    state = load_file(root / "model.safetensors")
    save_file(
        {k: v for k, v in state.items() if not k.startswith("text_model.")},
        root / "model.safetensors",
    )
    with pytest.raises(CheckpointError, match="no CLAP text tower"):
        encoders.load_clap_text(root)


def test_clap_missing_text_tensor_is_a_checkpoint_error(bundles, tmp_path):
    root = shutil.copytree(bundles["clap"], tmp_path / "clap")
    state = load_file(root / "model.safetensors")
    del state["text_model.pooler.dense.weight"]
    save_file(state, root / "model.safetensors")
    with pytest.raises(CheckpointError, match="1 missing"):
        encoders.load_clap_text(root)


# -- what the encoders compute ---------------------------------------------------------------


def test_training_mask_hides_the_fill_and_the_script_does_not(t5):
    tok, model = t5
    prompt = "warm piano with soft strings"
    ids = torch.tensor([tok(prompt)["input_ids"]])
    n = ids.shape[1]
    alone = model(input_ids=ids).last_hidden_state[0].float()
    masked = encode_t5([prompt], tok, model, "training")[0]
    unmasked = encode_t5([prompt], tok, model, "reference-script")[0]
    torch.testing.assert_close(masked[:n], alone, atol=1e-5, rtol=1e-5)
    assert (unmasked[:n] - alone).abs().max() > 1e-3
    assert not torch.allclose(masked, unmasked)


def test_clap_encodes_pooled_vector(clap):
    y = encode_clap(["piano", "guitar"], *clap)
    assert y.shape == (2, 32) and y.dtype == torch.float32
    assert not torch.allclose(y[0], y[1])


# -- the conditioner -------------------------------------------------------------------------


def test_each_distinct_prompt_is_encoded_once_and_alone(bundles, tmp_path, t5, clap, encoder_work):
    cond = _conditioner(bundles, tmp_path)
    out = cond.encode(["piano", "guitar", "piano"])
    assert out.txt.shape == (3, 256, 32) and out.y.shape == (3, 32)
    assert out.txt.dtype == out.y.dtype == torch.float32 and out.txt.device.type == "cpu"
    assert encoder_work.prompts_encoded == {"t5": 2, "clap": 2}
    assert encoder_work.forward_calls == {"t5": 2, "clap": 2}
    assert encoder_work.loads == {"t5": 1, "clap": 1}
    assert torch.equal(out.txt[0], out.txt[2]) and torch.equal(out.y[0], out.y[2])
    for i, prompt in enumerate(["piano", "guitar"]):
        assert torch.equal(out.txt[i], encode_t5([prompt], *t5)[0])
        assert torch.equal(out.y[i], encode_clap([prompt], *clap)[0])


def test_a_prompts_embedding_does_not_depend_on_its_companions(bundles, tmp_path):
    alone = _conditioner(bundles, tmp_path / "a").encode(["piano"])
    among = _conditioner(bundles, tmp_path / "b").encode(["guitar", "drums", "piano", "harp"])
    assert torch.equal(alone.txt[0], among.txt[2]) and torch.equal(alone.y[0], among.y[2])


def test_left_out_t5_uses_stored_empty_embedding_and_is_never_loaded(
    bundles, tmp_path, monkeypatch, encoder_work
):
    first = _conditioner(bundles, tmp_path)
    first.precompute_empty()
    stored = first.cache.get(first.key("t5", ""))
    assert stored.shape == (256, 32)

    from transformers import T5EncoderModel

    def forbidden(*args, **kwargs):
        raise AssertionError("T5 was loaded")

    monkeypatch.setattr(T5EncoderModel, "from_pretrained", forbidden)

    def resolve(ref):
        assert ref.kind != "t5", "T5 was resolved"
        return ref.path

    cond = _conditioner(bundles, tmp_path, encoders="clap", resolve=resolve)
    encoder_work.reset()
    out = cond.encode(["piano", "guitar"])
    assert torch.equal(out.txt[0], stored) and torch.equal(out.txt[1], stored)
    assert not torch.equal(out.y[0], out.y[1])
    assert encoder_work.loads == {"t5": 0, "clap": 1}


def test_left_out_clap_uses_its_empty_embedding(bundles, tmp_path, clap, encoder_work):
    cond = _conditioner(bundles, tmp_path, encoders="t5")
    out = cond.encode(["piano", "guitar"])
    empty = encode_clap([""], *clap)[0]
    torch.testing.assert_close(out.y[0], empty)
    torch.testing.assert_close(out.y[1], empty)
    assert encoder_work.prompts_encoded == {"t5": 2, "clap": 1}  # only "" for CLAP, then stored
    encoder_work.reset()
    again = _conditioner(bundles, tmp_path, encoders="t5")
    again.encode(["drums"])
    assert encoder_work.loads["clap"] == 0


def test_missing_empty_embedding_and_unresolvable_t5_names_the_download(bundles, tmp_path):
    def resolve(ref):
        if ref.path is None:
            raise ModelMissingError("not in the local cache")
        return ref.path

    cond = _conditioner(
        bundles, tmp_path, t5=parse_ref("t5", "t5-city96"), encoders="clap", resolve=resolve
    )
    with pytest.raises(ModelMissingError) as info:
        cond.encode(["piano"])
    text = str(info.value)
    assert "fluxmusic download" in text
    assert "city96/t5-v1_1-xxl-encoder-bf16" in text
    assert "empty-prompt embedding" in text


def test_empty_prompt_reuses_the_stored_empty_embedding(bundles, tmp_path, encoder_work):
    first = _conditioner(bundles, tmp_path)
    first.precompute_empty()
    encoder_work.reset()
    cond = _conditioner(bundles, tmp_path)
    out = cond.encode(["", "piano"])
    assert torch.equal(out.txt[0], cond.cache.get(cond.key("t5", "")))
    assert torch.equal(out.y[0], cond.cache.get(cond.key("clap", "")))
    assert encoder_work.prompts_encoded == {"t5": 1, "clap": 1}


def test_precompute_stores_both_modes_separately(bundles, tmp_path, encoder_work):
    cond = _conditioner(bundles, tmp_path)
    keys = cond.precompute_empty()
    assert len(keys) == 4 and encoder_work.loads == {"t5": 1, "clap": 1}
    train = cond.cache.get(cond.key("t5", "", "training"))
    script = cond.cache.get(cond.key("t5", "", "reference-script"))
    assert not torch.allclose(train, script)


def test_repeated_prompt_comes_from_the_cache_without_loading(bundles, tmp_path, encoder_work):
    first = _conditioner(bundles, tmp_path).encode(["piano"])
    encoder_work.reset()
    cond = _conditioner(bundles, tmp_path)
    again = cond.encode(["piano"])
    assert encoder_work.loads == {"t5": 0, "clap": 0}
    assert torch.equal(first.txt, again.txt) and torch.equal(first.y, again.y)
    off = _conditioner(bundles, tmp_path, use_prompt_cache=False)
    off.encode(["piano"])
    assert encoder_work.loads == {"t5": 1, "clap": 1}


def test_truncation_is_reported_also_from_the_cache(bundles, tmp_path, encoder_work):
    first = _conditioner(bundles, tmp_path).encode([LONG, "piano", LONG])
    assert sorted(t.encoder for t in first.truncated) == ["clap", "t5"]
    encoder_work.reset()
    cond = _conditioner(bundles, tmp_path)
    again = cond.encode([LONG])
    assert encoder_work.loads == {"t5": 0, "clap": 0}
    assert sorted(again.truncated, key=str) == sorted(first.truncated, key=str)


def test_release_drops_the_encoders(bundles, tmp_path, encoder_work):
    cond = _conditioner(bundles, tmp_path, use_prompt_cache=False)
    cond.encode(["piano"])
    cond.release()
    cond.encode(["guitar"])
    assert encoder_work.loads == {"t5": 2, "clap": 2}


def test_local_source_changes_change_the_key(bundles, tmp_path):
    root = shutil.copytree(bundles["t5"], tmp_path / "t5")
    before = _conditioner(bundles, tmp_path, t5=ComponentRef("t5", path=root)).key("t5", "")
    (root / "config.json").write_text((root / "config.json").read_text() + "\n")
    after = _conditioner(bundles, tmp_path, t5=ComponentRef("t5", path=root)).key("t5", "")
    assert before.identity == after.identity and before.revision != after.revision


@pytest.mark.parametrize("bad", [{"encoders": "all"}, {"mode": "fast"}])
def test_bad_choices_are_usage_errors(bundles, tmp_path, bad):
    with pytest.raises(UsageError):
        _conditioner(bundles, tmp_path, **bad)


def test_no_prompt_is_a_usage_error(bundles, tmp_path):
    with pytest.raises(UsageError):
        _conditioner(bundles, tmp_path).encode([])
