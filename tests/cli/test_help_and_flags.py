"""What `--help` shows across every command: one meaning per short flag, the same name for the
same source, a metavar that says what each value is, and no heavy import to show it."""

from __future__ import annotations

import re
import subprocess

import pytest
from installed import FLUXMUSIC, needs_script, script_env

NAMES = "generate info remix repaint extend loop batch vary eval models download doctor train"
COMMANDS = [[name] for name in NAMES.split()] + [["cache", sub] for sub in ("list", "rm", "path")]
# What Typer shows for a value when nothing better was declared: a Python type, or Click's.
GENERIC = re.compile(
    r"<(?:str|path|int|float|bool|file|text|list\[[^\]]*\])>|\b(?:TEXT|INTEGER|FLOAT|NUMBER)\b"
)


@pytest.fixture
def helps(run_cli, monkeypatch):
    """Each command's --help, wide enough that no row wraps."""
    monkeypatch.setenv("COLUMNS", "300")

    def run() -> dict[str, str]:
        out = {}
        for command in COMMANDS:
            code, text, err = run_cli([*command, "--help"])
            assert code == 0, err
            out[" ".join(command)] = text
        return out

    return run


def option_rows(text: str) -> list[list[str]]:
    """The words of each option row of a help panel (`--long[,--alias] [-s] METAVAR help`)."""
    rows = []
    for line in text.splitlines():
        words = line.strip("│ \t").split()
        if words and words[0] == "*":  # required
            words = words[1:]
        if words and words[0].startswith("--"):
            rows.append(words)
    return rows


def test_a_short_flag_means_the_same_option_in_every_command(helps):
    meaning: dict[str, set[str]] = {}
    for text in helps().values():
        for words in option_rows(text):
            if len(words) > 1 and re.fullmatch(r"-[A-Za-z]", words[1]):
                meaning.setdefault(words[1], set()).add(words[0].split(",")[0])
    assert meaning["-o"] == {"--output"}
    clashes = {short: longs for short, longs in meaning.items() if len(longs) > 1}
    assert not clashes


def test_the_clap_source_is_called_clap_everywhere(helps):
    texts = helps()
    for command in ("generate", "eval", "download"):
        rows = {words[0].split(",")[0]: words for words in option_rows(texts[command])}
        assert "--clap" in rows, command
        assert "REPO|DIR" in rows["--clap"], command


def test_every_option_and_argument_shows_what_it_takes(helps):
    generic = {
        command: [line.strip() for line in text.splitlines() if GENERIC.search(line)]
        for command, text in helps().items()
    }
    assert {command: lines for command, lines in generic.items() if lines} == {}


@needs_script
def test_help_imports_neither_torch_nor_numpy():
    """`fluxmusic --help` (measured at about 0.2 s, see the README) stays light: none of the
    numeric or model libraries is imported to show any command's help."""
    heavy = ("torch", "numpy", "scipy", "transformers", "diffusers", "soundfile", "safetensors")
    for command in ([], *COMMANDS):
        env = script_env({"PYTHONPROFILEIMPORTTIME": "1"})
        args = [str(FLUXMUSIC), *command, "--help"]
        proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120)
        assert proc.returncode == 0, proc.stderr
        imported = {m.split("|")[-1].strip().split(".")[0] for m in proc.stderr.splitlines()}
        assert "fluxmusic_cli" in imported
        assert not imported & set(heavy), command
