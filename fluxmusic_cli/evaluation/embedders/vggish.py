"""VGGish (Hershey et al. 2017) as the FAD embedder: 128-d per 0.96 s example.

Parameter names follow torchvggish's `vggish-10086976.pth` (`features.{0,3,6,8,11,13}` convs,
`embeddings.{0,2,4}` linears) so the published state dict loads strictly. As in audioldm_eval,
there is no PCA/quantisation post-processor and the ReLU after the last linear layer is removed.
Layer widths are read from the state dict, so smaller test checkpoints load through the same code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from fluxmusic_cli.errors import CheckpointError
from fluxmusic_cli.evaluation import frontends
from fluxmusic_cli.evaluation.embedders._loading import load_checkpoint, strict_load

CONV_INDICES = (0, 3, 6, 8, 11, 13)
POOL_AFTER = (0, 1, 3, 5)  # conv positions followed by a 2x2 max-pool
PUBLISHED_CHANNELS = (64, 128, 256, 256, 512, 512)
PUBLISHED_HIDDEN = 4096
PUBLISHED_DIM = 128
# After four 2x2 pools a (96 frames, 64 bands) example is (6, 4).
POOLED_TIME, POOLED_BANDS = 6, 4


class VGGish(nn.Module):
    def __init__(
        self,
        channels: tuple[int, ...] = PUBLISHED_CHANNELS,
        hidden: int = PUBLISHED_HIDDEN,
        dim: int = PUBLISHED_DIM,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 1
        for position, out_ch in enumerate(channels):
            layers += [nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            if position in POOL_AFTER:
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            in_ch = out_ch
        self.features = nn.Sequential(*layers)
        self.embeddings = nn.Sequential(
            nn.Linear(in_ch * POOLED_TIME * POOLED_BANDS, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, dim),
        )

    def forward(self, examples: torch.Tensor) -> torch.Tensor:
        """(n, 1, 96, 64) log-mel examples -> (n, dim)."""
        x = self.features(examples)  # (n, c, 6, 4)
        # The TF original flattens channels-last; the first linear layer expects that order.
        x = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)
        return self.embeddings(x)

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor]) -> VGGish:
        try:
            channels = tuple(int(state[f"features.{i}.weight"].shape[0]) for i in CONV_INDICES)
            hidden = int(state["embeddings.0.weight"].shape[0])
            dim = int(state["embeddings.4.weight"].shape[0])
        except (KeyError, AttributeError, IndexError) as exc:
            raise CheckpointError(
                f"This is not a torchvggish VGGish state dict (missing {exc})."
            ) from exc
        model = cls(channels=channels, hidden=hidden, dim=dim)
        strict_load(model, state, "VGGish")
        return model.eval()


class VGGishEmbedder:
    """Waveform at 16 kHz -> one embedding per whole 0.96 s example."""

    name = "vggish"
    sample_rate = frontends.VGGISH_SAMPLE_RATE
    settings = {
        "frontend": "vggish-logmel-v1",
        "window": frontends.VGGISH_WINDOW,
        "hop": frontends.VGGISH_HOP,
        "mels": frontends.VGGISH_MELS,
        "fmin": frontends.VGGISH_FMIN,
        "fmax": frontends.VGGISH_FMAX,
        "final_relu": False,
    }

    def __init__(self, model: VGGish, device: str = "cpu") -> None:
        self.model = model.to(device).eval()
        self.device = device
        self.forward_calls = 0

    @classmethod
    def from_file(cls, path: Path, device: str = "cpu") -> VGGishEmbedder:
        state = load_checkpoint(path, "VGGish")
        if not isinstance(state, dict):
            raise CheckpointError(f"{path} does not hold a state dict.")
        return cls(VGGish.from_state_dict(state), device=device)

    @property
    def dim(self) -> int:
        return int(self.model.embeddings[-1].out_features)

    def min_samples(self) -> int:
        return frontends.vggish_min_samples()

    def embed(self, wave: np.ndarray) -> dict[str, np.ndarray]:
        examples = frontends.vggish_examples(wave)
        if examples.shape[0] == 0:
            raise ValueError("clip shorter than one 0.96 s VGGish example")
        x = torch.from_numpy(examples.astype(np.float32))[:, None].to(self.device)
        with torch.inference_mode():
            out = self.model(x)
        self.forward_calls += 1
        return {"frames": out.double().cpu().numpy()}
