"""The options every music-making command shares, declared once and added to a command by
`@shared_options`.

Each group is a frozen dataclass whose fields are the options (the field's metadata holds the
option's `Annotated` alias, its default is the option's default), so a typo in an option name
is an attribute error every tool sees. A decorated command declares only its own parameters
plus `shared: Shared`; the decorator extends its signature (which Typer reads) with the
groups' options and hands their values to the command as one `Shared`. Defaults come from the
engine, so `--help` shows what will run; the weight sources' defaults come from
`cli/config.py` (flag > environment > config file > built-in), resolved when the command runs.
A command can declare one of them otherwise (batch's `--seed`) or leave it out (vary's axes are
its own); a left-out option keeps its default.
"""

from __future__ import annotations

import functools
import inspect
import shlex
import typing
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from enum import Enum
from typing import TYPE_CHECKING, Any

from fluxmusic_cli.cli import config, tiny
from fluxmusic_cli.cli import options as opt
from fluxmusic_cli.engine.requests import (
    DEFAULT_GUIDANCE,
    DEFAULT_NEGATIVE_PROMPT,
    DEFAULT_STEPS,
    ClipSettings,
    EngineOptions,
)
from fluxmusic_cli.engine.sampling import TRAINED_SECONDS

if TYPE_CHECKING:
    from fluxmusic_cli.output import ClipWriter

_ENGINE = EngineOptions()


def option(annotation: Any, default: Any, cli_default: Any = None) -> Any:
    """A group field that is the command-line option `annotation` with `default` (on the command
    line `cli_default`, when given: a `config.Default` resolved as the command runs)."""
    meta = {"option": annotation, "cli_default": default if cli_default is None else cli_default}
    return field(default=default, metadata=meta)


def source(annotation: Any, key: str) -> Any:
    """A weight-source field: built in when the group is made in code, from `cli/config.py`
    (environment, config file, built-in) on the command line."""
    return option(annotation, config.SOURCES[key].builtin, config.Default(key))


@dataclass(frozen=True)
class EngineGroup:
    """Which weights, where they run (fixed for an engine's life), and downloads."""

    model: str = source(opt.Model, "model")
    t5: str = source(opt.T5, "t5")
    clap: str = source(opt.Clap, "clap")
    vae_vocoder: str = source(opt.VaeVocoder, "vae_vocoder")
    encoders: str = option(opt.EncodersOpt, _ENGINE.encoders)
    conditioning: str = option(opt.ConditioningOpt, _ENGINE.conditioning)
    device: str = option(opt.DeviceOpt, _ENGINE.device)
    dtype: str = option(opt.DtypeOpt, _ENGINE.dtype)
    memory: str = option(opt.MemoryOpt, _ENGINE.memory)
    token: str | None = option(opt.Token, None)
    compile_model: bool = option(opt.Compile, _ENGINE.compile)
    threads: int | None = option(opt.Threads, None)
    lora: list[str] | None = option(opt.Lora, None)
    text_device: str = option(opt.TextDeviceOpt, _ENGINE.text_device)
    yes: bool = option(opt.Yes, False)

    @property
    def sources(self) -> dict[str, str]:
        """The four weight sources as given (config keys: model, t5, clap, vae_vocoder)."""
        return {
            "model": self.model,
            "t5": self.t5,
            "clap": self.clap,
            "vae_vocoder": self.vae_vocoder,
        }

    def engine_sources(self) -> dict[str, str]:
        """The sources the engine loads: `--model tiny` becomes the tiny bundle's four (written
        to the tool cache on first use, and said to make noise)."""
        if self.model != tiny.NAME:
            return self.sources
        return tiny.engine_sources(self.sources)

    def use_flags(self, model: str | None = None) -> str:
        """The flags that point another command at these weights (with `model`, e.g. a
        fine-tuned file, as the transformer): --model and every source that is not built in."""
        sources = self.sources
        if sources["model"] == tiny.NAME:
            if model is None:
                return "--model tiny"
            sources = tiny.bundle_sources()  # a tiny-width model needs the tiny encoders
        if model is not None:
            sources["model"] = model
        flags = [("--model", sources["model"])]
        flags += [
            (config.SOURCES[k].flag, v)
            for k, v in sources.items()
            if k != "model" and not config.is_builtin(k, v)
        ]
        return " ".join(f"{flag} {shlex.quote(value)}" for flag, value in flags)

    def engine_options(self, **overrides: Any) -> EngineOptions:
        """The engine's options from these values (fields of the same name, but the sources,
        which `--model tiny` may change, and the renamed and parsed ones below; `yes` is the
        command's, not the engine's)."""
        values = {
            _ENGINE_FIELD.get(f.name, f.name): getattr(self, f.name)
            for f in fields(self)
            if f.name not in ("yes", "lora", *self.sources)
        }
        values.update(self.engine_sources())
        values["loras"] = opt.loras(self.lora)
        values.update(overrides)
        return EngineOptions(**values)


# EngineOptions fields whose option has another name.
_ENGINE_FIELD = {"compile_model": "compile"}


@dataclass(frozen=True)
class SamplingGroup:
    """How each clip is sampled."""

    steps: int = option(opt.Steps, DEFAULT_STEPS)
    guidance: float = option(opt.Guidance, DEFAULT_GUIDANCE)
    negative_prompt: str = option(opt.Negative, DEFAULT_NEGATIVE_PROMPT)
    seed: int | None = option(opt.Seed, None)
    # Fewer forward passes (off by default).
    guidance_interval: str | None = option(opt.GuidanceIntervalOpt, None)
    cache: float | None = option(opt.CacheOpt, None)


@dataclass(frozen=True)
class LengthGroup:
    """The clip length, for the commands that make clips from nothing (generate declares its
    own, first in its Sampling panel; the editing commands take the length from their input)."""

    duration: float = option(opt.Duration, TRAINED_SECONDS)


@dataclass(frozen=True)
class OutputGroup:
    """How clips are written and what the command says."""

    sample_rate: int = option(opt.SampleRate, 16000)
    peak_normalize: bool = option(opt.PeakNormalize, False)
    save_latent: bool = option(opt.SaveLatent, False)
    force: bool = option(opt.Force, False)
    json_out: bool = option(opt.Json, False)
    quiet: bool = option(opt.Quiet, False)

    def clip_writer(
        self, *, overwrite: bool = True, stdout: Callable[[bytes], None] | None = None
    ) -> ClipWriter:
        """How the clips are written (`stdout` for `-o -`; without `overwrite`, a file that
        appeared since the target was checked is refused)."""
        from fluxmusic_cli.output import ClipWriter

        return ClipWriter(
            sample_rate=self.sample_rate,
            peak_normalize=self.peak_normalize,
            save_latent=self.save_latent,
            overwrite=overwrite,
            stdout=stdout,
        )


@dataclass(frozen=True)
class ClientGroup:
    """Where the clips are made: here, or on a `fluxmusic serve` (cli/remote.py)."""

    server: str | None = option(opt.ServerOpt, None)
    local: bool = option(opt.LocalOpt, False)


GROUP_TYPES: dict[str, type] = {
    "engine": EngineGroup,
    "sampling": SamplingGroup,
    "length": LengthGroup,
    "output": OutputGroup,
    "client": ClientGroup,
}


def _typer_default(annotation: Any, default: Any) -> Any:
    """A choice option's default as its enum member (what Typer shows and compares)."""
    kind = typing.get_args(annotation)[0] if typing.get_args(annotation) else annotation
    if isinstance(kind, type) and issubclass(kind, Enum) and default is not None:
        return kind(default)
    return default


# group -> option name -> (annotation, default), in the order --help lists them.
GROUPS: dict[str, dict[str, tuple[Any, Any]]] = {
    name: {
        f.name: (
            f.metadata["option"],
            _typer_default(f.metadata["option"], f.metadata["cli_default"]),
        )
        for f in fields(cls)
    }
    for name, cls in GROUP_TYPES.items()
}


@dataclass(frozen=True)
class Shared:
    """The values of the shared options, by group; an option a command does not take keeps
    its default."""

    engine: EngineGroup = field(default_factory=EngineGroup)
    sampling: SamplingGroup = field(default_factory=SamplingGroup)
    length: LengthGroup = field(default_factory=LengthGroup)
    output: OutputGroup = field(default_factory=OutputGroup)
    client: ClientGroup = field(default_factory=ClientGroup)

    @classmethod
    def of(cls, values: dict[str, Any]) -> Shared:
        """The groups from option values (choices arrive as enums)."""
        plain = {k: v.value if isinstance(v, Enum) else v for k, v in values.items()}
        return cls(
            **{
                name: group(**{f.name: plain[f.name] for f in fields(group) if f.name in plain})
                for name, group in GROUP_TYPES.items()
            }
        )

    def clip_settings(self, cls: type[ClipSettings] = ClipSettings, **more: Any) -> Any:
        """The sampling options as the engine's settings (`cls` adds `more`)."""
        s = self.sampling
        return cls(
            negative_prompt=s.negative_prompt,
            steps=s.steps,
            guidance=s.guidance,
            encoders=self.engine.encoders,
            guidance_interval=s.guidance_interval,
            cache=s.cache,
            **more,
        )


def shared_options(*groups: str, **changes: tuple[Any, Any] | None):
    """Add the options of `groups` ("sampling", "length", "engine", "output", "client") to a
    command.

    `changes` fit the groups to one command: NAME=(annotation, default) declares that option
    otherwise, in its place; NAME=None leaves it out (for a command without it, or with its
    own of that name, which then arrives as the command's own parameter).
    """
    table = {name: spec for group in groups for name, spec in GROUPS[group].items()}
    unknown = sorted(set(changes) - set(table))
    if unknown:
        raise TypeError(f"Not shared options of {groups}: {', '.join(unknown)}.")
    table = {name: changes.get(name, spec) for name, spec in table.items()}
    table = {name: spec for name, spec in table.items() if spec is not None}

    def decorate(func):
        signature = inspect.signature(func, eval_str=True)
        own = [p for p in signature.parameters.values() if p.name != "shared"]
        twice = sorted({p.name for p in own} & set(table))
        if twice:
            raise TypeError(
                f"{func.__name__} declares shared options itself: {', '.join(twice)}; leave "
                "them out of the group (NAME=None)."
            )
        added = [
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=ann)
            for name, (ann, default) in table.items()
        ]

        @functools.wraps(func)
        def command(*args: Any, **kwargs: Any) -> Any:
            values = {name: kwargs.pop(name) for name in table}
            return func(*args, **kwargs, shared=Shared.of(values))

        annotations = {p.name: p.annotation for p in own if p.annotation is not p.empty}
        annotations.update({name: ann for name, (ann, _) in table.items()})
        command.__annotations__ = annotations
        command.__signature__ = signature.replace(parameters=[*own, *added])
        return command

    return decorate
