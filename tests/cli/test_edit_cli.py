"""remix, repaint, extend, loop and long-form generate through the console entry point, on a
tiny bundle: the identities of sampling with known frames, splicing, records and refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from safetensors import safe_open

ENGINE = ["--device", "cpu", "--dtype", "fp32"]
FAST = ["--steps", "2", *ENGINE]


def recording(path: Path, seconds: float = 3.0, rate: int = 16000, channels: int = 1) -> Path:
    """A stand-in for a user's recording: a chord with a little noise, at its own level."""
    t = np.arange(round(seconds * rate)) / rate
    rng = np.random.default_rng(7)
    mono = 0.2 * np.sin(2 * np.pi * 220 * t) + 0.1 * np.sin(2 * np.pi * 331 * t)
    mono = mono + 0.01 * rng.standard_normal(t.shape)
    data = np.stack([mono, 0.5 * mono], axis=1) if channels == 2 else mono
    sf.write(path, data.astype(np.float32), rate, subtype="PCM_16")
    return path


def latent(path: Path):
    with safe_open(str(path), framework="pt") as fh:
        return fh.get_tensor("latent")


@pytest.fixture
def cli(monkeypatch, run_cli, tiny_bundle, tmp_path):
    monkeypatch.chdir(tmp_path)

    def _cli(command, *args, stdin=None):
        return run_cli([command, *args, *tiny_bundle.cli_args(), *ENGINE], stdin)

    return _cli


def test_remix_at_strength_one_is_generate_with_that_seed_and_length(cli, tmp_path):
    recording(tmp_path / "in.wav", seconds=3.0)
    code, _, err = cli("generate", "dub techno", "-d", "3", "--seed", "9", "--steps", "3",
                       "-o", "gen.wav", "--save-latent")  # fmt: skip
    assert code == 0, err
    code, _, err = cli("remix", "in.wav", "dub techno", "--strength", "1", "--seed", "9",
                       "--steps", "3", "-o", "remix.wav", "--save-latent")  # fmt: skip
    assert code == 0, err
    assert latent(tmp_path / "remix.latent.safetensors").equal(
        latent(tmp_path / "gen.latent.safetensors")
    )


def test_repaint_of_the_whole_recording_is_generate(cli, tmp_path):
    recording(tmp_path / "in.wav", seconds=2.0)
    assert cli("generate", "harp", "-d", "2", "--seed", "3", "-o", "g.wav", "--save-latent",
               *FAST)[0] == 0  # fmt: skip
    code, _, err = cli("repaint", "in.wav", "harp", "--region", "0:", "--seed", "3", "-o",
                       "r.wav", "--save-latent", *FAST)  # fmt: skip
    assert code == 0, err
    assert latent(tmp_path / "r.latent.safetensors").equal(
        latent(tmp_path / "g.latent.safetensors")
    )


def test_repaint_keeps_frames_exactly_and_the_recording_outside_the_crossfade(cli, tmp_path):
    recording(tmp_path / "in.wav", seconds=3.0)
    assert cli("generate", "bass", "-d", "3", "--seed", "1", "-o", "src.wav", "--save-latent",
               *FAST)[0] == 0  # fmt: skip
    code, _, err = cli("repaint", "src.wav", "--region", "1.0:1.5", "--seed", "2", "-o",
                       "out.wav", "--save-latent", "--crossfade", "0.1", *FAST)  # fmt: skip
    assert code == 0, err
    assert "exact latent" in err and "prompt of src.wav" in err
    before, after = (
        latent(tmp_path / "src.latent.safetensors"),
        latent(tmp_path / "out.latent.safetensors"),
    )
    kept = np.ones(before.shape[1], bool)
    kept[24:38] = False  # snapped outward to the 80 ms grid: 0.96 s (frame 24) to 1.52 s (38)
    assert before[:, kept].equal(after[:, kept]) and not before[:, ~kept].equal(after[:, ~kept])
    src, _ = sf.read(tmp_path / "src.wav", dtype="int16")
    out, _ = sf.read(tmp_path / "out.wav", dtype="int16")
    outside = np.r_[0 : round(0.86 * 16000) - 1, round(1.62 * 16000) + 1 : src.shape[0]]
    assert np.array_equal(out[outside], src[outside])
    assert not np.array_equal(out[16000:24000], src[16000:24000])
    record = json.loads((tmp_path / "out.json").read_text())
    assert record["operation"] == "repaint" and record["regions_snapped"] == [[0.96, 1.52]]
    assert record["input"]["from_latent"] and record["gain"] == 1.0


def test_an_encoded_recording_is_spliced_back_at_its_own_level(cli, tmp_path):
    recording(tmp_path / "in.wav", seconds=2.0, rate=22050, channels=2)
    code, _, err = cli("repaint", "in.wav", "noise", "--region", "0.5:1", "--seed", "4",
                       "--crossfade", "0", "-o", "out.wav", *FAST)  # fmt: skip
    assert code == 0, err
    record = json.loads((tmp_path / "out.json").read_text())
    assert record["input"]["channels"] == 2 and record["input"]["sample_rate"] == 22050
    assert record["gain"] > 0 and record["input"]["from_latent"] is False
    out, rate = sf.read(tmp_path / "out.wav")
    assert rate == 16000 and out.shape[0] == 32000


def test_extend_keeps_the_recording_and_continues_it_in_windows(cli, tmp_path):
    recording(tmp_path / "in.wav", seconds=2.05)  # cut to 2.00 s, 80 ms whole
    code, out, err = cli("extend", "in.wav", "more", "--add", "10", "--seed", "5",
                         "--context", "1.28", "-o", "long.flac", "--json", *FAST)  # fmt: skip
    assert code == 0, err
    record = json.loads(out)["outputs"][0]["record"]
    assert record["operation"] == "extend" and record["windows"] == 2
    assert record["context_frames"] == 32 and record["input"]["used_samples"] == 32000
    data, _ = sf.read(tmp_path / "long.flac")
    assert data.shape[0] == 32800 + 160000  # the whole input plus the 10 s asked for


def test_an_extension_is_the_input_plus_what_was_asked_never_shorter(cli, tmp_path):
    recording(tmp_path / "in.wav", seconds=3.0)  # 37.5 x 80 ms: cut to 2.96 s first
    code, _, err = cli("extend", "in.wav", "more", "--add", "0.01", "--seed", "5", "-o",
                       "e.wav", *FAST)  # fmt: skip
    assert code == 0, err
    src, _ = sf.read(tmp_path / "in.wav", dtype="int16")
    out, _ = sf.read(tmp_path / "e.wav", dtype="int16")
    assert out.shape[0] == 48000 + 160  # 3.01 s, not 2.97 s
    assert np.array_equal(out[: 47360 - 1600 - 1], src[: 47360 - 1600 - 1])  # before the fade
    said = " ".join(err.split())
    assert "3.01 s in all (3.00 s + 0.01 s)" in said and "first 2.96 s" in said
    assert "0.05 s generated" in said
    record = json.loads((tmp_path / "e.json").read_text())
    assert record["add"] == 0.01 and record["generated"] == 0.05 and record["duration"] == 3.01
    code, _, err = cli("extend", "in.wav", "more", "--to", "2.98", "-o", "f.wav", *FAST)
    assert code == 2 and "not longer than the recording (3.00 s)" in err
    code, _, err = cli("extend", "in.wav", "more", "--to", "3.05", "--seed", "5", "-o",
                       "g.wav", *FAST)  # fmt: skip
    assert code == 0, err
    assert sf.info(tmp_path / "g.wav").frames == 48800


def test_long_form_generate_is_windowed_and_loops_wrap_without_a_jump(cli, tmp_path):
    code, out, err = cli("generate", "drone", "-d", "12", "--seed", "6", "-o", "long.wav",
                         "--json", *FAST)  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["outputs"][0]["record"]["windows"] == 2
    code, out, err = cli("generate", "pulse", "-d", "3", "--seed", "6", "--loop", "--seam",
                         "1.28", "-o", "loop.wav", *FAST)  # fmt: skip
    assert code == 0, err
    wave, _ = sf.read(tmp_path / "loop.wav")
    assert wave.shape[0] == 76 * 640  # 3 s -> 76 frames: a whole period
    steps = np.abs(np.diff(wave))
    assert abs(wave[0] - wave[-1]) <= np.percentile(steps, 99)


def test_loop_of_a_recording_is_a_period_long_and_keeps_its_middle(cli, tmp_path):
    recording(tmp_path / "in.wav", seconds=3.0)
    code, _, err = cli("loop", "in.wav", "groove", "--seam", "0.64", "--seed", "2",
                       "--crossfade", "0.05", "-o", "l.wav", *FAST)  # fmt: skip
    assert code == 0, err
    src, _ = sf.read(tmp_path / "in.wav", dtype="int16")
    out, _ = sf.read(tmp_path / "l.wav", dtype="int16")
    assert out.shape[0] == 76 * 640  # 3 s = 37.5 x 80 ms, rounded up to 38 x 80 ms
    middle = slice(round(0.4 * 16000), round(2.6 * 16000))  # seam of 0.32 s each end + fade
    assert np.array_equal(out[middle], src[middle])
    assert abs(int(out[0]) - int(out[-1])) <= np.percentile(np.abs(np.diff(out.astype(int))), 99)


def test_loop_chooses_a_seam_that_fits_a_short_clip_and_replays_it(cli, tmp_path):
    recording(tmp_path / "in.wav", seconds=3.0)  # 3.04 s on the grid: 2.56 s is too long
    code, _, err = cli("loop", "in.wav", "groove", "--seed", "2", "-o", "a.wav", *FAST)
    assert code == 0, err
    assert "seam 1.44 s, the longest that fits this 3.04 s loop" in " ".join(err.split())
    record = json.loads((tmp_path / "a.json").read_text())
    assert record["seam"] == 1.44 and record["seam_frames"] == 36 and record["seam_auto"] is True
    code, _, err = cli("loop", "--from-record", "a.json", "-o", "b.wav")
    assert code == 0, err
    assert np.array_equal(sf.read(tmp_path / "a.wav")[0], sf.read(tmp_path / "b.wav")[0])
    recording(tmp_path / "long.wav", seconds=6.0)  # 2.56 s fits: kept, still chosen
    code, _, err = cli("loop", "long.wav", "groove", "--seed", "2", "-o", "c.wav", *FAST)
    assert code == 0, err
    record = json.loads((tmp_path / "c.json").read_text())
    assert record["seam"] == 2.56 and record["seam_auto"] is True and "seam" not in err


def test_generate_loop_takes_the_same_seam_rule(cli, tmp_path):
    code, out, err = cli("generate", "pulse", "-d", "1", "--seed", "6", "--loop", "-o",
                         "loop.wav", "--json", *FAST)  # fmt: skip
    assert code == 0, err
    record = json.loads(out)["outputs"][0]["record"]
    assert record["seam"] == 0.48 and record["seam_auto"] is True  # 1.04 s: half is 0.52
    code, out, err = cli("generate", "pulse", "-d", "1", "--seed", "6", "--loop", "--seam",
                         "0.32", "-o", "loop2.wav", "--json", *FAST)  # fmt: skip
    assert code == 0, err
    record = json.loads(out)["outputs"][0]["record"]
    assert record["seam"] == 0.32 and record["seam_auto"] is False
    code, _, err = cli("generate", "pulse", "-d", "0.2", "--loop", "-o", "x.wav", *FAST)
    assert code == 2 and "a loop needs at least 0.32 s" in " ".join(err.split())


def test_seam_default_is_shown_as_chosen_in_help(run_cli):
    for command in ("loop", "generate"):
        code, out, _ = run_cli([command, "--help"])
        assert code == 0
        assert "auto: 2.56 s, or at most half of a shorter clip" in " ".join(out.split())


@pytest.mark.parametrize(
    "seconds, args, words",
    [
        (2.0, ["--seam", "1.6"], "longer than half the loop (1.00 s); the longest that fits "
                                 "this 2.00 s loop is 0.96 s"),
        (2.0, ["--seam", "0.1"], "not a multiple of 0.16 s; the nearest valid one is 0.16 s."),
        (2.0, ["--seam", "0.9"], "the nearest valid ones are 0.80 and 0.96 s."),
        (2.0, ["--seam", "0"], "must be a positive length"),
        (0.01, [], "10 ms long; at least 80 ms is needed"),
        (0.01, ["--seam", "0.16"], "10 ms long; at least 80 ms is needed"),
        (0.2, [], "a loop needs at least 0.32 s"),
    ],
)  # fmt: skip
def test_loop_refusals_name_the_lengths_that_work(cli, tmp_path, seconds, args, words):
    recording(tmp_path / "in.wav", seconds=seconds)
    code, _, err = cli("loop", "in.wav", "groove", "-o", "out.wav", *FAST, *args)
    said = " ".join(err.split())
    assert code == 2 and words in said, said
    assert "0.16 and 0.16" not in said and "use a shorter --seam" not in said
    assert not (tmp_path / "out.wav").exists()


def test_replaying_an_edit_reproduces_it_and_refuses_another_input(cli, tmp_path):
    recording(tmp_path / "in.wav", seconds=2.0)
    assert cli("remix", "in.wav", "tape", "--strength", "0.5", "--seed", "8", "-o", "a.wav",
               *FAST)[0] == 0  # fmt: skip
    code, _, err = cli("remix", "--from-record", "a.json", "-o", "b.wav")
    assert code == 0, err
    assert np.array_equal(sf.read(tmp_path / "a.wav")[0], sf.read(tmp_path / "b.wav")[0])
    recording(tmp_path / "other.wav", seconds=2.5)
    code, _, err = cli("remix", "other.wav", "--from-record", "a.json", "-o", "c.wav")
    assert code == 2 and "SHA-256 differs" in err and not (tmp_path / "c.wav").exists()
    code, _, err = cli("repaint", "in.wav", "--from-record", "a.json", "-o", "d.wav")
    assert code == 2 and "records a remix" in err


def test_info_shows_what_an_edit_recorded(cli, run_cli, tmp_path):
    recording(tmp_path / "in.wav", seconds=1.0)
    assert cli("remix", "in.wav", "x", "--strength", "0.3", "--seed", "1", "-o", "a.wav",
               *FAST)[0] == 0  # fmt: skip
    code, out, _ = run_cli(["info", "a.wav", "--json"])
    record = json.loads(out)
    assert code == 0 and record["operation"] == "remix" and record["strength"] == 0.3
    assert record["start_step"] == 1 and len(record["input"]["sha256"]) == 64


@pytest.mark.parametrize(
    "command, args, words",
    [
        ("remix", ["--strength", "1.5"], "Strength must be between 0 and 1"),
        ("repaint", ["--region", "2:1"], "ends before it starts"),
        ("repaint", ["--region", "1:1"], "is empty"),
        ("repaint", ["--region", "9:12"], "outside the recording"),
        ("repaint", ["--region", "abc"], "not START:END"),
        ("repaint", [], "at least one --region"),
        ("extend", ["--add", "0"], "--add must be a positive"),
        ("extend", ["--to", "1.5"], "not longer than the recording"),
        ("extend", ["--add", "5", "--context", "10.24"], "less than 10.24"),
        ("extend", ["--add", "5", "--context", "1.32"], "nearest valid ones are 1.28 and 1.36"),
        ("extend", ["--add", "400"], "limit is 300"),
        ("loop", ["--seam", "1.6"], "longer than half the loop"),
        ("loop", ["--seam", "0.1"], "multiple of 0.16"),
    ],
)
def test_bad_edit_values_get_one_sentence_and_nothing_is_written(
    cli, tmp_path, command, args, words
):
    recording(tmp_path / "in.wav", seconds=2.0)
    code, _, err = cli(command, "in.wav", "prompt", "-o", "out.wav", *FAST, *args)
    assert code == 2, err
    assert words in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.wav"]


def test_bad_recordings_are_refused_before_any_model_loads(cli, tmp_path):
    (tmp_path / "notes.txt").write_text("not audio")
    sf.write(tmp_path / "silent.wav", np.zeros(16000, dtype=np.float32), 16000)
    sf.write(tmp_path / "short.wav", np.full(800, 0.3, dtype=np.float32), 16000)
    recording(tmp_path / "bare.wav", seconds=1.0)
    cases = [
        ("notes.txt", "x", "Cannot read notes.txt"),
        ("missing.wav", "x", "No such file"),
        ("silent.wav", "x", "silent"),
        ("short.wav", "x", "at least 80 ms"),
        ("bare.wav", None, "Give a PROMPT"),
    ]
    for name, prompt, words in cases:
        code, _, err = cli("remix", name, *([prompt] if prompt else []), "-o", "o.wav", *FAST)
        assert code == 2 and words in err, (name, err)
    assert not (tmp_path / "o.wav").exists()


@pytest.mark.parametrize(
    "command, args",
    [("extend", ["--to", "3"]), ("repaint", ["--region", "0.5:1", "--region", "1.5:"])],
)
def test_replaying_extend_and_repaint_records_reproduces_them(cli, tmp_path, command, args):
    recording(tmp_path / "in.wav", seconds=2.0)
    code, _, err = cli(command, "in.wav", "x", *args, "--seed", "3", "-o", "a.wav", *FAST)
    assert code == 0, err
    code, _, err = cli(command, "--from-record", "a.json", "-o", "b.wav")
    assert code == 0, err
    assert np.array_equal(sf.read(tmp_path / "a.wav")[0], sf.read(tmp_path / "b.wav")[0])
