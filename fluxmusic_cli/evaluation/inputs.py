"""Which clips are in a set, what each is called, and which prompt it was made from.

A clip's id is its `name` in the folder's `manifest.jsonl` (written by `fluxmusic batch`), else
its file name without extension. Prompts come, in order of precedence, from a `--prompts`
CSV/JSONL file, the manifest, or the `NAME.json` sidecar record beside the audio.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

from fluxmusic_cli.errors import UsageError
from fluxmusic_cli.formats import SOUNDFILE_READ_SUFFIXES
from fluxmusic_cli.textfiles import read_text

AUDIO_SUFFIXES = SOUNDFILE_READ_SUFFIXES
ID_FIELDS = ("name", "id", "ytid", "file", "filename", "path")
PROMPT_FIELDS = ("prompt", "caption", "text")


@dataclass(frozen=True)
class ClipFile:
    id: str
    path: Path
    prompt: str | None = None


def listing(ids: list[str], limit: int = 8) -> str:
    shown = ", ".join(ids[:limit])
    return shown + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    for number, line in enumerate(read_text(path, "prompts file").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise UsageError(f"{path}:{number} is not valid JSON ({exc}).") from exc
        if isinstance(row, dict):
            rows.append(row)
    return rows


def _sidecar_prompt(audio: Path) -> str | None:
    """The prompt in the JSON beside the clip (its record, or any object with a "prompt"); a
    file that cannot be read as JSON is passed over, said once."""
    from fluxmusic_cli import metadata, notices
    from fluxmusic_cli.textfiles import read_json

    sidecar = metadata.sidecar_path(audio)
    if not sidecar.is_file():
        return None
    try:
        record = read_json(sidecar, "JSON record")
    except UsageError as exc:
        notices.note(f"{exc.message} Its prompt was not used.")
        return None
    prompt = record.get("prompt") if isinstance(record, dict) else None
    return prompt if isinstance(prompt, str) else None


def collect(folder: Path, label: str) -> list[ClipFile]:
    """Every audio file directly in `folder`, named and prompted; sorted by id."""
    if not folder.is_dir():
        raise UsageError(f"The {label} folder does not exist: {folder}")
    names: dict[Path, str] = {}
    prompts: dict[Path, str] = {}
    manifest = folder / "manifest.jsonl"
    if manifest.is_file():
        from fluxmusic_cli.manifest import read_lines

        for row in read_lines(manifest, strict=True).rows:
            if not isinstance(row.get("path"), str) or not row["path"]:
                continue  # not a line about a clip of this folder
            path = Path(row["path"])
            path = (path if path.is_absolute() else folder / path).resolve()
            if row.get("name"):
                names[path] = str(row["name"])
            if isinstance(row.get("prompt"), str):
                prompts[path] = row["prompt"]
    clips: dict[str, ClipFile] = {}
    duplicates: list[str] = []
    for audio in sorted(folder.iterdir()):
        if not audio.is_file() or audio.suffix.lower() not in AUDIO_SUFFIXES:
            continue
        key = audio.resolve()
        clip_id = names.get(key, audio.stem)
        if clip_id in clips:
            duplicates.append(clip_id)
            continue
        clips[clip_id] = ClipFile(clip_id, audio, prompts.get(key) or _sidecar_prompt(audio))
    if duplicates:
        raise UsageError(
            f"Two files in {folder} share the id {listing(sorted(set(duplicates)))}; ids must be "
            "unique to pair clips."
        )
    if not clips:
        raise UsageError(f"The {label} folder {folder} holds no audio files.")
    return [clips[k] for k in sorted(clips)]


def read_prompts(path: Path) -> dict[str, str]:
    """id -> prompt from a CSV (header row) or JSONL file; ids are matched without extension."""
    if not path.is_file():
        raise UsageError(f"No such prompts file: {path}")
    if path.suffix.lower() in (".jsonl", ".json"):
        rows = _read_jsonl(path)
    elif path.suffix.lower() in (".csv", ".tsv"):
        text = read_text(path, "prompts file")
        delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
        try:
            rows = list(csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter))
        except csv.Error as exc:
            raise UsageError(f"{path} is not a readable CSV table: {exc}.") from None
    else:
        raise UsageError(f"Prompts file {path} must be .csv, .tsv or .jsonl.")
    out: dict[str, str] = {}
    for row in rows:
        lower = {str(k).lower(): v for k, v in row.items() if k is not None}
        id_field = next((f for f in ID_FIELDS if lower.get(f)), None)
        prompt_field = next((f for f in PROMPT_FIELDS if isinstance(lower.get(f), str)), None)
        if id_field is None or prompt_field is None:
            raise UsageError(
                f"Prompts file {path} needs an id column ({', '.join(ID_FIELDS)}) and a prompt "
                f"column ({', '.join(PROMPT_FIELDS)})."
            )
        out[Path(str(lower[id_field])).stem] = lower[prompt_field]
    return out


def with_prompts(clips: list[ClipFile], prompts: dict[str, str]) -> list[ClipFile]:
    return [ClipFile(c.id, c.path, prompts.get(c.id, c.prompt)) for c in clips]


def pair(
    generated: list[ClipFile], reference: list[ClipFile], allow_missing: bool
) -> tuple[list[tuple[ClipFile, ClipFile]], list[str]]:
    """Pairs by id; missing ids are an error unless `allow_missing` (then a warning)."""
    gen = {c.id: c for c in generated}
    ref = {c.id: c for c in reference}
    only_gen = sorted(set(gen) - set(ref))
    only_ref = sorted(set(ref) - set(gen))
    problems = []
    if only_ref:
        problems.append(
            f"{len(only_ref)} reference id(s) have no generated clip: {listing(only_ref)}"
        )
    if only_gen:
        problems.append(
            f"{len(only_gen)} generated id(s) have no reference clip: {listing(only_gen)}"
        )
    if problems and not allow_missing:
        raise UsageError(
            "KL pairs clips by id, and the sets do not match. " + "; ".join(problems) + ".",
            hint="Name files alike in both folders (or via the batch manifest), or pass "
            "--allow-missing to use only the ids present in both.",
        )
    common = sorted(set(gen) & set(ref))
    if not common:
        raise UsageError("No clip id appears in both the generated and the reference folder.")
    return [(gen[i], ref[i]) for i in common], problems
