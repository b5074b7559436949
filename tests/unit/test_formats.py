"""The format table is the one place the written formats are spelled."""

from __future__ import annotations

import numpy as np
import pytest

from fluxmusic_cli import audio, formats
from fluxmusic_cli.cli import options
from fluxmusic_cli.errors import UsageError
from fluxmusic_cli.formats import FORMATS


def test_every_format_has_exactly_one_writer_and_a_mime_type():
    for fmt in FORMATS.values():
        assert (fmt.soundfile is None) != (fmt.ffmpeg is None), fmt.name
        assert fmt.mime.startswith("audio/"), fmt.name


def test_cli_choices_and_help_derive_from_the_table():
    assert [c.value for c in options.FormatChoice] == list(formats.SUPPORTED_FORMATS)
    assert "m4a" not in formats.BUNDLED_FORMATS  # written through ffmpeg, not libsndfile
    assert formats.suffix_list() == ".wav .flac .mp3 .ogg .m4a"
    help_text = options.OutputPath.__metadata__[0].help
    assert formats.suffix_list() in help_text


@pytest.mark.parametrize("name", formats.BUNDLED_FORMATS)
def test_each_bundled_format_writes_and_reads_back(tmp_path, name):
    path = tmp_path / f"clip.{name}"
    tone = 0.3 * np.sin(np.linspace(0, 200 * np.pi, 16000)).astype(np.float32)
    audio.write_audio(path, tone, 16000)
    assert audio.audio_format(path) == name
    assert not audio.needs_ffmpeg(name)
    decoded = audio.read_audio(path)
    assert decoded.reader == "libsndfile"
    assert decoded.sample_rate == 16000
    assert abs(decoded.samples.shape[0] - tone.size) < 2000  # lossy codecs pad a little


def test_unknown_format_is_refused_with_the_list(tmp_path):
    with pytest.raises(UsageError) as info:
        audio.audio_format(tmp_path / "clip.xyz")
    assert "clip.xyz" in str(info.value)
    assert "wav, flac, mp3, ogg, m4a" in str(info.value)
    assert not audio.needs_ffmpeg("xyz")
