"""Front ends against their formulas on tones whose frequency sits on a known FFT bin."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fluxmusic_cli import dsp
from fluxmusic_cli.evaluation import frontends as fe

SR = 16_000


def test_vggish_frames_and_examples_follow_window_and_hop():
    wave = np.zeros(2 * SR)
    assert fe.vggish_log_mel(wave).shape == (1 + (2 * SR - 400) // 160, 64)
    assert fe.vggish_examples(wave).shape == (2, 96, 64)
    assert fe.vggish_examples(np.zeros(fe.vggish_min_samples() - 1)).shape[0] == 0
    assert fe.vggish_examples(np.zeros(fe.vggish_min_samples())).shape[0] == 1


def test_vggish_mel_matrix_is_htk_triangles_between_125_and_7500_hz():
    m = fe.vggish_mel_matrix()
    hz = np.linspace(0, SR / 2, 257)
    assert m.shape == (257, 64)
    assert np.all(m[0] == 0) and np.all(m[hz < 125] == 0) and np.all(m[hz > 7500] == 0)
    edges = np.linspace(dsp.hz_to_mel_htk(125), dsp.hz_to_mel_htk(7500), 66)
    centre_hz = 700 * (np.exp(edges[1:-1] / 1127) - 1)
    # Each band is largest at the FFT bin nearest its centre frequency.
    nearest = np.abs(hz[:, None] - centre_hz[None]).argmin(axis=0)
    assert np.all(m.argmax(axis=0) == nearest)


def test_vggish_log_mel_of_a_bin_centred_tone_matches_the_dft_formula():
    freq, amp = 1000.0, 0.5  # 1000 Hz is FFT bin 32 of a 512-point FFT at 16 kHz
    wave = amp * np.cos(2 * np.pi * freq * np.arange(SR) / SR)
    n = np.arange(400)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * n / 400)
    k = np.arange(257)
    dft = np.abs((wave[:400] * window) @ np.exp(-2j * np.pi * np.outer(n, k) / 512))
    expected = np.log(dft @ fe.vggish_mel_matrix() + 0.01)
    got = fe.vggish_log_mel(wave)
    assert np.allclose(got[0], expected, atol=1e-9)
    edges = np.linspace(dsp.hz_to_mel_htk(125), dsp.hz_to_mel_htk(7500), 66)
    assert got[0].argmax() == np.abs(edges[1:-1] - dsp.hz_to_mel_htk(freq)).argmin()


def test_slaney_filterbank_matches_librosa_reference_values():
    # librosa.filters.mel(sr=16000, n_fft=512, n_mels=64, fmin=50, fmax=8000), band 20
    m = dsp.slaney_mel_matrix(SR, 512, 64, 50.0, 8000.0)
    assert m.shape == (257, 64)
    assert m[31:34, 20] == pytest.approx([0.002771869, 0.017163323, 0.011325866], rel=1e-5)
    assert m.sum() == pytest.approx(2.0493479, rel=1e-6)


def test_cnn14_log_mel_of_a_bin_centred_tone_matches_the_closed_form():
    amp = 0.25
    wave = amp * np.cos(2 * np.pi * 1000.0 * np.arange(SR) / SR)
    out = fe.cnn14_log_mel(torch.tensor(wave[None], dtype=torch.float64))
    assert out.shape == (1, 1, SR // 160 + 1, 64)
    # A full-length periodic Hann puts 128A in bin 32 and -64A in bins 31 and 33.
    power = np.zeros(257)
    power[32] = (128 * amp) ** 2
    power[31] = power[33] = (64 * amp) ** 2
    mel = dsp.slaney_mel_matrix(SR, 512, 64, 50, 8000)
    expected = 10 * np.log10(np.maximum(power @ mel, 1e-10))
    middle = out[0, 0, 50].numpy()
    assert np.allclose(middle, expected, atol=1e-6)
    assert middle.argmax() == 20
