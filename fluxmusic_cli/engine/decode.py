"""From latents to a waveform: AudioLDM 2's VAE, then its HiFi-GAN vocoder.

    latent (B, 8, T, 16) / scaling_factor -> VAE decode -> mel (B, 1, 4T, 64)
    -> vocoder -> waveform (B, 160 * 4T) at 16 kHz

`root` is a folder laid out like the hub repo `cvssp/audioldm2`: `vae/` and `vocoder/`.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fluxmusic_cli.engine.quiet import quiet_libraries
from fluxmusic_cli.errors import CheckpointError, ModelMissingError, first_line

if TYPE_CHECKING:
    import torch

SAMPLE_RATE = 16000
HOP = 160  # waveform samples per mel frame
MEL_BINS = 64
LATENT_CHANNELS = 8

VAE_FILES = ("config.json", "diffusion_pytorch_model.safetensors")
VOCODER_FILES = ("config.json", "model.safetensors")

# The hub's vocoder file predates the `speecht5_hifigan` model type; the value is not read.
_IGNORED_VOCODER_KEYS = ("model_type",)


def _read_config(folder: Path, files: tuple[str, ...], what: str) -> dict[str, Any]:
    if not folder.is_dir():
        raise ModelMissingError(
            f"The {what} folder {folder} does not exist.",
            hint="It must be laid out like the hub repo cvssp/audioldm2 (vae/, vocoder/).",
        )
    missing = [name for name in files if not (folder / name).is_file()]
    if missing:
        raise CheckpointError(f"The {what} folder {folder} lacks {', '.join(missing)}.")
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{folder / 'config.json'} is not readable JSON ({exc}).") from exc
    if not isinstance(config, dict):
        raise CheckpointError(f"{folder / 'config.json'} is not a JSON object.")
    return config


def _expect(config: dict[str, Any], folder: Path, what: str, **expected: Any) -> None:
    for key, want in expected.items():
        got = config.get(key)
        if got != want:
            raise CheckpointError(
                f"The {what} in {folder} has {key}={got!r}; AudioLDM 2's has {want!r}."
            )


def check_vae_config(folder: Path) -> dict[str, Any]:
    """Read `vae/config.json` and check it describes AudioLDM 2's 8-channel, 4x-down VAE."""
    config = _read_config(folder, VAE_FILES, "VAE")
    _expect(config, folder, "VAE", latent_channels=LATENT_CHANNELS, in_channels=1, out_channels=1)
    blocks = config.get("block_out_channels")
    # Each block after the first halves time and frequency: 3 blocks give the 4x the layout needs.
    if not isinstance(blocks, list) or len(blocks) != 3:
        raise CheckpointError(
            f"The VAE in {folder} has block_out_channels={blocks!r}; AudioLDM 2's has 3 blocks."
        )
    return config


def check_vocoder_config(folder: Path) -> dict[str, Any]:
    """Read `vocoder/config.json` and check it describes a 64-bin, 16 kHz, hop-160 HiFi-GAN."""
    config = _read_config(folder, VOCODER_FILES, "vocoder")
    _expect(config, folder, "vocoder", model_in_dim=MEL_BINS, sampling_rate=SAMPLE_RATE)
    rates = config.get("upsample_rates")
    product = 1
    for rate in rates if isinstance(rates, list) else [0]:
        product *= rate if isinstance(rate, int) else 0
    if product != HOP:
        raise CheckpointError(
            f"The vocoder in {folder} has upsample_rates={rates!r}; their product must be {HOP}."
        )
    return config


def _check_loading_info(info: dict[str, Any], folder: Path, what: str, allowed: set[str]) -> None:
    missing = set(info.get("missing_keys") or ()) - allowed
    problems = {
        "missing": sorted(missing),
        "unexpected": sorted(info.get("unexpected_keys") or ()),
        "mismatched": sorted(str(k) for k in info.get("mismatched_keys") or ()),
    }
    for kind, keys in problems.items():
        if keys:
            shown = ", ".join(keys[:3]) + (" ..." if len(keys) > 3 else "")
            raise CheckpointError(
                f"The {what} weights in {folder} do not fit its config: "
                f"{len(keys)} {kind} tensor(s) ({shown})."
            )


def _load_vae(folder: Path, device: str, dtype: torch.dtype):
    import torch
    from diffusers import AutoencoderKL
    from safetensors import SafetensorError

    try:
        vae, info = AutoencoderKL.from_pretrained(
            folder,
            torch_dtype=dtype,
            use_safetensors=True,
            # Without accelerate diffusers warns and falls back to this anyway.
            low_cpu_mem_usage=importlib.util.find_spec("accelerate") is not None,
            output_loading_info=True,
        )
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
        raise CheckpointError(f"Cannot load the VAE from {folder}: {first_line(exc)}") from exc
    _check_loading_info(info, folder, "VAE", allowed=set())
    return vae.to(device=torch.device(device), dtype=dtype).eval()


def _load_vocoder(folder: Path, config: dict[str, Any], device: str, dtype: torch.dtype):
    import torch
    from safetensors import SafetensorError
    from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

    fields = {k: v for k, v in config.items() if k not in _IGNORED_VOCODER_KEYS}
    try:
        # Building the config ourselves accepts the hub file's old model_type without a warning.
        vocoder, info = SpeechT5HifiGan.from_pretrained(
            folder,
            config=SpeechT5HifiGanConfig.from_dict(fields),
            use_safetensors=True,
            output_loading_info=True,
        )
    except (OSError, ValueError, RuntimeError, TypeError, SafetensorError) as exc:
        raise CheckpointError(f"Cannot load the vocoder from {folder}: {first_line(exc)}") from exc
    # mean/scale only matter with normalize_before; a file without them is still complete.
    allowed = set() if config.get("normalize_before") else {"mean", "scale"}
    _check_loading_info(info, folder, "vocoder", allowed=allowed)
    return vocoder.to(device=torch.device(device), dtype=dtype).eval()


@dataclass
class Decoder:
    """The loaded VAE and vocoder; `decode` turns latents into 16 kHz waveforms."""

    vae: Any
    vocoder: Any
    device: str
    dtype: torch.dtype  # the vocoder's (the pipeline's) precision
    vae_dtype: torch.dtype  # fp32 when the VAE config asks for force_upcast
    scaling_factor: float

    @property
    def sample_rate(self) -> int:
        return SAMPLE_RATE

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """latents (B, 8, T, 16) -> waveform (B, 160 * 4T), float32 on the CPU."""
        import torch

        if self.vae is None or self.vocoder is None:
            raise RuntimeError("Decoder.decode called after release().")
        if latents.ndim != 4 or latents.shape[1] != LATENT_CHANNELS:
            raise ValueError(f"Expected latents (B, 8, T, 16), got {tuple(latents.shape)}.")
        with torch.inference_mode():
            z = latents.to(device=self.device, dtype=self.vae_dtype) / self.scaling_factor
            mel = self.vae.decode(z).sample  # (B, 1, 4T, 64)
            wave = self.vocoder(mel.squeeze(1).to(self.dtype))  # (B, 160 * 4T + overhang)
        # The transposed convolutions run a few samples past the last frame: keep whole frames.
        return wave[:, : HOP * mel.shape[2]].float().cpu()

    def encode_posterior(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """mel (B, 1, 4T, 64) -> the VAE posterior's (mean, logvar), each (B, 8, T, 16), unscaled,
        float32 on the CPU."""
        import torch

        if self.vae is None:
            raise RuntimeError("Decoder.encode_posterior called after release().")
        if mel.ndim != 4 or mel.shape[1] != 1 or mel.shape[3] != MEL_BINS:
            raise ValueError(f"Expected a mel (B, 1, frames, 64), got {tuple(mel.shape)}.")
        with torch.inference_mode():
            dist = self.vae.encode(mel.to(device=self.device, dtype=self.vae_dtype)).latent_dist
        return dist.mean.float().cpu(), dist.logvar.float().cpu()

    def release(self) -> None:
        """Drop the models so their memory can be reused; the decoder is unusable afterwards."""
        self.vae = None
        self.vocoder = None
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()


def load_decoder(
    root: Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None
) -> Decoder:
    """Load `root/vae` and `root/vocoder` after checking their configs.

    The VAE stays in fp32 when its config sets `force_upcast` (as AudioLDM 2's does): its
    decoder overflows in fp16. The vocoder runs in `dtype`.
    """
    import torch

    dtype = dtype or torch.float32
    device = str(device)
    root = Path(root)
    if not root.is_dir():
        raise ModelMissingError(
            f"The AudioLDM 2 folder {root} does not exist.",
            hint="It must hold vae/ and vocoder/ as in the hub repo cvssp/audioldm2.",
        )
    vae_config = check_vae_config(root / "vae")
    vocoder_config = check_vocoder_config(root / "vocoder")
    vae_dtype = torch.float32 if vae_config.get("force_upcast", False) else dtype
    with quiet_libraries():
        vae = _load_vae(root / "vae", device, vae_dtype)
        vocoder = _load_vocoder(root / "vocoder", vocoder_config, device, dtype)
    return Decoder(
        vae=vae,
        vocoder=vocoder,
        device=device,
        dtype=dtype,
        vae_dtype=vae_dtype,
        scaling_factor=float(vae.config.scaling_factor),
    )


def trim(waveform: torch.Tensor, seconds: float, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """Cut a decoded (..., samples) waveform back to `seconds` (the latent grid rounds up)."""
    n = round(seconds * sample_rate)
    if n > waveform.shape[-1]:
        raise ValueError(f"Cannot trim {waveform.shape[-1]} samples to {n}: too short.")
    return waveform[..., :n]
