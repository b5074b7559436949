"""The generation record: what made a clip, stored beside it and inside it, and read back.

Every output gets a sidecar `NAME.json` holding the whole record, and compact tags in the
audio file itself (title = prompt, comment = settings) where the format has tags. The engine
fills a `GenerationRecord` with the settings and provenance of a clip, the writer adds the
output fields; the record gives the tags, the options that replay it, and the fields a batch
compares before it counts a clip on disk as finished.
"""

from __future__ import annotations

import copy
import json
import platform
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from fluxmusic_cli import __version__
from fluxmusic_cli.errors import UsageError

# The layout of the records this version writes. Records without a "schema" field were
# written before it was added: schema 1, read the same way.
SCHEMA = 2

# Record fields that are command options, with the option name they replay into.
_REPLAYED = {
    "negative_prompt": "negative_prompt",
    "steps": "steps",
    "guidance": "guidance",
    "duration": "duration",
    "encoders": "encoders",
    "conditioning": "conditioning",
    "device": "device",
    "dtype": "dtype",
    "t5": "t5",
    "clap": "clap",
    "vae_vocoder": "vae_vocoder",
    "output_sample_rate": "sample_rate",
    "peak_normalize": "peak_normalize",
    # Fewer forward passes (absent or null: off).
    "guidance_interval": "guidance_interval",
    "cache": "cache",
    "text_device": "text_device",
    # Long-form, loops and edits.
    "context": "context",
    "loop": "loop",
    "seam": "seam",
    "strength": "strength",
    "regions": "region",
    "add": "add",
    "to": "to",
    "crossfade": "crossfade",
}

# The settings written into an audio file's comment tag (the sidecar has everything).
_TAGGED = (
    "operation",
    "seed",
    "steps",
    "guidance",
    "duration",
    "negative_prompt",
    "encoders",
    "conditioning",
    "device",
    "dtype",
)


# Settings whose null means something (off, or left to the library), so a record writes them
# even when null; every other field that is None is left out.
_NULLABLE = frozenset({"threads", "compile_scope", "guidance_interval", "cache", "lufs"})


@dataclass(kw_only=True)
class GenerationRecord:
    """What made one clip, field by field, in the order the sidecar lists them.

    The engine fills the settings and provenance, the writer the output fields (from
    `output_sample_rate` on). `extra` holds the settings only some operations have (windows,
    loop seams, remix strength, regions, the edited input, ...) and every field this version
    does not know (a newer version's), so reading and writing a record loses nothing.
    """

    schema: int = SCHEMA
    tool: str | None = None
    version: str | None = None
    created: str | None = None  # ISO 8601, UTC
    operation: str | None = None  # generate, remix, repaint, extend or loop
    negative_prompt: str | None = None
    steps: int | None = None
    guidance: float | None = None
    duration: float | None = None  # seconds of audio made
    extra: dict[str, Any] = field(default_factory=dict)
    encoders: str | None = None
    conditioning: str | None = None
    latent_frames: int | None = None
    sample_rate: int | None = None  # the model's rate (16 kHz)
    model: dict[str, Any] | None = None  # source, file, sha256, variant, config
    loras: list[dict[str, Any]] | None = None  # file, sha256, scale of each merged LoRA
    t5: str | None = None  # source identities: hub:owner/name@revision or local:/path
    clap: str | None = None
    vae_vocoder: str | None = None
    device: str | None = None
    text_device: str | None = None
    dtype: str | None = None
    dtype_reason: str | None = None  # "forced by --dtype", or what `--dtype auto` found
    memory_policy: str | None = None
    forward_batch: int | None = None
    threads: int | None = None
    compile: bool | None = None
    compile_scope: str | None = None
    guidance_interval: list[float] | None = None  # [lo, hi]: guided only while lo <= t <= hi
    cache: float | None = None  # First-Block Cache threshold
    timings: dict[str, float] | None = None
    versions: dict[str, str] | None = None  # torch, diffusers, transformers, python
    prompt: str
    seed: int
    # The writer's fields.
    output_sample_rate: int | None = None
    peak_normalize: bool | None = None
    peak: float | None = None
    lufs: float | None = None
    output: str | None = None  # the audio file's absolute path, or "-" for stdout
    format: str | None = None
    latent_file: str | None = None  # NAME.latent.safetensors, when the latent was saved

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GenerationRecord:
        """The record a sidecar or manifest line holds; one without "schema" is schema 1."""
        if "prompt" not in data or "seed" not in data:
            raise ValueError("not a fluxmusic generation record (no prompt or seed)")
        _check_kinds(data)
        known = {k: v for k, v in data.items() if k in _FIELDS}
        extra = {k: v for k, v in data.items() if k not in _FIELDS}
        return cls(**{"schema": 1, **known}, extra=extra)

    def to_json(self) -> dict[str, Any]:
        """The record as the sidecar stores it."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "extra":
                out.update(value)
            elif value is not None or f.name in _NULLABLE:
                out[f.name] = value
        return out

    def lookup(self, key: str, default: Any = None) -> Any:
        """A field by its JSON name: a known field, else one of `extra` (an operation's own
        settings, or a newer version's field)."""
        if key in _FIELDS:
            value = getattr(self, key)
            return default if value is None else value
        return self.extra.get(key, default)

    def tags(self) -> dict[str, str]:
        """Tags to embed: the prompt as title, the settings and model as a JSON comment."""
        data = self.to_json()
        model = self.model or {}
        settings = {k: data[k] for k in _TAGGED if k in data}
        settings["model"] = model.get("variant") or model.get("source")
        settings["model_sha256"] = model.get("sha256")
        return {
            "title": self.prompt,
            "comment": "fluxmusic " + json.dumps(settings, separators=(",", ":")),
            "software": f"fluxmusic {__version__}",
        }

    def replay_options(self) -> dict[str, Any]:
        """Option values that reproduce the clip: prompt, seed, model and every sampling
        setting, each as its command option takes it."""
        data = self.to_json()
        out: dict[str, Any] = {"prompt": self.prompt, "seed": int(self.seed)}
        for key, option in _REPLAYED.items():
            if data.get(key) is not None:
                out[option] = data[key]
        if out.get("to") is not None:  # an extension asked for by its total length
            out.pop("add", None)
        if isinstance(out.get("guidance_interval"), list):  # [lo, hi] -> the LO:HI it takes
            lo, hi = out["guidance_interval"]
            out["guidance_interval"] = f"{lo!r}:{hi!r}"
        if "region" in out:  # [[start, end or None], ...] -> the --region values
            out["region"] = [f"{a!r}:{'' if b is None else repr(b)}" for a, b in out["region"]]
        model = self.model or {}
        if model.get("variant"):
            out["model"] = model["variant"]
        elif model.get("file"):
            out["model"] = model["file"]
        if self.loras:
            out["lora"] = [f"{item['file']}:{item['scale']:g}" for item in self.loras]
        for key in ("t5", "clap", "vae_vocoder"):
            value = out.get(key)
            if isinstance(value, str):
                out[key] = _source_value(value)
        return out

    def differences(self, expected: Mapping[str, Any]) -> list[str]:
        """`field had -> wants` for each field of `expected` this record differs in: what keeps
        a batch from counting the clip as the one it plans. The model is compared by its
        source and LoRAs by file and scale, as a plan knows them."""
        out = []
        for key, want in expected.items():
            have = self.lookup(key)
            if key == "model" and isinstance(have, dict):
                have = have.get("source")
            if key == "loras":  # adapters are the same when their files and scales are
                have = [f"{x['file']}:{x['scale']:g}" for x in have or []]
            if isinstance(want, float) and isinstance(have, (int, float)):
                same = float(have) == want
            else:
                same = have == want
            if not same:
                out.append(f"{key} {have!r} -> {want!r}")
        return out


_FIELDS = frozenset(f.name for f in fields(GenerationRecord)) - {"extra"}


# -- what each field must hold -----------------------------------------------------------------

_NUMBER = (int, float)
# The settings an operation adds (kept in `extra`) that replay reads, with what they must hold.
_EXTRA_KINDS: dict[str, tuple[type, ...]] = {
    "context": _NUMBER,
    "seam": _NUMBER,
    "strength": _NUMBER,
    "add": _NUMBER,
    "to": _NUMBER,
    "crossfade": _NUMBER,
    "loop": (bool,),
    "windows": (int,),
    "regions": (list,),
    "input": (dict,),
}
_KIND_WORDS = {int: "a whole number", float: "a number", str: "text", bool: "true or false"}
_KIND_WORDS.update({dict: "an object", list: "a list"})


def _kinds_of_fields() -> dict[str, tuple[type, ...]]:
    """What each known field may hold, read off the dataclass's annotations (None aside)."""
    import typing

    hints = typing.get_type_hints(GenerationRecord)
    out: dict[str, tuple[type, ...]] = {}
    for name in _FIELDS:
        kinds = [typing.get_origin(k) or k for k in typing.get_args(hints[name]) or [hints[name]]]
        kinds = [k for k in kinds if k is not type(None)]
        out[name] = _NUMBER if float in kinds else tuple(kinds)
    return out


def _check_kinds(data: Mapping[str, Any]) -> None:
    """Raise ValueError saying which field holds the wrong kind of value (a null is an unset
    field, except for the prompt and seed every record has)."""
    kinds = {**_FIELD_KINDS, **_EXTRA_KINDS}
    for key in ("prompt", "seed"):
        if data.get(key) is None:
            raise ValueError(f"its {key} is null")
    for key, value in data.items():
        want = kinds.get(key)
        if want is None or value is None:
            continue
        wrong_bool = isinstance(value, bool) and bool not in want
        if wrong_bool or not isinstance(value, want):
            raise ValueError(f"its {key} is {json.dumps(value)[:40]}, not {_KIND_WORDS[want[-1]]}")
    interval = data.get("guidance_interval")
    if interval is not None and (len(interval) != 2 or not all(_is_number(v) for v in interval)):
        raise ValueError("its guidance_interval is not a pair of numbers")
    for lora in data.get("loras") or []:
        if not (isinstance(lora, dict) and isinstance(lora.get("file"), str)):
            raise ValueError("one of its loras has no file")
        if not _is_number(lora.get("scale")):
            raise ValueError("one of its loras has no numeric scale")
    for region in data.get("regions") or []:
        ok = isinstance(region, list) and len(region) == 2 and _is_number(region[0])
        if not ok or not (region[1] is None or _is_number(region[1])):
            raise ValueError("one of its regions is not [start, end] in seconds")


def _is_number(value: Any) -> bool:
    return isinstance(value, _NUMBER) and not isinstance(value, bool)


_FIELD_KINDS = _kinds_of_fields()


# -- building records ------------------------------------------------------------------------


@dataclass(frozen=True)
class Provenance:
    """What made a clip apart from its settings: the weights, and where and how they ran
    (read off the engine's model store)."""

    model: dict[str, Any]  # source, file, sha256, variant, config
    loras: list[dict[str, Any]]
    t5: str
    clap: str
    vae_vocoder: str
    device: str
    text_device: str
    dtype: str
    dtype_reason: str
    memory_policy: str
    forward_batch: int
    threads: int | None
    compile: bool
    compile_scope: str | None


class SampledWith(Protocol):
    """The sampling settings a record states (the engine's ClipSettings)."""

    negative_prompt: str
    steps: int
    guidance: float
    guidance_interval: tuple[float, float] | None
    cache: float | None


@dataclass(frozen=True)
class Made:
    """What one engine call made, besides its prompts and seeds."""

    operation: str
    duration: float  # seconds of audio made
    encoders: str
    conditioning: str
    latent_frames: int
    sample_rate: int
    timings: dict[str, float]
    extra: dict[str, Any] = field(default_factory=dict)  # what only this operation has


def new_records(
    provenance: Provenance,
    settings: SampledWith,
    made: Made,
    pairs: Iterable[tuple[str, int]],
) -> list[GenerationRecord]:
    """One record per (prompt, seed) of an engine call."""
    interval = settings.guidance_interval
    base = GenerationRecord(
        tool="fluxmusic",
        version=__version__,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        operation=made.operation,
        negative_prompt=settings.negative_prompt,
        steps=settings.steps,
        guidance=settings.guidance,
        duration=made.duration,
        encoders=made.encoders,
        conditioning=made.conditioning,
        latent_frames=made.latent_frames,
        sample_rate=made.sample_rate,
        **copy.deepcopy(asdict(provenance)),  # its fields are the record's, by name
        guidance_interval=list(interval) if interval else None,
        cache=settings.cache,
        timings={k: round(v, 3) for k, v in made.timings.items()},
        versions=library_versions(),
        prompt="",
        seed=0,
    )
    return [replace(base, prompt=p, seed=s, extra=dict(made.extra)) for p, s in pairs]


def long_form_fields(
    *,
    loop: bool,
    long_form: bool,
    windows: int,
    context: float,
    seam: float | None,
    seam_auto: bool = False,
) -> dict[str, Any]:
    """What a generation's record says of long-form windows and loop seams (nothing for
    one window): the seam used, and whether the tool chose it."""
    if not (loop or long_form):
        return {}
    out: dict[str, Any] = {"windows": windows, "loop": loop}
    if long_form:
        out["context"] = context
    if loop:
        out["seam"] = seam
        out["seam_auto"] = seam_auto
    return out


def library_versions() -> dict[str, str]:
    """The library versions a record names."""
    import diffusers
    import torch
    import transformers

    return {
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
    }


# -- files -----------------------------------------------------------------------------------


def sidecar_path(audio_path: Path) -> Path:
    """`song.mp3` -> `song.json`."""
    return Path(audio_path).with_suffix(".json")


def sidecar_bytes(record: GenerationRecord) -> bytes:
    """The sidecar file's contents for `record`."""
    return (json.dumps(record.to_json(), indent=2, default=str) + "\n").encode("utf-8")


def record_from_tags(tags: dict[str, str]) -> GenerationRecord | None:
    """Rebuild what the tags hold (a subset of the record); None when they are not ours."""
    comment = tags.get("comment", "")
    if not comment.startswith("fluxmusic "):
        return None
    try:
        settings = json.loads(comment[len("fluxmusic ") :])
    except json.JSONDecodeError:
        return None
    if not isinstance(settings, dict):
        return None
    model = {"variant": settings.pop("model", None), "sha256": settings.pop("model_sha256", None)}
    data = {"prompt": tags.get("title", ""), **settings, "model": model, "from_tags": True}
    try:
        return GenerationRecord.from_json(data)
    except ValueError:
        return None


def read_record(path: Path) -> GenerationRecord:
    """The record of `path`: a record JSON itself, an audio file's sidecar, or its tags.

    A sidecar that cannot be read as a record is only a convenience beside the audio: it is
    passed over with a note and the tags are read instead."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"No such file: {path}")
    if path.suffix.lower() == ".json":
        return _load_json(path)
    side = sidecar_path(path)
    damaged = None
    if side.is_file():
        try:
            return _load_json(side)
        except UsageError as exc:
            damaged = exc.message
    from fluxmusic_cli.audio import read_tags

    record = record_from_tags(read_tags(path))
    if damaged is not None:
        from fluxmusic_cli import notices

        notices.note(f"{damaged} It was ignored.")
    if record is None:
        why = f"{side.name} is damaged" if damaged else f"no {side.name} beside it"
        raise UsageError(f"{path} has no generation record: {why} and no fluxmusic tags.")
    return record


def _load_json(path: Path) -> GenerationRecord:
    from fluxmusic_cli.textfiles import read_json

    data = read_json(path, "JSON record")
    if not isinstance(data, dict) or "prompt" not in data or "seed" not in data:
        raise UsageError(f"{path} is not a fluxmusic generation record (no prompt or seed).")
    try:
        return GenerationRecord.from_json(data)
    except ValueError as exc:
        raise UsageError(f"{path} is not a usable fluxmusic generation record: {exc}.") from None


def _source_value(identity: str) -> str:
    """`hub:owner/name@main` -> `owner/name`; `local:/x` -> `/x` (what the options accept)."""
    if identity.startswith("local:"):
        return identity[len("local:") :]
    if identity.startswith("hub:"):
        return identity[len("hub:") :].rsplit("@", 1)[0]
    return identity
