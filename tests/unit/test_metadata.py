"""The generation record as it is today: sidecar, tags, reading back and replay options."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fluxmusic_cli import __version__, audio, metadata
from fluxmusic_cli.errors import UsageError

RECORD = {
    "prompt": "slow cello, rain",
    "seed": 42,
    "steps": 25,
    "guidance": 3.5,
    "duration": 2.0,
    "negative_prompt": "",
    "encoders": "both",
    "conditioning": "training",
    "device": "cpu",
    "dtype": "fp32",
    "t5": "hub:city96/t5-v1_1-xxl-encoder-bf16@main",
    "clap": "local:/models/clap",
    "vae_vocoder": "hub:cvssp/audioldm2@main",
    "output_sample_rate": 44100,
    "peak_normalize": True,
    "model": {"variant": "small", "sha256": "ab" * 32},
}


def test_the_sidecar_sits_beside_the_audio_and_reads_back_whole(tmp_path):
    clip = tmp_path / "cello.flac"
    clip.write_bytes(b"not read")
    side = metadata.write_sidecar(clip, RECORD)
    assert side == tmp_path / "cello.json"
    assert metadata.read_record(clip) == RECORD  # through the audio file
    assert metadata.read_record(side) == RECORD  # or the record itself
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cello.flac", "cello.json"]


def test_tags_carry_the_prompt_settings_and_model_and_read_back_without_a_sidecar(tmp_path):
    tags = metadata.tags_for(RECORD)
    assert tags["title"] == RECORD["prompt"] and tags["software"] == f"fluxmusic {__version__}"
    path = tmp_path / "tagged.wav"
    audio.write_audio(path, np.zeros(1600, dtype=np.float32), 16000, tags=tags)
    back = metadata.read_record(path)
    assert back["from_tags"] is True and back["prompt"] == RECORD["prompt"]
    assert back["model"] == RECORD["model"]
    for key in ("seed", "steps", "guidance", "duration", "encoders", "device", "dtype"):
        assert back[key] == RECORD[key]
    assert "t5" not in back  # sources live in the sidecar only


def test_foreign_tags_are_not_a_record():
    assert metadata.record_from_tags({"comment": "ripped by someone"}) is None
    assert metadata.record_from_tags({"comment": "fluxmusic {broken"}) is None


def test_replay_gives_the_options_back_with_sources_as_the_options_take_them():
    options = metadata.replay_settings(RECORD)
    assert options["prompt"] == RECORD["prompt"] and options["seed"] == 42
    assert options["model"] == "small" and options["sample_rate"] == 44100
    assert options["t5"] == "city96/t5-v1_1-xxl-encoder-bf16"
    assert options["clap"] == "/models/clap"
    assert options["vae_vocoder"] == "cvssp/audioldm2"
    assert options["peak_normalize"] is True and "output_sample_rate" not in options
    by_file = metadata.replay_settings({**RECORD, "model": {"file": "/w/mine.safetensors"}})
    assert by_file["model"] == "/w/mine.safetensors"


def test_what_is_not_a_record_is_a_usage_error_naming_the_file(tmp_path):
    with pytest.raises(UsageError, match="No such file"):
        metadata.read_record(tmp_path / "absent.wav")
    junk = tmp_path / "junk.json"
    junk.write_text("{not json")
    with pytest.raises(UsageError, match="not a readable JSON record"):
        metadata.read_record(junk)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"title": "x"}))
    with pytest.raises(UsageError, match="no prompt or seed"):
        metadata.read_record(other)
    bare = tmp_path / "bare.wav"
    audio.write_audio(bare, np.zeros(160, dtype=np.float32), 16000)
    with pytest.raises(UsageError, match="has no generation record"):
        metadata.read_record(bare)
