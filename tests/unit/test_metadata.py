"""The generation record: its schema, the sidecar, tags, reading back, replay options and the
comparison a batch resumes by."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from fluxmusic_cli import __version__, audio, metadata
from fluxmusic_cli.errors import UsageError
from fluxmusic_cli.metadata import GenerationRecord

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
# Settings whose null means something: a record writes them even when they are null.
NULLS = dict.fromkeys(("threads", "compile_scope", "guidance_interval", "cache", "lufs"))


def test_the_sidecar_sits_beside_the_audio_and_reads_back_whole(tmp_path):
    clip = tmp_path / "cello.flac"
    clip.write_bytes(b"not read")
    record = GenerationRecord.from_json({"schema": 2, **RECORD})
    side = metadata.sidecar_path(clip)
    side.write_bytes(metadata.sidecar_bytes(record))
    assert side == tmp_path / "cello.json"
    assert metadata.read_record(clip).to_json() == {"schema": 2, **RECORD, **NULLS}  # via audio
    assert metadata.read_record(side) == record  # or the record


def test_a_new_record_carries_the_current_schema_and_an_old_one_reads_as_schema_1():
    new = GenerationRecord(prompt="p", seed=1)
    assert new.schema == metadata.SCHEMA == 2 and new.to_json()["schema"] == 2
    old = GenerationRecord.from_json(RECORD)  # written before records had a schema
    assert old.schema == 1 and old.steps == 25 and old.model == RECORD["model"]
    assert old.to_json() == {"schema": 1, **RECORD, **NULLS}


def test_fields_this_version_does_not_know_are_kept_in_place_on_a_round_trip():
    edit = {
        "schema": 3,
        "tool": "fluxmusic",
        "operation": "repaint",
        "steps": 8,
        "duration": 4.0,
        "regions": [[0.5, None]],
        "strength": 0.4,
        "input": {"path": "song.wav", "sha256": "cd" * 32},
        "encoders": "t5",
        "loras": [{"file": "/w/a.safetensors", "sha256": "ef" * 32, "scale": 0.5}],
        "prompt": "brass",
        "seed": 9,
        "from_a_newer_version": {"any": ["thing"]},
        **NULLS,
    }
    record = GenerationRecord.from_json(edit)
    assert record.extra["regions"] == [[0.5, None]] and record.loras == edit["loras"]
    assert record.to_json() == edit
    assert list(record.to_json())[:8] == list(edit)[:8]  # operation settings after duration


def test_unset_fields_are_left_out_and_nullable_settings_written_as_null():
    data = GenerationRecord(prompt="p", seed=1, cache=None, threads=4).to_json()
    assert data == {"schema": 2, "prompt": "p", "seed": 1, **NULLS, "threads": 4}
    assert "output" not in data and "latent_file" not in data


def test_fields_looked_up_by_json_name_come_from_their_field_or_from_extra():
    record = GenerationRecord.from_json({"prompt": "p", "seed": 1, "windows": 3})
    record = replace(record, output="/out/p.wav")
    assert record.output == "/out/p.wav" and record.extra == {"windows": 3}
    assert record.lookup("windows") == 3 and record.lookup("absent", "none") == "none"
    assert record.lookup("output") == "/out/p.wav" and record.lookup("latent_file") is None


def test_a_mapping_without_prompt_or_seed_is_not_a_record():
    with pytest.raises(ValueError, match="no prompt or seed"):
        GenerationRecord.from_json({"prompt": "only a prompt"})


def test_tags_carry_the_prompt_settings_and_model_and_read_back_without_a_sidecar(tmp_path):
    tags = GenerationRecord.from_json(RECORD).tags()
    assert tags["title"] == RECORD["prompt"] and tags["software"] == f"fluxmusic {__version__}"
    path = tmp_path / "tagged.wav"
    audio.write_audio(path, np.zeros(1600, dtype=np.float32), 16000, tags=tags)
    back = metadata.read_record(path)
    assert back.extra["from_tags"] is True and back.prompt == RECORD["prompt"]
    assert back.model == RECORD["model"]
    for key in ("seed", "steps", "guidance", "duration", "encoders", "device", "dtype"):
        assert back.lookup(key) == RECORD[key]
    assert back.t5 is None  # sources live in the sidecar only
    assert back.tags() == tags  # what the tags hold survives a second pass


def test_foreign_tags_are_not_a_record():
    assert metadata.record_from_tags({"comment": "ripped by someone"}) is None
    assert metadata.record_from_tags({"comment": "fluxmusic {broken"}) is None


def test_replay_gives_the_options_back_with_sources_as_the_options_take_them():
    options = GenerationRecord.from_json(RECORD).replay_options()
    assert options["prompt"] == RECORD["prompt"] and options["seed"] == 42
    assert options["model"] == "small" and options["sample_rate"] == 44100
    assert options["t5"] == "city96/t5-v1_1-xxl-encoder-bf16"
    assert options["clap"] == "/models/clap"
    assert options["vae_vocoder"] == "cvssp/audioldm2"
    assert options["peak_normalize"] is True and "output_sample_rate" not in options
    assert "cache" not in options  # null: off, so no option
    by_file = GenerationRecord.from_json(
        {**RECORD, "model": {"file": "/w/mine.safetensors"}}
    ).replay_options()
    assert by_file["model"] == "/w/mine.safetensors"


def test_replay_of_an_edit_gives_its_regions_loras_and_the_total_length():
    edit = {
        **RECORD,
        "operation": "extend",
        "regions": [[0.5, None], [1.0, 2.25]],
        "add": 3.0,
        "to": 12.0,
        "loras": [{"file": "/w/a.safetensors", "sha256": "ef" * 32, "scale": 0.5}],
    }
    options = GenerationRecord.from_json(edit).replay_options()
    assert options["region"] == ["0.5:", "1.0:2.25"] and options["to"] == 12.0
    assert "add" not in options  # asked for by its total length
    assert options["lora"] == ["/w/a.safetensors:0.5"]


def test_resume_compares_the_planned_fields_model_by_source_and_loras_by_file_and_scale():
    stored = {
        **RECORD,
        "model": {"source": "hub:x/y@main", "sha256": "ab" * 32},
        "loras": [{"file": "/w/a.safetensors", "sha256": "ef" * 32, "scale": 0.5}],
    }
    record = GenerationRecord.from_json(stored)
    want = {
        "prompt": RECORD["prompt"],
        "seed": 42,
        "steps": 25,
        "guidance": 3.5,
        "duration": 2,  # an int in the plan is the same float in the record
        "model": "hub:x/y@main",
        "loras": ["/w/a.safetensors:0.5"],
        "format": None,
    }
    assert record.differences(want) == []
    changed = {**want, "steps": 30, "model": "hub:x/z@main", "loras": []}
    assert record.differences(changed) == [
        "steps 25 -> 30",
        "model 'hub:x/y@main' -> 'hub:x/z@main'",
        "loras ['/w/a.safetensors:0.5'] -> []",
    ]
    assert record.differences({"strength": 0.5}) == ["strength None -> 0.5"]


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
