"""Tiny random-weight stand-ins for the evaluation models, in the published on-disk layouts.

`write_tiny_vggish` writes a torchvggish-style state dict (`features.N.*`, `embeddings.N.*`),
and `write_tiny_cnn14` a PANNs-style checkpoint (`{"model": state_dict, "sampler": numpy
arrays...}`, front-end weights included); the tiny CLAP is `tinybundle.text.write_tiny_clap`. The
state dicts are built by name here, not from our model classes, so loading them
tests that our classes match the published key layout. Widths are small so tests stay fast.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

TINY_VGGISH_CHANNELS = (4, 8, 8, 8, 16, 16)
TINY_VGGISH_HIDDEN = 32
TINY_VGGISH_DIM = 8
TINY_CNN14_CHANNELS = (4, 8, 8, 16, 16, 32)
AUDIOSET_CLASSES = 527


def _normal(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int):
    import torch

    return torch.from_numpy((rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32))


def tiny_vggish_state(seed: int = 0) -> dict:
    import torch

    rng = np.random.default_rng(seed)
    state = {}
    in_ch = 1
    for index, out_ch in zip((0, 3, 6, 8, 11, 13), TINY_VGGISH_CHANNELS):
        state[f"features.{index}.weight"] = _normal(rng, (out_ch, in_ch, 3, 3), in_ch * 9)
        state[f"features.{index}.bias"] = torch.zeros(out_ch)
        in_ch = out_ch
    sizes = [in_ch * 6 * 4, TINY_VGGISH_HIDDEN, TINY_VGGISH_HIDDEN, TINY_VGGISH_DIM]
    for index, (fan_in, fan_out) in zip((0, 2, 4), zip(sizes[:-1], sizes[1:])):
        state[f"embeddings.{index}.weight"] = _normal(rng, (fan_out, fan_in), fan_in)
        state[f"embeddings.{index}.bias"] = torch.zeros(fan_out)
    return state


def write_tiny_vggish(path: Path, seed: int = 0) -> Path:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(tiny_vggish_state(seed), path)
    return path


def _batch_norm(prefix: str, width: int) -> dict:
    import torch

    return {
        f"{prefix}.weight": torch.ones(width),
        f"{prefix}.bias": torch.zeros(width),
        f"{prefix}.running_mean": torch.zeros(width),
        f"{prefix}.running_var": torch.ones(width),
        f"{prefix}.num_batches_tracked": torch.tensor(0),
    }


def tiny_cnn14_state(seed: int = 0, n_fft: int = 512, mels: int = 64) -> dict:
    import torch

    from fluxmusic_cli.dsp import periodic_hann, slaney_mel_matrix
    from fluxmusic_cli.evaluation.frontends import CNN14_16K

    rng = np.random.default_rng(seed)
    bins = n_fft // 2 + 1
    k, n = np.meshgrid(np.arange(bins), np.arange(n_fft), indexing="ij")
    window = periodic_hann(n_fft)
    angle = 2 * np.pi * k * n / n_fft
    state = {
        "spectrogram_extractor.stft.conv_real.weight": torch.from_numpy(
            (np.cos(angle) * window)[:, None].astype(np.float32)
        ),
        "spectrogram_extractor.stft.conv_imag.weight": torch.from_numpy(
            (-np.sin(angle) * window)[:, None].astype(np.float32)
        ),
        "logmel_extractor.melW": torch.from_numpy(
            slaney_mel_matrix(
                CNN14_16K.sample_rate, n_fft, mels, CNN14_16K.fmin, CNN14_16K.fmax
            ).astype(np.float32)
        ),
    }
    # bn0 sees log-mel in dB (about -100..0): centre and scale it like a trained model would.
    state.update(_batch_norm("bn0", mels))
    state["bn0.running_mean"] = torch.full((mels,), -50.0)
    state["bn0.running_var"] = torch.full((mels,), 400.0)
    in_ch = 1
    for i, out_ch in enumerate(TINY_CNN14_CHANNELS, start=1):
        state[f"conv_block{i}.conv1.weight"] = _normal(rng, (out_ch, in_ch, 3, 3), in_ch * 9)
        state[f"conv_block{i}.conv2.weight"] = _normal(rng, (out_ch, out_ch, 3, 3), out_ch * 9)
        state.update(_batch_norm(f"conv_block{i}.bn1", out_ch))
        state.update(_batch_norm(f"conv_block{i}.bn2", out_ch))
        in_ch = out_ch
    state["fc1.weight"] = _normal(rng, (in_ch, in_ch), in_ch)
    state["fc1.bias"] = torch.zeros(in_ch)
    state["fc_audioset.weight"] = _normal(rng, (AUDIOSET_CLASSES, in_ch), in_ch)
    state["fc_audioset.bias"] = torch.zeros(AUDIOSET_CLASSES)
    return state


def write_tiny_cnn14(path: Path, seed: int = 0) -> Path:
    """Same top-level layout as the Zenodo file, including numpy arrays in `sampler`."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = {
        "iteration": 0,
        "model": tiny_cnn14_state(seed),
        "sampler": {"indexes_per_class": [np.arange(3, dtype=np.int64) for _ in range(2)]},
    }
    torch.save(checkpoint, path)
    return path
