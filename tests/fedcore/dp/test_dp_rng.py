"""SecureRNG: keystream determinism under a test key, uniform and normal output."""

from __future__ import annotations

import numpy as np
import pytest

from fedcore.dp.rng import SecureRNG, raw_uint64, uniform01


def test_fixed_key_gives_a_reproducible_stream_and_fresh_keys_differ():
    key = bytes(range(32))
    assert np.array_equal(SecureRNG(key).random_raw(64), SecureRNG(key).random_raw(64))
    assert not np.array_equal(SecureRNG().random_raw(64), SecureRNG().random_raw(64))
    rng = SecureRNG(key)
    assert not np.array_equal(rng.random_raw(8), rng.random_raw(8))  # the stream advances


def test_stream_is_the_aes_ctr_keystream_of_the_key():
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    key = bytes(range(32))
    expected = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor().update(bytes(80))
    rng = SecureRNG(key)
    assert rng.bytes(16) + rng.random_raw(8).tobytes() == expected


def test_uniforms_lie_in_unit_interval_with_uniform_moments():
    u = SecureRNG().random(200_000)
    assert u.dtype == np.float64 and u.min() >= 0.0 and u.max() < 1.0
    se = np.sqrt(1 / 12 / u.size)
    assert abs(u.mean() - 0.5) < 5 * se
    counts = np.histogram(u, bins=10, range=(0, 1))[0]
    assert np.all(np.abs(counts - u.size / 10) < 5 * np.sqrt(u.size / 10))


def test_standard_normal_has_zero_mean_unit_variance_and_gaussian_tails():
    z = SecureRNG().standard_normal((1001, 100))  # odd pair count handled
    assert z.shape == (1001, 100)
    n = z.size
    assert abs(z.mean()) < 5 / np.sqrt(n)
    assert abs(z.var() - 1.0) < 5 * np.sqrt(2 / n)
    assert abs(np.mean(np.abs(z) > 1.96) - 0.05) < 5 * np.sqrt(0.05 * 0.95 / n)


def test_bad_key_and_unknown_generators_are_refused():
    with pytest.raises(ValueError, match="32 bytes"):
        SecureRNG(b"short")
    with pytest.raises(TypeError, match="SecureRNG or numpy.random.Generator"):
        raw_uint64(np.random.RandomState(0), 4)
    words = raw_uint64(np.random.default_rng(0), 1000)
    assert words.dtype == np.uint64 and uniform01(words).max() < 1.0


def test_large_draws_are_the_keystream_across_chunk_boundaries():
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    key = bytes(range(32))
    n = (3 << 20) + 40  # three 1 MiB chunks and a partial block
    expected = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor().update(bytes(8 + 8 * n))
    rng = SecureRNG(key)
    assert rng.bytes(8) + rng.random_raw(n).tobytes() == expected


def test_normal_sum4_is_the_box_muller_four_sum_of_the_keystream():
    key = bytes(range(32))
    fast = SecureRNG(key).normal_sum4(20_001).numpy()  # more than two chunks of 8000
    slow = SecureRNG(key).standard_normal(4 * 20_001).reshape(4, 20_001).sum(axis=0) / 2.0
    assert fast.dtype == np.float64
    np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-12)
    assert SecureRNG().normal_sum4(0).shape == (0,)
    with pytest.raises(ValueError, match="count must be >= 0"):
        SecureRNG().normal_sum4(-1)


def test_normal_sum4_is_standard_normal():
    z = SecureRNG().normal_sum4(400_000).numpy()
    n = z.size
    assert abs(z.mean()) < 5 / np.sqrt(n)
    assert abs(z.var() - 1.0) < 5 * np.sqrt(2 / n)
    assert abs(np.mean(np.abs(z) > 1.96) - 0.05) < 5 * np.sqrt(0.05 * 0.95 / n)
    assert abs(np.mean(z**4) - 3.0) < 5 * np.sqrt(96 / n)  # Gaussian kurtosis (var of z^4 is 96)
