"""Putting a user's own recording back where frames were kept.

The VAE round trip loses detail, so kept regions play the recording itself; towards a
generated region the two are blended linearly over `crossfade` seconds lying inside the kept
region. Pure numpy over 16 kHz mono samples.
"""

from __future__ import annotations

import numpy as np

SAMPLE_RATE = 16_000
SAMPLES_PER_FRAME = 640


def frame_mask_to_samples(mask: np.ndarray, length: int) -> np.ndarray:
    """(T,) per latent frame (1 = generated) -> (length,) bool per sample."""
    per_sample = np.repeat(np.asarray(mask) > 0, SAMPLES_PER_FRAME)
    if per_sample.shape[0] < length:
        per_sample = np.concatenate([per_sample, np.ones(length - per_sample.shape[0], bool)])
    return per_sample[:length]


def distance_to_generated(generated: np.ndarray, *, circular: bool = False) -> np.ndarray:
    """Samples from each sample to the nearest generated one (0 on generated samples, inf
    where nothing is generated). `circular` measures around the ends, as in a loop."""
    n = generated.shape[0]
    idx = np.flatnonzero(generated)
    if idx.size == 0:
        return np.full(n, np.inf)
    pos = np.arange(n)
    right = np.searchsorted(idx, pos)  # first generated index >= pos
    after = np.where(right < idx.size, idx[np.minimum(right, idx.size - 1)] - pos, np.inf)
    before = np.where(right > 0, pos - idx[np.maximum(right - 1, 0)], np.inf)
    dist = np.minimum(after, before)
    if circular:
        dist = np.minimum(dist, np.minimum(pos + (n - idx[-1]), (idx[0] + n) - pos))
    return dist


def decoded_weight(
    generated: np.ndarray, original_length: int, crossfade: float, *, circular: bool = False
) -> np.ndarray:
    """Weight of the decoded audio per sample: 1 where generated, 1 - d / crossfade (floored at
    0) in kept regions at d seconds from the nearest generated sample, 1 past the recording."""
    dist = distance_to_generated(generated, circular=circular) / SAMPLE_RATE
    w = np.maximum(0.0, 1.0 - dist / crossfade) if crossfade > 0 else np.zeros(dist.shape[0])
    w[generated] = 1.0
    w[original_length:] = 1.0
    return w


def splice(decoded: np.ndarray, original: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """w * decoded + (1 - w) * original, the original zero-extended to the decoded length."""
    n = decoded.shape[0]
    orig = np.zeros(n, dtype=np.float64)
    m = min(n, original.shape[0])
    orig[:m] = original[:m]
    out = weight * decoded.astype(np.float64) + (1.0 - weight) * orig
    return out.astype(np.float32)
