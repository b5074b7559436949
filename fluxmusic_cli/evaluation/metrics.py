"""The metric maths, on plain numpy arrays in float64. No models, no files, no torch.

Definitions follow `audioldm_eval` (the library the FluxMusic paper used), with its numerical
traps removed: the Frechet distance takes Tr sqrt(S1 S2) from a symmetric eigenproblem, so it is
never complex and never negative; the reference's `scipy.linalg.sqrtm` route stays available for
comparison.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

SqrtMethod = Literal["eigh", "sqrtm"]

KL_EPS = 1e-6  # added to the generated-set probabilities before the log, as audioldm_eval does
IS_SEED = 2020  # audioldm_eval shuffles rows with this seed before splitting
IS_SPLITS = 10


@dataclass(frozen=True)
class GaussianStats:
    """Mean and unbiased (N-1) covariance of a set of embedding rows."""

    mu: np.ndarray  # (d,)
    sigma: np.ndarray  # (d, d)
    n: int

    @property
    def dim(self) -> int:
        return int(self.mu.shape[0])


def gaussian_stats(rows: np.ndarray) -> GaussianStats:
    """Fit a Gaussian to `rows` (n, d); needs at least two rows for a covariance."""
    x = np.asarray(rows, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"expected a 2-D array of embedding rows, got shape {x.shape}")
    if x.shape[0] < 2:
        raise ValueError(f"a covariance needs at least 2 embedding rows, got {x.shape[0]}")
    mu = x.mean(axis=0)
    sigma = np.atleast_2d(np.cov(x, rowvar=False, ddof=1))
    return GaussianStats(mu=mu, sigma=sigma, n=int(x.shape[0]))


def _symmetric(m: np.ndarray) -> np.ndarray:
    return 0.5 * (m + m.T)


def psd_sqrt(m: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix (negative eigenvalues -> 0)."""
    w, v = np.linalg.eigh(_symmetric(np.asarray(m, dtype=np.float64)))
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def trace_sqrt_product(s1: np.ndarray, s2: np.ndarray) -> float:
    """Tr sqrt(S1 S2) for covariances S1, S2.

    S1 S2 is not symmetric, but it is similar to sqrt(S1) S2 sqrt(S1), which is symmetric PSD;
    its eigenvalues are real and non-negative up to rounding, which we clip.
    """
    a = psd_sqrt(s1)
    m = _symmetric(a @ np.asarray(s2, dtype=np.float64) @ a)
    eigenvalues = np.clip(np.linalg.eigvalsh(m), 0.0, None)
    return float(np.sqrt(eigenvalues).sum())


def trace_sqrt_product_sqrtm(s1: np.ndarray, s2: np.ndarray, eps: float = 1e-6) -> float:
    """The reference library's route: `scipy.linalg.sqrtm(S1 @ S2)`, for compatibility checks.

    Like the reference, a non-finite result is retried with `eps` on both diagonals and a small
    imaginary part is dropped; a large one is an error rather than a silently wrong number.
    """
    from scipy import linalg

    s1 = np.asarray(s1, dtype=np.float64)
    s2 = np.asarray(s2, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        covmean = linalg.sqrtm(s1 @ s2)
        if not np.isfinite(covmean).all():
            offset = np.eye(s1.shape[0]) * eps
            covmean = linalg.sqrtm((s1 + offset) @ (s2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0.0, atol=1e-3):
            raise ValueError(
                f"sqrtm gave an imaginary component of {np.max(np.abs(covmean.imag)):.3g}; "
                "use the default eigenvalue route"
            )
        covmean = covmean.real
    return float(np.trace(covmean))


def frechet_distance(a: GaussianStats, b: GaussianStats, method: SqrtMethod = "eigh") -> float:
    """FD = |mu1 - mu2|^2 + Tr S1 + Tr S2 - 2 Tr sqrt(S1 S2), clipped at 0 (rounding only)."""
    if a.dim != b.dim:
        raise ValueError(f"embedding sizes differ: {a.dim} vs {b.dim}")
    diff = a.mu - b.mu
    if method == "eigh":
        tr_covmean = trace_sqrt_product(a.sigma, b.sigma)
    elif method == "sqrtm":
        tr_covmean = trace_sqrt_product_sqrtm(a.sigma, b.sigma)
    else:
        raise ValueError(f"unknown square-root method {method!r}; use 'eigh' or 'sqrtm'")
    value = float(diff @ diff + np.trace(a.sigma) + np.trace(b.sigma) - 2.0 * tr_covmean)
    return max(value, 0.0)


def min_rows_for_stable_fd(dim: int) -> int:
    """Below 2x the embedding size the covariance is badly estimated and FD is biased upward."""
    return 2 * dim


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * logits))


def _xlogx(p: np.ndarray) -> np.ndarray:
    # 0 log 0 = 0, as torch.nn.functional.kl_div treats a zero target.
    out = np.zeros_like(p)
    positive = p > 0
    out[positive] = p[positive] * np.log(p[positive])
    return out


@dataclass(frozen=True)
class KLResult:
    """KL(reference || generated) per pair, and their means (the reported numbers)."""

    softmax: float
    sigmoid: float
    per_item_softmax: np.ndarray = field(repr=False)
    per_item_sigmoid: np.ndarray = field(repr=False)


def kl_divergence(reference_logits: np.ndarray, generated_logits: np.ndarray) -> KLResult:
    """Paired classifier KL, as audioldm_eval computes it (rows must already be paired by id).

    softmax: sum_c p_ref (log p_ref - log(p_gen + 1e-6)); sigmoid: the same sum over the
    per-class sigmoid outputs, a multi-label variant the reference reports beside it.
    """
    ref = np.asarray(reference_logits, dtype=np.float64)
    gen = np.asarray(generated_logits, dtype=np.float64)
    if ref.shape != gen.shape or ref.ndim != 2:
        raise ValueError(f"paired logits must have equal 2-D shapes, got {ref.shape}, {gen.shape}")
    p, q = _softmax(ref), _softmax(gen)
    per_softmax = (_xlogx(p) - p * np.log(q + KL_EPS)).sum(axis=1)
    ps, qs = _sigmoid(ref), _sigmoid(gen)
    per_sigmoid = (_xlogx(ps) - ps * np.log(qs + KL_EPS)).sum(axis=1)
    return KLResult(
        softmax=float(per_softmax.mean()),
        sigmoid=float(per_sigmoid.mean()),
        per_item_softmax=per_softmax,
        per_item_sigmoid=per_sigmoid,
    )


@dataclass(frozen=True)
class InceptionScore:
    mean: float
    std: float
    split_scores: tuple[float, ...]


def inception_score(
    logits: np.ndarray, splits: int = IS_SPLITS, seed: int = IS_SEED, shuffle: bool = True
) -> InceptionScore:
    """exp(E_x KL(p(y|x) || p(y))) per split; mean and population std over splits."""
    x = np.asarray(logits, dtype=np.float64)
    n = x.shape[0]
    if n < splits:
        raise ValueError(f"the inception score needs at least {splits} clips (one per split)")
    if shuffle:
        x = x[np.random.RandomState(seed).permutation(n)]
    p, log_p = _softmax(x), _log_softmax(x)
    scores = []
    for i in range(splits):
        lo, hi = i * n // splits, (i + 1) * n // splits
        chunk_p, chunk_log_p = p[lo:hi], log_p[lo:hi]
        marginal = chunk_p.mean(axis=0, keepdims=True)
        kl = (chunk_p * (chunk_log_p - np.log(marginal))).sum(axis=1)
        scores.append(float(np.exp(kl.mean())))
    return InceptionScore(
        mean=float(np.mean(scores)), std=float(np.std(scores)), split_scores=tuple(scores)
    )


def cosine_similarities(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine between paired rows of `a` and `b` (both (n, d))."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired embeddings must have equal shapes, got {a.shape}, {b.shape}")
    na = np.linalg.norm(a, axis=1)
    nb = np.linalg.norm(b, axis=1)
    denom = np.maximum(na * nb, 1e-12)
    return (a * b).sum(axis=1) / denom


@dataclass(frozen=True)
class FadInfinity:
    """FD extrapolated to infinitely many samples: the intercept of FD against 1/n."""

    intercept: float
    slope: float
    r2: float
    sizes: tuple[int, ...]
    values: tuple[float, ...]


def default_infinity_sizes(n_rows: int, steps: int = 10) -> list[int]:
    """Sub-sample sizes from a fifth of the rows up to all of them (at least 2 distinct)."""
    lo = max(2, n_rows // 5)
    sizes = sorted({int(round(s)) for s in np.linspace(lo, n_rows, steps)})
    if len(sizes) < 2:
        raise ValueError(f"FAD-infinity needs at least 3 embedding rows, got {n_rows}")
    return sizes


def fad_infinity(
    generated_rows: np.ndarray,
    reference: GaussianStats,
    sizes: list[int] | None = None,
    seed: int = IS_SEED,
    method: SqrtMethod = "eigh",
) -> FadInfinity:
    """Fit FD(n) = intercept + slope / n over random sub-samples of the generated rows."""
    rows = np.asarray(generated_rows, dtype=np.float64)
    sizes = sizes or default_infinity_sizes(rows.shape[0])
    rng = np.random.RandomState(seed)
    values = []
    for n in sizes:
        idx = rng.choice(rows.shape[0], size=n, replace=False)
        values.append(frechet_distance(gaussian_stats(rows[idx]), reference, method=method))
    x = 1.0 / np.asarray(sizes, dtype=np.float64)
    y = np.asarray(values)
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (intercept + slope * x)
    total = ((y - y.mean()) ** 2).sum()
    r2 = 1.0 - float((residual**2).sum() / total) if total > 0 else 1.0
    return FadInfinity(
        intercept=float(intercept),
        slope=float(slope),
        r2=r2,
        sizes=tuple(int(s) for s in sizes),
        values=tuple(values),
    )
