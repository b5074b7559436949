"""The generation record: what made a clip, stored beside it and inside it, and read back.

Every output gets a sidecar `NAME.json` holding the whole record, and compact tags in the
audio file itself (title = prompt, comment = settings) where the format has tags. A record can
be replayed: `replay_settings` turns it back into the options that made the clip.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fluxmusic_cli import __version__
from fluxmusic_cli.errors import UsageError

RECORD_SCHEMA = 1

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


def sidecar_path(audio_path: Path) -> Path:
    """`song.mp3` -> `song.json`."""
    return Path(audio_path).with_suffix(".json")


def sidecar_bytes(record: dict[str, Any]) -> bytes:
    """The sidecar file's contents for `record`."""
    return (json.dumps(record, indent=2, default=str) + "\n").encode("utf-8")


def write_sidecar(audio_path: Path, record: dict[str, Any]) -> Path:
    """Write the record next to the audio file, atomically."""
    from fluxmusic_cli import atomic

    return atomic.write_bytes(sidecar_path(audio_path), sidecar_bytes(record))


def tags_for(record: dict[str, Any]) -> dict[str, str]:
    """Tags to embed: the prompt as title, the settings and model as a JSON comment."""
    model = record.get("model") or {}
    settings = {k: record[k] for k in _TAGGED if k in record}
    settings["model"] = model.get("variant") or model.get("source")
    settings["model_sha256"] = model.get("sha256")
    return {
        "title": str(record.get("prompt", "")),
        "comment": "fluxmusic " + json.dumps(settings, separators=(",", ":")),
        "software": f"fluxmusic {__version__}",
    }


def record_from_tags(tags: dict[str, str]) -> dict[str, Any] | None:
    """Rebuild what the tags hold (a subset of the record); None when they are not ours."""
    comment = tags.get("comment", "")
    if not comment.startswith("fluxmusic "):
        return None
    try:
        settings = json.loads(comment[len("fluxmusic ") :])
    except json.JSONDecodeError:
        return None
    model = {"variant": settings.pop("model", None), "sha256": settings.pop("model_sha256", None)}
    return {"prompt": tags.get("title", ""), **settings, "model": model, "from_tags": True}


def read_record(path: Path) -> dict[str, Any]:
    """The record of `path`: a record JSON itself, an audio file's sidecar, or its tags."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"No such file: {path}")
    if path.suffix.lower() == ".json":
        return _load_json(path)
    side = sidecar_path(path)
    if side.is_file():
        return _load_json(side)
    from fluxmusic_cli.audio import read_tags

    record = record_from_tags(read_tags(path))
    if record is None:
        raise UsageError(
            f"{path} has no generation record: no {side.name} beside it and no fluxmusic tags."
        )
    return record


def _load_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"{path} is not a readable JSON record: {exc}") from None
    if not isinstance(data, dict) or "prompt" not in data or "seed" not in data:
        raise UsageError(f"{path} is not a fluxmusic generation record (no prompt or seed).")
    return data


def replay_settings(record: dict[str, Any]) -> dict[str, Any]:
    """Option values that reproduce the record: prompt, seed, model and every sampling setting."""
    out: dict[str, Any] = {"prompt": record["prompt"], "seed": int(record["seed"])}
    for field, option in _REPLAYED.items():
        if record.get(field) is not None:
            out[option] = record[field]
    if out.get("to") is not None:  # an extension asked for by its total length
        out.pop("add", None)
    if "region" in out:  # [[start, end or None], ...] -> the --region values
        out["region"] = [f"{a!r}:{'' if b is None else repr(b)}" for a, b in out["region"]]
    model = record.get("model") or {}
    if model.get("variant"):
        out["model"] = model["variant"]
    elif model.get("file"):
        out["model"] = model["file"]
    if record.get("loras"):
        out["lora"] = [f"{item['file']}:{item['scale']:g}" for item in record["loras"]]
    for key in ("t5", "clap", "vae_vocoder"):
        value = out.get(key)
        if isinstance(value, str):
            out[key] = _source_value(value)
    return out


def _source_value(identity: str) -> str:
    """`hub:owner/name@main` -> `owner/name`; `local:/x` -> `/x` (what the options accept)."""
    if identity.startswith("local:"):
        return identity[len("local:") :]
    if identity.startswith("hub:"):
        return identity[len("hub:") :].rsplit("@", 1)[0]
    return identity
