"""Where a command's files go: the one rule every written file follows, and the one clip writer.

The rule (`check_file` before any model loads, `writing` / `write_file` when the file is
written): a file that exists is never replaced without `--force` ("X already exists"), except a
file the tool itself wrote into a folder it fills (a vary page a rerun redraws), recognised by
`ours`; a missing folder is refused, never created, unless the command documents making it (an
output folder given as `-o DIR/`); the file appears whole under its name or not at all
(`atomic`). Clips add their checks (extension, encodable rate, the record and latent beside
them) and never write over the recording an edit reads.

A clip goes from samples to file here: checked, normalised, resampled, tagged, written with its
record, by `generate`, the edits, `batch` and `vary` alike.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
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


# Whether the tool wrote an existing file, which a rerun may then replace.
Owner = Callable[[Path], bool]


def check_file(
    path: Path, *, force: bool, also: Sequence[Path] = (), ours: Owner | None = None
) -> None:
    """The rule for any file a command writes, checked before any model loads: a folder is not a
    file; without `force` neither `path` nor the files written with it (`also`) may exist,
    unless `ours` says the tool wrote it; its folder must exist and be writable."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{path} is a folder; give a file name.")
    if not force:
        refuse_taken([path, *also], ours=ours)
    check_folder(path.parent if str(path.parent) else Path("."))


def refuse_taken(paths: Iterable[Path], *, ours: Owner | None = None) -> None:
    """Refuse the first of `paths` that exists (a dangling link counts), unless `ours` says the
    tool wrote it."""
    for taken in paths:
        if os.path.lexists(taken) and (ours is None or not ours(Path(taken))):
            raise UsageError(_taken(Path(taken), ours))


def _taken(path: Path, ours: Owner | None) -> str:
    if ours is None:
        return f"{path} already exists; pass --force to overwrite it."
    return f"{path} already exists and was not written by fluxmusic; pass --force to replace it."


def check_folder(folder: Path) -> None:
    """Refuse a folder to write into that is missing (it is not created), not a folder, or not
    writable."""
    if not folder.exists():
        raise UsageError(f"Folder {folder} does not exist; create it first or choose another.")
    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder.")
    if not os.access(folder, os.W_OK):
        raise UsageError(f"Folder {folder} is not writable.")


@contextlib.contextmanager
def writing(path: Path, *, force: bool, ours: Owner | None = None) -> Iterator[Path]:
    """Yield a temporary path to write `path` through, by the rule: the file appears whole or
    not at all, and without `force` it never replaces a file the tool did not write, even one
    that appeared after `check_file` (the work between may have taken minutes)."""
    from fluxmusic_cli import atomic

    path = Path(path)
    exists = os.path.lexists(path)
    if force or (exists and ours is not None and ours(path)):
        with atomic.writing(path) as tmp:
            yield tmp
        return
    if exists:
        refuse_taken([path], ours=ours)
    try:
        with atomic.creating(path) as tmp:
            yield tmp
    except FileExistsError:
        raise UsageError(_taken(path, None)) from None


def write_file(path: Path, data: bytes, *, force: bool, ours: Owner | None = None) -> Path:
    """Write `data` to `path` by the rule of `writing`."""
    with writing(path, force=force, ours=ours) as tmp:
        tmp.write_bytes(data)
    return Path(path)


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
    check_file(path, force=force, also=companions(path, save_latent=save_latent))


def companions(path: Path, *, save_latent: bool) -> list[Path]:
    """The files written with the clip `path`: its record, and with `save_latent` its latent."""
    found = [metadata.sidecar_path(path)]
    if save_latent:
        found.append(latents.sidecar_path(path))
    return found


def refuse_existing(path: Path, *, save_latent: bool) -> None:
    """Refuse to replace an audio file, its record or (with `save_latent`) its latent."""
    refuse_taken([path, *companions(path, save_latent=save_latent)])


def refuse_own_input(path: Path, source: Path, *, save_latent: bool) -> None:
    """Refuse to write the clip `path` (its record, its latent) over the recording `source` it
    is made from, or over the record or latent beside that recording: `--force` replaces a
    user's other files, never the one being edited. Checked as files (links, other spellings,
    case-insensitive file systems), before any model loads."""
    source = Path(source)
    inputs = [source, *companions(source, save_latent=True)]
    for written in [Path(path), *companions(path, save_latent=save_latent)]:
        for read in inputs:
            if not _same_file(written, read):
                continue
            if read == source:
                same = "" if Path(path) == source else f" ({source})"
                raise UsageError(
                    f"{path} is the input recording{same}; write the edit to another name: "
                    "--force never replaces the input."
                )
            kind = "record" if read.suffix == ".json" else "latent"
            raise UsageError(
                f"{written} is the {kind} of the input recording {source}; writing {path} "
                "would replace it, so give the edit another name."
            )


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist
        return False


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
            data = audio.write_wav_bytes(samples, self.sample_rate, tags=record.tags())
            return self._to_stdout(data, record, warnings)
        path = Path(path)
        self._check_free(path)
        latent = clip.latent if self.save_latent else None
        record = _placed(record, path, latent=latent is not None)
        data = audio.encode(samples, self.sample_rate, record.format, record.tags())
        if latent is not None:
            import hashlib

            latent = latents.latent_bytes(latent, hashlib.sha256(data).hexdigest())
        _write_together(path, data, record, latent)
        return WrittenClip(path=path, record=record, warnings=warnings)

    def write_encoded(
        self,
        data: bytes,
        record: metadata.GenerationRecord,
        path: Path | None,
        *,
        latent: bytes | None = None,
        warnings: Sequence[str] = (),
    ) -> WrittenClip:
        """Write a clip encoded elsewhere (a server's job: the audio file's bytes in the format
        of `path`, its record, its latent sidecar's bytes) by the rule of `write`: to `stdout`
        when `path` is None (`data` then a WAV file); else never over a file that appeared
        since the target was checked (without `overwrite`), and the audio, its record and, with
        `save_latent`, its latent all or none."""
        if path is None:
            return self._to_stdout(data, record, list(warnings))
        path = Path(path)
        self._check_free(path)
        latent = latent if self.save_latent else None
        record = _placed(record, path, latent=latent is not None)
        _write_together(path, data, record, latent)
        return WrittenClip(path=path, record=record, warnings=list(warnings))

    def _to_stdout(
        self, data: bytes, record: metadata.GenerationRecord, warnings: list[str]
    ) -> WrittenClip:
        if self.stdout is None:
            raise ValueError("ClipWriter has no stdout to write to.")
        record = replace(record, output="-", format="wav", latent_file=None)
        self.stdout(data)
        return WrittenClip(path=None, record=record, warnings=warnings)

    def _check_free(self, path: Path) -> None:
        if not self.overwrite:
            refuse_existing(path, save_latent=self.save_latent)


def _placed(
    record: metadata.GenerationRecord, path: Path, *, latent: bool
) -> metadata.GenerationRecord:
    """`record` as written to `path`: where, in which format, and its latent sidecar's name."""
    return replace(
        record,
        output=str(path.resolve()),
        format=path.suffix.lower().lstrip("."),
        latent_file=latents.sidecar_path(path).name if latent else None,
    )


def _write_together(
    path: Path, data: bytes, record: metadata.GenerationRecord, latent: bytes | None
) -> None:
    """The audio file, its record and its latent sidecar, all or none (a full disk or Ctrl-C
    leaves none), the record first."""
    from fluxmusic_cli import atomic

    files = [(metadata.sidecar_path(path), metadata.sidecar_bytes(record))]
    if latent is not None:
        files.append((latents.sidecar_path(path), latent))
    atomic.write_together([*files, (path, data)])
