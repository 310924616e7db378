"""Shamir sharing over GF(2^521 - 1): round trips over every threshold subset, and its refusals."""

from __future__ import annotations

import itertools
import os

import pytest

from fedcore.secagg import shamir


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6])
def test_every_subset_of_at_least_threshold_shares_reconstructs(n):
    xs = [3 * i + 1 for i in range(n)]  # non-contiguous holder numbers
    for t in range(1, n + 1):
        secret = os.urandom(32)
        shares = shamir.split(secret, xs, t)
        for size in range(t, n + 1):
            for subset in itertools.combinations(shares, size):
                assert shamir.combine(list(subset), t) == secret


@pytest.mark.parametrize("t", [2, 3, 4])
def test_fewer_than_threshold_shares_are_equally_consistent_with_every_secret(t):
    """Perfect secrecy by construction over GF(11): for any t - 1 shares the module hands out, each
    candidate secret s has exactly one polynomial of degree <= t - 1 through (0, s) and those shares,
    so with uniform coefficients every secret is equally likely given the shares."""
    p, xs = 11, [2, 5, 7, 10, 3][: t + 1]
    points = shamir.share_points(7, xs, t, prime=p)
    assert shamir.evaluate([7], 0, p) == 7 and len(points) == len(xs)
    for subset in itertools.combinations(points, t - 1):
        through = {s: 0 for s in range(p)}
        for coeffs in itertools.product(range(p), repeat=t):  # every polynomial of degree <= t - 1
            if all(shamir.evaluate(coeffs, x, p) == y for x, y in subset):
                through[coeffs[0]] += 1
        assert through == {s: 1 for s in range(p)}, subset
    # and t of them do pin the secret: interpolation at 0 with the module's coefficients
    lam = shamir.lagrange_at_zero(tuple(x for x, _ in points[:t]), p)
    assert sum(li * y for li, (_, y) in zip(lam, points[:t])) % p == 7


def test_fewer_than_threshold_shares_refuse_to_combine():
    shares = shamir.split(os.urandom(32), range(1, 7), 3)
    for subset in itertools.combinations(shares, 2):
        with pytest.raises(ValueError, match="at least"):
            shamir.combine(list(subset), 3)


def test_short_secrets_and_x25519_keys_round_trip():
    for secret in (b"", b"\x00" * 32, b"\xff" * 32, b"abc"):
        shares = shamir.split(secret, [1, 2, 3], 2)
        assert shamir.combine(shares[1:], 2, length=len(secret)) == secret


def test_share_encoding_carries_the_holder_number():
    shares = shamir.split(b"s" * 32, [5, 9, 70000], 2)
    assert [shamir.share_index(s) for s in shares] == [5, 9, 70000]
    assert all(len(s) == shamir.SHARE_BYTES for s in shares)


@pytest.mark.parametrize(
    "secret,xs,t,match",
    [
        (b"x" * 33, [1, 2, 3], 2, "at most 32"),
        (b"x", [1, 1, 2], 2, "distinct"),
        (b"x", [0, 1, 2], 2, "distinct"),
        (b"x", [1, 2, 3], 4, "threshold"),
        (b"x", [1, 2, 3], 0, "threshold"),
    ],
)
def test_split_refuses_bad_arguments(secret, xs, t, match):
    with pytest.raises(ValueError, match=match):
        shamir.split(secret, xs, t)


def test_combine_refuses_malformed_duplicate_or_inconsistent_shares():
    shares = shamir.split(b"k" * 32, [1, 2, 3], 2)
    with pytest.raises(ValueError, match="70 bytes"):
        shamir.combine([shares[0][:-1], shares[1]], 2)
    with pytest.raises(ValueError, match="duplicate"):
        shamir.combine([shares[0], shares[0]], 2)
    with pytest.raises(ValueError, match="x >= 1"):
        shamir.combine([bytes(shamir.SHARE_BYTES), shares[1]], 2)
    tampered = shares[0][:10] + bytes([shares[0][10] ^ 1]) + shares[0][11:]  # y changes by ~2^472
    with pytest.raises(ValueError, match="inconsistent"):  # the result no longer fits 32 bytes
        shamir.combine([tampered, shares[1]], 2)


def test_lagrange_coefficients_sum_to_one():
    # interpolating the constant polynomial 1 at 0 gives 1: sum of lambda_i = 1 (mod p)
    for xs in [(1, 2, 3), (2, 5, 11, 17), tuple(range(1, 40))]:
        assert sum(shamir.lagrange_at_zero(xs)) % shamir.PRIME == 1
