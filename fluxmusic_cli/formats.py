"""The audio formats the tool writes, in one table.

The CLI's `--format` choices, the suffixes an output path may end in, the help text that lists
them, the MIME types of the `vary` page and the writers in `audio.py` all derive from
`FORMATS`. Adding a format is one row here (plus its writer, if it needs a new one). This
module imports nothing beyond the standard library, so `--help` can read it cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AudioFormat:
    """One written format: libsndfile writes it (`soundfile`) or pydub over ffmpeg (`ffmpeg`)."""

    name: str
    mime: str
    # (libsndfile format, subtype, compression level or None for libsndfile's default)
    soundfile: tuple[str, str, float | None] | None = None
    # (ffmpeg muxer, codec)
    ffmpeg: tuple[str, str] | None = None


FORMATS: dict[str, AudioFormat] = {
    f.name: f
    for f in (
        AudioFormat("wav", "audio/wav", soundfile=("WAV", "PCM_16", None)),
        AudioFormat("flac", "audio/flac", soundfile=("FLAC", "PCM_16", None)),
        # libsndfile's default lossy settings give about 30 kbps at 16 kHz; 0.2 suits music.
        AudioFormat("mp3", "audio/mpeg", soundfile=("MP3", "MPEG_LAYER_III", 0.2)),
        AudioFormat("ogg", "audio/ogg", soundfile=("OGG", "VORBIS", 0.2)),
        AudioFormat("m4a", "audio/mp4", ffmpeg=("ipod", "aac")),
    )
}

# Every format a clip can be written in, and the suffixes an output file may end in.
SUPPORTED_FORMATS: tuple[str, ...] = tuple(FORMATS)
SUPPORTED_SUFFIXES: tuple[str, ...] = tuple(f".{name}" for name in SUPPORTED_FORMATS)
# The formats `pip install` alone writes (libsndfile is bundled with soundfile): the choices
# of `batch --format` and `vary --format`.
BUNDLED_FORMATS: tuple[str, ...] = tuple(n for n, f in FORMATS.items() if f.soundfile)
BUNDLED_SUFFIXES: tuple[str, ...] = tuple(f".{name}" for name in BUNDLED_FORMATS)
# What libsndfile reads beyond what it writes here.
SOUNDFILE_READ_SUFFIXES: tuple[str, ...] = (*BUNDLED_SUFFIXES, ".oga", ".aiff", ".aif")


def suffix_list() -> str:
    """`.wav .flac .mp3 .ogg .m4a`, for help texts."""
    return " ".join(SUPPORTED_SUFFIXES)
