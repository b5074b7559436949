"""Mel spectrograms as pictures: the `vary` page's cells and grid, and the training sample page.

numpy at module level; scipy and matplotlib load inside the functions that draw. Figures are
bare `Figure`s on the Agg canvas (no pyplot state, no GUI backend), safe in any process.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fluxmusic_cli.dsp import htk_hz_triangles, periodic_hann


def mel_spectrogram(
    samples: np.ndarray, sample_rate: int, *, n_mels: int = 64, top_db: float = 80.0
) -> tuple[np.ndarray, float]:
    """Log-mel power in dB, (n_mels, frames), and the top frequency shown.

    Window and hop follow the model's own mel (1024 / 160 at 16 kHz), scaled to the rate.
    The model makes nothing above 8 kHz, so the picture stops there.
    """
    from scipy.signal import stft

    data = np.asarray(samples, dtype=np.float64)
    if data.ndim == 2:
        data = data.mean(axis=1)
    n_fft = 1 << int(np.ceil(np.log2(1024 * sample_rate / 16000)))
    hop = max(1, round(sample_rate / 100))
    if data.shape[0] < n_fft:
        data = np.pad(data, (0, n_fft - data.shape[0]))
    _, _, spec = stft(
        data, fs=sample_rate, window=periodic_hann(n_fft), nperseg=n_fft, noverlap=n_fft - hop
    )
    power = np.abs(spec) ** 2
    fmax = min(8000.0, sample_rate / 2)
    mel = htk_hz_triangles(sample_rate, n_fft, n_mels, fmax) @ power
    db = 10.0 * np.log10(np.maximum(mel, 1e-10))
    return np.maximum(db, db.max() - top_db), fmax


def figure(width: float, height: float, layout: str | None = None):
    """A matplotlib Figure of `width` x `height` inches at 100 dpi on the Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def write_spectrogram_png(path: Path, db: np.ndarray, duration: float, fmax: float) -> Path:
    """One spectrogram, 320 x 160 pixels, no axes, written atomically."""
    from fluxmusic_cli import atomic

    return atomic.write_bytes(path, spectrogram_png(db, duration, fmax))


def spectrogram_png(
    db: np.ndarray,
    duration: float,
    fmax: float,
    *,
    metadata: dict[str, str] | None = None,
    size: tuple[float, float] = (3.2, 1.6),
) -> bytes:
    """One spectrogram as PNG bytes, no axes, `size` inches at 100 dpi (320 x 160 pixels
    unless told); `metadata` as text chunks."""
    fig = figure(*size)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(db, origin="lower", aspect="auto", cmap="magma", extent=(0, duration, 0, fmax))
    ax.set_axis_off()
    return png_bytes(fig, metadata=metadata)


def png_bytes(fig, *, metadata: dict[str, str] | None = None) -> bytes:
    """`fig` as PNG bytes, with `metadata` as text chunks."""
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata=metadata)
    return buffer.getvalue()
