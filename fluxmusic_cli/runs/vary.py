"""One prompt across a grid of seeds, guidance scales, step counts and text encoders.

`plan_vary` turns the axes into batch items (so `vary` shares the manifest, resuming and the
run loop with `batch`); `render_page` draws a mel spectrogram per clip, an `index.html` that
plays every clip offline, and `grid.png` with all spectrograms in one labelled picture. Each
carries the tool's mark (`ownership`), so a rerun redraws them and never replaces a user's own
file of the same name without `--force` (`check_files`, before any model loads).
numpy at module level; scipy and matplotlib load inside the functions that draw.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from fluxmusic_cli.engine.conditioning import ENCODER_SUBSETS
from fluxmusic_cli.engine.requests import MAX_GUIDANCE, MAX_SEED, MAX_STEPS
from fluxmusic_cli.errors import UsageError
from fluxmusic_cli.formats import FORMATS
from fluxmusic_cli.manifest import MANIFEST
from fluxmusic_cli.output import refuse_own_input, refuse_taken, write_file
from fluxmusic_cli.ownership import html_mark, is_ours, png_mark
from fluxmusic_cli.runs.plan import Edit, Item, Plan, Settings, unique_names
from fluxmusic_cli.spectrogram import figure as _figure
from fluxmusic_cli.spectrogram import mel_spectrogram, png_bytes, spectrogram_png

INDEX = "index.html"
GRID = "grid.png"
MAX_CELLS = 1024


# -- axes ----------------------------------------------------------------------------------------


def parse_seeds(text: str) -> list[int]:
    """`1,2,3`, `1-8` or a mix (`0-3,10`); repeats dropped, order kept."""
    seeds: list[int] = []
    for part in _parts(text, "--seeds"):
        m = re.fullmatch(r"(\d+)\s*-\s*(\d+)", part)
        if m:
            lo, hi = int(m.group(1)), int(m.group(2))
            if hi < lo:
                raise UsageError(f"--seeds range {part!r} runs backwards; write {hi}-{lo}.")
            if hi - lo >= MAX_CELLS:
                raise UsageError(f"--seeds range {part!r} has over {MAX_CELLS} seeds.")
            seeds.extend(range(lo, hi + 1))
        elif part.isdigit():
            seeds.append(int(part))
        else:
            raise UsageError(f"--seeds takes whole numbers like 1,2,3 or 1-8, got {part!r}.")
    for s in seeds:
        if s > MAX_SEED:
            raise UsageError(f"Seed {s} is above the largest seed, {MAX_SEED}.")
    return list(dict.fromkeys(seeds))


def parse_guidance(text: str) -> list[float]:
    values = []
    for part in _parts(text, "--guidance"):
        try:
            value = float(part)
        except ValueError:
            raise UsageError(f"--guidance takes numbers like 2,3.5,7, got {part!r}.") from None
        if not np.isfinite(value) or not 0 <= value <= MAX_GUIDANCE:
            raise UsageError(
                f"Guidance must be a number >= 0 and <= {MAX_GUIDANCE:g}, got {part!r}."
            )
        values.append(value)
    return list(dict.fromkeys(values))


def parse_steps(text: str) -> list[int]:
    values = []
    for part in _parts(text, "--steps"):
        if not part.isdigit() or not 1 <= int(part) <= MAX_STEPS:
            raise UsageError(f"--steps takes whole numbers from 1 to {MAX_STEPS}, got {part!r}.")
        values.append(int(part))
    return list(dict.fromkeys(values))


def parse_encoders(text: str) -> list[str]:
    values = []
    for part in _parts(text, "--encoders"):
        if part not in ENCODER_SUBSETS:
            raise UsageError(
                f"--encoders takes {', '.join(ENCODER_SUBSETS)} (comma-separated), got {part!r}."
            )
        values.append(part)
    return list(dict.fromkeys(values))


def _parts(text: str, option: str) -> list[str]:
    parts = [p.strip() for p in text.split(",")]
    if not text.strip() or any(not p for p in parts):
        raise UsageError(f"{option} takes a comma-separated list, got {text!r}.")
    return parts


def cell_name(
    seed: int, guidance: float, steps: int, encoders: str, strength: float | None = None
) -> str:
    """File name stem from a cell's values, e.g. `seed1_cfg3.5_steps50_both` (a remix of
    `--input` adds its strength: `..._both_str0.5`)."""
    name = f"seed{seed}_cfg{guidance:g}_steps{steps}_{encoders}"
    return name if strength is None else f"{name}_str{strength:g}"


def parse_strengths(text: str) -> list[float]:
    """Remix strengths, e.g. 0.25,0.5,0.75: each between 0 and 1."""
    out = []
    for part in _parts(text, "--strength"):
        try:
            value = float(part)
        except ValueError:
            value = float("nan")
        if not 0.0 <= value <= 1.0:
            raise UsageError(f"--strength takes numbers from 0 to 1, got {part!r}.")
        out.append(value)
    return list(dict.fromkeys(out))


@dataclass(frozen=True)
class Axes:
    seeds: list[int]
    guidance: list[float]
    steps: list[int]
    encoders: list[str]
    strengths: list[float | None] = field(default_factory=lambda: [None])

    @property
    def panels(self) -> list[tuple[int, str, float | None]]:
        """One table (and one band of grid.png) per steps x encoders x strength combination."""
        return [(n, e, st) for n in self.steps for e in self.encoders for st in self.strengths]

    @property
    def size(self) -> int:
        return len(self.seeds) * len(self.guidance) * len(self.panels)


def plan_vary(
    prompt: str, out_dir: Path, axes: Axes, settings: Settings, source: Any = None
) -> Plan:
    """The cartesian grid as batch items: panels, then seeds (rows), then guidance (columns).
    With `source` (an EditSource), the cells with a strength remix that recording."""
    prompt = " ".join(prompt.split())
    if not prompt:
        raise UsageError('Empty prompt: describe the music, e.g. "warm lo-fi piano".')
    if axes.size > MAX_CELLS:
        raise UsageError(f"The grid has {axes.size} cells; {MAX_CELLS} at most, split it up.")
    cells = [
        (s, g, n, e, st) for n, e, st in axes.panels for s in axes.seeds for g in axes.guidance
    ]
    remix_duration = None
    if source is not None:
        remix_duration = round(source.samples.shape[0] / 16000, 6)
    names = unique_names(cell_name(*c) for c in cells)
    base = settings.clip
    out_dir = Path(out_dir)
    items = [
        Item(
            index=i,
            name=name,
            prompt=prompt,
            seed=s,
            settings=replace(
                base,
                steps=n,
                guidance=g,
                encoders=e,
                duration=base.duration if st is None else remix_duration,
            ),
            path=out_dir / f"{name}.{settings.fmt}",
            writer=settings.writer,
            edit=None if st is None else Edit("remix", source, strength=st),
        )
        for i, ((s, g, n, e, st), name) in enumerate(zip(cells, names, strict=True))
    ]
    return Plan(out_dir=out_dir, items=items, total=len(items))


def cell_strength(item: Item) -> float | None:
    """The remix strength of a cell; None for a cell made from noise."""
    return None if item.edit is None else item.edit.strength


# -- spectrograms ----------------------------------------------------------------------------------


def _read_audio(path: Path) -> tuple[np.ndarray, int]:
    import soundfile as sf

    data, rate = sf.read(path, dtype="float32", always_2d=False)
    return data, rate


# -- the page and the grid -----------------------------------------------------------------------


@dataclass
class Cell:
    item: Item
    audio: str | None  # file name beside index.html, None when the clip is missing
    image: str | None
    record: dict[str, Any] | None


def page_files(plan: Plan) -> list[Path]:
    """The files `render_page` writes beside the clips."""
    out_dir = plan.out_dir
    return [out_dir / INDEX, out_dir / GRID, *(out_dir / _image(i) for i in plan.items)]


def check_files(plan: Plan, *, force: bool, source: Path | None = None) -> None:
    """Refuse, before any model loads, a page file in the folder that the tool did not write
    (a user's own index.html) unless `force`, and a cell that would be the remixed recording
    `source` (or its record) even with `force`."""
    if source is not None:
        for item in plan.items:
            refuse_own_input(item.path, source, save_latent=False)
    if not force:
        refuse_taken(page_files(plan), ours=is_ours)


def _image(item: Item) -> str:
    return f"{item.name}.mel.png"


def render_page(
    plan: Plan,
    axes: Axes,
    manifest: dict[str, dict[str, Any]],
    *,
    title_settings: dict[str, Any],
    force: bool = False,
) -> tuple[Path, Path]:
    """Spectrogram PNGs, `index.html` and `grid.png` for the finished cells of `plan`, each
    marked as the tool's; a file of one of those names that is not the tool's is replaced only
    with `force`."""
    out_dir = plan.out_dir

    def write(name: str, data: bytes) -> Path:
        return write_file(out_dir / name, data, force=force, ours=is_ours)

    cells: dict[str, Cell] = {}
    spectra: dict[str, tuple[np.ndarray, float, float]] = {}
    for item in plan.items:
        entry = manifest.get(item.name)
        audio_path = out_dir / item.path.name
        if entry is None or not audio_path.is_file():
            cells[item.name] = Cell(item, None, None, None)
            continue
        data, rate = _read_audio(audio_path)
        db, fmax = mel_spectrogram(data, rate)
        duration = data.shape[0] / rate
        spectra[item.name] = (db, duration, fmax)
        image = _image(item)
        write(image, spectrogram_png(db, duration, fmax, metadata=png_mark(MANIFEST)))
        cells[item.name] = Cell(item, item.path.name, image, entry)
    index = write(INDEX, _page_html(plan, axes, cells, title_settings).encode("utf-8"))
    grid = write(GRID, _grid_png(plan, axes, spectra, title_settings))
    return index, grid


def _lookup(plan: Plan) -> dict[tuple, Item]:
    return {
        (i.settings.steps, i.settings.encoders, cell_strength(i), i.seed, i.settings.guidance): i
        for i in plan.items
    }


def _settings_line(settings: dict[str, Any]) -> str:
    return " · ".join(f"{k} {v}" for k, v in settings.items() if v not in (None, ""))


def _page_html(plan: Plan, axes: Axes, cells: dict[str, Cell], settings: dict[str, Any]) -> str:
    esc = html.escape
    prompt = plan.items[0].prompt
    lookup = _lookup(plan)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        html_mark(MANIFEST),
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(prompt)} · fluxmusic vary</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{esc(prompt)}</h1>",
        f'<p class="settings">{esc(_settings_line(settings))}</p>',
    ]
    for steps, encoders, strength in axes.panels:
        remix = "" if strength is None else f" · remix strength {strength:g}"
        parts.append(f"<h2>{steps} steps · encoders {esc(encoders)}{remix}</h2>")
        parts.append('<table><thead><tr><th scope="col"></th>')
        parts += [f'<th scope="col">guidance {g:g}</th>' for g in axes.guidance]
        parts.append("</tr></thead><tbody>")
        for seed in axes.seeds:
            parts.append(f'<tr><th scope="row">seed {seed}</th>')
            for g in axes.guidance:
                cell = cells[lookup[(steps, encoders, strength, seed, g)].name]
                parts.append(f"<td>{_cell_html(cell)}</td>")
            parts.append("</tr>")
        parts.append("</tbody></table>")
    parts.append(
        f'<p class="foot">Spectrograms: 64-band mel, 0 to 8 kHz. Every clip has its generation '
        f'record beside it (NAME.json); all of them are in <a href="{MANIFEST}">'
        f'{MANIFEST}</a>. The grid as one picture: <a href="{GRID}">{GRID}</a>.</p>'
    )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _cell_html(cell: Cell) -> str:
    item = cell.item
    s = item.settings
    label = f"seed {item.seed}, guidance {s.guidance:g}, {s.steps} steps, {s.encoders}"
    if item.edit is not None:
        label += f", strength {item.edit.strength:g}"
    if cell.audio is None:
        return f'<div class="missing">not generated<br><small>{html.escape(label)}</small></div>'
    src = quote(cell.audio)
    img = quote(cell.image or "")
    return (
        f'<figure><img src="{img}" alt="mel spectrogram: {html.escape(label)}" width="320" '
        f'height="160"><audio controls preload="metadata" title="{html.escape(label)}">'
        f'<source src="{src}" type="{FORMATS[item.fmt].mime}"></audio>'
        f'<figcaption><a href="{src}">{html.escape(cell.audio)}</a></figcaption></figure>'
    )


_CSS = (
    "body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222;background:#fafafa}"
    "h1{font-size:1.3rem;margin:0 0 .3rem}h2{font-size:1.05rem;margin:1.4rem 0 .4rem}"
    ".settings,.foot{color:#555;font-size:.85rem}table{border-collapse:collapse}"
    "th{font-weight:600;font-size:.85rem;padding:.3rem .5rem;white-space:nowrap}"
    "td{padding:.3rem;vertical-align:top}figure{margin:0;width:320px}"
    "img{display:block;width:320px;height:160px;background:#000}"
    "audio{width:320px;margin-top:.2rem}figcaption{font-size:.75rem;color:#666}"
    ".missing{width:320px;height:160px;display:flex;align-items:center;justify-content:center;"
    "text-align:center;background:#eee;color:#a00}"
)


def _grid_png(
    plan: Plan,
    axes: Axes,
    spectra: dict[str, tuple[np.ndarray, float, float]],
    settings: dict[str, Any],
) -> bytes:
    import textwrap

    lookup = _lookup(plan)
    rows = [(n, e, st, s) for n, e, st in axes.panels for s in axes.seeds]
    ncols = len(axes.guidance)
    width = 1.2 + 2.4 * ncols
    fig = _figure(width, 1.0 + 1.25 * len(rows), layout="constrained")
    axs = fig.subplots(len(rows), ncols, squeeze=False)
    for r, (steps, encoders, strength, seed) in enumerate(rows):
        for c, g in enumerate(axes.guidance):
            ax = axs[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            found = spectra.get(lookup[(steps, encoders, strength, seed, g)].name)
            if found is None:
                ax.text(0.5, 0.5, "not generated", ha="center", va="center", color="#a00")
            else:
                db, duration, fmax = found
                extent = (0, duration, 0, fmax)
                ax.imshow(db, origin="lower", aspect="auto", cmap="magma", extent=extent)
            if r == 0:
                ax.set_title(f"guidance {g:g}", fontsize=9)
            if c == 0:
                label = f"seed {seed}"
                if len(axes.panels) > 1:
                    label += f"\n{steps} steps, {encoders}"
                    if strength is not None:
                        label += f", strength {strength:g}"
                ax.set_ylabel(label, fontsize=8)
    chars = int(width * 13)  # about how many 9-point characters fit across
    title = textwrap.shorten(plan.items[0].prompt, 2 * chars, placeholder=" ...")
    lines = textwrap.wrap(title, chars) + textwrap.wrap(_settings_line(settings), chars)
    fig.suptitle("\n".join(lines), fontsize=9)
    return png_bytes(fig, metadata=png_mark(MANIFEST))
