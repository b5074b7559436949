"""Decoding: latents -> VAE -> mel -> vocoder -> 16 kHz waveform, loaded from the hub layout."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from fluxmusic_cli.engine import decode
from fluxmusic_cli.errors import CheckpointError, ModelMissingError
from fluxmusic_cli.tinybundle.audio import SCALING_FACTOR, write_tiny_audioldm2


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return write_tiny_audioldm2(tmp_path_factory.mktemp("audioldm2"))


@pytest.fixture
def copy(bundle, tmp_path) -> Path:
    return Path(shutil.copytree(bundle, tmp_path / "audioldm2"))


def edit_config(path: Path, **changes) -> None:
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


def latents(b: int = 2, t: int = 6) -> torch.Tensor:
    return torch.randn(b, 8, t, 16, generator=torch.Generator().manual_seed(1))


def test_tiny_bundle_has_the_hub_layout_and_model_type(bundle):
    files = sorted(str(p.relative_to(bundle)) for p in bundle.rglob("*") if p.is_file())
    assert files == [
        "vae/config.json",
        "vae/diffusion_pytorch_model.safetensors",
        "vocoder/config.json",
        "vocoder/model.safetensors",
    ]
    assert json.loads((bundle / "vocoder" / "config.json").read_text())["model_type"] == "hifigan"
    vae = json.loads((bundle / "vae" / "config.json").read_text())
    assert vae["scaling_factor"] == SCALING_FACTOR and vae["force_upcast"] is True


def test_tiny_bundle_is_deterministic(bundle, tmp_path):
    again = write_tiny_audioldm2(tmp_path / "again")
    for rel in ("vae/diffusion_pytorch_model.safetensors", "vocoder/model.safetensors"):
        assert (again / rel).read_bytes() == (bundle / rel).read_bytes()


def test_decode_gives_160_samples_per_mel_frame_at_16khz(bundle):
    dec = decode.load_decoder(bundle)
    wave = dec.decode(latents(b=2, t=6))
    assert dec.sample_rate == 16000
    assert wave.shape == (2, 160 * 4 * 6)
    assert wave.dtype == torch.float32 and wave.device.type == "cpu"
    assert torch.isfinite(wave).all() and wave.abs().max() > 0


def test_decode_equals_vae_then_vocoder_by_hand(bundle):
    from diffusers import AutoencoderKL
    from transformers import SpeechT5HifiGan

    z = latents(b=1, t=4)
    vae = AutoencoderKL.from_pretrained(bundle / "vae").eval()
    vocoder = SpeechT5HifiGan.from_pretrained(bundle / "vocoder").eval()
    with torch.no_grad():
        mel = vae.decode(z / SCALING_FACTOR).sample
        assert mel.shape == (1, 1, 16, 64)
        raw = vocoder(mel[:, 0])
    assert raw.shape[1] >= 160 * 16
    got = decode.load_decoder(bundle).decode(z)
    assert torch.equal(got, raw[:, : 160 * 16])


def test_force_upcast_keeps_the_vae_in_fp32(bundle):
    dec = decode.load_decoder(bundle, dtype=torch.bfloat16)
    assert next(dec.vae.parameters()).dtype == torch.float32
    assert next(dec.vocoder.parameters()).dtype == torch.bfloat16
    wave = dec.decode(latents(b=1, t=2))
    assert wave.dtype == torch.float32 and wave.shape == (1, 1280)


def test_without_force_upcast_the_vae_takes_the_pipeline_dtype(copy):
    edit_config(copy / "vae" / "config.json", force_upcast=False)
    dec = decode.load_decoder(copy, dtype=torch.bfloat16)
    assert next(dec.vae.parameters()).dtype == torch.bfloat16


def test_trim_cuts_to_rounded_seconds():
    wave = torch.zeros(2, 160 * 4 * 26)
    assert decode.trim(wave, 1.0).shape == (2, 16000)
    assert decode.trim(wave, 0.50004).shape == (2, 8001)
    with pytest.raises(ValueError):
        decode.trim(wave, 2.0)


def test_release_makes_decode_refuse(bundle):
    dec = decode.load_decoder(bundle)
    dec.release()
    assert dec.vae is None and dec.vocoder is None
    with pytest.raises(RuntimeError, match="release"):
        dec.decode(latents())


def one_line(exc: pytest.ExceptionInfo) -> str:
    assert "\n" not in exc.value.message
    return exc.value.message


def test_missing_root_is_model_missing(tmp_path):
    with pytest.raises(ModelMissingError) as exc:
        decode.load_decoder(tmp_path / "nowhere")
    assert "nowhere" in one_line(exc)


def test_missing_vocoder_folder_is_model_missing(copy):
    shutil.rmtree(copy / "vocoder")
    with pytest.raises(ModelMissingError) as exc:
        decode.load_decoder(copy)
    assert str(copy / "vocoder") in one_line(exc)


def test_missing_weights_file_is_a_checkpoint_error(copy):
    (copy / "vae" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(CheckpointError) as exc:
        decode.load_decoder(copy)
    assert "diffusion_pytorch_model.safetensors" in one_line(exc)


@pytest.mark.parametrize(
    ("folder", "changes", "needle"),
    [
        ("vae", {"latent_channels": 4}, "latent_channels=4"),
        ("vae", {"block_out_channels": [8, 16]}, "block_out_channels"),
        ("vocoder", {"model_in_dim": 80}, "model_in_dim=80"),
        ("vocoder", {"sampling_rate": 22050}, "sampling_rate=22050"),
        ("vocoder", {"upsample_rates": [8, 8, 2, 2]}, "upsample_rates"),
    ],
)
def test_foreign_config_is_a_checkpoint_error_naming_the_folder(copy, folder, changes, needle):
    edit_config(copy / folder / "config.json", **changes)
    with pytest.raises(CheckpointError) as exc:
        decode.load_decoder(copy)
    message = one_line(exc)
    assert needle in message and str(copy / folder) in message


def test_unreadable_config_is_a_checkpoint_error(copy):
    (copy / "vocoder" / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError) as exc:
        decode.load_decoder(copy)
    assert "config.json" in one_line(exc)


def test_truncated_weights_are_a_checkpoint_error(copy):
    path = copy / "vocoder" / "model.safetensors"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError) as exc:
        decode.load_decoder(copy)
    assert "vocoder" in one_line(exc)


@pytest.mark.parametrize(
    ("folder", "filename", "key"),
    [
        ("vae", "diffusion_pytorch_model.safetensors", "decoder.conv_in.weight"),
        ("vocoder", "model.safetensors", "conv_pre.weight"),
    ],
)
def test_missing_tensor_is_a_checkpoint_error_not_random_weights(copy, folder, filename, key):
    path = copy / folder / filename
    sd = load_file(path)
    del sd[key]
    save_file(sd, path, metadata={"format": "pt"})
    with pytest.raises(CheckpointError) as exc:
        decode.load_decoder(copy)
    assert key in one_line(exc)


def test_weights_of_another_size_are_a_checkpoint_error(copy):
    edit_config(copy / "vocoder" / "config.json", upsample_initial_channel=64)
    with pytest.raises(CheckpointError) as exc:
        decode.load_decoder(copy)
    assert "vocoder" in one_line(exc)
