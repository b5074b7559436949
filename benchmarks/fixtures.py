"""Real-size random-weight components written in their hub layouts (time and memory only).

Written once under a work directory and reused by later runs (each component is marked done
only after it was written completely).
"""

from __future__ import annotations

import json
from pathlib import Path

from common import VARIANTS

SCALING_FACTOR = 0.4110932946205139


def _done(path: Path) -> bool:
    return (path / ".complete").exists()


def _mark(path: Path) -> Path:
    (path / ".complete").write_text("ok\n")
    return path


def transformer(work: Path, variant: str = "small") -> tuple[Path, Path]:
    """(released-format .pt, converted safetensors) of a random `variant`."""
    import torch

    from fluxmusic_cli.engine.checkpoint import convert_to_safetensors
    from fluxmusic_cli.tinybundle.transformer import tiny_fluxmusic_state_dict

    folder = work / f"musicflow_{variant}"
    pt, st = folder / f"musicflow_{variant}.pt", folder / f"musicflow_{variant}.safetensors"
    if not _done(folder):
        folder.mkdir(parents=True, exist_ok=True)
        torch.save({"ema": tiny_fluxmusic_state_dict(**VARIANTS[variant])}, pt)
        convert_to_safetensors(pt, st)
        _mark(folder)
    return pt, st


def t5_wide(work: Path, layers: int = 2) -> Path:
    """A T5 encoder at T5-XXL width (d_model 4096, d_ff 10240) with only `layers` layers.

    It gives the transformer real-size text features; its own cost is a fraction (layers / 24)
    of T5-XXL's, which the opt-in `t5xxl` section measures at full size.
    """
    from fluxmusic_cli.tinybundle.text import write_tiny_t5

    folder = work / f"t5_xxl_width_{layers}layers"
    if not _done(folder):
        write_tiny_t5(folder, d_model=4096)
        _mark(folder)
    return folder


def t5_xxl(work: Path) -> Path:
    """T5-v1.1-XXL encoder at full size (4.76 B parameters) in bf16, tensor by tensor.

    The model is never built in memory: names and shapes come from a meta-device instance and
    each tensor is drawn, cast to bf16 and written to one of several shards.
    """
    import torch
    from safetensors.torch import save_file
    from transformers import T5Config, T5EncoderModel

    from fluxmusic_cli.tinybundle.text import write_tiny_t5

    folder = work / "t5_xxl_full"
    if _done(folder):
        return folder
    write_tiny_t5(folder, d_model=64)  # tokenizer files and a config to overwrite
    (folder / "model.safetensors").unlink()
    config = json.loads((folder / "config.json").read_text())
    config.update(d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_decoder_layers=24,
                  num_heads=64, vocab_size=32128)  # fmt: skip
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    cfg = T5Config(**{k: v for k, v in config.items() if k not in ("architectures", "torch_dtype")})
    with torch.device("meta"):
        meta = T5EncoderModel(cfg)
    shapes = {k: tuple(v.shape) for k, v in meta.state_dict().items()}
    shapes.pop("encoder.embed_tokens.weight", None)  # tied to `shared.weight`
    gen = torch.Generator().manual_seed(0)
    weight_map: dict[str, str] = {}
    shard: dict[str, torch.Tensor] = {}
    size, index, total = 0, 1, 0

    def flush() -> None:
        nonlocal shard, size, index
        name = f"model-{index:05d}.safetensors"
        save_file(shard, str(folder / name), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(shard, name))
        shard, size, index = {}, 0, index + 1

    for key, shape in shapes.items():
        t = torch.randn(shape, generator=gen).mul_(0.02).to(torch.bfloat16)
        shard[key] = t
        size += t.numel() * 2
        total += t.numel() * 2
        if size > 2 * 2**30:
            flush()
    if shard:
        flush()
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2)
    )
    return _mark(folder)


LARGER_CLAP_MUSIC_TEXT = dict(
    vocab_size=50265, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
    intermediate_size=3072, max_position_embeddings=514, projection_dim=512,
)  # fmt: skip
LARGER_CLAP_MUSIC_AUDIO = dict(depths=[2, 2, 12, 2], projection_dim=512)


def clap(work: Path) -> Path:
    """A whole `ClapModel` repo at `laion/larger_clap_music` size (text tower: RoBERTa-base).

    The tokenizer is the tiny bundle's (ids stay below 512), the weights are real-size.
    """
    import torch
    from safetensors.torch import save_file
    from transformers import ClapConfig, ClapModel

    from fluxmusic_cli.tinybundle.text import write_tiny_clap

    folder = work / "clap_larger_music"
    if _done(folder):
        return folder
    write_tiny_clap(folder, hidden=32)
    cfg = ClapConfig(text_config=LARGER_CLAP_MUSIC_TEXT, audio_config=LARGER_CLAP_MUSIC_AUDIO,
                     projection_dim=512)  # fmt: skip
    torch.manual_seed(0)
    model = ClapModel(cfg).eval()
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    seen, out = set(), {}
    for k, v in state.items():
        if v.data_ptr() in seen:
            continue
        seen.add(v.data_ptr())
        out[k] = v
    save_file(out, str(folder / "model.safetensors"), metadata={"format": "pt"})
    config = json.loads((folder / "config.json").read_text())
    config["text_config"].update(LARGER_CLAP_MUSIC_TEXT)
    config["audio_config"] = {"model_type": "clap_audio_model", **LARGER_CLAP_MUSIC_AUDIO}
    config["projection_dim"] = 512
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return _mark(folder)


def audioldm2_decoder(work: Path) -> Path:
    """`vae/` and `vocoder/` of `cvssp/audioldm2` at real size (the published configs)."""
    import torch
    from diffusers import AutoencoderKL
    from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

    folder = work / "audioldm2"
    if _done(folder):
        return folder
    torch.manual_seed(0)
    vae = AutoencoderKL(
        in_channels=1, out_channels=1,
        down_block_types=["DownEncoderBlock2D"] * 3, up_block_types=["UpDecoderBlock2D"] * 3,
        block_out_channels=[128, 256, 512], layers_per_block=2, latent_channels=8,
        norm_num_groups=32, sample_size=1024, scaling_factor=SCALING_FACTOR, force_upcast=True,
    )  # fmt: skip
    vocoder = SpeechT5HifiGan(
        SpeechT5HifiGanConfig(
            model_in_dim=64,
            sampling_rate=16000,
            upsample_initial_channel=1024,
            upsample_rates=[5, 4, 2, 2, 2],
            upsample_kernel_sizes=[16, 16, 8, 4, 4],
            resblock_kernel_sizes=[3, 7, 11],
            resblock_dilation_sizes=[[1, 3, 5], [1, 3, 5], [1, 3, 5]],
            normalize_before=False,
        )  # fmt: skip
    )
    vae.save_pretrained(folder / "vae", safe_serialization=True)
    vocoder.save_pretrained(folder / "vocoder", safe_serialization=True)
    path = folder / "vocoder" / "config.json"
    config = json.loads(path.read_text())
    config["model_type"] = "hifigan"
    path.write_text(json.dumps(config, indent=2) + "\n")
    return _mark(folder)
