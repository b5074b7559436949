"""One item of a run as the body of `POST /v1/jobs`: the one place an item's values become a
job's fields.

A job's fields are its command's long options with dashes as underscores (the server reads
them with the command's own parser). A client sends the prompt, the seed and the format of
every clip, and of the rest only what the user gave (typed or replayed: `given`) and what the
run set itself (a prompt list's columns, a grid's cells: values that differ from the
defaults); everything else is left to the server, which applies its own defaults.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import fields
from typing import Any

from fluxmusic_cli.engine.requests import GenerateSettings
from fluxmusic_cli.output import ClipWriter
from fluxmusic_cli.runs.plan import Edit, Item


def command_of(item: Item) -> str:
    """The command whose job makes `item`: generate, or the edit's operation."""
    return "generate" if item.edit is None else item.edit.operation


def _interval(value: tuple[float, float] | None) -> str | None:
    return None if value is None else f"{value[0]!r}:{value[1]!r}"


def _regions(regions: tuple[tuple[float, float | None], ...]) -> list[str] | None:
    """Regions as --region takes them (`START:END`, `START:` to the end)."""
    return [f"{a!r}:{'' if b is None else repr(b)}" for a, b in regions] or None


# Job field -> (how to read it off an item, its default). The sampling fields come from the
# item's settings; a clip made from noise adds its shape; an edit its own values.
Reader = Callable[[Item], Any]
_SAMPLING: dict[str, Reader] = {
    "negative_prompt": lambda i: i.settings.negative_prompt,
    "steps": lambda i: i.settings.steps,
    "guidance": lambda i: i.settings.guidance,
    "encoders": lambda i: i.settings.encoders,
    "guidance_interval": lambda i: _interval(i.settings.guidance_interval),
    "cache": lambda i: i.settings.cache,
    "sample_rate": lambda i: i.writer.sample_rate,
    "peak_normalize": lambda i: i.writer.peak_normalize,
    "save_latent": lambda i: i.writer.save_latent,
}
_SHAPE: dict[str, Reader] = {
    "duration": lambda i: i.settings.duration,
    "loop": lambda i: i.settings.loop,
    "seam": lambda i: i.settings.seam,
    "context": lambda i: i.settings.context,
}
_EDIT: dict[str, Reader] = {
    "strength": lambda i: i.edit.strength,
    "region": lambda i: _regions(i.edit.regions),
    "add": lambda i: i.edit.add,
    "to": lambda i: i.edit.to,
    "context": lambda i: i.edit.context,
    "seam": lambda i: i.edit.seam,
    "crossfade": lambda i: i.edit.crossfade,
}


def _defaults() -> dict[str, Any]:
    """Each field's default, read off the types the command line fills (their defaults are
    the options')."""
    out: dict[str, Any] = {}
    for cls in (GenerateSettings, ClipWriter, Edit):
        out.update({f.name: f.default for f in fields(cls) if f.name != "source"})
    out["region"] = None
    out["guidance_interval"] = None
    return out


DEFAULTS = _defaults()


def job_body(
    item: Item,
    *,
    given: Collection[str] = (),
    defaults: Mapping[str, Any] | None = None,
    input_ref: str | None = None,
) -> dict[str, Any]:
    """The job that makes `item` on a server. `defaults` holds the server's own value of an
    option a job may leave out (its `encoders`), over the command line's; `input_ref` is an
    edit's recording on the server ("upload:ID" or "job:ID")."""
    known = {**DEFAULTS, **(defaults or {})}
    readers = {**_SAMPLING, **(_SHAPE if item.edit is None else _EDIT)}
    body: dict[str, Any] = {
        "command": command_of(item),
        "prompt": item.prompt,
        "seed": item.seed,
        "format": item.fmt,
    }
    if input_ref is not None:
        body["input"] = input_ref
    for name, read in readers.items():
        value = read(item)
        if value is not None and (name in given or value != known.get(name)):
            body[name] = value
    return body
