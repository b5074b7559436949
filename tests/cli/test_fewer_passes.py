"""`--guidance-interval` and `--cache` through the console entry point on a tiny bundle: the
exact forward passes they save (counted around the real model), off computing exactly what
the default does, and both recorded and replayed by every command that samples."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

ENGINE = ["--device", "cpu", "--dtype", "fp32"]
STEPS = 8  # t = 1, 0.875, ..., 0.125: four of the eight step times lie in [0, 0.5]


@pytest.fixture
def passes(monkeypatch):
    """Counts, around the real loader's model: `calls` transformer calls, `rows` items through
    it (a guided step is 2 rows per clip, a conditional-only step 1), `tail` calls that reached
    the last single-stream block's attention (steps the first-block cache did not skip)."""
    from fluxmusic_cli.engine import checkpoint

    counts = {"calls": 0, "rows": 0, "tail": 0}
    real = checkpoint.load_transformer

    def load(*args, **kwargs):
        model, cfg = real(*args, **kwargs)

        def on_call(module, args, kwargs):
            counts["calls"] += 1
            counts["rows"] += kwargs["hidden_states"].shape[0]

        def on_tail(module, args, output):
            counts["tail"] += 1

        model.register_forward_pre_hook(on_call, with_kwargs=True)
        model.single_transformer_blocks[-1].attn.register_forward_hook(on_tail)
        return model, cfg

    monkeypatch.setattr(checkpoint, "load_transformer", load)
    return counts


@pytest.fixture
def cli(monkeypatch, run_cli, tiny_bundle, tmp_path, passes):
    monkeypatch.chdir(tmp_path)

    def _cli(command, *args):
        for key in passes:
            passes[key] = 0
        return run_cli([command, *args, *tiny_bundle.cli_args(), *ENGINE])

    return _cli


def _gen(cli, name, *args):
    code, _, err = cli("generate", "slow harp", "-d", "0.48", "--seed", "4", "--steps",
                       str(STEPS), "-o", f"{name}.wav", *args)  # fmt: skip
    assert code == 0, err
    return sf.read(name + ".wav")[0]


def _record(tmp_path, name):
    return json.loads((tmp_path / f"{name}.json").read_text())


def test_guidance_interval_runs_one_conditional_pass_outside_it(cli, passes, tmp_path):
    _gen(cli, "full")
    assert passes == {"calls": STEPS, "rows": 2 * STEPS, "tail": STEPS}
    half = _gen(cli, "half", "--guidance-interval", "0:0.5")
    assert passes["calls"] == STEPS and passes["rows"] == 4 * 2 + 4 * 1  # 12 of 16
    record = _record(tmp_path, "half")
    assert record["guidance_interval"] == [0.0, 0.5] and record["cache"] is None
    assert not np.array_equal(half, sf.read("full.wav")[0])


def test_an_interval_covering_every_step_is_bit_identical_to_the_default(cli, tmp_path):
    default = _gen(cli, "default")
    assert _record(tmp_path, "default")["guidance_interval"] is None
    assert np.array_equal(_gen(cli, "all", "--guidance-interval", "0:1"), default)


def test_cache_at_a_huge_threshold_computes_the_other_blocks_once(cli, passes, tmp_path):
    _gen(cli, "cached", "--cache", "1e9")
    # Every step runs the first block; only the first step runs the rest.
    assert passes["calls"] == STEPS and passes["tail"] == 1
    assert _record(tmp_path, "cached")["cache"] == 1e9


def test_cache_at_zero_computes_every_block_and_matches_the_default_bit_for_bit(cli, passes):
    default = _gen(cli, "default")
    zero = _gen(cli, "zero", "--cache", "0")
    assert passes["tail"] == STEPS
    assert np.array_equal(zero, default)


def test_both_options_together_are_replayed_from_the_record(cli, passes, tmp_path):
    first = _gen(cli, "a", "--guidance-interval", "0.25:1", "--cache", "1e9")
    # t = 1 .. 0.25 guided (7 steps, 2 rows), t = 0.125 conditional only (1 row); the cache
    # keeps one state per row count, so each kind of step computes every block once.
    assert passes["rows"] == 7 * 2 + 1 and passes["tail"] == 2
    code, _, err = cli("generate", "--from-record", "a.json", "-o", "b.wav")
    assert code == 0, err
    assert passes["rows"] == 15 and passes["tail"] == 2
    assert np.array_equal(sf.read("b.wav")[0], first)
    record = _record(tmp_path, "b")
    assert record["guidance_interval"] == [0.25, 1.0] and record["cache"] == 1e9


def test_editing_records_and_replays_both(cli, passes, tmp_path):
    _gen(cli, "src", "--save-latent")
    code, _, err = cli("remix", "src.wav", "harp", "--strength", "0.5", "--steps", str(STEPS),
                       "--seed", "2", "--guidance-interval", "0:0.3", "--cache", "1e9",
                       "-o", "r1.wav")  # fmt: skip
    assert code == 0, err
    # strength 0.5 of 8 steps: t = 0.5 .. 0.125, of which 0.25 and 0.125 are guided; one full
    # pass for each kind of step (2 rows, 1 row).
    assert passes["calls"] == 4 and passes["rows"] == 2 * 1 + 2 * 2 and passes["tail"] == 2
    code, _, err = cli("remix", "--from-record", "r1.json", "-o", "r2.wav")
    assert code == 0, err
    assert passes["rows"] == 6 and passes["tail"] == 2
    assert np.array_equal(sf.read("r1.wav")[0], sf.read("r2.wav")[0])
    assert _record(tmp_path, "r2")["guidance_interval"] == [0.0, 0.3]


def test_batch_and_vary_take_and_record_both(cli, passes, tmp_path):
    (tmp_path / "p.txt").write_text("one tune\n")
    code, _, err = cli("batch", "p.txt", "-o", "out", "--steps", str(STEPS), "--duration",
                       "0.32", "--guidance-interval", "0:0.5", "--cache", "1e9")  # fmt: skip
    assert code == 0, err
    assert passes["rows"] == 12 and passes["tail"] == 2
    record = json.loads(next((tmp_path / "out").glob("*.json")).read_text())
    assert record["guidance_interval"] == [0.0, 0.5] and record["cache"] == 1e9
    code, _, err = cli("vary", "one tune", "-o", "grid", "--seeds", "1", "--guidance", "3",
                       "--steps", str(STEPS), "--duration", "0.32",
                       "--guidance-interval", "0:0.5")  # fmt: skip
    assert code == 0, err
    assert passes["rows"] == 12
    records = [json.loads(p.read_text()) for p in (tmp_path / "grid").rglob("*.json")]
    assert any(r.get("guidance_interval") == [0.0, 0.5] for r in records)


def test_a_batch_rerun_with_other_pass_options_is_a_conflict_not_a_skip(cli, passes, tmp_path):
    (tmp_path / "p.txt").write_text("one tune\n")
    args = ("batch", "p.txt", "-o", "out", "--steps", "2", "--duration", "0.32", "--json")
    code, _, err = cli(*args, "--cache", "1e9", "--guidance-interval", "0:0.5")
    assert code == 0, err
    code, out, err = cli(*args, "--cache", "1e9", "--guidance-interval", "0:0.5")
    assert code == 0 and json.loads(out.strip().splitlines()[-1])["skipped"] == 1
    code, out, err = cli(*args, "--guidance-interval", "0:0.5")  # the cache left off
    assert code == 6 and "cache 1000000000.0 -> None" in out + err
    code, out, err = cli(*args, "--cache", "1e9")  # guided everywhere
    assert code == 6 and "guidance_interval [0.0, 0.5] -> None" in out + err


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--guidance-interval", "0.8:0.2"], "LO <= HI"),
        (["--guidance-interval", "half"], "LO:HI"),
        (["--cache", "0.1", "--compile"], "cannot be combined"),
    ],
)
def test_bad_values_get_one_sentence_and_the_usage_exit_code(cli, args, words):
    code, _, err = cli("generate", "x", "--steps", "2", "-d", "0.32", "-o", "x.wav", *args)
    assert code == 2 and words in err and "Traceback" not in err


def test_text_device_is_recorded_and_a_gpu_text_device_needs_the_gpu(cli, tmp_path):
    _gen(cli, "t", "--text-device", "cpu")
    assert _record(tmp_path, "t")["text_device"] == "cpu"
    code, _, err = cli("generate", "x", "--steps", "2", "-d", "0.32", "-o", "x.wav",
                       "--text-device", "cuda")  # fmt: skip
    assert code == 2 and "needs --device cuda" in err
