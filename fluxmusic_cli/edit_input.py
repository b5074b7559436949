"""Reading the recording an editing command works on: its audio, its exact latent when a
matching sidecar lies beside it, and its fluxmusic record (for the prompt)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from fluxmusic_cli.errors import UsageError


def load_source(path: str, data: bytes | None = None) -> tuple[Any, list[str]]:
    """(EditSource, notes): `path` decoded (or `data`, stdin's bytes, when path is "-"), with
    the latent of a sidecar whose audio hash matches. Notes say which start was taken."""
    from fluxmusic_cli import latents
    from fluxmusic_cli.engine.audio_in import read_recording
    from fluxmusic_cli.engine.requests import EditSource
    from fluxmusic_cli.engine.sampling import MAX_SECONDS

    rec = read_recording(path, data, max_seconds=MAX_SECONDS)
    notes: list[str] = []
    latent, latent_file = None, None
    if path != "-":
        latent, why = latents.read_latent(Path(path), rec.sha256)
        if latent is not None:
            latent_file = str(latents.sidecar_path(Path(path)))
            notes.append(latent_note(latents.sidecar_path(Path(path)).name))
        elif why:
            notes.append(f"re-encoding the audio: {why}")
    source = EditSource(
        path=path,
        sha256=rec.sha256,
        samples=rec.samples,
        source_rate=rec.source_rate,
        channels=rec.channels,
        latent=latent,
        latent_file=latent_file,
    )
    return source, notes


def latent_note(sidecar: str) -> str:
    """What an edit says when it starts from the latent in the file named `sidecar`."""
    return f"starting from the exact latent in {sidecar} (no VAE round trip)"


def input_record(path: str, data: bytes | None = None) -> dict[str, Any] | None:
    """The fluxmusic record INPUT carries (its NAME.json sidecar or its tags), if any."""
    from fluxmusic_cli import metadata

    if path != "-":
        try:
            return metadata.read_record(Path(path))
        except UsageError:
            return None
    import soundfile as sf

    try:
        with sf.SoundFile(io.BytesIO(data or b"")) as fh:
            tags = {k: v for k, v in fh.copy_metadata().items() if v}
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError):
        return None
    return metadata.record_from_tags(tags)
