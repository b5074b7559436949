"""A tiny random-weight AudioLDM 2 VAE + HiFi-GAN vocoder in the `cvssp/audioldm2` layout.

Only the widths shrink: the VAE keeps three blocks (4x down in time and frequency, so a
(1, 4T, 64) mel maps to an (8, T, 16) latent) and the vocoder keeps the real upsample rates
(160 samples per mel frame), so every shape the pipeline sees is the real one.
"""

from __future__ import annotations

import json
from pathlib import Path

SCALING_FACTOR = 0.4110932946205139


def write_tiny_audioldm2(root: Path, *, seed: int = 0) -> Path:
    """Write `vae/` and `vocoder/` under `root` (config + safetensors each) and return `root`.

    Seeded and deterministic: the same seed writes byte-identical weight files.
    """
    import torch
    from diffusers import AutoencoderKL
    from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

    root = Path(root)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vae = AutoencoderKL(
            in_channels=1,
            out_channels=1,
            down_block_types=["DownEncoderBlock2D"] * 3,
            up_block_types=["UpDecoderBlock2D"] * 3,
            block_out_channels=[8, 16, 32],
            layers_per_block=1,
            latent_channels=8,
            norm_num_groups=4,
            sample_size=1024,
            scaling_factor=SCALING_FACTOR,
            force_upcast=True,
        )
        vocoder = SpeechT5HifiGan(
            SpeechT5HifiGanConfig(
                model_in_dim=64,
                sampling_rate=16000,
                upsample_initial_channel=32,
                upsample_rates=[5, 4, 2, 2, 2],
                upsample_kernel_sizes=[16, 16, 8, 4, 4],
                resblock_kernel_sizes=[3, 7, 11],
                resblock_dilation_sizes=[[1, 3, 5], [1, 3, 5], [1, 3, 5]],
                normalize_before=False,
            )
        )
        _rescale_convolutions(vocoder)
    vae.save_pretrained(root / "vae", safe_serialization=True)
    vocoder.save_pretrained(root / "vocoder", safe_serialization=True)

    # The hub's vocoder config predates the `speecht5_hifigan` model type; write it the same way
    # so the loader is exercised on what it will really meet.
    config_path = root / "vocoder" / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["model_type"] = "hifigan"
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return root


def _rescale_convolutions(model) -> None:
    """Give convolutions a fan-in scaled init (HiFi-GAN's default of std 0.01 decays the
    signal to about 1e-10 through five upsampling stages; tests need audible noise)."""
    import torch

    for module in model.modules():
        if isinstance(module, (torch.nn.Conv1d, torch.nn.ConvTranspose1d)):
            w = module.weight
            fan_in = w.shape[1] * w.shape[2]
            if isinstance(module, torch.nn.ConvTranspose1d):
                fan_in = w.shape[0] * w.shape[2] // max(module.stride[0], 1)
            with torch.no_grad():
                w.normal_(0.0, 1.0 / fan_in**0.5)
