"""Fréchet distance (Eq. 22): closed forms, identical sets, order invariance."""

from __future__ import annotations

import numpy as np
import pytest

from floatalk.evaluate.frechet import frechet_distance, frechet_distance_from_stats, gaussian_stats


def _with_moments(rng: np.random.Generator, n: int, mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """n samples whose sample mean and unbiased sample covariance are exactly `mean` and `cov`."""
    z = rng.standard_normal((n, mean.size))
    z -= z.mean(axis=0)
    # whiten: unbiased covariance of z becomes the identity
    z = z @ np.linalg.inv(np.linalg.cholesky(z.T @ z / (n - 1))).T
    return z @ np.linalg.cholesky(cov).T + mean


def _random_cov(rng: np.random.Generator, d: int) -> np.ndarray:
    m = rng.standard_normal((d, d))
    return m @ m.T / d + 0.1 * np.eye(d)


def test_one_dimensional_and_diagonal_closed_forms():
    # 1-D: (m1 - m2)^2 + (s1 - s2)^2
    assert frechet_distance_from_stats([1.0], [[4.0]], [-2.0], [[9.0]]) == pytest.approx(9 + 1, rel=1e-12)
    rng = np.random.default_rng(0)
    ma, mb = rng.standard_normal(16), rng.standard_normal(16)
    sa, sb = rng.uniform(0.1, 3, 16), rng.uniform(0.1, 3, 16)
    expected = ((ma - mb) ** 2).sum() + ((sa - sb) ** 2).sum()
    got = frechet_distance_from_stats(ma, np.diag(sa**2), mb, np.diag(sb**2))
    assert got == pytest.approx(expected, rel=1e-6)


def test_scaled_full_covariance_closed_form():
    # S_b = c S_a: Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) = (1 + c - 2 sqrt(c)) Tr(S_a), for any full S_a
    rng = np.random.default_rng(1)
    cov = _random_cov(rng, 32)
    ma, mb = rng.standard_normal(32), rng.standard_normal(32)
    c = 2.7
    expected = ((ma - mb) ** 2).sum() + (1 + c - 2 * np.sqrt(c)) * np.trace(cov)
    assert frechet_distance_from_stats(ma, cov, mb, c * cov) == pytest.approx(expected, rel=1e-6)


def test_features_with_exact_gaussian_moments_match_the_closed_form():
    # non-commuting covariances: features built with exactly known sample moments give the
    # statistics' value; that value for a rotated pair of diagonal covariances is checked in closed form
    rng = np.random.default_rng(2)
    d = 8
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    ea, eb = rng.uniform(0.2, 2.0, d), rng.uniform(0.2, 2.0, d)
    cov_a, cov_b = np.diag(ea), q @ np.diag(eb) @ q.T
    ma, mb = rng.standard_normal(d), rng.standard_normal(d)
    fa = _with_moments(rng, 500, ma, cov_a)
    fb = _with_moments(rng, 300, mb, cov_b)
    from_stats = frechet_distance_from_stats(ma, cov_a, mb, cov_b)
    assert frechet_distance(fa, fb) == pytest.approx(from_stats, rel=1e-6)
    # closed form of the cross term: (S_a^(1/2) S_b S_a^(1/2)) = D^(1/2) Q E Q^T D^(1/2)
    cross = np.sqrt(ea)[:, None] * cov_b * np.sqrt(ea)[None, :]
    expected = ((ma - mb) ** 2).sum() + ea.sum() + eb.sum() - 2 * np.sqrt(np.linalg.eigvalsh(cross)).sum()
    assert from_stats == pytest.approx(expected, rel=1e-6)
    # and a generic check against the symmetric definition through the eigenvalues of S_a S_b
    eig = np.linalg.eigvals(cov_a @ cov_b)
    assert from_stats == pytest.approx(
        ((ma - mb) ** 2).sum() + np.trace(cov_a + cov_b) - 2 * np.sqrt(eig.real.clip(0)).sum(), rel=1e-6
    )


def test_identical_sets_give_zero_and_order_does_not_matter():
    rng = np.random.default_rng(3)
    f = rng.standard_normal((200, 64)) @ rng.standard_normal((64, 64))  # correlated, like real features
    g = rng.standard_normal((150, 64))
    assert frechet_distance(f, f) == pytest.approx(0.0, abs=1e-9 * np.trace(gaussian_stats(f).cov))
    base = frechet_distance(f, g)
    assert base > 1.0
    for seed in range(3):
        p = np.random.default_rng(seed)
        assert frechet_distance(f[p.permutation(200)], g[p.permutation(150)]) == pytest.approx(base, rel=1e-9)
    assert frechet_distance(g, f) == pytest.approx(base, rel=1e-9)


def test_rank_deficient_covariances_stay_finite_and_non_negative():
    # fewer samples than dimensions (singular covariances), as with 6-d pose on a short clip
    rng = np.random.default_rng(4)
    f, g = rng.standard_normal((5, 20)), rng.standard_normal((5, 20))
    value = frechet_distance(f, g)
    assert np.isfinite(value) and value > 0
    assert frechet_distance(f, f) == pytest.approx(0.0, abs=1e-8)


@pytest.mark.parametrize(
    ("a", "b", "message"),
    [
        (np.zeros((1, 3)), np.zeros((4, 3)), "at least 2"),
        (np.full((4, 3), np.nan), np.zeros((4, 3)), "NaN"),
        (np.zeros((4, 3)), np.zeros((4, 2)), "feature sizes differ"),
        (np.zeros(4), np.zeros(4), r"\(n, D\)"),
    ],
)
def test_bad_features_are_refused(a, b, message):
    with pytest.raises(ValueError, match=message):
        frechet_distance(a, b)
