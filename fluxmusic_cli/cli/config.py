"""Where the weights come from when no flag names them, resolved in one place.

For each source (`--model`, `--t5`, `--clap`, `--vae-vocoder`) a flag wins, then the
environment (`FLUXMUSIC_MODEL`, `FLUXMUSIC_T5`, `FLUXMUSIC_CLAP`, `FLUXMUSIC_VAE_VOCODER`),
then the user's config file (`config.toml` in platformdirs' user config folder for fluxmusic,
keys `model`, `t5`, `clap`, `vae_vocoder`), then the built-in default. Options take a `Default`
as their default: Click calls it when a command runs (so the value still counts as a default and
`--from-record` replays over it), and `--help` shows what it gives and where from. `doctor` lists
all four with `resolve_all`.

Importing this module is cheap: platformdirs and the TOML reader load only when a default is
resolved, and the file is read only when it exists.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fluxmusic_cli.engine.sources import DEFAULT_SOURCES, Kind
from fluxmusic_cli.errors import FluxMusicError, UsageError

CONFIG_NAME = "config.toml"


@dataclass(frozen=True)
class Source:
    """One weight source the user can set: its config key, flag, variable and engine kind."""

    key: str
    flag: str
    env: str
    kind: Kind

    @property
    def builtin(self) -> str:
        return DEFAULT_SOURCES[self.kind]


SOURCES: dict[str, Source] = {
    s.key: s
    for s in (
        Source("model", "--model", "FLUXMUSIC_MODEL", "transformer"),
        Source("t5", "--t5", "FLUXMUSIC_T5", "t5"),
        Source("clap", "--clap", "FLUXMUSIC_CLAP", "clap"),
        Source("vae_vocoder", "--vae-vocoder", "FLUXMUSIC_VAE_VOCODER", "audioldm2"),
    )
}


@dataclass(frozen=True)
class Resolved:
    """A source's default: its value and where it came from (`origin` is "environment",
    "config file" or "built-in"; `where` names the variable or the file)."""

    key: str
    value: str
    origin: str
    where: str = ""

    @property
    def described(self) -> str:
        """`built-in`, `FLUXMUSIC_T5` or `config file /home/me/.config/fluxmusic/config.toml`."""
        if self.origin == "config file":
            return f"config file {self.where}"
        return self.where or self.origin


def config_file() -> Path:
    """The user's config file (it need not exist); XDG_CONFIG_HOME moves it on Linux."""
    from platformdirs import user_config_path

    return user_config_path("fluxmusic", appauthor=False) / CONFIG_NAME


def _toml() -> Any:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    return tomllib


def read_config(path: Path | None = None) -> dict[str, str]:
    """The source keys the config file sets ({} when there is no file). An unreadable file, one
    that is not TOML, an unknown key or a value that is not text is one sentence naming it."""
    path = config_file() if path is None else path
    if not path.exists():
        return {}
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"The config file {path} is not UTF-8 text.") from None
    except OSError as exc:
        raise UsageError(f"Cannot read the config file {path}: {exc.strerror or exc}.") from None
    toml = _toml()
    try:
        data = toml.loads(text)
    except toml.TOMLDecodeError as exc:
        raise UsageError(f"The config file {path} is not valid TOML ({exc}).") from None
    known = ", ".join(SOURCES)
    values: dict[str, str] = {}
    for key, value in data.items():
        if key not in SOURCES:
            raise UsageError(
                f"The config file {path} has an unknown key {key!r}; its keys are {known}."
            )
        if not isinstance(value, str) or not value.strip():
            shown = repr(value) if isinstance(value, str) else f"{type(value).__name__} {value!r}"
            raise UsageError(
                f"The config file {path} sets {key} to {shown}; it must be a name, a hub repo "
                'id or a path in quotes, e.g. t5 = "/models/t5".'
            )
        values[key] = _from_file(value.strip(), path)
    return values


def _from_file(value: str, path: Path) -> str:
    """A value as written in the file: `./x` and `../x` are relative to the file's folder."""
    if value.startswith(("./", "../", ".\\", "..\\")):
        return str((path.parent / value).resolve())
    return value


def resolve(key: str, *, config: dict[str, str] | None = None) -> Resolved:
    """The default of one source: the environment, then the config file, then the built-in."""
    source = SOURCES[key]
    env = os.environ.get(source.env, "").strip()
    if env:
        return Resolved(key, env, "environment", source.env)
    values = read_config() if config is None else config
    if key in values:
        return Resolved(key, values[key], "config file", str(config_file()))
    return Resolved(key, source.builtin, "built-in")


def resolve_all() -> dict[str, Resolved]:
    """Every source's default (the config file read once)."""
    needs_file = any(not os.environ.get(s.env, "").strip() for s in SOURCES.values())
    config = read_config() if needs_file else {}
    return {key: resolve(key, config=config) for key in SOURCES}


def is_builtin(key: str, value: str) -> bool:
    return value == SOURCES[key].builtin


class Default:
    """The default of a source option: called when a command runs (the resolved value), shown by
    `--help` as that value and, when it is not built in, where it came from."""

    def __init__(self, key: str) -> None:
        self.key = key

    def __call__(self) -> str:
        return resolve(self.key).value

    def __str__(self) -> str:
        try:
            found = resolve(self.key)
        except FluxMusicError:
            return f"{SOURCES[self.key].builtin}; the config file cannot be read"
        if found.origin == "built-in":
            return found.value
        return f"{found.value}, from {found.described}"

    def __repr__(self) -> str:
        return f"Default({self.key!r})"
