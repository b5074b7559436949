"""Audio files in and out: reading recordings, writing clips with tags, resampling, checking.

WAV, FLAC, MP3 and OGG are read and written by soundfile's bundled libsndfile (MP3 through its
LAME encoder, OGG as Vorbis), so `pip install` alone is enough for them. Everything else a user
may hand a music tool (M4A/AAC, MP4/MOV audio, WebM/Opus, WMA, unusual AIFF) is read through
pydub, which drives ffmpeg, and `.m4a` is written the same way. Only numpy is imported here at
module level; soundfile, pydub, scipy and pyloudnorm load inside the functions that use them.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fluxmusic_cli.errors import BadAudioError, UsageError
from fluxmusic_cli.formats import FORMATS, SUPPORTED_FORMATS

# Formats that only ffmpeg reads; anything else is tried with libsndfile first.
FFMPEG_INPUT_SUFFIXES = (
    ".m4a",
    ".aac",
    ".mp4",
    ".m4v",
    ".mov",
    ".webm",
    ".mkv",
    ".mka",
    ".opus",
    ".wma",
    ".3gp",
    ".amr",
    ".ac3",
)
FFMPEG_HINT = (
    "Install ffmpeg (Debian/Ubuntu: apt install ffmpeg; macOS: brew install ffmpeg; "
    "Windows: winget install ffmpeg) and run again."
)

TAG_KEYS = (
    "title",
    "comment",
    "software",
    "artist",
    "album",
    "date",
    "genre",
    "copyright",
    "license",
    "tracknumber",
)
# libsndfile drops every INFO string of a WAV file once one exceeds about 2 KiB.
_WAV_TAG_BYTES = 2000
_LIBSNDFILE_SUFFIX = re.compile(r" \(libsndfile-[^)]*\)$")

SILENCE_PEAK = 10 ** (-60 / 20)  # -60 dBFS


def ffmpeg_available() -> bool:
    import shutil

    return shutil.which("ffmpeg") is not None


def needs_ffmpeg(fmt: str) -> bool:
    """Whether writing `fmt` goes through pydub and ffmpeg."""
    return fmt in FORMATS and FORMATS[fmt].ffmpeg is not None


def require_ffmpeg(path: Path | str, doing: str) -> None:
    """Raise a one-sentence UsageError when ffmpeg, which `doing` `path` needs, is missing."""
    if not ffmpeg_available():
        raise UsageError(f"{doing} {path} needs ffmpeg, which is not installed.", hint=FFMPEG_HINT)


def audio_format(path: Path, fmt: str | None = None) -> str:
    """The format to write: `fmt` if given, else the file's extension; refuses unknown ones."""
    name = (fmt if fmt is not None else Path(path).suffix).lower().lstrip(".")
    if name not in SUPPORTED_FORMATS:
        what = f"format {fmt!r}" if fmt is not None else f"extension of {path}"
        raise UsageError(
            f"Unsupported audio {what}; supported: {', '.join(SUPPORTED_FORMATS)}.",
        )
    return name


def _as_frames(samples: np.ndarray) -> np.ndarray:
    data = np.asarray(samples, dtype=np.float32)
    if data.ndim not in (1, 2) or data.shape[0] == 0:
        raise ValueError(f"Expected samples shaped (n,) or (n, channels), got {data.shape}.")
    require_finite(data)
    # One rule for every format's out-of-range samples; check_clip has already reported them.
    return np.clip(data, -1.0, 1.0)


def _tag_value(key: str, value: str, fmt: str) -> str:
    if key not in TAG_KEYS:
        raise ValueError(f"Unknown tag {key!r}; known: {', '.join(TAG_KEYS)}.")
    value = value.replace("\x00", "")  # libsndfile refuses a string with a NUL in it
    if fmt == "wav":
        value = value.encode("utf-8")[:_WAV_TAG_BYTES].decode("utf-8", errors="ignore")
    elif fmt == "mp3":
        value = _ascii_fold(value, replacement="?")
    return value


def _ascii_fold(text: str, replacement: str = "") -> str:
    """`café` -> `cafe`; characters with no ASCII base become `replacement`.

    libsndfile hands MP3 tags to LAME, which labels them ISO-8859-1 whatever the bytes are,
    so anything beyond ASCII would read back garbled in every player.
    """
    base = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return "".join(c if c.isascii() else replacement for c in base)


def _write(target, data: np.ndarray, sample_rate: int, fmt: str, tags: dict[str, str]) -> None:
    if needs_ffmpeg(fmt):
        _write_ffmpeg(target, data, sample_rate, fmt, tags)
        return
    import soundfile as sf

    major, subtype, level = FORMATS[fmt].soundfile
    channels = 1 if data.ndim == 1 else data.shape[1]
    extra = {} if level is None else {"compression_level": level}
    with sf.SoundFile(
        target,
        "w",
        samplerate=sample_rate,
        channels=channels,
        format=major,
        subtype=subtype,
        **extra,
    ) as out:
        # Strings must be set before the first frame for FLAC and Vorbis.
        for key, value in tags.items():
            setattr(out, key, _tag_value(key, value, fmt))
        out.write(data)


def _write_ffmpeg(
    target, data: np.ndarray, sample_rate: int, fmt: str, tags: dict[str, str]
) -> None:
    """Encode through pydub (ffmpeg): 16-bit PCM in, the format's codec out, tags as metadata."""
    from pydub import AudioSegment

    muxer, codec = FORMATS[fmt].ffmpeg
    pcm = np.round(np.clip(data, -1.0, 1.0) * 32767.0).astype("<i2")
    channels = 1 if data.ndim == 1 else data.shape[1]
    segment = AudioSegment(pcm.tobytes(), frame_rate=sample_rate, sample_width=2, channels=channels)
    metadata = {k: v for k, v in tags.items() if k in TAG_KEYS}
    from pydub.exceptions import CouldntEncodeError

    try:
        segment.export(target, format=muxer, codec=codec, bitrate="160k", tags=metadata)
    except CouldntEncodeError as exc:
        raise UsageError(f"ffmpeg could not write {fmt.upper()}: {_last_line(exc)}") from None


def _last_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


def _with_software(tags: dict[str, str] | None) -> dict[str, str]:
    from fluxmusic_cli import __version__

    return {"software": f"fluxmusic {__version__}", **(tags or {})}


def encode(
    samples: np.ndarray,
    sample_rate: int,
    fmt: str,
    tags: dict[str, str] | None = None,
) -> bytes:
    """A whole audio file in `fmt` as bytes, tagged; refuses what the format cannot hold."""
    import soundfile as sf

    fmt = audio_format(Path(f"x.{fmt}"))
    if needs_ffmpeg(fmt):
        require_ffmpeg(f"a .{fmt} file", "Writing")
    buffer = io.BytesIO()
    try:
        _write(buffer, _as_frames(samples), sample_rate, fmt, _with_software(tags))
    except sf.LibsndfileError as exc:
        raise UsageError(
            f"Cannot write {fmt.upper()} at {sample_rate} Hz: {exc.error_string}"
        ) from None
    return buffer.getvalue()


def write_audio(
    path: Path,
    samples: np.ndarray,
    sample_rate: int,
    *,
    fmt: str | None = None,
    tags: dict[str, str] | None = None,
) -> None:
    """Write `samples` ((n,) or (n, channels), float in [-1, 1]) to `path` atomically.

    The file is encoded in memory and written through `atomic.write_bytes`: it appears
    complete or not at all, and a full disk is reported as such. An existing `path` is
    replaced; refusing to overwrite is the caller's choice. The folder must exist. Tags
    (`title`, `comment`, `software`, ...) are embedded in all four formats, with limits: WAV
    keeps the first 2000 bytes of each; MP3 names LAME as `software` and only ASCII (accents
    dropped, other characters become `?`).
    """
    from fluxmusic_cli import atomic

    path = Path(path)
    fmt = audio_format(path, fmt)
    if not path.parent.is_dir():
        raise UsageError(f"Cannot write {path}: the folder {path.parent} does not exist.")
    if path.is_dir():
        raise UsageError(f"Cannot write {path}: it is a folder.")
    atomic.write_bytes(path, encode(samples, sample_rate, fmt, tags))


def write_wav_bytes(
    samples: np.ndarray, sample_rate: int, tags: dict[str, str] | None = None
) -> bytes:
    """The WAV file `write_audio` would write, as bytes (for `-o -`, audio on stdout)."""
    return encode(samples, sample_rate, "wav", tags)


@dataclass(frozen=True)
class DecodedAudio:
    """A whole audio file as float samples (frames, channels) at its own rate."""

    samples: np.ndarray  # (frames, channels) float64
    sample_rate: int
    reader: str  # "libsndfile" or "ffmpeg"

    @property
    def channels(self) -> int:
        return int(self.samples.shape[1])


def read_audio(
    path: Path | str, data: bytes | None = None, *, max_seconds: float | None = None
) -> DecodedAudio:
    """Decode an audio file (or its bytes in `data`, for stdin), any format a user may have.

    libsndfile reads WAV, FLAC, OGG and MP3 itself; anything it refuses goes through pydub and
    ffmpeg. A file longer than `max_seconds` is refused from its header, before it is decoded
    (and the decoding is bounded, for headers that do not say). Raises UsageError with one
    sentence for a missing file, a file that is not audio, one that is too long, or a format
    that needs ffmpeg when ffmpeg is not installed.
    """
    name = str(path)
    if data is None:
        path = Path(path)
        if not path.exists():
            raise UsageError(f"No such file: {path}")
        if path.is_dir():
            raise UsageError(f"{path} is a folder, not an audio file.")
    suffix = Path(name).suffix.lower()
    if suffix not in FFMPEG_INPUT_SUFFIXES:
        decoded = _read_sndfile(path, data, max_seconds)
        if decoded is not None:
            return decoded
    looks_like_audio = _looks_like_audio(_head(path, data))
    if not ffmpeg_available():
        if not looks_like_audio:
            raise UsageError(_not_audio(name))
        if suffix in FFMPEG_INPUT_SUFFIXES:
            require_ffmpeg(name, "Reading")
        raise UsageError(
            f"Reading {name} needs ffmpeg, which is not installed: it looks like audio, but not "
            "audio that libsndfile reads (WAV, FLAC, OGG, MP3).",
            hint=FFMPEG_HINT,
        )
    return _read_ffmpeg(name, data, max_seconds, looks_like_audio)


def _not_audio(name: str) -> str:
    return f"Cannot read {name}: there is no audio in it (it is not a sound file of any kind)."


def _too_long(name: str, seconds: float | None, limit: float) -> str:
    if seconds is None:  # known only from decoding at most the limit and a little more
        return f"{name} is longer than {limit:g} s, the limit."
    return f"{name} is {seconds:.1f} s long; the limit is {limit:g} s."


# How the formats a user may hand the tool begin: (offset, bytes).
_AUDIO_SIGNATURES = (
    (0, b"RIFF"),  # WAV, and AVI-like RIFF files ffmpeg may read
    (0, b"RF64"),
    (0, b"BW64"),
    (0, b"FORM"),  # AIFF, AIFC
    (0, b"fLaC"),
    (0, b"OggS"),  # Vorbis, Opus, FLAC in Ogg
    (0, b"ID3"),  # MP3 (or AAC) with a tag in front
    (0, b"caff"),
    (0, b".snd"),  # Sun/NeXT AU
    (0, b"#!AMR"),
    (0, b"\x1aE\xdf\xa3"),  # Matroska, WebM
    (0, b"0&\xb2u\x8ef\xcf\x11"),  # ASF: WMA
    (0, b"\x0bw"),  # AC-3
    (0, b"ADIF"),  # AAC
    (0, b"wvpk"),  # WavPack
    (0, b"MAC "),  # Monkey's Audio
    (0, b"TTA1"),
    (0, b"MPCK"),  # Musepack
    (0, b"DSD "),
    (0, b"Creative Voice File"),
    (4, b"ftyp"),  # MP4, M4A, MOV, 3GP
    (4, b"moov"),  # older QuickTime
    (4, b"mdat"),
    (4, b"wide"),
    (4, b"free"),
)


def _head(path, data: bytes | None, size: int = 64) -> bytes:
    if data is not None:
        return data[:size]
    try:
        with open(path, "rb") as fh:
            return fh.read(size)
    except OSError as exc:
        raise UsageError(f"Cannot read {path}: {exc.strerror or exc}") from None


def _looks_like_audio(head: bytes) -> bool:
    """Whether a file's first bytes are those of a sound file (a container or codec signature,
    or an MPEG audio frame); an empty file, text or an image is not."""
    if any(head[at : at + len(sig)] == sig for at, sig in _AUDIO_SIGNATURES):
        return True
    return len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0  # MPEG / ADTS sync


@contextlib.contextmanager
def _quiet_native_stderr():
    """libsndfile's MP3 decoder prints its complaints about a broken file straight to file
    descriptor 2; the tool says what went wrong in its own sentence instead."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _read_sndfile(path, data: bytes | None, max_seconds: float | None) -> DecodedAudio | None:
    """The file through libsndfile, or None when libsndfile cannot read it. Its length is
    checked from the header before any sample is decoded."""
    import soundfile as sf

    source = io.BytesIO(data) if data is not None else str(path)
    try:
        with _quiet_native_stderr(), sf.SoundFile(source) as fh:
            rate, stated = int(fh.samplerate), fh.frames / fh.samplerate
            if max_seconds is not None and stated > max_seconds:
                raise UsageError(_too_long(str(path), stated, max_seconds))
            # A header may undercount (an MP3 without one): read at most one frame too many.
            frames = -1 if max_seconds is None else math.floor(max_seconds * rate) + 1
            samples = fh.read(frames, dtype="float64", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError):
        return None
    except OSError as exc:
        raise UsageError(f"Cannot read {path}: {exc.strerror or exc}") from None
    if max_seconds is not None and samples.shape[0] > max_seconds * rate:
        raise UsageError(_too_long(str(path), None, max_seconds))
    return DecodedAudio(samples, rate, "libsndfile")


def _ffprobe_seconds(name: str, data: bytes | None) -> float | None:
    """The length ffprobe reads from the container's header; None when it does not say."""
    from pydub.utils import mediainfo_json

    try:
        info = mediainfo_json(io.BytesIO(data) if data is not None else name)
        seconds = float(info.get("format", {}).get("duration", "nan"))
    except (OSError, ValueError, TypeError, KeyError):
        return None
    return seconds if math.isfinite(seconds) else None


def _read_ffmpeg(
    name: str, data: bytes | None, max_seconds: float | None, looks_like_audio: bool
) -> DecodedAudio:
    from pydub import AudioSegment
    from pydub.exceptions import CouldntDecodeError

    bound = None
    if max_seconds is not None:
        seconds = _ffprobe_seconds(name, data)
        if seconds is not None and seconds > max_seconds:
            raise UsageError(_too_long(name, seconds, max_seconds))
        bound = max_seconds + 1  # decode no more than that, whatever the header said
    try:
        segment = AudioSegment.from_file(
            io.BytesIO(data) if data is not None else name, duration=bound
        )
    except (CouldntDecodeError, OSError, IndexError, ValueError) as exc:
        if not looks_like_audio:
            raise UsageError(_not_audio(name)) from None
        raise UsageError(
            f"Cannot read {name}: ffmpeg found no audio in it ({_last_line(exc)})."
        ) from None
    width = segment.sample_width
    kinds = {1: np.int8, 2: np.int16, 4: np.int32}
    if width not in kinds:
        raise UsageError(f"Cannot read {name}: {8 * width}-bit samples are not supported.")
    raw = np.array(segment.get_array_of_samples(), dtype=np.float64)
    frames = raw.reshape(-1, segment.channels) / float(2 ** (8 * width - 1))
    if frames.shape[0] == 0:
        raise UsageError(f"Cannot read {name}: it holds no audio samples.")
    if max_seconds is not None and frames.shape[0] > max_seconds * segment.frame_rate:
        raise UsageError(_too_long(name, None, max_seconds))
    return DecodedAudio(frames, int(segment.frame_rate), "ffmpeg")


def read_tags(path: Path) -> dict[str, str]:
    """The non-empty tags of an audio file, as `write_audio` was given them."""
    import soundfile as sf

    try:
        with sf.SoundFile(path) as f:
            found = f.copy_metadata()
    except (sf.LibsndfileError, OSError) as exc:
        raise UsageError(f"Cannot read audio file {path}: {exc}") from None
    tags = {k: v for k, v in found.items() if v}
    if "software" in tags:
        # libsndfile appends its own name to the software string it writes.
        tags["software"] = _LIBSNDFILE_SUFFIX.sub("", tags["software"])
    return tags


def resample(samples: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Polyphase resampling along the first axis (scipy's `resample_poly`, Kaiser window).

    This is the tool's one resampler: output files and evaluation embedders both use it, so
    a metric never differs from what was written because of resampling.
    """
    data = np.asarray(samples, dtype=np.float32)
    if orig_sr == target_sr:
        return data.copy()
    from math import gcd

    from scipy.signal import resample_poly

    g = gcd(int(orig_sr), int(target_sr))
    out = resample_poly(data, int(target_sr) // g, int(orig_sr) // g, axis=0)
    return out.astype(np.float32)


def require_finite(samples: np.ndarray) -> None:
    """Raise BadAudioError when any sample is NaN or infinite."""
    bad = int(np.size(samples) - np.count_nonzero(np.isfinite(samples)))
    if bad:
        raise BadAudioError(
            f"The generated audio has {bad} NaN or infinite samples, most likely a float16 "
            "overflow in the model; nothing was written.",
            hint="Run again with --dtype bf16 or --dtype fp32.",
        )


def peak_normalize(samples: np.ndarray, peak: float = 0.95) -> np.ndarray:
    """Scale so the largest absolute sample is `peak`, never above it; silence comes back as is."""
    if not 0.0 < peak <= 1.0:
        raise ValueError(f"peak must be in (0, 1], got {peak}.")
    data = np.asarray(samples, dtype=np.float32)
    require_finite(data)
    top = float(np.max(np.abs(data))) if data.size else 0.0
    if top == 0.0:
        return data.copy()
    limit = np.float32(peak)
    if float(limit) > peak:  # float32 rounding must not push the result past the requested peak
        limit = np.nextafter(limit, np.float32(0))
    scaled = (data.astype(np.float64) * (peak / top)).astype(np.float32)
    return np.clip(scaled, -limit, limit)


@dataclass
class AudioReport:
    """Measurements of one clip; `warnings` are sentences for the user, not printed here."""

    peak: float
    rms: float
    lufs: float | None  # integrated loudness; None for silence or clips under 0.4 s
    is_silent: bool
    clipped_fraction: float  # share of samples at or beyond full scale
    duration_s: float
    warnings: list[str] = field(default_factory=list)


def _integrated_loudness(data: np.ndarray, sample_rate: int) -> float | None:
    import pyloudnorm

    meter = pyloudnorm.Meter(sample_rate)
    if data.shape[0] < round(meter.block_size * sample_rate):
        return None
    with np.errstate(divide="ignore"):
        lufs = float(meter.integrated_loudness(data.astype(np.float64)))
    return lufs if np.isfinite(lufs) else None


def check_clip(samples: np.ndarray, sample_rate: int) -> AudioReport:
    """Measure a generated clip; NaN or inf samples raise BadAudioError instead."""
    data = np.asarray(samples, dtype=np.float32)
    require_finite(data)
    magnitude = np.abs(data)
    peak = float(magnitude.max()) if data.size else 0.0
    rms = float(np.sqrt(np.mean(np.square(data, dtype=np.float64)))) if data.size else 0.0
    clipped_count = int(np.count_nonzero(magnitude >= 1.0))
    clipped = clipped_count / data.size if data.size else 0.0
    silent = peak < SILENCE_PEAK
    report = AudioReport(
        peak=peak,
        rms=rms,
        lufs=None if silent else _integrated_loudness(data, sample_rate),
        is_silent=silent,
        clipped_fraction=clipped,
        duration_s=data.shape[0] / sample_rate,
    )
    if silent:
        report.warnings.append(
            f"The clip is silent (peak {_dbfs(peak)}); the model or its weights may be wrong."
        )
    if clipped_count:
        report.warnings.append(
            f"{_count(clipped_count, 'sample')} of {data.size} ({_percent(clipped)}) "
            f"{'reaches' if clipped_count == 1 else 'reach'} full scale and will be clipped when "
            "written; peak normalisation avoids it."
        )
    return report


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _percent(fraction: float) -> str:
    """A share as a percentage that shows two significant digits when small, so a share above
    zero never reads as 0.00%."""
    percent = 100 * fraction
    if percent >= 1 or percent <= 0:
        return f"{percent:.1f}%"
    decimals = 1 - math.floor(math.log10(percent))
    return f"{percent:.{decimals}f}%"


def _dbfs(value: float) -> str:
    return "-inf dBFS" if value <= 0 else f"{20 * np.log10(value):.0f} dBFS"


def slugify(prompt: str, max_len: int = 48) -> str:
    """A file-name-safe stem from a prompt: ASCII, lower case, words joined by hyphens."""
    slug = re.sub(r"[^a-z0-9]+", "-", _ascii_fold(prompt).lower()).strip("-")
    if len(slug) > max_len:
        cut = slug.rfind("-", 0, max_len + 1)
        slug = slug[: cut if cut > max_len // 2 else max_len].rstrip("-")
    return slug or "untitled"
