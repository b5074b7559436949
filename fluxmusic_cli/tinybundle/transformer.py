"""A tiny random-weight FluxMusic checkpoint in the released format (`{"ema": state_dict}`)."""

from __future__ import annotations

from pathlib import Path


def tiny_fluxmusic_state_dict(
    *,
    context_in_dim: int,
    vec_in_dim: int,
    hidden: int = 64,
    num_heads: int = 4,
    depth: int = 1,
    depth_single: int = 1,
    in_channels: int = 32,
    seed: int = 0,
) -> dict:
    """Original FLUX key names and shapes (as the released checkpoints store them), seeded
    random values."""
    import torch

    gen = torch.Generator("cpu").manual_seed(seed)
    h, hd, mlp = hidden, hidden // num_heads, 4 * hidden
    sd: dict[str, torch.Tensor] = {}

    def linear(name: str, out_dim: int, in_dim: int) -> None:
        sd[f"{name}.weight"] = torch.randn(out_dim, in_dim, generator=gen) / in_dim**0.5
        sd[f"{name}.bias"] = torch.randn(out_dim, generator=gen) * 0.02

    def qk_norm(prefix: str) -> None:
        for which in ("query_norm", "key_norm"):
            sd[f"{prefix}.{which}.scale"] = 1 + 0.1 * torch.randn(hd, generator=gen)

    linear("img_in", h, in_channels)
    linear("time_in.in_layer", h, 256)
    linear("time_in.out_layer", h, h)
    linear("vector_in.in_layer", h, vec_in_dim)
    linear("vector_in.out_layer", h, h)
    linear("txt_in", h, context_in_dim)
    for i in range(depth):
        for side in ("img", "txt"):
            p = f"double_blocks.{i}.{side}"
            linear(f"{p}_mod.lin", 6 * h, h)
            linear(f"{p}_attn.qkv", 3 * h, h)
            qk_norm(f"{p}_attn.norm")
            linear(f"{p}_attn.proj", h, h)
            linear(f"{p}_mlp.0", mlp, h)
            linear(f"{p}_mlp.2", h, mlp)
    for i in range(depth_single):
        p = f"single_blocks.{i}"
        linear(f"{p}.linear1", 3 * h + mlp, h)
        linear(f"{p}.linear2", h, h + mlp)
        qk_norm(f"{p}.norm")
        linear(f"{p}.modulation.lin", 3 * h, h)
    linear("final_layer.linear", in_channels, h)
    linear("final_layer.adaLN_modulation.1", 2 * h, h)
    return sd


def write_tiny_fluxmusic(path: Path, *, context_in_dim: int, vec_in_dim: int, **kwargs) -> Path:
    """Write a `.pt` shaped like a released `musicflow_*.pt`: a pickle of `{"ema": ...}`."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sd = tiny_fluxmusic_state_dict(context_in_dim=context_in_dim, vec_in_dim=vec_in_dim, **kwargs)
    torch.save({"ema": sd}, path)
    return path
