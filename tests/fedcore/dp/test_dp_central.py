"""DP-FedAvg helpers: update clipping, server noise, client-level accounting."""

from __future__ import annotations

import numpy as np
import pytest

from fedcore.dp.accounting import epsilon
from fedcore.dp.central import add_gaussian_noise, client_level_epsilon, clip_update
from fedcore.dp.rng import SecureRNG


def test_update_above_the_bound_is_scaled_to_exactly_the_bound():
    delta = np.array([3.0, 4.0], dtype=np.float32)
    clipped, was = clip_update(delta, 1.0)
    assert was and clipped.dtype == np.float32
    assert np.linalg.norm(clipped) == pytest.approx(1.0, rel=1e-6)
    assert np.allclose(clipped, [0.6, 0.8])
    assert np.array_equal(delta, [3.0, 4.0])  # input untouched


def test_update_within_the_bound_is_returned_unchanged():
    delta = np.array([0.3, -0.4])
    clipped, was = clip_update(delta, 1.0)
    assert not was and np.array_equal(clipped, delta) and clipped is not delta


def test_non_finite_update_or_bad_bound_is_refused():
    with pytest.raises(ValueError, match="NaN or infinite"):
        clip_update(np.array([np.nan, 1.0]), 1.0)
    with pytest.raises(ValueError, match="clip_norm must be"):
        clip_update(np.ones(3), 0.0)
    with pytest.raises(TypeError, match="floating-point"):
        clip_update(np.ones(3, dtype=np.int32), 1.0)


@pytest.mark.parametrize("rng", [None, "secure", "numpy"])
def test_server_noise_has_std_noise_multiplier_times_clip(rng):
    n, z, s = 200_000, 1.3, 0.5
    source = {"secure": SecureRNG(), "numpy": np.random.default_rng(5), None: None}[rng]
    aggregate = np.full(n, 2.0, dtype=np.float32)
    if rng == "numpy":
        with pytest.warns(UserWarning, match="not cryptographically secure"):
            noisy = add_gaussian_noise(aggregate, s, z, source)
    else:
        noisy = add_gaussian_noise(aggregate, s, z, source)
    noise = noisy.astype(np.float64) - 2.0
    assert noisy.dtype == np.float32 and noisy.shape == aggregate.shape
    assert abs(noise.mean()) < 5 * z * s / np.sqrt(n)
    assert abs(noise.std() - z * s) < 5 * z * s / np.sqrt(2 * n)


def test_client_level_accounting_amplifies_only_secret_poisson_sampling_and_warns_for_few():
    with pytest.warns(UserWarning, match="needs thousands"):
        eps_small = client_level_epsilon(3, 3, 1.0, 50, 1e-5)
    assert eps_small == pytest.approx(epsilon(1.0, 1.0, 50, 1e-5))
    # a public, fixed-size selection of 100 of 10 000 gives no amplification: q = 1
    assert client_level_epsilon(100, 10_000, 1.0, 50, 1e-5) == pytest.approx(epsilon(1.0, 1.0, 50, 1e-5))
    eps_big = client_level_epsilon(100, 10_000, 1.0, 50, 1e-5, secret_poisson=True)
    assert eps_big == pytest.approx(epsilon(0.01, 1.0, 50, 1e-5)) and eps_big < eps_small
    with pytest.raises(ValueError, match="clients_per_round must be in"):
        client_level_epsilon(5, 3, 1.0, 10, 1e-5)
