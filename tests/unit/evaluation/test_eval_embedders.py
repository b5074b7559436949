"""Model classes load checkpoints in the published layouts (tiny widths, real loading code)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from evalclips import tone

from fluxmusic_cli.errors import CheckpointError
from fluxmusic_cli.evaluation.embedders.panns import Cnn14, Cnn14Embedder
from fluxmusic_cli.evaluation.embedders.vggish import VGGish, VGGishEmbedder
from fluxmusic_cli.tinybundle.eval_models import tiny_cnn14_state

TORCHVGGISH_SHAPES = {
    "features.0.weight": (64, 1, 3, 3),
    "features.3.weight": (128, 64, 3, 3),
    "features.6.weight": (256, 128, 3, 3),
    "features.8.weight": (256, 256, 3, 3),
    "features.11.weight": (512, 256, 3, 3),
    "features.13.weight": (512, 512, 3, 3),
    "embeddings.0.weight": (4096, 12288),
    "embeddings.2.weight": (4096, 4096),
    "embeddings.4.weight": (128, 4096),
}


def test_full_size_vggish_has_the_torchvggish_parameter_layout():
    with torch.device("meta"):
        state = VGGish().state_dict()
    weights = {k: tuple(v.shape) for k, v in state.items() if k.endswith("weight")}
    assert weights == TORCHVGGISH_SHAPES
    assert len(state) == 18


def test_full_size_cnn14_has_the_panns_parameter_layout():
    with torch.device("meta"):
        state = Cnn14().state_dict()
    # The published file has 84 entries: ours plus 3 front-end tensors we compute instead.
    assert len(state) == 81
    assert tuple(state["conv_block6.conv2.weight"].shape) == (2048, 2048, 3, 3)
    assert tuple(state["fc_audioset.weight"].shape) == (527, 2048)
    assert "bn0.num_batches_tracked" in state


def test_tiny_vggish_file_loads_and_embeds_each_whole_example(eval_models):
    embedder = VGGishEmbedder.from_file(eval_models.vggish)
    out = embedder.embed(tone(440.0, seconds=2.0))["frames"]
    assert out.shape == (2, 8) and np.isfinite(out).all()
    assert embedder.forward_calls == 1


def test_tiny_cnn14_checkpoint_with_numpy_sampler_loads_weights_only(eval_models):
    embedder = Cnn14Embedder.from_file(eval_models.cnn14)
    out = embedder.embed(tone(440.0, seconds=1.0))
    assert out["logits"].shape == (527,) and out["embedding"].shape == (32,)
    assert np.isfinite(out["logits"]).all()


def test_cnn14_refuses_a_checkpoint_made_for_another_mel_front_end():
    state = tiny_cnn14_state()
    state["logmel_extractor.melW"] = torch.rand(257, 64)
    with pytest.raises(CheckpointError, match="mel filterbank"):
        Cnn14.from_state_dict(state)
    state = tiny_cnn14_state()
    state["spectrogram_extractor.stft.conv_real.weight"] = torch.zeros(513, 1, 1024)
    with pytest.raises(CheckpointError, match="32 kHz"):
        Cnn14.from_state_dict(state)


def test_missing_or_truncated_weights_give_checkpoint_errors(tmp_path, eval_models):
    state = tiny_cnn14_state()
    del state["fc1.bias"]
    with pytest.raises(CheckpointError, match="does not match"):
        Cnn14.from_state_dict(state)
    broken = tmp_path / "broken.pth"
    broken.write_bytes(eval_models.vggish.read_bytes()[:500])
    with pytest.raises(CheckpointError, match="Could not read"):
        VGGishEmbedder.from_file(broken)
