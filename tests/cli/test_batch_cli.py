"""`fluxmusic batch` in-process on a tiny bundle: bad rows, resume, shards, dataset CSVs."""

from __future__ import annotations

import csv
import json

import pytest
import soundfile as sf

FAST = ["--steps", "2", "--duration", "0.32", "--device", "cpu", "--dtype", "fp32"]


@pytest.fixture
def batch(monkeypatch, run_cli, tiny_bundle, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "200")  # keep Rich from wrapping reasons mid-word

    def _batch(*args, stdin=None):
        return run_cli(["batch", *tiny_bundle.cli_args(), *FAST, *args], stdin)

    return _batch


def _write_csv(path, columns, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows(rows)
    return path


def _events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines()]


def _manifest(folder) -> list[dict]:
    return [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines()]


def test_bad_rows_are_reported_the_rest_written_and_a_rerun_resumes(batch, tmp_path):
    _write_csv(
        tmp_path / "cues.csv",
        ["name", "prompt", "seed", "guidance"],
        [
            ["", 'warm piano, "felt" hammers', "", ""],
            ["intro", "epic drums", "7", ""],
            ["", "", "3", ""],  # empty prompt
            ["../../escape", "bass line", "", ""],  # leaves the folder
            ["", "strings\nswelling", "", ""],
            ["outro", "flute", "", "2"],
            ["", "harp glissando", "", ""],
        ],
    )
    code, out, err = batch("cues.csv", "-o", "out", "--batch-size", "3", "--json")
    assert code == 6, err
    events = _events(out)
    done = [e for e in events if e["event"] == "item_done"]
    failed = [e for e in events if e["event"] == "item_failed"]
    assert len(done) == 5
    assert [(e["row"], e["reason"]) for e in failed] == [
        (3, "empty prompt"),
        (4, failed[1]["reason"]),
    ]
    assert "would leave the output folder" in failed[1]["reason"]
    assert events[-1]["event"] == "summary"
    assert (events[-1]["done"], events[-1]["failed"], events[-1]["rows"]) == (5, 2, 7)
    assert {e["event"] for e in events} == {"item_started", "item_done", "item_failed", "summary"}
    assert "2 of 7 rows failed" in err
    assert not (tmp_path / "escape.wav").exists() and not (tmp_path.parent / "escape.wav").exists()

    names = sorted(p.name for p in (tmp_path / "out").glob("*.wav"))
    assert names == sorted(
        ["warm-piano-felt-hammers-0001.wav", "intro.wav", "strings-swelling-0005.wav",
         "outro.wav", "harp-glissando-0007.wav"]
    )  # fmt: skip
    record = next(e["record"] for e in done if e["name"] == "intro")
    assert record["seed"] == 7 and record["path"] == "intro.wav"
    outro = json.loads((tmp_path / "out" / "outro.json").read_text())
    assert outro["guidance"] == 2.0 and outro["seed"] == 5  # base seed 0 + row 6 - 1

    # Rerun: nothing is made again, the summary table says so, the exit code still reports the
    # bad rows.
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out").iterdir()}
    code, out, err = batch("cues.csv", "-o", "out", "--batch-size", "3")
    assert code == 6 and out == ""
    assert "already finished (skipped)" in err and "empty prompt" in err
    lines = [ln for ln in err.splitlines() if "already finished" in ln]
    assert lines and lines[0].rstrip(" │").endswith("5")
    after = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out").iterdir()}
    assert after == before
    assert len(_manifest(tmp_path / "out")) == 5


def test_two_shards_share_one_folder_without_overlap(batch, tmp_path):
    (tmp_path / "six.txt").write_text("".join(f"cue number {i}\n" for i in range(1, 7)))
    for k in (0, 1):
        code, _, err = batch("six.txt", "-o", "shared", "--shard", f"{k}/2", "--quiet")
        assert code == 0, err
    entries = _manifest(tmp_path / "shared")
    assert len(entries) == 6 and len({e["name"] for e in entries}) == 6
    assert sorted(e["row"] for e in entries[:3]) == [1, 3, 5]
    assert sorted(e["row"] for e in entries[3:]) == [2, 4, 6]
    assert len(list((tmp_path / "shared").glob("*.wav"))) == 6


def test_musiccaps_and_song_describer_csvs_name_clips_by_their_ids(batch, tmp_path):
    _write_csv(
        tmp_path / "musiccaps-public.csv",
        ["ytid", "start_s", "end_s", "audioset_positive_labels", "aspect_list", "caption",
         "author_id", "is_balanced_subset", "is_audioset_eval"],
        [["-0Gj8-vB1q4", "30", "40", "/m/0140xf", "['low quality', 'piano']",
          "A ballad, with a sustained piano.", "4", "False", "True"],
         ["_0-2meOf9qY", "30", "40", "/m/04rlf", "['guitar']",
          'A "clean" guitar riff,\nthen drums.', "2", "True", "False"]],
    )  # fmt: skip
    _write_csv(
        tmp_path / "song_describer.csv",
        ["caption_id", "track_id", "caption", "is_valid_subset", "familiarity", "artist_id",
         "album_id", "path", "duration"],
        [["12", "1310", "An energetic rock song.", "True", "2", "7", "8", "10/1310.2min.mp3",
          "238.4"],
         ["13", "1310", "Dreamy synths, slow.", "False", "1", "7", "8", "10/1310.2min.mp3",
          "238.4"]],
    )  # fmt: skip
    code, _, err = batch("musiccaps-public.csv", "-o", "mc", "--format", "flac", "-q")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "mc").glob("*.flac")) == [
        "-0Gj8-vB1q4.flac",
        "_0-2meOf9qY.flac",
    ]
    data, rate = sf.read(tmp_path / "mc" / "-0Gj8-vB1q4.flac")
    assert rate == 16000 and len(data) == round(0.32 * 16000)

    code, _, err = batch("song_describer.csv", "-o", "sdd", "-q")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "sdd").glob("*.wav")) == ["12.wav", "13.wav"]
    # The dataset's duration column (the recording's length) did not become a request.
    assert json.loads((tmp_path / "sdd" / "12.json").read_text())["duration"] == 0.32


def test_prompts_from_stdin_as_json_lines(batch, tmp_path):
    stdin = '{"prompt": "organ drone", "name": "organ", "seed": 9}\n'
    code, out, err = batch("-", "-o", "piped", "--json", stdin=stdin)
    assert code == 0, err
    summary = _events(out)[-1]
    assert summary["event"] == "summary" and summary["done"] == 1 and summary["failed"] == 0
    assert json.loads((tmp_path / "piped" / "organ.json").read_text())["seed"] == 9


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.txt", "-o", "o"], "No such prompt list"),
        (["list.txt", "-o", "o", "--shard", "2/2"], "--shard 2/2"),
        (["list.txt", "-o", "list.txt"], "is not a folder"),
    ],
)
def test_usage_errors_exit_2_with_a_sentence(batch, tmp_path, args, message):
    (tmp_path / "list.txt").write_text("a prompt\n")
    code, out, err = batch(*args)
    assert code == 2 and message in err and "Traceback" not in err


def test_save_latent_writes_each_clips_exact_latent_keyed_by_its_audio(
    run_cli, tiny_bundle, tmp_path, monkeypatch
):
    import hashlib

    from safetensors import safe_open

    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.txt").write_text("one\ntwo\n")
    code, _, err = run_cli(["batch", "p.txt", "-o", "out", "--save-latent", "--steps", "2",
                            "--duration", "0.32", *tiny_bundle.cli_args(), "--device", "cpu",
                            "--dtype", "fp32"])  # fmt: skip
    assert code == 0, err
    for wav in sorted((tmp_path / "out").glob("*.wav")):
        side = wav.with_name(wav.stem + ".latent.safetensors")
        with safe_open(str(side), framework="pt") as fh:
            assert fh.metadata()["audio_sha256"] == hashlib.sha256(wav.read_bytes()).hexdigest()
            assert tuple(fh.get_tensor("latent").shape) == (8, 8, 16)
