"""PANNs CNN14 (Kong et al. 2020), 16 kHz checkpoint, as the classifier behind KL and IS.

Parameter names follow `Cnn14_16k_mAP=0.438.pth` (a dict whose `model` entry is the state dict):
`bn0`, `conv_block{1..6}.{conv1,conv2,bn1,bn2}`, `fc1`, `fc_audioset`. That checkpoint also holds
the torchlibrosa front end as weights (`spectrogram_extractor.stft.conv_{real,imag}.weight`,
`logmel_extractor.melW`); we compute the front end ourselves and only check that the stored
filterbank equals ours, which catches a checkpoint made for other mel settings (e.g. 32 kHz).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fluxmusic_cli.dsp import slaney_mel_matrix
from fluxmusic_cli.errors import CheckpointError
from fluxmusic_cli.evaluation import frontends
from fluxmusic_cli.evaluation.embedders._loading import load_checkpoint, strict_load

PUBLISHED_CHANNELS = (64, 128, 256, 512, 1024, 2048)
AUDIOSET_CLASSES = 527
STFT_KEYS = (
    "spectrogram_extractor.stft.conv_real.weight",
    "spectrogram_extractor.stft.conv_imag.weight",
)
MEL_KEY = "logmel_extractor.melW"
MIN_INPUT_SAMPLES = 32_000  # audioldm_eval zero-pads shorter clips to 2 s before CNN14


class ConvBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(out_ch, out_ch, kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.bn2 = nn.BatchNorm2d(out_ch)

    def forward(self, x: torch.Tensor, pool: tuple[int, int]) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return F.avg_pool2d(x, kernel_size=pool)


class Cnn14(nn.Module):
    def __init__(
        self,
        channels: tuple[int, ...] = PUBLISHED_CHANNELS,
        classes: int = AUDIOSET_CLASSES,
        mels: int = frontends.CNN14_16K.mels,
    ) -> None:
        super().__init__()
        self.bn0 = nn.BatchNorm2d(mels)
        in_ch = 1
        for i, out_ch in enumerate(channels, start=1):
            setattr(self, f"conv_block{i}", ConvBlock(in_ch, out_ch))
            in_ch = out_ch
        self.fc1 = nn.Linear(in_ch, in_ch)
        self.fc_audioset = nn.Linear(in_ch, classes)

    def forward(self, log_mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(b, 1, frames, mels) -> logits (b, classes), embedding (b, width)."""
        x = self.bn0(log_mel.transpose(1, 3)).transpose(1, 3)  # normalise per mel band
        for i in range(1, 7):
            x = getattr(self, f"conv_block{i}")(x, pool=(2, 2) if i < 6 else (1, 1))
        x = x.mean(dim=3)  # over mel bands
        x = x.max(dim=2).values + x.mean(dim=2)  # over time
        embedding = F.relu(self.fc1(x))
        return self.fc_audioset(embedding), embedding

    @classmethod
    def from_state_dict(
        cls, state: dict[str, torch.Tensor], front: frontends.Cnn14FrontEnd = frontends.CNN14_16K
    ) -> Cnn14:
        state = dict(state)
        _check_front_end(state, front)
        try:
            channels = tuple(
                int(state[f"conv_block{i}.conv1.weight"].shape[0]) for i in range(1, 7)
            )
            classes = int(state["fc_audioset.weight"].shape[0])
            mels = int(state["bn0.weight"].shape[0])
        except (KeyError, AttributeError, IndexError) as exc:
            raise CheckpointError(f"This is not a PANNs CNN14 state dict (missing {exc}).") from exc
        model = cls(channels=channels, classes=classes, mels=mels)
        strict_load(model, state, "PANNs CNN14")
        return model.eval()


def _check_front_end(state: dict[str, torch.Tensor], front: frontends.Cnn14FrontEnd) -> None:
    """Pop the stored front-end weights and check they describe the front end we compute."""
    bins = front.n_fft // 2 + 1
    for key in STFT_KEYS:
        weight = state.pop(key, None)
        if weight is not None and tuple(weight.shape) != (bins, 1, front.n_fft):
            raise CheckpointError(
                f"The CNN14 checkpoint's STFT has shape {tuple(weight.shape)}, not the "
                f"{front.n_fft}-point STFT of the 16 kHz model; is it the 32 kHz checkpoint?"
            )
    mel_w = state.pop(MEL_KEY, None)
    if mel_w is None:
        return
    ours = slaney_mel_matrix(front.sample_rate, front.n_fft, front.mels, front.fmin, front.fmax)
    stored = mel_w.detach().double().cpu().numpy()
    if stored.shape != ours.shape or not np.allclose(stored, ours, rtol=1e-4, atol=1e-6):
        raise CheckpointError(
            "The CNN14 checkpoint's mel filterbank is not the 16 kHz one (64 bands, 50-8000 Hz); "
            "pass the Cnn14_16k_mAP=0.438.pth checkpoint."
        )


class Cnn14Embedder:
    """Waveform at 16 kHz -> AudioSet logits (527) and the 2048-d fc1 embedding."""

    name = "panns-cnn14-16k"
    sample_rate = frontends.CNN14_16K.sample_rate
    settings = {
        "frontend": "cnn14-logmel-v1",
        "n_fft": frontends.CNN14_16K.n_fft,
        "hop": frontends.CNN14_16K.hop,
        "mels": frontends.CNN14_16K.mels,
        "fmin": frontends.CNN14_16K.fmin,
        "fmax": frontends.CNN14_16K.fmax,
        "dc_removed": True,
        "min_samples": MIN_INPUT_SAMPLES,
    }

    def __init__(self, model: Cnn14, device: str = "cpu") -> None:
        self.model = model.to(device).eval()
        self.device = device
        self.forward_calls = 0

    @classmethod
    def from_file(cls, path: Path, device: str = "cpu") -> Cnn14Embedder:
        checkpoint = load_checkpoint(path, "PANNs CNN14")
        if isinstance(checkpoint, dict) and isinstance(checkpoint.get("model"), dict):
            state = checkpoint["model"]
        elif isinstance(checkpoint, dict):
            state = checkpoint
        else:
            raise CheckpointError(f"{path} does not hold a CNN14 state dict.")
        return cls(Cnn14.from_state_dict(state), device=device)

    def min_samples(self) -> int:
        return frontends.cnn14_min_samples()

    def embed(self, wave: np.ndarray) -> dict[str, np.ndarray]:
        x = np.asarray(wave, dtype=np.float64)
        x = x - x.mean()
        if x.shape[0] < MIN_INPUT_SAMPLES:
            x = np.pad(x, (0, MIN_INPUT_SAMPLES - x.shape[0]))
        batch = torch.from_numpy(x.astype(np.float32))[None].to(self.device)
        with torch.inference_mode():
            logits, embedding = self.model(frontends.cnn14_log_mel(batch))
        self.forward_calls += 1
        return {
            "logits": logits[0].double().cpu().numpy(),
            "embedding": embedding[0].double().cpu().numpy(),
        }
