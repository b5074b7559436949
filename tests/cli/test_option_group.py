"""The shared option group: every music-making command takes it, fitted to the command."""

from __future__ import annotations

import re

import pytest

from fluxmusic_cli.cli import options as opt
from fluxmusic_cli.cli.option_group import GROUPS, shared_options


def _flag(annotation) -> str:
    """An option's first name (in an `Annotated` alias Typer keeps it as the "default")."""
    info = annotation.__metadata__[0]
    names = [info.default, *info.param_decls]
    return next(n for n in names if isinstance(n, str) and n.startswith("--")).split("/")[0]


def _help_flags(run_cli, command: str) -> set[str]:
    code, out, _ = run_cli([command, "--help"])
    assert code == 0
    return set(re.findall(r"--[a-z][a-z0-9-]*", out))


@pytest.mark.parametrize(
    ("command", "groups", "left_out"),
    [
        ("generate", ("sampling", "engine", "output"), set()),
        ("remix", ("sampling", "engine", "output"), set()),
        ("batch", ("sampling", "length", "engine", "output"), set()),
        ("vary", ("sampling", "length", "engine", "output"), {"--seed", "--save-latent"}),
    ],
)
def test_each_command_takes_the_shared_options_it_does_not_leave_out(
    run_cli, command, groups, left_out
):
    shared = {_flag(ann) for g in groups for ann, _ in GROUPS[g].values()}
    flags = _help_flags(run_cli, command)
    assert shared - left_out <= flags
    assert not left_out & flags


def test_batch_declares_its_own_seed_help_and_default(run_cli):
    code, out, _ = run_cli(["batch", "--help"])
    assert code == 0
    line = next(ln for ln in out.splitlines() if "--seed" in ln)
    assert "Row n (from 1) gets seed" in line
    assert "[default: 0]" in out.split("--seed", 1)[1].split("--", 1)[0]


def test_a_command_declaring_a_shared_option_must_leave_the_groups_out():
    def command(steps: opt.Steps = 50, *, shared) -> None:
        pass

    with pytest.raises(TypeError, match="steps"):
        shared_options("sampling")(command)
    assert shared_options("sampling", steps=None)(command) is not None


def test_changing_an_option_the_groups_do_not_have_is_refused():
    with pytest.raises(TypeError, match="sample_rate"):
        shared_options("sampling", sample_rate=None)
