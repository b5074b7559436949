"""The engine computes what the authors' code computes (fixtures made with their code)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fluxmusic_cli.engine import sampling
from fluxmusic_cli.engine.checkpoint import load_transformer

FIXTURES = Path(__file__).resolve().parents[3].parent / "shared" / "fixtures"
REF = FIXTURES / "flux_reference_tiny.safetensors"

pytestmark = pytest.mark.skipif(not REF.exists(), reason=f"fixture missing: {REF}")


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.fixture(scope="module")
def reference():
    tensors = load_file(str(REF))
    meta = json.loads(REF.with_suffix(".json").read_text())
    return tensors, meta


@pytest.fixture(scope="module")
def released_pt(reference, tmp_path_factory):
    """The fixture's weights written as a released checkpoint: a pickle with an `ema` dict."""
    tensors, _ = reference
    weights = {k[len("weights.") :]: v for k, v in tensors.items() if k.startswith("weights.")}
    path = tmp_path_factory.mktemp("ckpt") / "musicflow_tiny.pt"
    torch.save({"ema": weights, "steps": 1}, path)
    return path


@pytest.fixture(scope="module")
def model(released_pt):
    model, cfg = load_transformer(released_pt, dtype=torch.float32)
    return model, cfg


def test_architecture_is_read_off_the_tensors(model, reference):
    _, cfg = model
    conf = reference[1]["config"]
    assert cfg.hidden == conf["hidden_size"]
    assert cfg.num_heads == conf["num_heads"]
    assert cfg.depth == conf["depth"] and cfg.depth_single == conf["depth_single_blocks"]
    assert cfg.context_in_dim == conf["context_in_dim"] and cfg.vec_in_dim == conf["vec_in_dim"]
    assert list(cfg.axes_dim) == conf["axes_dim"]


def test_patch_layout_and_ids_match_reference(reference):
    tensors, meta = reference
    noise = tensors["input.noise_latent"]
    assert torch.equal(sampling.patchify(noise), tensors["forward.img_tokens"])
    length = meta["latent_time"]
    assert torch.equal(sampling.image_ids(length), tensors["forward.img_ids"][0])
    assert torch.equal(sampling.unpatchify(sampling.patchify(noise), length), noise)


def test_forward_matches_reference(model, reference):
    m, _ = model
    tensors, meta = reference
    velocity = sampling.model_velocity(
        m, tensors["input.txt"], tensors["input.y"], length=meta["latent_time"]
    )
    with torch.no_grad():
        out = velocity(tensors["forward.img_tokens"], tensors["input.t"])
    assert rel_err(out, tensors["forward.output"]) <= 1e-5


def test_guided_sampling_matches_reference(model, reference):
    m, _ = model
    tensors, meta = reference
    length = meta["latent_time"]
    txt = torch.cat([tensors["input.txt"], tensors["input.txt_null"]])
    y = torch.cat([tensors["input.y"], tensors["input.y_null"]])
    velocity = sampling.model_velocity(m, txt, y, length=length)
    with torch.no_grad():
        final = sampling.denoise(
            velocity,
            sampling.patchify(tensors["input.noise_latent"]),
            sampling.get_schedule(meta["sample_steps"]),
            meta["cfg_scale"],
        )
    latent = sampling.unpatchify(final, length)
    assert rel_err(latent, tensors["sample.final_latent"]) <= 1e-5
