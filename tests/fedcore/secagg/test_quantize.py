"""Fixed point in Z_2^bits: no overflow by construction, unbiased stochastic rounding, clip counts."""

from __future__ import annotations

import numpy as np
import pytest

from fedcore.secagg import quantize as qz


@pytest.mark.parametrize(
    "n,clip,max_weight,bits",
    [
        (3, 1.0, 1, 32),
        (10, 1.0, 100, 32),
        (100, 1.0, 100, 32),
        (50, 5.0, 1000, "auto"),
        (3, 1e4, 1, "auto"),
        (7, 2.5, 10**6, 64),
    ],
)
def test_worst_case_sums_never_overflow(n, clip, max_weight, bits):
    p = qz.choose_params(n, clip, max_weight, bits=bits, length=4)
    for sign in (+1, -1):
        x = np.full(4, sign * clip * 10)  # beyond the clip on purpose
        q, clipped = qz.quantize(x, p.clip, p.frac_bits, np.random.default_rng(0))
        assert clipped == 4
        ring = qz.to_ring(q * p.max_weight, p.bits)
        total = ring.copy()
        for _ in range(n - 1):
            total += ring  # wraps in Z_2^bits
        decoded = qz.dequantize(qz.from_ring(total, p.bits), p.frac_bits)
        np.testing.assert_allclose(decoded, sign * n * p.max_weight * clip, rtol=1e-9)


def test_auto_bits_switches_to_64_when_32_leaves_too_little_precision():
    assert qz.choose_params(10, 1.0, 100).bits == 32
    p = qz.choose_params(100, 1.0, 10**6)  # 1e8 * c needs 27 bits: f would be 4 in Z_2^32
    assert p.bits == 64 and p.frac_bits >= 16


def test_impossible_parameters_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="overflow"):
        qz.choose_params(1000, 1e6, 10**6, bits=32)
    with pytest.raises(ValueError, match="overflow"):
        qz.choose_params(10, 1.0, 100, bits=32, frac_bits=30)
    with pytest.raises(ValueError, match="clip"):
        qz.choose_params(10, 0.0, 100)


def test_check_params_refuses_what_a_server_should_not_ask():
    good = qz.choose_params(10, 1.0, 100, length=5)
    qz.check_params(good, 10, 5)
    with pytest.raises(ValueError, match="overflow"):
        qz.check_params(qz.QuantParams(32, good.frac_bits + 1, 1.0, 100), 10, 5)
    with pytest.raises(ValueError, match="overflow"):
        qz.check_params(good, 11, 5)  # more clients than the bound was computed for
    with pytest.raises(ValueError, match="bits"):
        qz.check_params(qz.QuantParams(16, 4, 1.0, 1), 3, 5)


def test_stochastic_rounding_is_unbiased():
    x = np.full(200_000, 0.3)
    q, _ = qz.quantize(x, 1.0, 2)  # 0.3 * 4 = 1.2: q is 1 or 2, mean 1.2; CSPRNG path
    assert set(np.unique(q)) == {1, 2}
    assert abs(q.mean() - 1.2) < 0.01  # 5 sigma ~ 0.0045


def test_integers_and_exact_fixed_point_values_are_not_rounded():
    x = np.array([0.0, 1.0, -3.0, 0.5, -0.25, 17.0])
    q, clipped = qz.quantize(x, 100.0, 8)
    assert clipped == 0
    np.testing.assert_array_equal(q, (x * 256).astype(np.int64))


def test_quantize_counts_clipped_values_and_leaves_the_input_alone():
    x = np.array([2.0, -2.0, 0.5, 1.0, -1.0000001], np.float32)
    before = x.copy()
    q, clipped = qz.quantize(x, 1.0, 10, np.random.default_rng(1))
    assert clipped == 3
    assert np.array_equal(x, before)
    assert q.max() == 1024 and q.min() == -1024


def test_quantize_refuses_nan_and_wrong_workspace():
    with pytest.raises(ValueError, match="NaN"):
        qz.quantize(np.array([1.0, np.nan]), 1.0, 4)
    with pytest.raises(ValueError, match="workspace"):
        qz.quantize(np.zeros(3), 1.0, 4, work=qz.Workspace.for_length(4))


def test_ring_round_trip_of_negative_values():
    v = np.array([-(2**31), -1, 0, 1, 2**31 - 1])
    assert np.array_equal(qz.from_ring(qz.to_ring(v, 32), 32), v)
    assert qz.to_ring(v, 32).dtype == np.uint32


def test_weights_are_rounded_and_clipped_to_integers():
    assert qz.quantize_weight(0.2, 10) == 1
    assert qz.quantize_weight(7.6, 10) == 8
    assert qz.quantize_weight(1e9, 10) == 10
    with pytest.raises(ValueError):
        qz.quantize_weight(float("nan"), 10)
