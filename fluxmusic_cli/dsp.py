"""Windows and mel filterbanks: the signal-processing facts the model's front end
(`engine.audio_in`), the classifiers' front ends (`evaluation.frontends`) and the spectrogram
pictures (`spectrogram`) share. numpy only, so any layer may import it.

Three filterbanks, because three published definitions are followed and each one's numbers
matter to its user:
- `slaney_mel_matrix`: librosa's default (Slaney scale, area-normalised triangles); the VAE's
  log-mel and PANNs CNN14.
- `htk_mel_matrix`: VGGish's (HTK scale, triangles linear in mel, the DC bin left out).
- `htk_hz_triangles`: the pictures' (HTK-spaced edges, triangles linear in Hz, peak 1, from 0 Hz).
"""

from __future__ import annotations

import numpy as np


def periodic_hann(length: int) -> np.ndarray:
    """The periodic ("DFT-even") Hann window that STFTs use."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(length) / length)


# -- mel scales ----------------------------------------------------------------------------------


def hz_to_mel_htk(hz: np.ndarray | float) -> np.ndarray:
    return 1127.0 * np.log(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def mel_to_hz_htk(mel: np.ndarray | float) -> np.ndarray:
    return 700.0 * (np.exp(np.asarray(mel, dtype=np.float64) / 1127.0) - 1.0)


def hz_to_mel_slaney(hz: np.ndarray | float) -> np.ndarray:
    """Slaney's Auditory Toolbox scale: linear below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    f_sp = 200.0 / 3.0
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, np.log(6.4) / 27.0
    linear = hz / f_sp
    log_part = min_log_mel + np.log(np.maximum(hz, min_log_hz) / min_log_hz) / logstep
    return np.where(hz >= min_log_hz, log_part, linear)


def mel_to_hz_slaney(mel: np.ndarray | float) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    f_sp = 200.0 / 3.0
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, np.log(6.4) / 27.0
    linear = f_sp * mel
    log_part = min_log_hz * np.exp(logstep * (mel - min_log_mel))
    return np.where(mel >= min_log_mel, log_part, linear)


# -- filterbanks ---------------------------------------------------------------------------------


def slaney_mel_matrix(
    sample_rate: int, n_fft: int, mels: int, fmin: float, fmax: float
) -> np.ndarray:
    """(n_fft//2 + 1, mels) area-normalised triangles, equal to librosa.filters.mel(...).T."""
    fft_hz = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    mel_hz = mel_to_hz_slaney(np.linspace(hz_to_mel_slaney(fmin), hz_to_mel_slaney(fmax), mels + 2))
    widths = np.diff(mel_hz)
    ramps = mel_hz[:, None] - fft_hz[None, :]
    weights = np.zeros((mels, fft_hz.shape[0]))
    for i in range(mels):
        lower = -ramps[i] / widths[i]
        upper = ramps[i + 2] / widths[i + 1]
        weights[i] = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_hz[2 : mels + 2] - mel_hz[:mels]))[:, None]
    return weights.T


def htk_mel_matrix(
    n_spectrum_bins: int, sample_rate: int, mels: int, fmin: float, fmax: float
) -> np.ndarray:
    """(n_spectrum_bins, mels) triangles, linear in HTK mel, peak 1, the DC bin left out (as
    VGGish defines them); right-multiplies a spectrum."""
    bins_mel = hz_to_mel_htk(np.linspace(0.0, sample_rate / 2.0, n_spectrum_bins))
    edges = np.linspace(hz_to_mel_htk(fmin), hz_to_mel_htk(fmax), mels + 2)
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bins_mel[:, None] - lower) / (centre - lower)
    falling = (upper - bins_mel[:, None]) / (upper - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights[0, :] = 0.0  # HTK leaves out the DC bin
    return weights


def htk_hz_triangles(sample_rate: int, n_fft: int, n_mels: int, fmax: float) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) triangles whose edges are evenly spaced on the HTK mel scale
    from 0 Hz to `fmax`, linear in Hz between them, peak 1, the DC bin kept; left-multiplies a
    spectrum.

    Not `htk_mel_matrix`: its triangles are linear in mel and skip DC, which VGGish's published
    numbers need. This one draws the spectrogram pictures, and stays as it is so that they do.
    """
    edges = mel_to_hz_htk(np.linspace(0.0, hz_to_mel_htk(fmax), n_mels + 2))
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs[None, :] - lo) / (mid - lo)
    falling = (hi - freqs[None, :]) / (hi - mid)
    return np.maximum(0.0, np.minimum(rising, falling))
