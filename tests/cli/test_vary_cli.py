"""`fluxmusic vary` in-process on a tiny bundle: the grid of clips, the page, the picture."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from fluxmusic_cli.errors import UsageError
from fluxmusic_cli.runs.vary import parse_encoders, parse_guidance, parse_seeds
from fluxmusic_cli.spectrogram import mel_spectrogram

FAST = ["--duration", "0.32", "--device", "cpu", "--dtype", "fp32"]


@pytest.fixture
def vary(monkeypatch, run_cli, tiny_bundle, tmp_path):
    monkeypatch.chdir(tmp_path)

    def _vary(*args):
        return run_cli(["vary", *tiny_bundle.cli_args(), *FAST, *args])

    return _vary


def _png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_two_seeds_by_three_guidance_values_make_six_clips_a_page_and_a_grid(vary, tmp_path):
    code, out, err = vary(
        "warm lo-fi piano", "-o", "grid", "--seeds", "1-2", "--guidance", "2,3.5,7",
        "--steps", "2", "--json",
    )  # fmt: skip
    assert code == 0, err
    folder = tmp_path / "grid"
    expected = {f"seed{s}_cfg{g}_steps2_both" for s in (1, 2) for g in ("2", "3.5", "7")}
    assert {p.stem for p in folder.glob("*.wav")} == expected
    manifest = [json.loads(x) for x in (folder / "manifest.jsonl").read_text().splitlines()]
    assert {e["name"] for e in manifest} == expected
    for entry in manifest:
        seed, cfg = re.match(r"seed(\d+)_cfg([\d.]+)_", entry["name"]).groups()
        assert entry["seed"] == int(seed) and entry["guidance"] == float(cfg)
        assert entry["prompt"] == "warm lo-fi piano" and entry["steps"] == 2
    assert {p.name for p in folder.glob("*.mel.png")} == {f"{n}.mel.png" for n in expected}

    page = (folder / "index.html").read_text()
    sources = re.findall(r'<source src="([^"]+)" type="audio/wav">', page)
    assert sorted(sources) == sorted(f"{n}.wav" for n in expected)
    assert re.findall(r"<h1>(.*?)</h1>", page) == ["warm lo-fi piano"]
    headers = re.findall(r'<th scope="col">(guidance [^<]+)</th>', page)
    assert headers == ["guidance 2", "guidance 3.5", "guidance 7"]
    assert re.findall(r'<th scope="row">(seed \d+)</th>', page) == ["seed 1", "seed 2"]
    assert "http://" not in page and "https://" not in page and "<script" not in page

    width, height = _png_size(folder / "grid.png")
    assert width > 3 * 200 and height > 2 * 100
    events = [json.loads(x) for x in out.splitlines()]
    assert events[-1] == {
        "event": "page",
        "index": "grid/index.html",  # as given: relative to where the command ran
        "grid": "grid/grid.png",
    }
    assert sum(e["event"] == "item_done" for e in events) == 6


def test_steps_and_encoders_are_axes_too_and_a_rerun_resumes(vary, tmp_path):
    args = ["calm harp", "-o", "axes", "--seeds", "3", "--guidance", "4",
            "--steps", "2,3", "--encoders", "both,clap", "--quiet"]  # fmt: skip
    code, _, err = vary(*args)
    assert code == 0, err
    folder = tmp_path / "axes"
    names = sorted(p.stem for p in folder.glob("*.wav"))
    assert names == [
        "seed3_cfg4_steps2_both", "seed3_cfg4_steps2_clap",
        "seed3_cfg4_steps3_both", "seed3_cfg4_steps3_clap",
    ]  # fmt: skip
    for name in names:
        record = json.loads((folder / f"{name}.json").read_text())
        assert f"steps{record['steps']}_{record['encoders']}" in name
    page = (folder / "index.html").read_text()
    assert re.findall(r"<h2>(.*?)</h2>", page) == [
        "2 steps · encoders both", "2 steps · encoders clap",
        "3 steps · encoders both", "3 steps · encoders clap",
    ]  # fmt: skip

    before = {p.name: p.stat().st_mtime_ns for p in folder.glob("*.wav")}
    code, out, err = vary(*args[:-1], "--json")
    assert code == 0, err
    summary = next(json.loads(x) for x in out.splitlines() if '"summary"' in x)
    assert (summary["done"], summary["skipped"]) == (0, 4)
    assert {p.name: p.stat().st_mtime_ns for p in folder.glob("*.wav")} == before


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--seeds", "5-1", "runs backwards"),
        ("--seeds", "1,,2", "comma-separated"),
        ("--guidance", "2,loud", "takes numbers"),
        ("--guidance", "-1", ">= 0"),
        ("--steps", "0", "from 1 to"),
        ("--encoders", "t5,bert", "takes both, t5, clap"),
    ],
)
def test_bad_axis_values_are_usage_errors(vary, option, value, message):
    code, _, err = vary("x", "-o", "bad", option, value)
    assert code == 2 and message in err


def test_axis_parsing_keeps_order_and_drops_repeats():
    assert parse_seeds("3,0-2,1, 10") == [3, 0, 1, 2, 10]
    assert parse_guidance("7, 3.5,7.0") == [7.0, 3.5]
    assert parse_encoders("clap,both,clap") == ["clap", "both"]
    with pytest.raises(UsageError):
        parse_seeds("")


def test_mel_spectrogram_puts_a_tone_in_the_right_band():
    rate = 16000
    t = np.arange(rate) / rate
    low, high = (mel_spectrogram(np.sin(2 * np.pi * f * t), rate)[0] for f in (300, 3000))
    assert low.shape[0] == 64 and abs(low.shape[1] - 100) <= 8  # 100 frames a second
    peak_low, peak_high = (int(np.argmax(s.mean(axis=1))) for s in (low, high))
    assert peak_low < peak_high
    # On the HTK mel scale from 0 to 8 kHz, 300 Hz is band 8 of 64 and 3 kHz is band 42.
    assert abs(peak_low - 8) <= 1 and abs(peak_high - 42) <= 1


def test_input_puts_remix_strengths_side_by_side_and_each_cell_is_that_remix(
    vary, run_cli, tiny_bundle, tmp_path
):
    import soundfile as sf

    t = np.arange(16000) / 16000
    sf.write(tmp_path / "take.wav", (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32), 16000)
    code, _, err = vary("violin", "-o", "mix", "--input", "take.wav", "--strength", "0,1",
                        "--seeds", "4", "--guidance", "3", "--steps", "2")  # fmt: skip
    assert code == 0, err
    folder = tmp_path / "mix"
    names = sorted(p.stem for p in folder.glob("*.wav"))
    assert names == ["seed4_cfg3_steps2_both_str0", "seed4_cfg3_steps2_both_str1"]
    page = (folder / "index.html").read_text()
    assert "remix strength 0" in page and "remix strength 1" in page and "take.wav" in page
    record = json.loads((folder / "seed4_cfg3_steps2_both_str1.json").read_text())
    assert record["operation"] == "remix" and record["strength"] == 1.0
    remix = ["remix", "take.wav", "violin", "--strength", "1", "--seed", "4", "--guidance", "3",
             "--steps", "2", "-o", "alone.wav", "--device", "cpu", "--dtype", "fp32"]  # fmt: skip
    code, _, err = run_cli([*remix, *tiny_bundle.cli_args()])
    assert code == 0, err
    alone = sf.read(tmp_path / "alone.wav")[0]
    assert np.array_equal(alone, sf.read(folder / "seed4_cfg3_steps2_both_str1.wav")[0])
    code, out, err = vary("violin", "-o", "mix", "--input", "take.wav", "--strength", "0,1",
                          "--seeds", "4", "--guidance", "3", "--steps", "2", "--json")  # fmt: skip
    assert code == 0 and json.loads(out.strip().splitlines()[-2])["skipped"] == 2


def test_strengths_outside_zero_to_one_are_refused(vary, tmp_path):
    import soundfile as sf

    t = np.arange(16000) / 16000
    sf.write(tmp_path / "take.wav", (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32), 16000)
    code, _, err = vary("x", "-o", "g", "--input", "take.wav", "--strength", "0.5,2")
    assert code == 2 and "--strength takes numbers from 0 to 1" in err
