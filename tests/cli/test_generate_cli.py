"""`fluxmusic generate` and `info` in-process: outputs, records, replay and refusals."""

from __future__ import annotations

import json

import pytest
import soundfile as sf

FAST = ["--steps", "2", "--duration", "0.48", "--device", "cpu", "--dtype", "fp32"]


def test_generate_writes_audio_sidecar_and_json(gen, tmp_path):
    code, out, err = gen("soft rain on a tin roof", "-o", "rain.flac", "--seed", "5", "--json")
    assert code == 0, err
    doc = json.loads(out)
    record = doc["outputs"][0]["record"]
    assert record["seed"] == 5 and record["prompt"] == "soft rain on a tin roof"
    data, rate = sf.read(tmp_path / "rain.flac")
    assert rate == 16000 and len(data) == round(0.48 * 16000)
    side = json.loads((tmp_path / "rain.json").read_text())
    assert side["seed"] == 5 and side["format"] == "flac" and side["peak"] > 0


def test_default_name_is_a_slug_of_the_prompt_and_seed(gen, tmp_path):
    code, _, err = gen("Warm lo-fi piano, vinyl crackle!", "--seed", "12")
    assert code == 0, err
    assert (tmp_path / "warm-lo-fi-piano-vinyl-crackle-s12.wav").is_file()


def test_num_outputs_uses_consecutive_seeds(gen, tmp_path):
    code, _, err = gen("bells", "-n", "2", "--seed", "40", "-o", "bells.ogg")
    assert code == 0, err
    for seed in (40, 41):
        assert json.loads((tmp_path / f"bells-s{seed}.json").read_text())["seed"] == seed
        assert sf.info(str(tmp_path / f"bells-s{seed}.ogg")).samplerate == 16000


def test_prompts_from_stdin_go_to_a_folder(gen, tmp_path):
    code, _, err = gen("-", "-o", "clips/", "--seed", "3", stdin="first tune\n\nsecond tune\n")
    assert code == 0, err
    names = sorted(p.name for p in (tmp_path / "clips").glob("*.wav"))
    assert names == ["first-tune-s3.wav", "second-tune-s3.wav"]


def test_existing_files_are_not_overwritten_without_force(gen, tmp_path):
    (tmp_path / "keep.wav").write_bytes(b"precious")
    code, _, err = gen("anything", "-o", "keep.wav", "--seed", "1")
    assert code == 2 and "already exists" in err and "--force" in err
    assert (tmp_path / "keep.wav").read_bytes() == b"precious"
    code, _, err = gen("anything", "-o", "keep.wav", "--seed", "1", "--force")
    assert code == 0, err
    assert sf.info(str(tmp_path / "keep.wav")).frames > 0


def test_replay_reproduces_samples_and_explicit_flags_win(gen, tmp_path):
    assert gen("glass harp", "-o", "a.wav", "--seed", "8", "--guidance", "3.5")[0] == 0
    code, _, err = gen("--from-record", "a.json", "-o", "b.wav")
    assert code == 0, err
    a, _ = sf.read(tmp_path / "a.wav")
    b, _ = sf.read(tmp_path / "b.wav")
    assert (a == b).all()
    replayed = json.loads((tmp_path / "b.json").read_text())
    assert replayed["guidance"] == 3.5 and replayed["prompt"] == "glass harp"
    code, _, err = gen("--from-record", "a.json", "-o", "c.wav", "--seed", "9")
    assert code == 0, err
    assert json.loads((tmp_path / "c.json").read_text())["seed"] == 9


def test_resampled_output_has_the_requested_rate(gen, tmp_path):
    code, _, err = gen("strings", "-o", "s.wav", "--seed", "1", "--sample-rate", "44100")
    assert code == 0, err
    info = sf.info(str(tmp_path / "s.wav"))
    assert info.samplerate == 44100 and info.frames == round(0.48 * 44100)


def test_info_prints_the_record_as_json(gen, run_cli, tmp_path):
    assert gen("oboe", "-o", "o.mp3", "--seed", "2")[0] == 0
    (tmp_path / "o.json").unlink()  # the tags alone must still tell
    code, out, err = run_cli(["info", "o.mp3", "--json"])
    assert code == 0, err
    record = json.loads(out)
    assert record["prompt"] == "oboe" and record["seed"] == 2 and record["steps"] == 2


@pytest.mark.parametrize(
    "args, code, words",
    [
        (["", "-o", "x.wav"], 2, "Empty prompt"),
        (["tune", "-o", "x.aiff"], 2, "Unknown output extension"),
        (["tune", "-o", "nodir/x.wav"], 2, "does not exist"),
        (["tune", "-o", "-", "--json"], 2, "--json"),
        (["tune", "--steps", "0"], 2, "steps"),
        (["tune", "--guidance", "-1"], 2, "guidance"),
        (["tune", "--duration", "0"], 2, "Duration"),
        (["tune", "--duration", "400"], 2, "limit"),
        (["tune", "--duration", "0.001"], 2, "the shortest clip is 0.08 s"),
        (["tune", "--duration", "0.079"], 2, "the shortest clip is 0.08 s"),
    ],
)
def test_bad_input_gets_a_sentence_and_the_usage_exit_code(gen, args, code, words):
    got, _, err = gen(*args)
    assert got == code and words.lower() in err.lower()
    assert "Traceback" not in err


def test_unknown_variant_lists_the_known_ones(monkeypatch, run_cli, tmp_path):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(["generate", "tune", "--model", "huge", *FAST])
    assert code == 2 and "small" in err and "giant-full" in err


def test_empty_stdin_is_refused(gen):
    code, _, err = gen("-", stdin="\n  \n")
    assert code == 2 and "no prompts" in err.lower()


@pytest.fixture
def cpu_timer(monkeypatch):
    """The CPU's matmul rates injected where `--dtype auto` measures them; counts the calls."""
    from fluxmusic_cli.engine import cpu_dtype

    calls = []

    def measure():
        calls.append(1)
        return {"fp32": 272.0, "bf16": 151.0}

    monkeypatch.setattr(cpu_dtype, "measure_rates", measure)
    return calls


def test_the_record_says_which_dtype_ran_and_why(gen, tmp_path, cpu_timer):
    code, _, err = gen("cello", "-o", "auto.wav", "--seed", "1", "--dtype", "auto")
    assert code == 0, err
    record = json.loads((tmp_path / "auto.json").read_text())
    assert record["dtype"] == "fp32"
    assert record["dtype_reason"] == (
        "auto: bf16 matmul 151 GFLOP/s vs fp32 272 GFLOP/s on this CPU -> fp32"
    )
    code, _, err = gen("cello", "-o", "again.wav", "--seed", "1", "--dtype", "auto")
    assert code == 0, err
    assert len(cpu_timer) == 1  # the second run read the rates from the cache
    code, _, err = gen("cello", "-o", "forced.wav", "--seed", "1", "--dtype", "bf16")
    assert code == 0, err
    record = json.loads((tmp_path / "forced.json").read_text())
    assert (record["dtype"], record["dtype_reason"]) == ("bf16", "forced by --dtype")
