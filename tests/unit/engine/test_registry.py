"""The registry as data: variants, their geometry, and the memory table."""

from __future__ import annotations

import pytest
import torch

from fluxmusic_cli.engine import registry
from fluxmusic_cli.errors import UsageError


def test_every_variant_has_a_rope_split_that_fills_its_head():
    for v in registry.VARIANTS.values():
        assert v.hidden == v.num_heads * v.head_dim
        assert sum(v.axes_dim) == v.head_dim
        assert v.params * 4 <= v.size_bytes  # fp32 weights fit in the published file


def test_lookup_forgives_case_and_underscores_and_lists_the_known_names():
    assert registry.get_variant(" Giant_Full ").name == "giant-full"
    with pytest.raises(UsageError) as info:
        registry.get_variant("xl")
    assert all(name in str(info.value) for name in registry.VARIANTS)


def test_t5_sources_are_found_by_key_alias_or_repo_id_only():
    sd3 = registry.T5_SOURCES["t5-sd3"]
    assert registry.get_t5_source("sd3") is sd3
    assert registry.get_t5_source(sd3.repo_id) is sd3
    assert registry.get_t5_source("city96") is registry.T5_SOURCES[registry.DEFAULT_T5]
    assert registry.get_t5_source("google/t5-v1_1-xxl") is None
    assert sd3.gated and not registry.T5_SOURCES[registry.DEFAULT_T5].gated


def test_the_memory_table_holds_the_counts_of_the_published_configurations():
    counts = registry.PARAMS_BY_KIND
    assert set(counts) == {"t5", "clap", "audioldm2"}
    # bf16 T5-XXL encoder weights are the 9.52 GB the non-gated copy publishes.
    assert counts["t5"] * 2 == pytest.approx(registry.T5_SOURCES["t5-city96"].size_bytes, rel=1e-3)
    # The loaded CLAP text tower is a fraction of the whole CLAP file (which has the audio tower).
    assert counts["clap"] * 4 < registry.CLAP.size_bytes
    # VAE and vocoder in fp32 are about the two published 221 MB files.
    assert counts["audioldm2"] * 4 == pytest.approx(registry.AUDIOLDM2.size_bytes, rel=0.01)


def test_the_memory_table_equals_models_built_from_the_published_configs():
    """Counted on the meta device (no weights): CLAP's text tower as larger_clap_music configures
    it (transformers' ClapTextConfig defaults), AudioLDM 2's VAE and vocoder as cvssp/audioldm2
    publishes them, and the T5-v1.1-XXL encoder."""
    from diffusers import AutoencoderKL
    from transformers import (
        ClapTextConfig,
        ClapTextModel,
        SpeechT5HifiGan,
        SpeechT5HifiGanConfig,
        T5Config,
        T5EncoderModel,
    )

    def count(model) -> int:
        return sum(p.numel() for p in model.parameters())

    # fmt: off
    vae = {"in_channels": 1, "out_channels": 1, "block_out_channels": [128, 256, 512],
           "layers_per_block": 2, "latent_channels": 8, "norm_num_groups": 32,
           "sample_size": 1024, "down_block_types": ["DownEncoderBlock2D"] * 3,
           "up_block_types": ["UpDecoderBlock2D"] * 3}
    hifigan = {"model_in_dim": 64, "sampling_rate": 16000, "upsample_rates": [5, 4, 2, 2, 2],
               "upsample_kernel_sizes": [16, 16, 8, 4, 4], "upsample_initial_channel": 1024,
               "resblock_kernel_sizes": [3, 7, 11], "resblock_dilation_sizes": [[1, 3, 5]] * 3,
               "normalize_before": False}
    t5 = {"d_model": 4096, "d_ff": 10240, "num_layers": 24, "num_heads": 64, "d_kv": 64,
          "vocab_size": 32128, "feed_forward_proj": "gated-gelu"}
    # fmt: on
    with torch.device("meta"):
        counted = {
            "t5": count(T5EncoderModel(T5Config(**t5))),
            "clap": count(ClapTextModel(ClapTextConfig())),
            "audioldm2": count(AutoencoderKL(**vae))
            + count(SpeechT5HifiGan(SpeechT5HifiGanConfig(**hifigan))),
        }
    assert counted == registry.PARAMS_BY_KIND
