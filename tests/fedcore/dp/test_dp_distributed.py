"""Distributed discrete Gaussian: sensitivity after rounding, per-client scale, accounting."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedcore.dp.accounting import epsilon
from fedcore.dp.discrete import discrete_gaussian_variance
from fedcore.dp.distributed import (
    add_client_noise,
    client_noise_stddev,
    distributed_epsilon,
    kairouz_tau,
    noise_headroom,
    quantised_l2_sensitivity,
)
from fedcore.dp.rng import SecureRNG


def test_sensitivity_bounds_follow_kairouz_et_al():
    c, s = 1.0, 2.0**10
    # tiny dimension: the unconditional bound (c + gamma sqrt(d)) is the smaller one
    assert quantised_l2_sensitivity(c, s, 1, beta=None) == pytest.approx(s * (c + 1 / s))
    # large dimension: conditional rounding bound is far below c + gamma sqrt(d)
    d = 10**6
    conditional = quantised_l2_sensitivity(c, s, d)
    unconditional = quantised_l2_sensitivity(c, s, d, beta=None)
    assert s * c < conditional < unconditional == pytest.approx(s * (c + math.sqrt(d) / s))
    expected = s * math.sqrt(c**2 + d / (4 * s**2) + math.sqrt(2 * 0.5) / s * (c + math.sqrt(d) / (2 * s)))
    assert conditional == pytest.approx(expected)


def test_threshold_survivors_together_carry_the_configured_noise():
    z, sens, t = 1.2, 40.0, 4
    sigma_c = client_noise_stddev(z, sens, t)
    assert sigma_c == pytest.approx(z * sens / 2)
    rng = SecureRNG()
    total = sum(add_client_noise(np.zeros(100_000, dtype=np.int64), sigma_c, rng) for _ in range(t))
    target = t * discrete_gaussian_variance(sigma_c)
    assert target == pytest.approx((z * sens) ** 2, rel=1e-9)
    assert abs(total.var() - target) < 5 * target * math.sqrt(2 / total.size)


def test_epsilon_equals_the_gaussian_one_when_tau_vanishes():
    eps = distributed_epsilon(
        noise_multiplier=1.0, clip_norm=1.0, scale=2**16, dim=10**6, threshold=3, max_clients=10, rounds=50, delta=1e-5
    )
    assert eps == pytest.approx(epsilon(1.0, 1.0, 50, 1e-5), rel=1e-9)


def test_coarse_quantisation_pays_for_the_sum_not_being_a_discrete_gaussian():
    # scale 1 and z = 0.5 give sigma_c ~ 0.66: tau is not negligible, so epsilon must exceed
    # the continuous Gaussian's at the same noise multiplier
    kw = {
        "noise_multiplier": 0.5,
        "clip_norm": 1.0,
        "dim": 10,
        "threshold": 3,
        "max_clients": 10,
        "rounds": 20,
        "delta": 1e-5,
    }
    sigma_c = client_noise_stddev(0.5, quantised_l2_sensitivity(1.0, 1.0, 10), 3)
    assert sigma_c < 1 and kairouz_tau(sigma_c, 10) > 0.01
    assert distributed_epsilon(scale=1.0, **kw) > 1.05 * epsilon(1.0, 0.5, 20, 1e-5)
    # fine quantisation: the same z costs exactly the Gaussian epsilon
    assert distributed_epsilon(scale=2.0**12, **kw) == pytest.approx(epsilon(1.0, 0.5, 20, 1e-5), rel=1e-9)


def test_tau_grows_with_clients_and_vanishes_with_noise():
    assert kairouz_tau(1.0, 2) < kairouz_tau(1.0, 10)
    assert kairouz_tau(1.0, 10) == pytest.approx(
        10 * sum(math.exp(-2 * math.pi**2 * k / (k + 1)) for k in range(1, 10))
    )
    assert kairouz_tau(10.0, 100) == 0.0
    assert kairouz_tau(1.0, 1) == 0.0


def test_client_noise_is_integer_and_refuses_float_updates():
    noisy = add_client_noise(np.arange(5, dtype=np.int32), 2.0, np.random.default_rng(0))
    assert noisy.dtype == np.int64
    with pytest.raises(TypeError, match="integer \\(quantised\\) update"):
        add_client_noise(np.zeros(3), 1.0)


def test_noise_headroom_bounds_the_summed_noise():
    sigma_c, n, d = 50.0, 5, 20_000
    bound = noise_headroom(sigma_c, n, d, failure_prob=1e-6)
    rng = np.random.default_rng(1)
    total = sum(add_client_noise(np.zeros(d, dtype=np.int64), sigma_c, rng) for _ in range(n))
    assert np.abs(total).max() <= bound
    assert bound < 10 * sigma_c * math.sqrt(n)  # and it is not absurdly loose


def test_invalid_survivor_settings_are_refused():
    with pytest.raises(ValueError, match="threshold must be an integer >= 1"):
        client_noise_stddev(1.0, 10.0, 0)
    with pytest.raises(ValueError, match="max_clients \\(2\\) must be >= threshold \\(3\\)"):
        distributed_epsilon(
            noise_multiplier=1.0, clip_norm=1.0, scale=16.0, dim=4, threshold=3, max_clients=2, rounds=1, delta=1e-5
        )
