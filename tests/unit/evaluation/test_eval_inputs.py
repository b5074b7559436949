"""Clip ids, prompts and pairing."""

from __future__ import annotations

import json

import numpy as np
import pytest
from evalclips import make_set

from fluxmusic_cli.errors import UsageError
from fluxmusic_cli.evaluation import inputs


def test_manifest_names_and_prompts_win_over_file_names_and_sidecars(tmp_path):
    folder = make_set(
        tmp_path / "gen",
        {"0001": np.zeros(100), "extra": np.zeros(100)},
        prompts={"0001": "sidecar prompt", "extra": "side"},
    )
    row = {"path": "0001.wav", "name": "song-a", "prompt": "manifest prompt"}
    (folder / "manifest.jsonl").write_text(json.dumps(row) + "\n")
    clips = {c.id: c for c in inputs.collect(folder, "generated")}
    assert set(clips) == {"song-a", "extra"}
    assert clips["song-a"].prompt == "manifest prompt"
    assert clips["extra"].prompt == "side"


def test_prompts_file_csv_and_jsonl_are_keyed_by_id_without_extension(tmp_path):
    csv_file = tmp_path / "p.csv"
    csv_file.write_text("ytid,caption\nabc,a calm piano\n")
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text(json.dumps({"file": "x.wav", "prompt": "drums"}) + "\n")
    assert inputs.read_prompts(csv_file) == {"abc": "a calm piano"}
    assert inputs.read_prompts(jsonl) == {"x": "drums"}
    bad = tmp_path / "bad.csv"
    bad.write_text("foo,bar\n1,2\n")
    with pytest.raises(UsageError, match="id column"):
        inputs.read_prompts(bad)


def test_duplicate_ids_and_empty_folders_are_refused(tmp_path):
    folder = make_set(tmp_path / "dup", {"a": np.zeros(10)})
    (folder / "a.flac").write_bytes((folder / "a.wav").read_bytes())
    with pytest.raises(UsageError, match="share the id a"):
        inputs.collect(folder, "generated")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no audio"):
        inputs.collect(tmp_path / "empty", "reference")


def test_pairing_lists_missing_ids_or_warns_when_allowed():
    gen = [inputs.ClipFile("a", None), inputs.ClipFile("b", None)]  # type: ignore[arg-type]
    ref = [inputs.ClipFile("b", None), inputs.ClipFile("c", None)]  # type: ignore[arg-type]
    with pytest.raises(UsageError) as info:
        inputs.pair(gen, ref, allow_missing=False)
    assert "no generated clip: c" in str(info.value) and "no reference clip: a" in str(info.value)
    pairs, problems = inputs.pair(gen, ref, allow_missing=True)
    assert [(g.id, r.id) for g, r in pairs] == [("b", "b")] and len(problems) == 2
