"""Bad numbers and damaged files on every command: each ends in one sentence with a documented
exit code (never 1, "unexpected error"), no traceback, and no output written.

Numeric options are found by reading each command's signature, so an option added later is
fuzzed too; the files are every kind a command reads: records, sidecars, prompt tables, LoRA
files and manifests, each binary, empty, truncated and holding the wrong types.
"""

from __future__ import annotations

import inspect
import json
import typing
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.models import OptionInfo

from fluxmusic_cli.cli.app import app

ENGINE = ["--device", "cpu", "--dtype", "fp32"]
FAST = ["--steps", "1", *ENGINE]
DOCUMENTED = {2, 3, 4, 5, 6}  # README's exit codes, less 0 (success) and 1 (unexpected error)
BAD_NUMBERS = ["inf", "-inf", "nan", "-1", "1e30", str(10**30), "abc"]
# The string axes of `vary` take comma-separated numbers of their own.
VARY_AXES = ["--seeds", "--guidance", "--steps", "--strength"]


def _flag(info: OptionInfo) -> str:
    names = [info.default, *(info.param_decls or ())]
    return next(n for n in names if isinstance(n, str) and n.startswith("--")).split("/")[0]


def numeric_options() -> list[tuple[str, str]]:
    """(command, flag) for every option whose value is a number, read off the signatures."""
    out = []
    for command in app.registered_commands:
        signature = inspect.signature(command.callback, eval_str=True)
        for param in signature.parameters.values():
            if typing.get_origin(param.annotation) is not typing.Annotated:
                continue
            base, info = typing.get_args(param.annotation)[:2]
            if not isinstance(info, OptionInfo):
                continue
            kinds = [k for k in typing.get_args(base) or (base,) if k is not type(None)]
            if any(k in (int, float) for k in kinds) and bool not in kinds:
                out.append((command.name, _flag(info)))
    return out


def test_every_numeric_option_goes_through_the_one_number_parser():
    unparsed = []
    for command in app.registered_commands:
        signature = inspect.signature(command.callback, eval_str=True)
        for param in signature.parameters.values():
            args = typing.get_args(param.annotation)
            if len(args) < 2 or not isinstance(args[1], OptionInfo):
                continue
            kinds = [k for k in typing.get_args(args[0]) or (args[0],) if k is not type(None)]
            parser = args[1].parser
            numeric = any(k in (int, float) for k in kinds) and bool not in kinds
            if numeric and (parser is None or "parse_number" not in parser.__qualname__):
                unparsed.append(f"{command.name} {_flag(args[1])}")
    assert numeric_options() and not unparsed


def _recording(path: Path, seconds: float = 1.0) -> Path:
    t = np.arange(round(seconds * 16000)) / 16000
    sf.write(path, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000)
    return path


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A folder holding what every command needs to get as far as its numbers: a recording
    (with a caption, for train), a prompt list and a folder of clips (for eval)."""
    monkeypatch.chdir(tmp_path)
    _recording(tmp_path / "in.wav")
    (tmp_path / "data").mkdir()
    _recording(tmp_path / "data" / "song.wav")
    (tmp_path / "data" / "song.txt").write_text("a calm song")
    (tmp_path / "clips").mkdir()
    _recording(tmp_path / "clips" / "a.wav")
    (tmp_path / "prompts.txt").write_text("a calm song\n")
    return tmp_path


def _base(command: str) -> list[str]:
    """Arguments that make `command` valid apart from the option under test."""
    return {
        "generate": [command, "x", "-o", "out.wav", "-d", "0.48"],
        "remix": [command, "in.wav", "x", "-o", "out.wav"],
        "repaint": [command, "in.wav", "x", "--region", "0:0.5", "-o", "out.wav"],
        "extend": [command, "in.wav", "x", "--add", "0.48", "-o", "out.wav"],
        "loop": [command, "in.wav", "x", "-o", "out.wav"],
        "batch": [command, "prompts.txt", "-o", "outdir", "-d", "0.48"],
        "vary": [command, "x", "-o", "outdir", "--seeds", "1", "--guidance", "2", "-d", "0.48"],
        "eval": [command, "clips"],
        "train": [command, "data", "-o", "run", "--steps", "1", "--save-every", "0"],
        # Every bad value stops serve before it starts (a good one would serve).
        "serve": [command, "--data-dir", "served"],
    }[command]


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def _refused(code: int, err: str) -> None:
    assert code in DOCUMENTED, err
    assert "Traceback" not in err and "unexpected error" not in err, err


CASES = [(c, f, v) for c, f in numeric_options() for v in BAD_NUMBERS]
CASES += [("vary", f, v) for f in VARY_AXES for v in ["inf", "nan", "-1", "1e30", "x"]]


@pytest.mark.parametrize(("command", "flag", "value"), CASES)
def test_a_bad_number_is_one_sentence_and_writes_nothing(
    run_cli, tiny_bundle, workdir, command, flag, value
):
    before = _files(workdir)
    bundle = [] if command == "eval" else tiny_bundle.cli_args()
    engine = {"eval": ["--device", "cpu"], "train": ENGINE, "serve": ENGINE}.get(command, FAST)
    code, _, err = run_cli([*_base(command), *bundle, *engine, f"{flag}={value}"])
    _refused(code, err)
    assert _files(workdir) == before


# -- damaged files ------------------------------------------------------------------------------

RECORD = {"prompt": "a calm song", "seed": 1, "steps": 1, "duration": 0.48}
JSON_DAMAGE = {
    "binary": b"\x00\xff\xfe\x13\x89PNG\r\n\x1a\n\x00\x00",
    "empty": b"",
    "truncated": json.dumps(RECORD).encode()[:20],
    "a list": b"[1, 2, 3]",
    "null numbers": json.dumps({**RECORD, "seed": None, "steps": None}).encode(),
    "text numbers": json.dumps({**RECORD, "guidance": "high", "steps": "ten"}).encode(),
    "a number prompt": json.dumps({**RECORD, "prompt": 5}).encode(),
    "huge numbers": json.dumps({**RECORD, "steps": 10**30, "guidance": 1e308}).encode(),
    "not finite": b'{"prompt": "x", "seed": 1, "duration": NaN, "crossfade": Infinity}',
    "bad loras": json.dumps({**RECORD, "loras": [{"scale": 1}], "regions": 3}).encode(),
}
TABLE_DAMAGE = {
    "binary": b"\x00\xff\xfe\x13\x89PNG\r\n\x1a\n\x00\x00",
    "empty": b"",
    "not utf-8": b"prompt\n\xff\xfe caf\xe9\n",
}
JSONL_DAMAGE = {
    **TABLE_DAMAGE,
    "truncated": b'{"prompt": "a calm so',
    "wrong types": b'{"prompt": 5}\n["a"]\n{"prompt": "x", "seed": "abc", "steps": 1e30}\n',
}


def _damaged(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


UNREADABLE = sorted(set(JSON_DAMAGE) - {"huge numbers", "not finite"})  # not records at all
# What replays each record: the record's own values (no -d, no --steps) go through the checks.
REPLAY = {
    "generate": ["generate", "-o", "out.wav", *ENGINE],
    "remix": ["remix", "in.wav", "-o", "out.wav", *ENGINE],
}


@pytest.mark.parametrize(
    ("command", "damage"),
    [(c, d) for c in REPLAY for d in sorted(JSON_DAMAGE)] + [("info", d) for d in UNREADABLE],
)
def test_a_damaged_record_is_one_sentence(run_cli, tiny_bundle, workdir, command, damage):
    record = _damaged(workdir / "rec.json", JSON_DAMAGE[damage])
    before = _files(workdir)
    if command == "info":
        args = ["info", str(record)]
    else:
        args = [*REPLAY[command], "--from-record", str(record), *tiny_bundle.cli_args()]
    code, _, err = run_cli(args)
    _refused(code, err)
    assert _files(workdir) == before


@pytest.mark.parametrize("damage", UNREADABLE)
def test_a_damaged_sidecar_beside_audio_is_passed_over_with_a_note(
    run_cli, tiny_bundle, workdir, damage
):
    _damaged(workdir / "in.json", JSON_DAMAGE[damage])
    # `info` reads the tags instead (the recording has none, so it is refused, saying why) ...
    code, _, err = run_cli(["info", "in.wav"])
    _refused(code, err)
    assert "in.json" in err
    # ... and an edit without a prompt asks for one, saying the sidecar was not usable.
    before = _files(workdir)
    code, _, err = run_cli(["remix", "in.wav", "-o", "o.wav", *tiny_bundle.cli_args(), *FAST])
    _refused(code, err)
    assert "Give a PROMPT" in err and _files(workdir) == before


@pytest.mark.parametrize("damage", ["binary", "empty", "truncated"])
def test_a_damaged_latent_sidecar_is_passed_over_and_the_audio_encoded(
    run_cli, tiny_bundle, workdir, damage
):
    data = {"binary": JSON_DAMAGE["binary"], "empty": b"", "truncated": b"\x10\x00\x00\x00{"}
    _damaged(workdir / "in.latent.safetensors", data[damage])
    code, _, err = run_cli([*_base("remix"), *tiny_bundle.cli_args(), *FAST])
    assert code == 0, err
    assert "re-encoding the audio" in err and (workdir / "out.wav").is_file()


@pytest.mark.parametrize(
    ("suffix", "damage"),
    # Any text is a valid .txt list: only damage that makes it not text applies to it.
    [(".txt", d) for d in sorted(TABLE_DAMAGE)]
    + [(s, d) for s in (".csv", ".jsonl") for d in sorted(JSONL_DAMAGE)],
)
def test_a_damaged_prompt_list_is_one_sentence(run_cli, tiny_bundle, workdir, suffix, damage):
    table = _damaged(workdir / f"list{suffix}", JSONL_DAMAGE[damage])
    before = _files(workdir)
    code, _, err = run_cli(
        ["batch", str(table), "-o", "outdir", *tiny_bundle.cli_args(), *FAST, "-d", "0.48"]
    )
    _refused(code, err)
    assert _files(workdir) == before


@pytest.mark.parametrize("damage", sorted(JSONL_DAMAGE))
@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_a_damaged_eval_prompt_table_is_one_sentence(run_cli, workdir, suffix, damage):
    table = _damaged(workdir / f"prompts{suffix}", JSONL_DAMAGE[damage])
    before = _files(workdir)
    code, _, err = run_cli(["eval", "clips", "--prompts", str(table), "--device", "cpu"])
    _refused(code, err)
    assert _files(workdir) == before


@pytest.mark.parametrize("damage", sorted(JSONL_DAMAGE))
def test_a_damaged_training_table_is_one_sentence(run_cli, tiny_bundle, workdir, damage):
    table = _damaged(workdir / "songs.csv", JSONL_DAMAGE[damage])
    before = _files(workdir)
    code, _, err = run_cli(["train", str(table), "-o", "run", *tiny_bundle.cli_args(), *ENGINE])
    _refused(code, err)
    assert _files(workdir) == before


LORA_DAMAGE = {
    "binary": JSON_DAMAGE["binary"],
    "empty": b"",
    "truncated": b'\x40\x00\x00\x00\x00\x00\x00\x00{"a": {"dtype": "F32", "shape"',
    "another model": None,  # a real safetensors file of the wrong tensors
}


@pytest.mark.parametrize("damage", sorted(LORA_DAMAGE))
def test_a_damaged_lora_file_is_one_sentence(run_cli, tiny_bundle, workdir, damage):
    lora = workdir / "style.safetensors"
    if LORA_DAMAGE[damage] is None:
        import torch
        from safetensors.torch import save_file

        save_file({"unrelated.weight": torch.zeros(2, 2)}, str(lora))
    else:
        _damaged(lora, LORA_DAMAGE[damage])
    before = _files(workdir)
    code, _, err = run_cli(
        [*_base("generate"), "--lora", str(lora), *tiny_bundle.cli_args(), *FAST]
    )
    _refused(code, err)
    assert _files(workdir) == before


MANIFEST_DAMAGE = {
    "binary": JSON_DAMAGE["binary"],
    "wrong types": b'{"name": 5, "path": []}\n[1, 2]\n{"name": "a", "bytes": "x", "path": 3}\n',
}


@pytest.mark.parametrize("damage", sorted(MANIFEST_DAMAGE))
def test_a_damaged_manifest_is_one_sentence_or_passed_over(run_cli, tiny_bundle, workdir, damage):
    (workdir / "outdir").mkdir()
    _damaged(workdir / "outdir" / "manifest.jsonl", MANIFEST_DAMAGE[damage])
    _damaged(workdir / "clips" / "manifest.jsonl", MANIFEST_DAMAGE[damage])
    code, _, err = run_cli(["eval", "clips", "--device", "cpu", "--json"])
    _refused(code, err)
    code, _, err = run_cli(
        ["batch", "prompts.txt", "-o", "outdir", *tiny_bundle.cli_args(), *FAST, "-d", "0.48"]
    )
    assert code == 0 or code in DOCUMENTED, err
    assert "Traceback" not in err and "unexpected error" not in err, err
