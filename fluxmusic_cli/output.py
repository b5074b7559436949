"""From a generated clip to a file: check, normalise, resample, tag, write atomically, record.

Shared by `generate`, `batch` and `vary`, so every output is checked and recorded the same way.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fluxmusic_cli import audio, latents, metadata
from fluxmusic_cli.errors import UsageError
from fluxmusic_cli.formats import SUPPORTED_SUFFIXES

if TYPE_CHECKING:
    from fluxmusic_cli.engine.pipeline import Clip


@dataclass
class WrittenClip:
    path: Path | None  # None when written to stdout
    record: metadata.GenerationRecord  # the record as written
    warnings: list[str] = field(default_factory=list)

    @property
    def shown(self) -> str:
        """How a message names where the clip went."""
        return str(self.path) if self.path is not None else "stdout"


def output_folder(output: Path | None, argv: list[str] | None = None) -> bool:
    """Whether `-o OUTPUT` names a folder: an existing folder, a path typed with a trailing
    slash (`-o v1.2/`), or a path without an extension that is not an existing file.

    Typer's Path drops a trailing slash, so the typed text is looked up in the arguments.
    """
    if output is None:
        return False
    if output.is_dir():
        return True
    args = sys.argv[1:] if argv is None else argv
    typed = [b for a, b in zip(args, args[1:]) if a in ("-o", "--output")]
    typed += [a.split("=", 1)[1] for a in args if a.startswith("--output=")]
    if any(t.endswith(("/", os.sep)) and Path(t) == output for t in typed):
        return True
    if output.suffix:
        return False
    if output.exists():
        raise UsageError(
            f"{output} is neither a folder nor a file name with an audio extension; give a "
            f"folder, a name ending in {', '.join(SUPPORTED_SUFFIXES)}, or - for stdout."
        )
    return True


def check_target(
    path: Path, *, force: bool, sample_rate: int | None = None, save_latent: bool = False
) -> None:
    """Refuse an unknown extension, a format that cannot hold `sample_rate`, an existing file,
    record or latent sidecar (without `force`) or an unwritable folder: all before any model
    loads."""
    if path.suffix.lower() not in SUPPORTED_SUFFIXES:
        raise UsageError(
            f"Unknown output extension {path.suffix or '(none)'!r} for {path}; use one of "
            f"{', '.join(SUPPORTED_SUFFIXES)}."
        )
    if sample_rate is not None:
        check_encodable(path.suffix.lower().lstrip("."), sample_rate)
    if not force:
        refuse_existing(path, save_latent=save_latent)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"Folder {parent} does not exist.")
    if not os.access(parent, os.W_OK):
        raise UsageError(f"Folder {parent} is not writable.")


def refuse_existing(path: Path, *, save_latent: bool) -> None:
    """Refuse to replace an audio file, its record or (with `save_latent`) its latent."""
    taken_paths = [path, metadata.sidecar_path(path)]
    if save_latent:
        taken_paths.append(latents.sidecar_path(path))
    for taken in taken_paths:
        if taken.exists():
            raise UsageError(f"{taken} already exists; pass --force to overwrite it.")


def check_encodable(fmt: str, sample_rate: int) -> None:
    """Refuse a format and rate the encoder cannot write, by encoding a few silent samples
    (milliseconds), so the refusal comes before a generation rather than after it."""
    import numpy as np

    audio.encode(np.zeros(64, dtype=np.float32), sample_rate, fmt)


def prepare(
    clip: Clip, *, sample_rate: int, peak_normalize: bool
) -> tuple[Any, metadata.GenerationRecord, list[str]]:
    """Checked, optionally normalised and resampled samples, plus the record describing them
    (a copy of the clip's, with the level and rate as written; the caller adds where).

    Raises BadAudioError (NaN or infinite samples) before anything is written.
    """
    samples = clip.waveform
    audio.check_clip(samples, clip.sample_rate)  # raises on NaN / inf
    if peak_normalize:
        samples = audio.peak_normalize(samples)
    if sample_rate != clip.sample_rate:
        samples = audio.resample(samples, clip.sample_rate, sample_rate)
    report = audio.check_clip(samples, sample_rate)
    record = replace(
        clip.record,
        extra=dict(clip.record.extra),
        output_sample_rate=sample_rate,
        peak_normalize=peak_normalize,
        peak=report.peak,
        lufs=report.lufs,
    )
    return samples, record, list(report.warnings)


@dataclass(frozen=True)
class ClipWriter:
    """The one way a clip is written, by every command: checked, optionally normalised and
    resampled, tagged, with its record beside it (and with `save_latent` its final latent), all
    of them or none, the record first; or, to `stdout`, one tagged WAV file (`-o -`).

    Without `overwrite` it refuses a file that appeared since the command checked its target
    (the model may have run for minutes); a batch folder, whose manifest decides what may be
    replaced, writes with `overwrite`.
    """

    sample_rate: int = 16000
    peak_normalize: bool = False
    save_latent: bool = False
    overwrite: bool = True
    stdout: Callable[[bytes], None] | None = None  # where `write(clip, None)` sends the WAV

    def write(self, clip: Clip, path: Path | None) -> WrittenClip:
        """Write `clip` to `path` (None: WAV bytes to `stdout`). Raises BadAudioError (NaN
        or infinite samples) before anything is written."""
        samples, record, warnings = prepare(
            clip, sample_rate=self.sample_rate, peak_normalize=self.peak_normalize
        )
        if path is None:
            if self.stdout is None:
                raise ValueError("ClipWriter has no stdout to write to.")
            record = replace(record, output="-", format="wav")
            self.stdout(audio.write_wav_bytes(samples, self.sample_rate, tags=record.tags()))
            return WrittenClip(path=None, record=record, warnings=warnings)
        path = Path(path)
        if not self.overwrite:
            refuse_existing(path, save_latent=self.save_latent)
        latent = clip.latent if self.save_latent else None
        record = replace(
            record,
            output=str(path.resolve()),
            format=path.suffix.lower().lstrip("."),
            latent_file=latents.sidecar_path(path).name if latent is not None else None,
        )
        write_pair(path, samples, self.sample_rate, record, latent=latent)
        return WrittenClip(path=path, record=record, warnings=warnings)


def write_pair(
    path: Path,
    samples: Any,
    sample_rate: int,
    record: metadata.GenerationRecord,
    *,
    latent: Any = None,
) -> None:
    """The audio file and its record (and latent sidecar), all or none (a full disk or Ctrl-C
    leaves none)."""
    import hashlib

    from fluxmusic_cli import atomic

    data = audio.encode(samples, sample_rate, path.suffix.lower().lstrip("."), record.tags())
    files = [(metadata.sidecar_path(path), metadata.sidecar_bytes(record))]
    if latent is not None:
        digest = hashlib.sha256(data).hexdigest()
        files.append((latents.sidecar_path(path), latents.latent_bytes(latent, digest)))
    atomic.write_together([*files, (path, data)])
