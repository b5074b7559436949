"""FluxMusic checkpoints: read safely, infer the architecture, map onto diffusers, load strictly.

A released `.pt` is a torch pickle of `{"ema": state_dict, ...}` with the original FLUX key
names. We read it with `weights_only=True` only, infer every size from the tensors themselves
(the file name says nothing reliable), and load into diffusers' `FluxTransformer2DModel`, which
computes the same function once the keys are renamed and a few tensors split.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fluxmusic_cli import atomic
from fluxmusic_cli.engine.filehash import file_sha256 as file_sha256  # re-exported for the store
from fluxmusic_cli.engine.registry import AXES_DIM_BY_HEAD_DIM
from fluxmusic_cli.errors import CheckpointError, ModelMissingError, first_line

if TYPE_CHECKING:
    import torch

StateDict = Mapping[str, "torch.Tensor"]

_DOUBLE = re.compile(r"^double_blocks\.(\d+)\.")
_SINGLE = re.compile(r"^single_blocks\.(\d+)\.")
_REQUIRED = (
    "img_in.weight",
    "txt_in.weight",
    "time_in.in_layer.weight",
    "vector_in.in_layer.weight",
    "final_layer.linear.weight",
    "double_blocks.0.img_attn.norm.query_norm.scale",
    "double_blocks.0.img_mlp.0.weight",
)


@dataclass(frozen=True)
class FluxMusicConfig:
    """Architecture of one checkpoint, read off its tensors."""

    hidden: int
    num_heads: int
    depth: int
    depth_single: int
    in_channels: int
    vec_in_dim: int
    context_in_dim: int
    mlp_hidden: int
    axes_dim: tuple[int, int, int]

    @property
    def head_dim(self) -> int:
        return self.hidden // self.num_heads

    def diffusers_kwargs(self) -> dict[str, Any]:
        return {
            "patch_size": 1,
            "in_channels": self.in_channels,
            "num_layers": self.depth,
            "num_single_layers": self.depth_single,
            "attention_head_dim": self.head_dim,
            "num_attention_heads": self.num_heads,
            "joint_attention_dim": self.context_in_dim,
            "pooled_projection_dim": self.vec_in_dim,
            "guidance_embeds": False,
            "axes_dims_rope": self.axes_dim,
        }

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a `.pt`/`.pth` (dict with `ema`, or a bare state dict) or a `.safetensors` file.

    Pickles are opened with `weights_only=True` and memory-mapped; nothing else is unpickled.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise ModelMissingError(f"Checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(
                f"{path}: not a readable safetensors file ({first_line(exc)}); "
                "it may be truncated: delete it and download again."
            ) from exc
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # torch raises RuntimeError, UnpicklingError, EOFError, ...
        text = first_line(exc)
        if "weights only" in text.lower() or "weights_only" in text or "global" in text.lower():
            reason = "it holds Python objects other than tensors, which are never unpickled"
        elif "zip" in text.lower() or isinstance(exc, EOFError):
            reason = "the file is truncated or not a torch checkpoint"
        else:
            reason = text
        raise CheckpointError(
            f"{path}: cannot be read as a checkpoint: {reason}.",
            hint="If it was downloaded, delete it and run `fluxmusic download` again.",
        ) from exc
    if isinstance(obj, Mapping) and "ema" in obj and isinstance(obj["ema"], Mapping):
        obj = obj["ema"]
    if not isinstance(obj, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    ):
        raise CheckpointError(
            f"{path}: holds neither a state dict nor a dict with an 'ema' state dict."
        )
    return dict(obj)


def text_widths(path: Path) -> dict[str, int]:
    """The embedding widths a transformer file takes, {"t5": ..., "clap": ...}, from tensor
    shapes alone (a safetensors header, or a memory-mapped pickle): no weights are read."""
    path = Path(path)
    keys = {"t5": "txt_in.weight", "clap": "vector_in.in_layer.weight"}
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                return {k: int(f.get_slice(key).get_shape()[1]) for k, key in keys.items()}
        except Exception:  # noqa: BLE001 - loading reports a damaged file in full
            return {}
    sd = read_state_dict(path)
    return {k: int(sd[key].shape[1]) for k, key in keys.items() if key in sd}


def infer_config(sd: StateDict, *, source: str = "checkpoint") -> FluxMusicConfig:
    """Read the architecture (widths, depths, heads) off the tensors' shapes."""
    missing = [k for k in _REQUIRED if k not in sd]
    if missing:
        sample = ", ".join(sorted(sd)[:3]) or "none"
        raise CheckpointError(
            f"{source}: not a FluxMusic checkpoint: tensor {missing[0]!r} is missing "
            f"(first keys: {sample})."
        )
    hidden, in_channels = sd["img_in.weight"].shape
    head_dim = sd["double_blocks.0.img_attn.norm.query_norm.scale"].shape[0]
    if head_dim <= 0 or hidden % head_dim:
        raise CheckpointError(
            f"{source}: width {hidden} is not a multiple of head size {head_dim}."
        )
    if head_dim not in AXES_DIM_BY_HEAD_DIM:
        known = ", ".join(str(k) for k in AXES_DIM_BY_HEAD_DIM)
        raise CheckpointError(
            f"{source}: head size {head_dim} has no known RoPE layout (known: {known})."
        )
    depth = 1 + max(int(m.group(1)) for k in sd if (m := _DOUBLE.match(k)))
    singles = [int(m.group(1)) for k in sd if (m := _SINGLE.match(k))]
    mlp_hidden = sd["double_blocks.0.img_mlp.0.weight"].shape[0]
    if mlp_hidden != 4 * hidden:
        raise CheckpointError(
            f"{source}: MLP width {mlp_hidden} is not 4 x {hidden}; only mlp ratio 4 is supported."
        )
    return FluxMusicConfig(
        hidden=int(hidden),
        num_heads=int(hidden // head_dim),
        depth=depth,
        depth_single=1 + max(singles) if singles else 0,
        in_channels=int(in_channels),
        vec_in_dim=int(sd["vector_in.in_layer.weight"].shape[1]),
        context_in_dim=int(sd["txt_in.weight"].shape[1]),
        mlp_hidden=int(mlp_hidden),
        axes_dim=AXES_DIM_BY_HEAD_DIM[head_dim],
    )


class _Renamer:
    """Moves tensors from original FLUX keys to diffusers keys, each input key used once."""

    def __init__(self, sd: StateDict) -> None:
        self.src = dict(sd)
        self.out: dict[str, torch.Tensor] = {}

    def take(self, key: str) -> torch.Tensor:
        try:
            return self.src.pop(key)
        except KeyError:
            raise CheckpointError(f"checkpoint is missing tensor {key!r}.") from None

    def copy(self, dst: str, key: str) -> None:
        self.out[dst] = self.take(key)

    def linear(self, dst: str, key: str) -> None:
        self.copy(f"{dst}.weight", f"{key}.weight")
        self.copy(f"{dst}.bias", f"{key}.bias")

    def split(self, dsts: tuple[str, ...], key: str, sizes: list[int]) -> None:
        import torch

        for part in ("weight", "bias"):
            for dst, chunk in zip(dsts, torch.split(self.take(f"{key}.{part}"), sizes, dim=0)):
                self.out[f"{dst}.{part}"] = chunk

    def done(self) -> dict[str, torch.Tensor]:
        if self.src:
            extra = sorted(self.src)
            raise CheckpointError(
                f"checkpoint has {len(extra)} tensor(s) a FluxMusic model does not use, "
                f"e.g. {extra[0]!r}."
            )
        return self.out


# (diffusers, FLUX) names of the embedders' linear layers.
_EMBEDDER_LINEARS = (
    ("time_text_embed.timestep_embedder.linear_1", "time_in.in_layer"),
    ("time_text_embed.timestep_embedder.linear_2", "time_in.out_layer"),
    ("time_text_embed.text_embedder.linear_1", "vector_in.in_layer"),
    ("time_text_embed.text_embedder.linear_2", "vector_in.out_layer"),
    ("context_embedder", "txt_in"),
    ("x_embedder", "img_in"),
)
# (diffusers, FLUX) suffixes inside one double-stream block, beyond its fused qkv.
_DOUBLE_MODULATIONS = (("norm1.linear", "img_mod.lin"), ("norm1_context.linear", "txt_mod.lin"))
_DOUBLE_LINEARS = (
    ("attn.to_out.0", "img_attn.proj"),
    ("attn.to_add_out", "txt_attn.proj"),
    ("ff.net.0.proj", "img_mlp.0"),
    ("ff.net.2", "img_mlp.2"),
    ("ff_context.net.0.proj", "txt_mlp.0"),
    ("ff_context.net.2", "txt_mlp.2"),
)
_DOUBLE_NORMS = (
    ("attn.norm_q.weight", "img_attn.norm.query_norm.scale"),
    ("attn.norm_k.weight", "img_attn.norm.key_norm.scale"),
    ("attn.norm_added_q.weight", "txt_attn.norm.query_norm.scale"),
    ("attn.norm_added_k.weight", "txt_attn.norm.key_norm.scale"),
)


def _double_block(r: _Renamer, i: int, h: int) -> None:
    s, d = f"double_blocks.{i}", f"transformer_blocks.{i}"
    for dst, key in _DOUBLE_MODULATIONS:
        r.linear(f"{d}.{dst}", f"{s}.{key}")
    r.split(tuple(f"{d}.attn.to_{x}" for x in "qkv"), f"{s}.img_attn.qkv", [h, h, h])
    r.split(tuple(f"{d}.attn.add_{x}_proj" for x in "qkv"), f"{s}.txt_attn.qkv", [h, h, h])
    for dst, key in _DOUBLE_NORMS:
        r.copy(f"{d}.{dst}", f"{s}.{key}")
    for dst, key in _DOUBLE_LINEARS:
        r.linear(f"{d}.{dst}", f"{s}.{key}")


def _single_block(r: _Renamer, i: int, h: int, mlp_hidden: int) -> None:
    s, d = f"single_blocks.{i}", f"single_transformer_blocks.{i}"
    r.linear(f"{d}.norm.linear", f"{s}.modulation.lin")
    qkv_mlp = (f"{d}.attn.to_q", f"{d}.attn.to_k", f"{d}.attn.to_v", f"{d}.proj_mlp")
    r.split(qkv_mlp, f"{s}.linear1", [h, h, h, mlp_hidden])
    r.copy(f"{d}.attn.norm_q.weight", f"{s}.norm.query_norm.scale")
    r.copy(f"{d}.attn.norm_k.weight", f"{s}.norm.key_norm.scale")
    r.linear(f"{d}.proj_out", f"{s}.linear2")


def to_diffusers(sd: StateDict, cfg: FluxMusicConfig) -> dict[str, torch.Tensor]:
    """Rename original FLUX keys to diffusers' `FluxTransformer2DModel` keys.

    Fused qkv projections are split in three; the single blocks' `linear1` splits into q, k, v
    and the MLP input; the final adaLN is stored (shift, scale) in FLUX and (scale, shift) in
    diffusers, so its halves swap. Every input key must be consumed exactly once.
    """
    import torch

    r = _Renamer(sd)
    for dst, key in _EMBEDDER_LINEARS:
        r.linear(dst, key)
    for i in range(cfg.depth):
        _double_block(r, i, cfg.hidden)
    for i in range(cfg.depth_single):
        _single_block(r, i, cfg.hidden, cfg.mlp_hidden)
    r.linear("proj_out", "final_layer.linear")
    for part in ("weight", "bias"):
        shift, scale = r.take(f"final_layer.adaLN_modulation.1.{part}").chunk(2, dim=0)
        r.out[f"norm_out.linear.{part}"] = torch.cat([scale, shift], dim=0)
    return r.done()


def from_diffusers(sd: StateDict, cfg: FluxMusicConfig) -> dict[str, torch.Tensor]:
    """The inverse of `to_diffusers`: diffusers keys back to the original FLUX names.

    This is how a full fine-tune is saved, so it loads like a converted release file.
    """
    import torch

    src = dict(sd)
    out: dict[str, torch.Tensor] = {}

    def take(key: str) -> torch.Tensor:
        try:
            return src.pop(key)
        except KeyError:
            raise CheckpointError(f"model is missing tensor {key!r}.") from None

    def linear(key: str, dst: str) -> None:
        out[f"{key}.weight"] = take(f"{dst}.weight")
        out[f"{key}.bias"] = take(f"{dst}.bias")

    def join(key: str, dsts: tuple[str, ...]) -> None:
        for part in ("weight", "bias"):
            out[f"{key}.{part}"] = torch.cat([take(f"{d}.{part}") for d in dsts], dim=0)

    linear("time_in.in_layer", "time_text_embed.timestep_embedder.linear_1")
    linear("time_in.out_layer", "time_text_embed.timestep_embedder.linear_2")
    linear("vector_in.in_layer", "time_text_embed.text_embedder.linear_1")
    linear("vector_in.out_layer", "time_text_embed.text_embedder.linear_2")
    linear("txt_in", "context_embedder")
    linear("img_in", "x_embedder")
    for i in range(cfg.depth):
        s, d = f"double_blocks.{i}", f"transformer_blocks.{i}"
        linear(f"{s}.img_mod.lin", f"{d}.norm1.linear")
        linear(f"{s}.txt_mod.lin", f"{d}.norm1_context.linear")
        join(f"{s}.img_attn.qkv", tuple(f"{d}.attn.to_{x}" for x in "qkv"))
        join(f"{s}.txt_attn.qkv", tuple(f"{d}.attn.add_{x}_proj" for x in "qkv"))
        out[f"{s}.img_attn.norm.query_norm.scale"] = take(f"{d}.attn.norm_q.weight")
        out[f"{s}.img_attn.norm.key_norm.scale"] = take(f"{d}.attn.norm_k.weight")
        out[f"{s}.txt_attn.norm.query_norm.scale"] = take(f"{d}.attn.norm_added_q.weight")
        out[f"{s}.txt_attn.norm.key_norm.scale"] = take(f"{d}.attn.norm_added_k.weight")
        linear(f"{s}.img_attn.proj", f"{d}.attn.to_out.0")
        linear(f"{s}.txt_attn.proj", f"{d}.attn.to_add_out")
        linear(f"{s}.img_mlp.0", f"{d}.ff.net.0.proj")
        linear(f"{s}.img_mlp.2", f"{d}.ff.net.2")
        linear(f"{s}.txt_mlp.0", f"{d}.ff_context.net.0.proj")
        linear(f"{s}.txt_mlp.2", f"{d}.ff_context.net.2")
    for i in range(cfg.depth_single):
        s, d = f"single_blocks.{i}", f"single_transformer_blocks.{i}"
        linear(f"{s}.modulation.lin", f"{d}.norm.linear")
        join(
            f"{s}.linear1",
            (f"{d}.attn.to_q", f"{d}.attn.to_k", f"{d}.attn.to_v", f"{d}.proj_mlp"),
        )
        out[f"{s}.norm.query_norm.scale"] = take(f"{d}.attn.norm_q.weight")
        out[f"{s}.norm.key_norm.scale"] = take(f"{d}.attn.norm_k.weight")
        linear(f"{s}.linear2", f"{d}.proj_out")
    linear("final_layer.linear", "proj_out")
    for part in ("weight", "bias"):
        scale, shift = take(f"norm_out.linear.{part}").chunk(2, dim=0)
        out[f"final_layer.adaLN_modulation.1.{part}"] = torch.cat([shift, scale], dim=0)
    if src:
        raise CheckpointError(
            f"model has {len(src)} tensor(s) with no FLUX name, e.g. {min(src)!r}."
        )
    return out


def build_transformer(sd: StateDict, *, source: str = "checkpoint"):
    """Create a `FluxTransformer2DModel` of the inferred size and load `sd` strictly.

    The module is built on the meta device and the tensors are assigned, so no memory is spent
    on a random initialisation (and meta state dicts load without allocating).
    """
    import torch
    from diffusers import FluxTransformer2DModel

    cfg = infer_config(sd, source=source)
    try:
        mapped = to_diffusers(sd, cfg)
    except CheckpointError as exc:
        raise CheckpointError(f"{source}: {exc.message}") from None
    with torch.device("meta"):
        model = FluxTransformer2DModel(**cfg.diffusers_kwargs())
    try:
        model.load_state_dict(mapped, strict=True, assign=True)
    except RuntimeError as exc:
        raise CheckpointError(
            f"{source}: tensors do not fit the inferred model: {first_line(exc)}"
        ) from None
    return model.eval().requires_grad_(False), cfg


def load_transformer(path: Path, *, device: str | torch.device = "cpu", dtype=None):
    """Read, convert and load a checkpoint file; returns (model, config)."""
    sd = read_state_dict(path)
    if dtype is not None:
        # Cast tensor by tensor before assignment: no second full-size copy, no library warning.
        sd = {k: v.to(dtype) for k, v in sd.items()}
    model, cfg = build_transformer(sd, source=str(path))
    return model.to(device=device), cfg


def convert_to_safetensors(src: Path, dst: Path) -> None:
    """Write a released `.pt` as safetensors (original key names), atomically.

    The state dict is validated first, so a bad download never becomes a cached conversion.
    """
    from safetensors.torch import save_file

    sd = read_state_dict(src)
    infer_config(sd, source=str(src))
    dst = Path(dst)
    atomic.make_folder(dst.parent)
    with atomic.writing(dst) as tmp:
        save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp), metadata={"format": "pt"})
