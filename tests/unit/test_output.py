"""From a clip to a file: the target checks and the one clip writer."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import soundfile as sf

from fluxmusic_cli import metadata, output
from fluxmusic_cli.engine.pipeline import Clip
from fluxmusic_cli.errors import BadAudioError, UsageError


def clip(waveform=None) -> Clip:
    t = np.arange(16000) / 16000
    wave = 0.25 * np.sin(2 * np.pi * 440 * t) if waveform is None else waveform
    record = metadata.GenerationRecord(prompt="a tone", seed=5, steps=2, duration=1.0, model={})
    return Clip("a tone", 5, wave.astype(np.float32), 16000, record)


def test_targets_are_checked_for_extension_existence_and_folder(tmp_path):
    output.check_target(tmp_path / "new.flac", force=False)
    with pytest.raises(UsageError, match="Unknown output extension '.aac'"):
        output.check_target(tmp_path / "x.aac", force=False)
    (tmp_path / "old.wav").write_bytes(b"keep")
    with pytest.raises(UsageError, match="already exists; pass --force"):
        output.check_target(tmp_path / "old.wav", force=False)
    output.check_target(tmp_path / "old.wav", force=True)
    with pytest.raises(UsageError, match="does not exist"):
        output.check_target(tmp_path / "nowhere" / "x.wav", force=False)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_an_unwritable_folder_is_refused(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(UsageError, match="not writable"):
            output.check_target(locked / "x.wav", force=False)
    finally:
        locked.chmod(0o700)


def test_the_clip_writer_writes_audio_and_record_with_the_output_fields(tmp_path):
    writer = output.ClipWriter(sample_rate=22050, peak_normalize=True)
    written = writer.write(clip(), tmp_path / "tone.flac")
    data, rate = sf.read(tmp_path / "tone.flac")
    assert rate == 22050 and len(data) == 22050
    assert 0.9 < np.abs(data).max() <= 1.0  # scaled to -0.4 dBFS, then resampled
    side = json.loads((tmp_path / "tone.json").read_text())
    assert side == written.record.to_json()
    assert side["format"] == "flac" and side["output_sample_rate"] == 22050
    assert side["output"] == str((tmp_path / "tone.flac").resolve())
    assert side["peak_normalize"] is True
    assert side["peak"] == pytest.approx(np.abs(data).max(), abs=1e-3)  # measured as written
    assert metadata.read_record(tmp_path / "tone.flac").to_json() == side
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tone.flac", "tone.json"]


def test_the_clip_writer_writes_nothing_for_bad_samples(tmp_path):
    bad = np.full(16000, np.nan, dtype=np.float32)
    with pytest.raises(BadAudioError):
        output.ClipWriter(save_latent=True).write(clip(bad), tmp_path / "nan.wav")
    assert list(tmp_path.iterdir()) == []


def test_the_clip_writer_sends_one_tagged_wav_to_stdout_and_no_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sent: list[bytes] = []
    written = output.ClipWriter(stdout=sent.append).write(clip(), None)
    assert written.path is None and written.record.output == "-"
    assert len(sent) == 1 and sent[0][:4] == b"RIFF"
    (tmp_path / "piped.wav").write_bytes(sent[0])
    assert metadata.read_record(tmp_path / "piped.wav").seed == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["piped.wav"]


def test_a_file_is_replaced_only_when_forced_or_marked_as_the_tools(tmp_path):
    from fluxmusic_cli import ownership

    page = tmp_path / "index.html"
    page.write_text("<p>mine</p>")
    with pytest.raises(UsageError, match="index.html already exists; pass --force"):
        output.write_file(page, b"new", force=False)
    with pytest.raises(UsageError, match="not written by fluxmusic; pass --force to replace it"):
        output.write_file(page, b"new", force=False, ours=ownership.is_ours)
    assert page.read_text() == "<p>mine</p>"
    marked = f"<html><head>{ownership.html_mark('manifest.jsonl')}</head></html>".encode()
    output.write_file(page, marked, force=True)
    output.write_file(page, marked + b"<!-- again -->", force=False, ours=ownership.is_ours)
    assert page.read_bytes().endswith(b"<!-- again -->")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.html"]


def test_pngs_carry_the_tools_mark_and_others_do_not(tmp_path):
    from fluxmusic_cli import ownership
    from fluxmusic_cli.spectrogram import spectrogram_png

    db = np.zeros((64, 10))
    ours = tmp_path / "ours.png"
    ours.write_bytes(spectrogram_png(db, 1.0, 8000.0, metadata=ownership.png_mark("m.jsonl")))
    plain = tmp_path / "plain.png"
    plain.write_bytes(spectrogram_png(db, 1.0, 8000.0))
    assert ownership.is_ours(ours) and not ownership.is_ours(plain)
    assert ownership.png_text(ours.read_bytes())["Source"] == "m.jsonl"


def test_a_missing_folder_is_refused_and_not_created(tmp_path):
    with pytest.raises(UsageError, match="nowhere does not exist"):
        output.check_file(tmp_path / "nowhere" / "x.csv", force=True)
    with pytest.raises(UsageError, match="is a folder"):
        output.check_file(tmp_path, force=True)
    assert list(tmp_path.iterdir()) == []
