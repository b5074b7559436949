"""Which recordings to train on, each with its caption (no audio is decoded here).

DATA is a folder of audio files with `NAME.txt` captions beside them, or a CSV/JSON-lines
table read by the prompt-list reader of `batch` (audio column `file`, `path` or `audio`;
caption column `caption` or `prompt`), or a MusicCaps / Song Describer CSV whose recordings
lie in `audio_dir`. A row or file that cannot be used is listed with its reason, never fatal;
having nothing usable is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from fluxmusic_cli.audio import FFMPEG_INPUT_SUFFIXES
from fluxmusic_cli.errors import UsageError
from fluxmusic_cli.formats import SUPPORTED_SUFFIXES

# What the audio front end reads (libsndfile's formats, then ffmpeg's).
AUDIO_SUFFIXES: tuple[str, ...] = tuple(
    dict.fromkeys((*SUPPORTED_SUFFIXES, ".aif", ".aiff", *FFMPEG_INPUT_SUFFIXES))
)
TABLE_SUFFIXES: tuple[str, ...] = (".csv", ".jsonl", ".json", ".ndjson")


@dataclass(frozen=True)
class Track:
    audio: Path
    caption: str


@dataclass(frozen=True)
class Skipped:
    source: str
    reason: str


@dataclass
class TrackList:
    source: str
    kind: str  # folder | csv | jsonl | musiccaps | song-describer
    tracks: list[Track] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


def find_tracks(data: Path, *, audio_dir: Path | None = None) -> TrackList:
    """The usable (recording, caption) pairs of DATA, and what was skipped and why."""
    data = Path(data)
    if audio_dir is not None and not Path(audio_dir).is_dir():
        raise UsageError(f"--audio-dir {audio_dir} is not a folder.")
    if data.is_dir():
        found = _from_folder(data)
    elif data.is_file() and data.suffix.lower() in TABLE_SUFFIXES:
        found = _from_table(data, audio_dir)
    elif data.exists():
        raise UsageError(
            f"{data} is neither a folder of audio files nor a CSV/JSONL table of them."
        )
    else:
        raise UsageError(f"No such training data: {data}")
    if not found.tracks:
        why = ""
        if found.skipped:
            first = found.skipped[0]
            why = f" ({len(found.skipped)} skipped, e.g. {first.source}: {first.reason})"
        raise UsageError(f"{data} holds no usable recording with a caption{why}.")
    return found


def _from_folder(root: Path) -> TrackList:
    out = TrackList(source=str(root), kind="folder")
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if path.suffix.lower() not in AUDIO_SUFFIXES or path.name.startswith("."):
            continue
        sidecar = path.with_suffix(".txt")
        caption = _read_caption(sidecar) if sidecar.is_file() else None
        if caption is None:
            out.skipped.append(Skipped(str(path), f"no caption (write it in {sidecar.name})"))
        elif not caption:
            out.skipped.append(Skipped(str(path), f"{sidecar.name} is empty"))
        else:
            out.tracks.append(Track(path, caption))
    if not out.tracks and not out.skipped:
        raise UsageError(
            f"{root} holds no audio files ({', '.join(s[1:] for s in AUDIO_SUFFIXES[:6])}, ...)."
        )
    return out


def _read_caption(path: Path) -> str | None:
    try:
        return " ".join(path.read_text(encoding="utf-8-sig").split())
    except (OSError, UnicodeDecodeError):
        return None


def _from_table(table_path: Path, audio_dir: Path | None) -> TrackList:
    from fluxmusic_cli.prompts import read_prompts

    fmt = "csv" if table_path.suffix.lower() == ".csv" else "jsonl"
    table = read_prompts(table_path, fmt=fmt)
    base = Path(audio_dir) if audio_dir is not None else table_path.parent
    out = TrackList(source=str(table_path), kind=table.kind)
    by_id = table.kind in ("musiccaps", "song-describer")
    if not by_id and table.rows and not any(row.audio for row in table.rows):
        raise UsageError(f"{table_path} has no audio column: name one 'file', 'path' or 'audio'.")
    for error in table.errors:
        out.skipped.append(Skipped(f"{table_path}:{error.line}", error.reason))
    for row in table.rows:
        where = f"{table_path}:{row.line}"
        if row.audio:
            path = Path(row.audio).expanduser()
            path = path if path.is_absolute() else base / path
        elif row.name and by_id:
            if audio_dir is None:
                raise UsageError(
                    f"{table_path} is a {table.kind} table: give --audio-dir, the folder "
                    "holding its recordings (named by their id)."
                )
            path = _by_stem(Path(audio_dir), row.name)
        else:
            out.skipped.append(Skipped(where, "no audio file named in this row"))
            continue
        if path is None or not path.is_file():
            shown = path or Path(audio_dir or ".") / f"{row.name}.*"
            out.skipped.append(Skipped(where, f"recording not found: {shown}"))
        else:
            out.tracks.append(Track(path, row.prompt))
    return out


def _by_stem(folder: Path, stem: str) -> Path | None:
    for suffix in AUDIO_SUFFIXES:
        candidate = folder / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    return None
