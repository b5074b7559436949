"""Checkpoints: every released shape is recognised and loads strictly; bad files fail in a line."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch

from fluxmusic_cli.engine import checkpoint, registry
from fluxmusic_cli.errors import CheckpointError, ModelMissingError

SHAPES = (
    Path(__file__).resolve().parents[3].parent
    / "shared"
    / "fixtures"
    / ("official_state_dict_shapes.json")
)


def meta_state_dict(shapes: dict[str, list[int]]) -> dict[str, torch.Tensor]:
    return {k: torch.empty(v, device="meta") for k, v in shapes.items()}


@pytest.fixture(scope="module")
def official():
    if not SHAPES.exists():
        pytest.skip(f"fixture missing: {SHAPES}")
    return json.loads(SHAPES.read_text())


@pytest.mark.parametrize("name", ["small", "base", "large", "giant", "giant_full", "biggiant"])
def test_every_published_configuration_loads_strictly_on_meta(official, name):
    entry = official[name]
    sd = meta_state_dict(entry["state_dict"])
    model, cfg = checkpoint.build_transformer(sd, source=name)
    loaded = sum(p.numel() for p in model.parameters())
    assert loaded == entry["params"] == sum(t.numel() for t in sd.values())
    assert all(p.device.type == "meta" for p in model.parameters())
    if name != "biggiant":
        variant = registry.get_variant(name.replace("_", "-"))
        assert (cfg.hidden, cfg.depth, cfg.depth_single) == (
            variant.hidden,
            variant.depth,
            variant.depth_single,
        )
        assert cfg.axes_dim == variant.axes_dim and cfg.num_heads == variant.num_heads
        assert variant.params == entry["params"]
    assert sum(cfg.axes_dim) == cfg.head_dim


def test_final_adaln_halves_are_swapped():
    tiny = _tiny_state_dict()
    cfg = checkpoint.infer_config(tiny)
    mapped = checkpoint.to_diffusers(tiny, cfg)
    shift, scale = tiny["final_layer.adaLN_modulation.1.weight"].chunk(2)
    assert torch.equal(mapped["norm_out.linear.weight"], torch.cat([scale, shift]))


def _tiny_state_dict() -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    ref = SHAPES.with_name("flux_reference_tiny.safetensors")
    if not ref.exists():
        pytest.skip(f"fixture missing: {ref}")
    tensors = load_file(str(ref))
    return {k[8:]: v for k, v in tensors.items() if k.startswith("weights.")}


def test_bare_state_dict_and_safetensors_both_load(tmp_path):
    from safetensors.torch import save_file

    sd = _tiny_state_dict()
    torch.save(sd, tmp_path / "bare.pt")
    save_file(sd, str(tmp_path / "model.safetensors"))
    for name in ("bare.pt", "model.safetensors"):
        _, cfg = checkpoint.load_transformer(tmp_path / name)
        assert cfg.hidden == 64


def test_conversion_to_safetensors_keeps_every_tensor(tmp_path):
    sd = _tiny_state_dict()
    torch.save({"ema": sd}, tmp_path / "m.pt")
    checkpoint.convert_to_safetensors(tmp_path / "m.pt", tmp_path / "out" / "m.safetensors")
    back = checkpoint.read_state_dict(tmp_path / "out" / "m.safetensors")
    assert back.keys() == sd.keys() and all(torch.equal(back[k], sd[k]) for k in sd)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["m.safetensors"]


def test_truncated_file_gives_one_line_error(tmp_path):
    torch.save({"ema": _tiny_state_dict()}, tmp_path / "m.pt")
    data = (tmp_path / "m.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as err:
        checkpoint.read_state_dict(tmp_path / "cut.pt")
    assert "cut.pt" in err.value.message and "truncated" in err.value.message
    assert "\n" not in err.value.message


def test_truncated_safetensors_gives_one_line_error(tmp_path):
    from safetensors.torch import save_file

    save_file(_tiny_state_dict(), str(tmp_path / "m.safetensors"))
    data = (tmp_path / "m.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[:-1000])
    with pytest.raises(CheckpointError, match="cut.safetensors"):
        checkpoint.read_state_dict(tmp_path / "cut.safetensors")


def test_state_dict_of_another_model_is_named(tmp_path):
    torch.save(torch.nn.Linear(4, 4).state_dict(), tmp_path / "other.pt")
    with pytest.raises(CheckpointError) as err:
        checkpoint.load_transformer(tmp_path / "other.pt")
    assert "not a FluxMusic checkpoint" in err.value.message and "other.pt" in err.value.message


def test_missing_tensor_is_named(tmp_path):
    sd = _tiny_state_dict()
    del sd["single_blocks.1.linear2.bias"]
    torch.save({"ema": sd}, tmp_path / "holey.pt")
    with pytest.raises(CheckpointError) as err:
        checkpoint.load_transformer(tmp_path / "holey.pt")
    assert "single_blocks.1.linear2.bias" in err.value.message and "holey.pt" in err.value.message


def test_extra_tensor_is_refused(tmp_path):
    sd = _tiny_state_dict()
    sd["guidance_in.in_layer.weight"] = torch.zeros(64, 256)
    with pytest.raises(CheckpointError, match="guidance_in"):
        checkpoint.build_transformer(sd)


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickles_with_arbitrary_objects_are_never_unpickled(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"ema": _tiny_state_dict(), "payload": _Evil()}, path, pickle_module=pickle)
    with pytest.raises(CheckpointError, match="never unpickled"):
        checkpoint.read_state_dict(path)
    assert "this must never run" not in capsys.readouterr().out


def test_missing_file_is_model_missing(tmp_path):
    with pytest.raises(ModelMissingError, match="nothing.pt"):
        checkpoint.read_state_dict(tmp_path / "nothing.pt")
