"""Metric maths against closed forms and hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import linalg

from fluxmusic_cli.evaluation import metrics as m


def stats(mu, sigma) -> m.GaussianStats:
    return m.GaussianStats(np.asarray(mu, float), np.asarray(sigma, float), n=100)


def test_frechet_distance_of_diagonal_gaussians_matches_closed_form():
    a = stats([0.0, 1.0, 2.0], np.diag([1.0, 4.0, 9.0]))
    b = stats([1.0, 1.0, 0.0], np.diag([4.0, 1.0, 1.0]))
    # Commuting covariances: FD = |dmu|^2 + sum (sqrt(a_i) - sqrt(b_i))^2
    expected = 1.0 + 0.0 + 4.0 + (1 - 2) ** 2 + (2 - 1) ** 2 + (3 - 1) ** 2
    assert m.frechet_distance(a, b) == pytest.approx(expected, abs=1e-10)


def test_frechet_distance_with_singular_covariances_is_exact_and_non_negative():
    a = stats([0.0, 0.0, 0.0], np.diag([1.0, 0.0, 0.0]))
    b = stats([0.0, 0.0, 0.0], np.diag([4.0, 0.0, 1.0]))
    # Tr sqrt(S1 S2) = sqrt(1 * 4) = 2, so FD = 1 + 5 - 4.
    assert m.frechet_distance(a, b) == pytest.approx(2.0, abs=1e-10)
    assert m.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-10)


def test_frechet_distance_of_rank_deficient_sample_stats_is_zero_against_itself():
    rows = np.random.default_rng(0).standard_normal((5, 20))  # 5 rows in 20 dims: rank 4
    s = m.gaussian_stats(rows)
    value = m.frechet_distance(s, s)
    assert 0.0 <= value < 1e-8


def test_nearly_singular_covariances_never_give_a_negative_or_complex_fad():
    rng = np.random.default_rng(1)
    base = rng.standard_normal((30, 6))
    sigma = base.T @ base
    sigma[:, -1] = sigma[-1, :] = 0.0
    sigma[-1, -1] = 1e-14
    a = stats(np.zeros(6), sigma)
    value = m.frechet_distance(a, a)
    assert isinstance(value, float) and 0.0 <= value < 1e-6


def test_sqrtm_route_agrees_with_eigen_route_on_well_conditioned_inputs():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((200, 8))
    y = rng.standard_normal((200, 8)) @ rng.standard_normal((8, 8)) * 0.5 + 0.3
    a, b = m.gaussian_stats(x), m.gaussian_stats(y)
    eig = m.frechet_distance(a, b, "eigh")
    ref = m.frechet_distance(a, b, "sqrtm")
    assert eig == pytest.approx(ref, rel=1e-8)
    tr = np.trace(linalg.sqrtm(a.sigma @ b.sigma)).real
    assert m.trace_sqrt_product(a.sigma, b.sigma) == pytest.approx(tr, rel=1e-8)


def test_gaussian_stats_uses_the_unbiased_covariance():
    rows = np.array([[0.0], [2.0]])
    s = m.gaussian_stats(rows)
    assert s.mu[0] == 1.0 and s.sigma[0, 0] == pytest.approx(2.0)
    with pytest.raises(ValueError, match="at least 2"):
        m.gaussian_stats(rows[:1])


def test_kl_matches_hand_computed_values_in_reference_to_generated_direction():
    ref = np.array([[0.0, np.log(3.0)]])  # softmax (0.25, 0.75)
    gen = np.array([[0.0, 0.0]])  # softmax (0.5, 0.5)
    eps = m.KL_EPS
    softmax = 0.25 * np.log(0.25 / (0.5 + eps)) + 0.75 * np.log(0.75 / (0.5 + eps))
    sr = 1 / (1 + np.exp(-ref[0]))  # sigmoid (0.5, 0.75)
    sigmoid = sum(p * np.log(p / (0.5 + eps)) for p in sr)
    result = m.kl_divergence(ref, gen)
    assert result.softmax == pytest.approx(softmax, rel=1e-12)
    assert result.sigmoid == pytest.approx(sigmoid, rel=1e-12)
    assert m.kl_divergence(gen, ref).softmax != pytest.approx(softmax)  # not symmetric


def test_kl_of_identical_logits_is_zero_up_to_the_epsilon():
    logits = np.random.default_rng(3).standard_normal((6, 527))
    result = m.kl_divergence(logits, logits)
    # log(p + eps) biases each pair by about -eps per class, as in audioldm_eval.
    assert -527 * m.KL_EPS <= result.softmax < 0.0
    assert result.per_item_softmax.shape == (6,)


def test_inception_score_of_confident_balanced_predictions_is_the_class_count():
    confident = np.array([[50.0, 0.0, 0.0], [0.0, 50.0, 0.0], [0.0, 0.0, 50.0]] * 4)
    score = m.inception_score(confident, splits=1, shuffle=False)
    assert score.mean == pytest.approx(3.0, rel=1e-6)
    uniform = np.zeros((20, 5))
    assert m.inception_score(uniform, splits=10).mean == pytest.approx(1.0)


def test_inception_score_shuffles_with_seed_2020_before_splitting():
    logits = np.random.default_rng(4).standard_normal((30, 4)) * 3
    shuffled = logits[np.random.RandomState(2020).permutation(30)]
    expected = []
    for chunk in np.split(shuffled, 3):
        p = np.exp(chunk) / np.exp(chunk).sum(1, keepdims=True)
        q = p.mean(0)
        expected.append(np.exp((p * (np.log(p) - np.log(q))).sum(1).mean()))
    score = m.inception_score(logits, splits=3)
    assert score.mean == pytest.approx(np.mean(expected), rel=1e-10)
    assert score.std == pytest.approx(np.std(expected), rel=1e-8)
    with pytest.raises(ValueError, match="at least 10"):
        m.inception_score(logits[:5], splits=10)


def test_cosine_similarities_are_row_wise():
    a = np.array([[1.0, 0.0], [1.0, 1.0]])
    b = np.array([[2.0, 0.0], [-1.0, -1.0]])
    assert np.allclose(m.cosine_similarities(a, b), [1.0, -1.0])


def test_fad_infinity_extrapolates_towards_zero_for_a_matching_distribution():
    rng = np.random.default_rng(5)
    ref = m.gaussian_stats(rng.standard_normal((4000, 4)))
    result = m.fad_infinity(rng.standard_normal((400, 4)), ref)
    assert result.sizes[0] == 80 and result.sizes[-1] == 400
    assert abs(result.intercept) < min(result.values)
    assert result.slope > 0 and 0.0 <= result.r2 <= 1.0
