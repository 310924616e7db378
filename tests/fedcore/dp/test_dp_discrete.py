"""Discrete Gaussian / Laplace samplers: integer output, exact pmf (chi-square), moments."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from fedcore.dp.discrete import (
    discrete_gaussian_pmf,
    discrete_gaussian_variance,
    sample_discrete_gaussian,
    sample_discrete_laplace,
)
from fedcore.dp.rng import SecureRNG

P_FAIL = 1e-6  # false-alarm rate of each statistical check


def chi_square_matches(samples: np.ndarray, pmf) -> tuple[float, float]:
    """(statistic, critical value) over support bins with expected count >= 5, tails pooled."""
    n = samples.size
    lo, hi = int(samples.min()), int(samples.max())
    support = np.arange(lo, hi + 1)
    expected = n * pmf(support)
    keep = expected >= 5
    observed = np.array([(samples == k).sum() for k in support[keep]], dtype=float)
    rest_obs, rest_exp = n - observed.sum(), n - expected[keep].sum()
    observed, expected = np.append(observed, rest_obs), np.append(expected[keep], rest_exp)
    statistic = float(((observed - expected) ** 2 / np.maximum(expected, 1e-12)).sum())
    return statistic, float(stats.chi2.isf(P_FAIL, len(observed) - 1))


@pytest.mark.parametrize("rng_kind", ["numpy", "secure"])
@pytest.mark.parametrize("sigma", [0.6, 2.5])
def test_discrete_gaussian_matches_its_pmf(rng_kind, sigma):
    rng = np.random.default_rng(7) if rng_kind == "numpy" else SecureRNG()
    x = sample_discrete_gaussian(sigma, 100_000, rng)
    statistic, critical = chi_square_matches(x, lambda k: discrete_gaussian_pmf(sigma, k))
    assert statistic < critical


@pytest.mark.parametrize("sigma", [1.0, 7.3, 300.0])
def test_mean_and_variance_within_sampling_error(sigma):
    n = 200_000
    x = sample_discrete_gaussian(sigma, n, SecureRNG())
    var = discrete_gaussian_variance(sigma)
    assert abs(x.mean()) < 5 * np.sqrt(var / n)
    # sd of the sample variance ~ var * sqrt(2/n) for a near-Gaussian law
    assert abs(x.var() - var) < 5 * var * np.sqrt(2 / n)


def test_values_are_integers_with_the_requested_shape():
    x = sample_discrete_gaussian(3.3, (7, 11), np.random.default_rng(0))
    assert x.dtype == np.int64 and x.shape == (7, 11)
    assert np.array_equal(sample_discrete_gaussian(0.0, 5), np.zeros(5, dtype=np.int64))


def test_variance_is_below_sigma_squared():
    assert discrete_gaussian_variance(0.5) < 0.25
    assert discrete_gaussian_variance(0.5) == pytest.approx(0.21501, abs=1e-5)
    assert discrete_gaussian_variance(5.0) == pytest.approx(25.0, rel=1e-9)


def test_discrete_laplace_matches_its_pmf():
    t = 1.7
    x = sample_discrete_laplace(t, 100_000, np.random.default_rng(3))

    def pmf(k):
        z = (1 - np.exp(-1 / t)) / (1 + np.exp(-1 / t))
        return z * np.exp(-np.abs(k) / t)

    statistic, critical = chi_square_matches(x, pmf)
    assert statistic < critical


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_bad_sigma_is_refused(bad):
    with pytest.raises(ValueError, match="sigma must be a finite number >= 0"):
        sample_discrete_gaussian(bad, 10)
