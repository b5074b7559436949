"""LoRA adapters: what peft adapts, the file diffusers' loaders read, merging at inference."""

from __future__ import annotations

import hashlib

import pytest
import torch

from fluxmusic_cli.engine import lora, sampling
from fluxmusic_cli.engine.checkpoint import build_transformer
from fluxmusic_cli.errors import CheckpointError, UsageError
from fluxmusic_cli.tinybundle.transformer import tiny_fluxmusic_state_dict


def tiny_model(hidden: int = 64, seed: int = 0):
    sd = tiny_fluxmusic_state_dict(
        context_in_dim=32, vec_in_dim=32, hidden=hidden, depth=2, depth_single=2, seed=seed
    )
    return build_transformer(sd)[0]


def forward(model, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    length = 8
    x = sampling.patchify(torch.randn(1, 8, length, 16, generator=g))
    with torch.no_grad():
        return model(
            hidden_states=x,
            encoder_hidden_states=torch.randn(1, 16, 32, generator=g),
            pooled_projections=torch.randn(1, 32, generator=g),
            timestep=torch.tensor([0.4]),
            img_ids=sampling.image_ids(length),
            txt_ids=sampling.text_ids(16),
            return_dict=False,
        )[0]


def trained_adapter(tmp_path, *, rank: int = 4, alpha: float = 8.0, hidden: int = 64):
    """An adapter with non-zero B (as after training), saved; returns (path, adapted model)."""
    model = tiny_model(hidden)
    torch.manual_seed(1)
    lora.add_lora(model, rank, alpha)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lora_B." in name:
                p.normal_(0, 0.05)
    path = lora.save_lora(
        model, tmp_path / "lora.safetensors", rank=rank, alpha=alpha, info={"hidden": hidden}
    )
    return path, model


ATTN_MLP_DOUBLE = {
    "attn.to_q", "attn.to_k", "attn.to_v", "attn.to_out.0", "attn.add_q_proj", "attn.add_k_proj",
    "attn.add_v_proj", "attn.to_add_out", "ff.net.0.proj", "ff.net.2", "ff_context.net.0.proj",
    "ff_context.net.2",
}  # fmt: skip
ATTN_MLP_SINGLE = {"attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp", "proj_out"}


@pytest.mark.parametrize(
    ("targets", "double", "single"),
    [("attn-mlp", ATTN_MLP_DOUBLE, ATTN_MLP_SINGLE),
     ("attn-mlp-mod", ATTN_MLP_DOUBLE | {"norm1.linear", "norm1_context.linear"},
      ATTN_MLP_SINGLE | {"norm.linear"})],
)  # fmt: skip
def test_the_adapter_covers_the_chosen_linears_of_both_block_kinds_and_nothing_else(
    targets, double, single
):
    model = tiny_model()
    names = lora.add_lora(model, 4, targets=targets)
    for block in ("transformer_blocks.1.", "single_transformer_blocks.1."):
        found = {n[len(block) :] for n in names if n.startswith(block)}
        assert found == (double if block.startswith("transformer") else single)
    assert "proj_out" not in names and "norm_out.linear" not in names
    assert not any(n.startswith(("x_embedder", "context_embedder", "time_text")) for n in names)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_" in n for n in trainable)


def test_a_fresh_adapter_leaves_the_model_unchanged():
    base = forward(tiny_model())
    model = tiny_model()
    lora.add_lora(model, 4)
    assert torch.equal(forward(model), base)


def test_diffusers_own_loader_reads_the_saved_adapter_and_computes_what_we_merge(tmp_path):
    from diffusers.loaders.lora_pipeline import FluxLoraLoaderMixin

    path, trained = trained_adapter(tmp_path)
    expected = forward(trained)  # peft's unmerged adapter, as trained

    state_dict, metadata = FluxLoraLoaderMixin.lora_state_dict(str(path), return_lora_metadata=True)
    assert state_dict and all(k.startswith("transformer.") for k in state_dict)
    theirs = tiny_model()
    theirs.load_lora_adapter(state_dict, prefix="transformer", metadata=metadata)
    assert torch.allclose(forward(theirs), expected, atol=1e-5)

    ours = tiny_model()
    info = lora.apply_loras(ours, ((str(path), 1.0),))
    assert torch.allclose(forward(ours), expected, atol=1e-5)
    assert (
        info[0]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        and info[0]["scale"] == 1.0
    )


def test_scale_zero_is_exactly_the_base_model_and_scales_add_linearly(tmp_path):
    path, _ = trained_adapter(tmp_path)
    base = forward(tiny_model())
    zero = tiny_model()
    lora.apply_loras(zero, ((str(path), 0.0),))
    assert torch.equal(forward(zero), base)
    half_twice = tiny_model()
    lora.apply_loras(half_twice, ((str(path), 0.5), (str(path), 0.5)))
    whole = tiny_model()
    lora.apply_loras(whole, ((str(path), 1.0),))
    assert not torch.allclose(forward(whole), base, atol=1e-4)
    assert torch.allclose(forward(half_twice), forward(whole), atol=1e-5)


def test_an_adapter_for_another_width_is_refused_before_any_weight_changes(tmp_path):
    path, _ = trained_adapter(tmp_path, hidden=128)
    model = tiny_model(64)
    base = forward(model)
    with pytest.raises(CheckpointError, match="trained on a 128-wide model; this one is 64 wide"):
        lora.apply_loras(model, ((str(path), 1.0),))
    assert torch.equal(forward(model), base)


def test_a_file_that_is_not_a_fluxmusic_lora_is_refused(tmp_path):
    from safetensors.torch import save_file

    other = tmp_path / "sd.safetensors"
    save_file({"lora_unet_down_blocks_0.lora_down.weight": torch.zeros(4, 8)}, str(other))
    with pytest.raises(CheckpointError, match="not a FluxMusic LoRA"):
        lora.apply_loras(tiny_model(), ((str(other), 1.0),))
    image = tmp_path / "flux-image.safetensors"
    save_file(
        {
            "transformer.context_embedder.lora_A.weight": torch.zeros(4, 32),
            "transformer.context_embedder.lora_B.weight": torch.zeros(64, 4),
            "transformer.transformer_blocks.30.attn.to_q.lora_A.weight": torch.zeros(4, 64),
            "transformer.transformer_blocks.30.attn.to_q.lora_B.weight": torch.zeros(64, 4),
        },
        str(image),
    )
    with pytest.raises(CheckpointError, match="for another model"):
        lora.apply_loras(tiny_model(), ((str(image), 1.0),))
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not safetensors at all")
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        lora.apply_loras(tiny_model(), ((str(junk), 1.0),))


@pytest.mark.parametrize(
    ("text", "expected"),
    [("a.safetensors", ("a.safetensors", 1.0)), ("a.safetensors:0.5", ("a.safetensors", 0.5)),
     ("dir/a.safetensors:-1", ("dir/a.safetensors", -1.0))],
)  # fmt: skip
def test_lora_specs_take_an_optional_scale(text, expected):
    assert lora.parse_specs([text]) == (expected,)


@pytest.mark.parametrize("text", ["a.safetensors:abc", "a.safetensors:nan", "a.safetensors:"])
def test_a_scale_that_is_not_a_finite_number_is_a_usage_error(text):
    with pytest.raises(UsageError, match="not a"):
        lora.parse_specs([text])


def test_an_adapter_with_non_finite_weights_is_never_written(tmp_path):
    from fluxmusic_cli.errors import DivergedError

    model = tiny_model()
    lora.add_lora(model, 4, 4.0)
    with torch.no_grad():
        next(p for n, p in model.named_parameters() if ".lora_B." in n).fill_(float("inf"))
    with pytest.raises(DivergedError, match="NaN or infinite"):
        lora.save_lora(model, tmp_path / "lora.safetensors", rank=4, alpha=4.0, info={})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("alpha", ["NaN", "Infinity", "0", "-2"])
def test_an_adapter_whose_alpha_is_not_a_positive_finite_number_is_refused(tmp_path, alpha):
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    path, _ = trained_adapter(tmp_path)
    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata()
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
    config = json.loads(meta[lora.METADATA_KEY])
    config[f"{lora.PREFIX}.lora_alpha"] = "ALPHA"
    meta[lora.METADATA_KEY] = json.dumps(config).replace('"ALPHA"', alpha)
    save_file(tensors, str(path), metadata=meta)
    model = tiny_model()
    base = forward(model)
    with pytest.raises(CheckpointError, match="lora_alpha .* is not a positive finite number"):
        lora.apply_loras(model, ((str(path), 1.0),))
    assert torch.equal(forward(model), base)
