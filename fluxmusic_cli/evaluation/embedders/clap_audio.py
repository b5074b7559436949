"""CLAP (transformers `ClapModel`) audio and text towers for the CLAP score and CLAP-FAD.

Audio goes in at 48 kHz mono through the repository's own `ClapProcessor` feature extractor.
That extractor crops clips longer than its window at random (and, for fusion models, marks a
random clip of each batch as "longer"), so each clip is prepared alone under a fixed numpy seed:
the same file always gives the same embedding, whatever else is in the run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from fluxmusic_cli.errors import CheckpointError, ModelMissingError

SAMPLE_RATE = 48_000
CROP_SEED = 0
HUB_PATTERNS = ["*.json", "*.txt", "*.safetensors"]


def resolve_clap_dir(source: str) -> tuple[Path, str]:
    """A local directory, or a hub repo id fetched (or found) in the Hugging Face cache.

    Returns the directory and an identity string for cache keys ("hub:repo@commit" or "local:").
    """
    path = Path(source).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise CheckpointError(f"{path} has no config.json; it is not a CLAP model folder.")
        return path.resolve(), "local"
    if "/" not in source:
        raise ModelMissingError(
            f"CLAP model {source!r} is neither a local folder nor a hub repo id (owner/name)."
        )
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(source, allow_patterns=HUB_PATTERNS))
    except Exception as exc:  # noqa: BLE001 - offline, gated, missing: all mean "not here"
        raise ModelMissingError(
            f"The CLAP model {source} is not in the Hugging Face cache and could not be "
            f"downloaded ({type(exc).__name__}).",
            hint="Connect once to fetch it, or pass a local copy with --clap-model DIR.",
        ) from exc
    return folder, f"hub:{source}@{folder.name}"


class ClapEmbedder:
    name = "clap"
    sample_rate = SAMPLE_RATE

    def __init__(self, folder: Path, device: str = "cpu") -> None:
        from transformers import ClapModel, ClapProcessor

        try:
            self.model = ClapModel.from_pretrained(folder).to(device).eval()
            self.processor = ClapProcessor.from_pretrained(folder)
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"Could not load a CLAP model from {folder}: {exc}") from exc
        self.device = device
        self.forward_calls = 0
        extractor = self.processor.feature_extractor
        self.settings = {
            "frontend": "transformers-clap",
            "truncation": getattr(extractor, "truncation", None),
            "padding": getattr(extractor, "padding", None),
            "crop_seed": CROP_SEED,
        }

    @staticmethod
    def _features(output: object) -> torch.Tensor:
        # transformers >= 5 returns a model output whose pooler_output holds the projection.
        features = getattr(output, "pooler_output", output)
        return torch.nn.functional.normalize(features, dim=-1)

    def embed(self, wave: np.ndarray) -> dict[str, np.ndarray]:
        extractor = self.processor.feature_extractor
        saved = np.random.get_state()
        np.random.seed(CROP_SEED)
        try:
            inputs = extractor(
                [np.asarray(wave, dtype=np.float32)],
                sampling_rate=SAMPLE_RATE,
                return_tensors="pt",
            )
        finally:
            np.random.set_state(saved)
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        with torch.inference_mode():
            features = self._features(self.model.get_audio_features(**inputs))
        self.forward_calls += 1
        return {"audio": features[0].double().cpu().numpy()}

    def embed_texts(self, prompts: list[str]) -> np.ndarray:
        tokens = self.processor.tokenizer(
            prompts, padding=True, truncation=True, return_tensors="pt"
        )
        tokens = {k: v.to(self.device) for k, v in tokens.items()}
        with torch.inference_mode():
            features = self._features(self.model.get_text_features(**tokens))
        return features.double().cpu().numpy()
