"""Preparation: every track to VAE posteriors of 10.24 s segments, every caption to embeddings.

Done once and cached in `RUN_DIR/data/`, so training never holds T5-XXL, CLAP or the VAE:

    latents.safetensors   mean, logvar (N, 8, 256, 16) unscaled; caption (N,) row in text
    text.safetensors      txt (C, 256, D), y (C, V) per distinct caption; the "" rows;
                          the sample prompts' and negative prompt's rows
    data.json             tracks (file, sha256, gain, segments), skipped files and why,
                          and the fingerprints a rerun compares to reuse the cache

A track's gain is set once on the whole recording (centred, peak 0.5, as the audio front end
does for any recording the tool reads), then it is cut into 10.24 s segments, the last
zero-padded; a last piece under a quarter of a segment is dropped
unless it is all the track has. The posterior's mean and log-variance are both kept, so each
step can draw `latent_dist.sample()` as the published training did.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fluxmusic_cli.errors import FluxMusicError, UsageError
from fluxmusic_cli.training.data import Skipped, TrackList
from fluxmusic_cli.training.files import read_json, write_json, write_tensors

if TYPE_CHECKING:
    import torch

SEGMENT_SAMPLES = 163_840  # 10.24 s at 16 kHz
SEGMENT_FRAMES = 256  # latent frames of one segment
MIN_TAIL_SAMPLES = SEGMENT_SAMPLES // 4
ENCODE_BATCH = 4  # segments per VAE forward
PREP_VERSION = 1

Progress = Callable[[str, int, int], None]  # (stage, completed, total)


@dataclass
class TrainData:
    """What training reads: posteriors, conditioning rows and the "" rows, all on the CPU."""

    mean: torch.Tensor  # (N, 8, T, 16), unscaled
    logvar: torch.Tensor  # (N, 8, T, 16)
    caption: torch.Tensor  # (N,) int64 rows of txt / y
    txt: torch.Tensor  # (C, L, D)
    y: torch.Tensor  # (C, V)
    empty_txt: torch.Tensor  # (L, D)
    empty_y: torch.Tensor  # (V,)
    scaling_factor: float
    prompts: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # sample/negative rows
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def segments(self) -> int:
        return int(self.mean.shape[0])


def audio_fingerprint(tracks: TrackList, vae_identity: str) -> str:
    """Changes when a recording, the track list or the VAE changes (size and mtime per file)."""
    digest = hashlib.sha256(f"v{PREP_VERSION}|{vae_identity}".encode())
    for t in tracks.tracks:
        st = t.audio.stat()
        digest.update(f"|{t.audio.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode())
    return digest.hexdigest()[:32]


def text_fingerprint(captions: Sequence[str], prompts: Sequence[str], identity: str) -> str:
    payload = json.dumps([PREP_VERSION, identity, list(captions), list(prompts)])
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def segment_starts(n: int) -> list[int]:
    """Start samples of the 10.24 s segments of an n-sample recording."""
    starts = list(range(0, max(n, 1), SEGMENT_SAMPLES))
    if len(starts) > 1 and n - starts[-1] < MIN_TAIL_SAMPLES:
        starts.pop()
    return starts


@dataclass
class EncodedAudio:
    mean: torch.Tensor
    logvar: torch.Tensor
    captions: list[str]  # per segment
    tracks: list[dict[str, Any]]
    skipped: list[Skipped]


def encode_tracks(tracks: TrackList, decoder, *, progress: Progress | None = None) -> EncodedAudio:
    """Posteriors of every segment; unreadable and silent recordings are skipped, not fatal."""
    import numpy as np
    import torch

    from fluxmusic_cli.engine import audio_in

    means, logvars, captions = [], [], []
    kept: list[dict[str, Any]] = []
    skipped: list[Skipped] = []
    for k, track in enumerate(tracks.tracks):
        if progress is not None:
            progress("encode audio", k, len(tracks.tracks))
        try:
            rec = audio_in.read_recording(track.audio)
            prep = audio_in.prepare(rec.samples, name=str(track.audio))
        except FluxMusicError as exc:
            skipped.append(Skipped(str(track.audio), exc.message))
            continue
        starts = segment_starts(prep.length)
        pieces = []
        for s in starts:
            seg = np.zeros(SEGMENT_SAMPLES, dtype=np.float32)
            chunk = prep.x[s : s + SEGMENT_SAMPLES]
            seg[: len(chunk)] = chunk
            pieces.append(audio_in.log_mel(seg))
        for lo in range(0, len(pieces), ENCODE_BATCH):
            mel = torch.cat(pieces[lo : lo + ENCODE_BATCH])
            with torch.inference_mode():
                mean, logvar = decoder.encode_posterior(mel)
            means.append(mean.float().cpu())
            logvars.append(logvar.float().cpu())
        captions += [track.caption] * len(starts)
        kept.append(
            {
                "file": str(track.audio),
                "sha256": rec.sha256,
                "caption": track.caption,
                "seconds": round(prep.length / 16000, 3),
                "gain": float(prep.gain),
                "segments": len(starts),
            }
        )
    if progress is not None:
        progress("encode audio", len(tracks.tracks), len(tracks.tracks))
    if not kept:
        first = skipped[0] if skipped else None
        why = f" (e.g. {first.source}: {first.reason})" if first else ""
        raise UsageError(f"None of the {len(tracks.tracks)} recordings could be used{why}.")
    return EncodedAudio(torch.cat(means), torch.cat(logvars), captions, kept, skipped)


def encode_texts(engine, captions: Sequence[str], prompts: Sequence[str]) -> dict[str, Any]:
    """Conditioning rows of the distinct captions and prompts, and each encoder's "" row."""
    texts = list(dict.fromkeys([*captions, *prompts]))
    txt, y, _ = engine.encode(texts)
    cond = engine.conditioner()
    return {
        "texts": texts,
        "txt": txt.float().contiguous(),
        "y": y.float().contiguous(),
        "empty_txt": cond.empty_embedding("t5").float().contiguous(),
        "empty_y": cond.empty_embedding("clap").float().contiguous(),
    }


def prepare(
    tracks: TrackList,
    engine,
    data_dir: Path,
    *,
    prompts: Sequence[str] = (),
    progress: Progress | None = None,
) -> TrainData:
    """Encode what the cache in `data_dir` lacks (or holds for other inputs), then load it.

    The encoders and the VAE are released before this returns.
    """
    data_dir = Path(data_dir)
    manifest_path = data_dir / "data.json"
    manifest = read_json(manifest_path) if manifest_path.is_file() else {}
    audio_key = audio_fingerprint(tracks, engine.refs["audioldm2"].identity)
    latents_path = data_dir / "latents.safetensors"
    if manifest.get("audio_fingerprint") != audio_key or not latents_path.is_file():
        decoder = engine.store.decoder()
        encoded = encode_tracks(tracks, decoder, progress=progress)
        write_tensors(latents_path, {"mean": encoded.mean, "logvar": encoded.logvar})
        manifest = {
            "version": PREP_VERSION,
            "source": tracks.source,
            "kind": tracks.kind,
            "audio_fingerprint": audio_key,
            "vae_vocoder": engine.refs["audioldm2"].identity,
            "scaling_factor": decoder.scaling_factor,
            "segment_seconds": SEGMENT_SAMPLES / 16000,
            "segment_captions": encoded.captions,
            "tracks": encoded.tracks,
            "skipped": [vars(s) for s in [*tracks.skipped, *encoded.skipped]],
        }
        write_json(manifest_path, manifest)
    captions = list(dict.fromkeys(manifest["segment_captions"]))
    opts = engine.options
    identity = f"{engine.refs['t5'].identity}|{engine.refs['clap'].identity}|{opts.encoders}|"
    identity += opts.conditioning
    text_key = text_fingerprint(captions, prompts, identity)
    text_path = data_dir / "text.safetensors"
    if manifest.get("text_fingerprint") != text_key or not text_path.is_file():
        if progress is not None:
            progress("encode captions", 0, 1)
        rows = encode_texts(engine, captions, prompts)
        texts = rows.pop("texts")
        write_tensors(text_path, rows)
        manifest.update(
            text_fingerprint=text_key,
            texts=texts,
            encoders=opts.encoders,
            conditioning=opts.conditioning,
            t5=engine.refs["t5"].identity,
            clap=engine.refs["clap"].identity,
        )
        write_json(manifest_path, manifest)
        if progress is not None:
            progress("encode captions", 1, 1)
    engine.close()
    return load(data_dir)


def load(data_dir: Path) -> TrainData:
    """The prepared data of `data_dir` (see the module docstring)."""
    import torch
    from safetensors.torch import load_file

    manifest = read_json(Path(data_dir) / "data.json")
    lat = load_file(str(Path(data_dir) / "latents.safetensors"))
    text = load_file(str(Path(data_dir) / "text.safetensors"))
    row = {t: i for i, t in enumerate(manifest["texts"])}
    caption = torch.tensor([row[c] for c in manifest["segment_captions"]], dtype=torch.int64)
    prompts = {t: (text["txt"][i], text["y"][i]) for t, i in row.items()}
    seconds = sum(t["seconds"] for t in manifest["tracks"])
    summary = {
        "source": manifest["source"],
        "kind": manifest["kind"],
        "tracks": len(manifest["tracks"]),
        "segments": int(lat["mean"].shape[0]),
        "seconds": round(seconds, 2),
        "captions": len(set(manifest["segment_captions"])),
        "skipped": manifest["skipped"],
        "fingerprint": manifest["audio_fingerprint"] + manifest["text_fingerprint"],
    }
    return TrainData(
        mean=lat["mean"],
        logvar=lat["logvar"],
        caption=caption,
        txt=text["txt"],
        y=text["y"],
        empty_txt=text["empty_txt"],
        empty_y=text["empty_y"],
        scaling_factor=float(manifest["scaling_factor"]),
        prompts=prompts,
        summary=summary,
    )
