"""What can be loaded, as data: FluxMusic variants and the components around them.

Every entry names where it lives on the Hugging Face hub and how big it is. A user can give a
local path instead of any name; `fluxmusic_cli.engine.hub` resolves names and paths to files.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fluxmusic_cli.errors import UsageError

FLUXMUSIC_REPO = "feizhengcong/FluxMusic"

# RoPE axes per head_dim (the FLUX transformer's rotary split of each attention head): the
# one architecture fact not stored in a checkpoint.
# 16 is the tiny size of the reference fixtures and of the test bundles.
AXES_DIM_BY_HEAD_DIM: dict[int, tuple[int, int, int]] = {
    16: (4, 6, 6),
    32: (8, 12, 12),
    48: (16, 16, 16),
    64: (16, 24, 24),
    88: (16, 36, 36),
    128: (32, 48, 48),
}


@dataclass(frozen=True)
class Variant:
    """One released FluxMusic checkpoint."""

    name: str
    filename: str
    size_bytes: int
    params: int
    hidden: int
    depth: int
    depth_single: int
    num_heads: int = 16
    repo_id: str = FLUXMUSIC_REPO

    @property
    def head_dim(self) -> int:
        return self.hidden // self.num_heads

    @property
    def axes_dim(self) -> tuple[int, int, int]:
        return AXES_DIM_BY_HEAD_DIM[self.head_dim]


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("small", "musicflow_s.pt", 569_462_050, 142_333_984, 512, 8, 16),
        Variant("base", "musicflow_b.pt", 1_896_071_458, 473_971_232, 768, 12, 24),
        Variant("large", "musicflow_l.pt", 3_362_699_554, 840_628_256, 1024, 12, 24),
        Variant("giant", "musicflow_g.pt", 8_439_866_222, 2_109_904_928, 1408, 16, 32),
        # Published only as "about 6.35 GB"; its fp32 parameters alone take 6,344,955,008 B.
        Variant("giant-full", "musicflow_g_full.pt", 6_350_000_000, 1_586_238_752, 1408, 12, 24),
    )
}

DEFAULT_VARIANT = "small"


def get_variant(name: str) -> Variant:
    """Look a variant up by name; an unknown name fails with the list of known ones."""
    key = name.strip().lower().replace("_", "-")
    if key not in VARIANTS:
        known = ", ".join(VARIANTS)
        raise UsageError(f"Unknown model variant {name!r}. Known variants: {known}.")
    return VARIANTS[key]


@dataclass(frozen=True)
class HubComponent:
    """A component stored in a hub repository (optionally inside subfolders of it).

    `files` are the paths to fetch, relative to the repo root; `size_bytes` is their total
    as published, used for the pre-flight summary.
    """

    key: str
    description: str
    repo_id: str
    files: tuple[str, ...]
    size_bytes: int
    gated: bool = False
    revision: str = "main"
    notes: str = ""
    aliases: tuple[str, ...] = field(default=())


# AudioLDM 2's VAE and HiFi-GAN vocoder, which turn latents into mel frames and 16 kHz audio.
AUDIOLDM2 = HubComponent(
    key="audioldm2",
    description="AudioLDM 2 VAE + HiFi-GAN vocoder",
    repo_id="cvssp/audioldm2",
    files=(
        "vae/config.json",
        "vae/diffusion_pytorch_model.safetensors",
        "vocoder/config.json",
        "vocoder/model.safetensors",
    ),
    size_bytes=221_000_000 + 221_000_000,
)

CLAP = HubComponent(
    key="clap",
    description="LAION CLAP (music), text tower used",
    repo_id="laion/larger_clap_music",
    files=(
        "config.json",
        "model.safetensors",
        "vocab.json",
        "merges.txt",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
    ),
    size_bytes=776_000_000,
)

T5_SOURCES: dict[str, HubComponent] = {
    c.key: c
    for c in (
        HubComponent(
            key="t5-city96",
            description="T5-v1.1-XXL encoder only, bf16 (not gated)",
            repo_id="city96/t5-v1_1-xxl-encoder-bf16",
            files=(
                "config.json",
                "model.safetensors",
                "spiece.model",
                "special_tokens_map.json",
                "tokenizer_config.json",
            ),
            size_bytes=9_520_000_000,
            aliases=("city96", "default"),
        ),
        HubComponent(
            key="t5-sd3",
            description="SD3 text_encoder_3 (gated: accept its licence, use a token)",
            repo_id="stabilityai/stable-diffusion-3-medium-diffusers",
            files=(
                "text_encoder_3/config.json",
                "text_encoder_3/model.safetensors.index.json",
                "text_encoder_3/model-00001-of-00002.safetensors",
                "text_encoder_3/model-00002-of-00002.safetensors",
                "tokenizer_3/special_tokens_map.json",
                "tokenizer_3/spiece.model",
                "tokenizer_3/tokenizer.json",
                "tokenizer_3/tokenizer_config.json",
            ),
            size_bytes=9_530_000_000,
            gated=True,
            aliases=("sd3",),
        ),
    )
}

DEFAULT_T5 = "t5-city96"


def get_t5_source(name: str) -> HubComponent | None:
    """A registered T5 source by key, alias or repo id; None when `name` is something else."""
    key = name.strip()
    for comp in T5_SOURCES.values():
        if key in (comp.key, comp.repo_id, *comp.aliases):
            return comp
    return None


# Parameters each component holds in memory once loaded (weights only; activations come on
# top), counted on random-weight models built from the published configs:
#   t5: T5-v1.1-XXL encoder stack (d_model 4096, 24 layers, d_ff 10240, vocab 32128), 9.52 GB
#       in bf16;
#   clap: the `ClapTextModel` of laion/larger_clap_music (RoBERTa-base-sized: 12 layers of 768,
#       vocab 50265, 514 positions, with its pooler); its 768 -> 512 text projection (656,384
#       more) is not loaded, since conditioning reads the pooler output;
#   audioldm2: AudioLDM 2's AutoencoderKL (55,376,873, encoder included, as loaded) plus its
#       HiFi-GAN vocoder (55,264,897).
DECODER_PARAMS: dict[str, int] = {"vae": 55_376_873, "vocoder": 55_264_897}
PARAMS_BY_KIND: dict[str, int] = {
    "t5": 4_762_310_656,
    "clap": 124_645_632,
    "audioldm2": sum(DECODER_PARAMS.values()),  # 110,641,770
}
