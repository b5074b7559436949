"""The options every music-making command shares, declared once and added to a command by
`@shared_options`.

A decorated command declares only its own parameters plus `shared: Shared`; the decorator
extends its signature (which Typer reads) with the engine, sampling and output options, and
hands their values to the command as one `Shared` object, from which `EngineOptions` are built
in one place. Defaults come from the engine, so `--help` shows what will run. A command can
declare one of them otherwise (batch's `--seed`) or leave it out (vary's axes are its own).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from enum import Enum
from typing import TYPE_CHECKING, Any

from fluxmusic_cli.cli import options as opt
from fluxmusic_cli.engine.pipeline import (
    DEFAULT_GUIDANCE,
    DEFAULT_NEGATIVE_PROMPT,
    DEFAULT_STEPS,
    EngineOptions,
)
from fluxmusic_cli.engine.sampling import TRAINED_SECONDS
from fluxmusic_cli.engine.sources import DEFAULT_SOURCES

if TYPE_CHECKING:
    from fluxmusic_cli.output import ClipWriter

_DEFAULTS = EngineOptions()

# name -> (annotation, default), in the order --help lists them.
ENGINE: dict[str, tuple[Any, Any]] = {
    "model": (opt.Model, DEFAULT_SOURCES["transformer"]),
    "t5": (opt.T5, DEFAULT_SOURCES["t5"]),
    "clap": (opt.Clap, DEFAULT_SOURCES["clap"]),
    "vae_vocoder": (opt.VaeVocoder, DEFAULT_SOURCES["audioldm2"]),
    "encoders": (opt.EncodersOpt, opt.EncodersChoice(_DEFAULTS.encoders)),
    "conditioning": (opt.ConditioningOpt, opt.ConditioningChoice(_DEFAULTS.conditioning)),
    "device": (opt.DeviceOpt, opt.DeviceChoice(_DEFAULTS.device)),
    "dtype": (opt.DtypeOpt, opt.DtypeChoice(_DEFAULTS.dtype)),
    "memory": (opt.MemoryOpt, opt.MemoryChoice(_DEFAULTS.memory)),
    "token": (opt.Token, None),
    "compile_model": (opt.Compile, _DEFAULTS.compile),
    "threads": (opt.Threads, None),
    "lora": (opt.Lora, None),
    # Where the encoders run, and fewer forward passes (off by default).
    "text_device": (opt.TextDeviceOpt, opt.TextDeviceChoice(_DEFAULTS.text_device)),
    "guidance_interval": (opt.GuidanceIntervalOpt, None),
    "cache": (opt.CacheOpt, None),
    "yes": (opt.Yes, False),
}
SAMPLING: dict[str, tuple[Any, Any]] = {
    "steps": (opt.Steps, DEFAULT_STEPS),
    "guidance": (opt.Guidance, DEFAULT_GUIDANCE),
    "negative_prompt": (opt.Negative, DEFAULT_NEGATIVE_PROMPT),
    "seed": (opt.Seed, None),
}
# The clip length, for the commands that make clips from nothing (generate declares its own,
# first in its Sampling panel; the editing commands take the length from their input).
LENGTH: dict[str, tuple[Any, Any]] = {
    "duration": (opt.Duration, TRAINED_SECONDS),
}
OUTPUT: dict[str, tuple[Any, Any]] = {
    "sample_rate": (opt.SampleRate, 16000),
    "peak_normalize": (opt.PeakNormalize, False),
    "save_latent": (opt.SaveLatent, False),
    "force": (opt.Force, False),
    "json_out": (opt.Json, False),
    "quiet": (opt.Quiet, False),
}
GROUPS = {"engine": ENGINE, "sampling": SAMPLING, "length": LENGTH, "output": OUTPUT}
# EngineOptions fields whose option has another name.
_ENGINE_FIELD = {"compile_model": "compile"}
_NOT_ENGINE = ("yes",)


class Shared:
    """The values of the shared options; enums arrive as their values."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = {k: v.value if isinstance(v, Enum) else v for k, v in values.items()}

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["values"][name]
        except KeyError:
            raise AttributeError(name) from None

    def engine_options(self, **overrides: Any) -> EngineOptions:
        fields = {
            _ENGINE_FIELD.get(k, k): self.values[k]
            for k in ENGINE
            if k not in _NOT_ENGINE and k in self.values
        }
        if "lora" in fields:
            fields["loras"] = opt.loras(fields.pop("lora"))
        fields.update(overrides)
        return EngineOptions(**fields)

    def clip_writer(self, stdout: Callable[[bytes], None] | None = None) -> ClipWriter:
        """How the clips are written, from the output options (`stdout` for `-o -`)."""
        from fluxmusic_cli.output import ClipWriter

        return ClipWriter(
            sample_rate=self.values["sample_rate"],
            peak_normalize=self.values["peak_normalize"],
            save_latent=self.values.get("save_latent", False),
            stdout=stdout,
        )


def shared_options(*groups: str, **changes: tuple[Any, Any] | None):
    """Add the options of `groups` ("sampling", "length", "engine", "output") to a command.

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
            return func(*args, **kwargs, shared=Shared(values))

        annotations = {p.name: p.annotation for p in own if p.annotation is not p.empty}
        annotations.update({name: ann for name, (ann, _) in table.items()})
        command.__annotations__ = annotations
        command.__signature__ = signature.replace(parameters=[*own, *added])
        return command

    return decorate
