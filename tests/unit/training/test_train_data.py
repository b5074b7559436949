"""Finding training tracks and captions, cutting segments, and saving a full fine-tune."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from fluxmusic_cli.errors import UsageError
from fluxmusic_cli.training.data import find_tracks
from fluxmusic_cli.training.prepare import SEGMENT_SAMPLES, segment_starts


def wav(path, seconds=0.5):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, 0.2 * np.ones(int(seconds * 16000)), 16000)
    return path


def test_a_folder_pairs_audio_with_sidecar_captions_and_lists_the_rest(tmp_path):
    wav(tmp_path / "a.wav")
    (tmp_path / "a.txt").write_text("  warm\npiano  ")
    wav(tmp_path / "sub" / "b.flac")
    (tmp_path / "sub" / "b.txt").write_text("drums")
    wav(tmp_path / "c.wav")
    wav(tmp_path / "d.wav")
    (tmp_path / "d.txt").write_text("   ")
    (tmp_path / "notes.md").write_text("not audio, not listed")
    found = find_tracks(tmp_path)
    assert [(t.audio.name, t.caption) for t in found.tracks] == [
        ("a.wav", "warm piano"), ("b.flac", "drums"),
    ]  # fmt: skip
    assert [(s.source.rsplit("/", 1)[1], s.reason) for s in found.skipped] == [
        ("c.wav", "no caption (write it in c.txt)"), ("d.wav", "d.txt is empty"),
    ]  # fmt: skip


def test_a_csv_names_recordings_relative_to_itself_or_to_audio_dir(tmp_path):
    wav(tmp_path / "clips" / "one.wav")
    table = tmp_path / "list.csv"
    table.write_text("file,caption\nclips/one.wav,a tune\nclips/missing.wav,gone\n,no file\n")
    found = find_tracks(table)
    assert [(t.audio, t.caption) for t in found.tracks] == [(tmp_path / "clips/one.wav", "a tune")]
    assert [s.reason.split(":")[0] for s in found.skipped] == [
        "recording not found", "no audio file named in this row",
    ]  # fmt: skip
    no_column = tmp_path / "captions.csv"
    no_column.write_text("caption\njust words\n")
    with pytest.raises(UsageError, match="no audio column"):
        find_tracks(no_column)
    jsonl = tmp_path / "list.jsonl"
    jsonl.write_text('{"audio": "one.wav", "prompt": "a tune"}\n')
    found = find_tracks(jsonl, audio_dir=tmp_path / "clips")
    assert found.tracks[0].audio == tmp_path / "clips" / "one.wav"


def test_musiccaps_and_song_describer_tables_find_audio_by_id_or_path(tmp_path):
    wav(tmp_path / "audio" / "abc123.flac")
    wav(tmp_path / "audio" / "00" / "7.2min.mp3")
    caps = tmp_path / "musiccaps.csv"
    caps.write_text("ytid,start_s,end_s,caption\nabc123,0,10,calm harp\nzzz,0,10,lost\n")
    found = find_tracks(caps, audio_dir=tmp_path / "audio")
    assert found.kind == "musiccaps" and found.tracks[0].caption == "calm harp"
    assert found.tracks[0].audio.name == "abc123.flac" and len(found.skipped) == 1
    with pytest.raises(UsageError, match="--audio-dir"):
        find_tracks(caps)
    sd = tmp_path / "song_describer.csv"
    sd.write_text("caption_id,track_id,caption,path,duration\n1,7,slow waltz,00/7.2min.mp3,120\n")
    found = find_tracks(sd, audio_dir=tmp_path / "audio")
    assert found.kind == "song-describer" and found.tracks[0].audio.name == "7.2min.mp3"


@pytest.mark.parametrize(
    ("setup", "message"),
    [("empty", "holds no audio files"), ("nocap", "no usable recording"),
     ("missing", "No such training data"), ("text", "neither a folder")],
)  # fmt: skip
def test_nothing_usable_is_a_usage_error(tmp_path, setup, message):
    target = tmp_path / "data"
    if setup == "empty":
        target.mkdir()
    elif setup == "nocap":
        wav(target / "a.wav")
    elif setup == "text":
        target.write_text("hello")
    with pytest.raises(UsageError, match=message):
        find_tracks(target)


@pytest.mark.parametrize(
    ("samples", "starts"),
    [(1280, [0]), (SEGMENT_SAMPLES, [0]), (SEGMENT_SAMPLES + 1000, [0]),
     (SEGMENT_SAMPLES + SEGMENT_SAMPLES // 4, [0, SEGMENT_SAMPLES]),
     (3 * SEGMENT_SAMPLES, [0, SEGMENT_SAMPLES, 2 * SEGMENT_SAMPLES])],
)  # fmt: skip
def test_tracks_are_cut_into_segments_and_a_short_tail_is_dropped(samples, starts):
    assert segment_starts(samples) == starts


def test_a_full_fine_tune_is_saved_under_the_original_names_and_loads_back(tmp_path):
    import torch

    from fluxmusic_cli.engine.checkpoint import (
        build_transformer,
        from_diffusers,
        infer_config,
        load_transformer,
        to_diffusers,
    )
    from fluxmusic_cli.tinybundle.transformer import tiny_fluxmusic_state_dict
    from fluxmusic_cli.training.loop import save_full

    sd = tiny_fluxmusic_state_dict(context_in_dim=32, vec_in_dim=32, depth=2, depth_single=2)
    cfg = infer_config(sd)
    back = from_diffusers(to_diffusers(sd, cfg), cfg)
    assert back.keys() == sd.keys() and all(torch.equal(back[k], sd[k]) for k in sd)
    model, _ = build_transformer(sd)
    path = save_full(model, tmp_path / "model.safetensors", info={"step": 1})
    loaded, loaded_cfg = load_transformer(path)
    assert loaded_cfg == cfg
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)
