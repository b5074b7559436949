"""`--sample-every`: clips from the weights as they train, on one listening page.

`RUN_DIR/samples/index.html` has a row per sample prompt and a column per sampled step, each
cell a mel spectrogram (drawn by `spectrogram`, as on the `vary` page) with the clip under it.
The same seed is used at every step, so a row shows how one piece of music changes with
training.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fluxmusic_cli.engine import sampling
from fluxmusic_cli.training.files import atomic_path, read_json, write_json

INDEX = "index.html"
STEPS_FILE = "samples.json"


@dataclass(frozen=True)
class SampleSettings:
    prompts: tuple[str, ...]
    every: int
    steps: int = 25
    guidance: float = 3.5
    negative_prompt: str = ""
    seconds: float = sampling.TRAINED_SECONDS


def render(
    model, decoder, rows: dict[str, tuple[Any, Any]], settings: SampleSettings, *, seed: int
) -> list[Any]:
    """One waveform (np.ndarray, 16 kHz) per sample prompt from `model` as it is now."""
    import torch

    length = sampling.latent_length(settings.seconds)
    was_training = model.training
    model.eval()
    waves = []
    try:
        with torch.no_grad():
            for k, prompt in enumerate(settings.prompts):
                txt = torch.stack([rows[prompt][0], rows[settings.negative_prompt][0]])
                y = torch.stack([rows[prompt][1], rows[settings.negative_prompt][1]])
                velocity = sampling.model_velocity(model, txt, y, length=length)
                noise = sampling.get_noise([seed + k], length)
                img = sampling.patchify(noise).to(next(model.parameters()).device)
                final = sampling.denoise(
                    velocity, img, sampling.get_schedule(settings.steps), settings.guidance
                )
                wave = decoder.decode(sampling.unpatchify(final, length))
                waves.append(wave[0, : sampling.num_samples(settings.seconds)].numpy())
    finally:
        model.train(was_training)
    return waves


def write_step(folder: Path, step: int, settings: SampleSettings, waves: list[Any]) -> Path:
    """Write this step's clips and spectrograms, then rebuild the page; returns the page."""
    from fluxmusic_cli.audio import write_audio
    from fluxmusic_cli.spectrogram import mel_spectrogram, write_spectrogram_png

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for k, wave in enumerate(waves):
        name = f"p{k + 1}-step{step:06d}"
        write_audio(folder / f"{name}.wav", wave, sampling.SAMPLE_RATE)
        db, fmax = mel_spectrogram(wave, sampling.SAMPLE_RATE)
        write_spectrogram_png(
            folder / f"{name}.mel.png", db, len(wave) / sampling.SAMPLE_RATE, fmax
        )
    index = folder / STEPS_FILE
    steps = read_json(index)["steps"] if index.is_file() else []
    steps = sorted({*steps, step})
    write_json(index, {"steps": steps, "prompts": list(settings.prompts)})
    page = folder / INDEX
    with atomic_path(page) as tmp:
        tmp.write_text(_page(settings, steps), encoding="utf-8")
    return page


def _page(settings: SampleSettings, steps: list[int]) -> str:
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>fluxmusic train · samples</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>Samples during training</h1>",
        f'<p class="settings">{settings.steps} steps · guidance {settings.guidance:g} · '
        f"the same seed at every training step</p>",
        '<table><thead><tr><th scope="col">prompt</th>',
        *(f'<th scope="col">step {s}</th>' for s in steps),
        "</tr></thead><tbody>",
    ]
    for k, prompt in enumerate(settings.prompts):
        parts.append(f'<tr><th scope="row">{esc(prompt)}</th>')
        for s in steps:
            name = quote(f"p{k + 1}-step{s:06d}")
            parts.append(
                f'<td><figure><img src="{name}.mel.png" alt="mel spectrogram, step {s}" '
                f'width="320" height="160"><audio controls preload="metadata" '
                f'src="{name}.wav"></audio></figure></td>'
            )
        parts.append("</tr>")
    parts.append("</tbody></table></body></html>")
    return "\n".join(parts) + "\n"


_CSS = (
    "body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222;background:#fafafa}"
    "h1{font-size:1.3rem}.settings{color:#555;font-size:.85rem}table{border-collapse:collapse}"
    "th{font-weight:600;font-size:.85rem;padding:.3rem .5rem;text-align:left;max-width:16rem}"
    "td{padding:.3rem;vertical-align:top}figure{margin:0;width:320px}"
    "img{display:block;width:320px;height:160px;background:#000}audio{width:320px}"
)
