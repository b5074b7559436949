"""`fluxmusic batch`: a bad row is refused for what is wrong with it, and `--format` offers every
format the tool writes (m4a through ffmpeg, refused up front without it)."""

from __future__ import annotations

import json
import shutil

import pytest

FAST = ["--steps", "2", "--duration", "0.32", "--device", "cpu", "--dtype", "fp32"]


@pytest.fixture
def batch(monkeypatch, run_cli, tiny_bundle, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "200")

    def run(*args):
        return run_cli(["batch", *tiny_bundle.cli_args(), *FAST, *args])

    return run


def failures(stdout: str) -> dict[int, str]:
    events = [json.loads(line) for line in stdout.splitlines()]
    return {e["row"]: e["reason"] for e in events if e["event"] == "item_failed"}


def test_a_name_with_a_colon_is_refused_for_the_colon_not_as_an_absolute_path(batch, tmp_path):
    names = ["a:b", "c*d", "C:\\music\\x", "fine"]
    rows = [{"name": name, "prompt": "harp"} for name in names]
    (tmp_path / "cues.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, out, err = batch("cues.jsonl", "-o", "out", "--json")
    assert code == 6, err
    reasons = failures(out)
    assert "contains ':', which Windows and macOS do not allow in a file name" in reasons[1]
    assert "absolute" not in reasons[1]
    assert "contains '*', which Windows does not allow in a file name" in reasons[2]
    assert "is an absolute path" in reasons[3]
    assert sorted(p.name for p in (tmp_path / "out").glob("*.wav")) == ["fine.wav"]


def test_a_prompt_that_is_not_text_is_called_that_not_empty(batch, tmp_path):
    lines = ['{"prompt": 5}', '{"name": "no-prompt"}', '{"prompt": "  "}', '{"prompt": "harp"}']
    (tmp_path / "cues.jsonl").write_text("\n".join(lines) + "\n")
    code, out, err = batch("cues.jsonl", "-o", "out", "--json")
    assert code == 6, err
    assert failures(out) == {
        1: "bad prompt 5: not text (put it in quotes)",
        2: "no prompt: the row has no prompt (or caption) field",
        3: "empty prompt",
    }


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
def test_format_m4a_writes_aac_clips_through_ffmpeg(batch, tmp_path):
    (tmp_path / "cues.txt").write_text("rain\norgan\n")
    code, _, err = batch("cues.txt", "-o", "out", "--format", "m4a", "--quiet")
    assert code == 0, err
    written = sorted(p.name for p in (tmp_path / "out").iterdir() if p.suffix == ".m4a")
    assert written == ["organ-0002.m4a", "rain-0001.m4a"]
    from fluxmusic_cli.audio import read_audio

    assert read_audio(tmp_path / "out" / "rain-0001.m4a").reader == "ffmpeg"


def test_format_m4a_without_ffmpeg_is_one_sentence_before_any_model_loads(
    batch, tmp_path, monkeypatch, load_counts
):
    (tmp_path / "cues.txt").write_text("rain\n")
    empty = tmp_path / "no-ffmpeg-here"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))  # a machine without ffmpeg
    code, _, err = batch("cues.txt", "-o", "out", "--format", "m4a")
    assert code == 2
    assert "needs ffmpeg, which is not installed" in err and "Traceback" not in err
    assert load_counts == {"transformer": 0, "decoder": 0}
    assert not list(tmp_path.glob("out/*.m4a"))
