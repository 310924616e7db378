"""Shamir secret sharing over the prime field GF(p), p = 2^521 - 1 (a Mersenne prime).

.. warning::
   Raw primitive, no authentication: a share is only as trustworthy as the channel that brought it
   (SecAgg+ seals every share client-to-client with :func:`fedcore.crypto.recipes.seal`). Anyone
   holding ``threshold`` shares of one secret learns it; fewer reveal nothing (information-
   theoretically), provided the coefficients come from a CSPRNG (:mod:`secrets` here).

Sharing (Shamir 1979): a secret s < 2^256 (up to 32 bytes, one field element) is the constant term
of a random polynomial f(x) = s + a_1 x + ... + a_{t-1} x^{t-1} over GF(p); holder number x
(x >= 1, distinct) gets (x, f(x)). Reconstruction is Lagrange interpolation at 0:

    s = sum_i y_i * lambda_i,   lambda_i = prod_{j != i} x_j / (x_j - x_i)   (mod p).

The lambda_i depend only on the holders' x values, so they are cached per set of x; their
denominators are products of small integers, computed exactly and inverted together with one
modular inversion (Montgomery's batch trick).

Share encoding (:data:`SHARE_BYTES` = 70 bytes): ``x`` as 4 bytes big-endian, then ``f(x)`` as 66
bytes big-endian.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from functools import lru_cache

PRIME = (1 << 521) - 1
_Y_BYTES = 66
_X_BYTES = 4
SHARE_BYTES = _X_BYTES + _Y_BYTES
MAX_SECRET_BYTES = 32
MAX_HOLDERS = (1 << 32) - 1


def split(secret: bytes, xs: Sequence[int], threshold: int) -> list[bytes]:
    """Share ``secret`` (at most 32 bytes) among holders ``xs`` so that any ``threshold`` of them
    reconstruct it. Returns one encoded share per entry of ``xs``, in that order."""
    if len(secret) > MAX_SECRET_BYTES:
        raise ValueError(f"a secret has at most {MAX_SECRET_BYTES} bytes (got {len(secret)})")
    xs = [int(x) for x in xs]
    if len(set(xs)) != len(xs) or any(not 1 <= x <= MAX_HOLDERS for x in xs):
        raise ValueError(f"holder numbers must be distinct integers in [1, {MAX_HOLDERS}] (got {xs})")
    if not 1 <= threshold <= len(xs):
        raise ValueError(f"threshold must be in [1, {len(xs)}] for {len(xs)} holders (got {threshold})")
    points = share_points(int.from_bytes(secret, "big"), xs, threshold)
    return [x.to_bytes(_X_BYTES, "big") + y.to_bytes(_Y_BYTES, "big") for x, y in points]


def share_points(
    secret: int, xs: Sequence[int], threshold: int, prime: int = PRIME, randbelow=secrets.randbelow
) -> list[tuple[int, int]]:
    """The sharing itself over GF(``prime``): (x, f(x)) for each x, f(X) = secret + a_1 X + ... +
    a_{t-1} X^{t-1} with a_i = ``randbelow(prime)`` (a CSPRNG). :func:`split` uses p = 2^521 - 1;
    tests use a small prime to enumerate every polynomial."""
    coeffs = [secret % prime] + [randbelow(prime) for _ in range(threshold - 1)]
    return [(x, evaluate(coeffs, x, prime)) for x in xs]


def evaluate(coeffs: Sequence[int], x: int, prime: int = PRIME) -> int:
    """f(x) mod ``prime`` for f = coeffs[0] + coeffs[1] X + ... (Horner)."""
    y = 0
    for c in reversed(coeffs):
        y = (y * x + c) % prime
    return y


def parse_share(share: bytes) -> tuple[int, int]:
    """(x, y) of an encoded share; ValueError when it is malformed."""
    if len(share) != SHARE_BYTES:
        raise ValueError(f"a share has {SHARE_BYTES} bytes (got {len(share)})")
    x = int.from_bytes(share[:_X_BYTES], "big")
    y = int.from_bytes(share[_X_BYTES:], "big")
    if x == 0 or y >= PRIME:
        raise ValueError("a share needs x >= 1 and y < p")
    return x, y


def share_index(share: bytes) -> int:
    """The holder number x of an encoded share."""
    return parse_share(share)[0]


@lru_cache(maxsize=1024)
def lagrange_at_zero(xs: tuple[int, ...], prime: int = PRIME) -> tuple[int, ...]:
    """Lagrange coefficients lambda_i (mod ``prime``) for interpolation at 0 over distinct ``xs``
    (nonzero mod ``prime``)."""
    if len(set(xs)) != len(xs) or any(x <= 0 or x % prime == 0 for x in xs):
        raise ValueError(f"holder numbers must be distinct and positive (got {list(xs)})")
    num = 1
    for x in xs:
        num *= x
    dens = []
    for i, xi in enumerate(xs):  # x_i * prod_{j != i} (x_j - x_i), exact (small integers)
        d = xi
        for j, xj in enumerate(xs):
            if j != i:
                d *= xj - xi
        dens.append(d)
    # batch inversion (one modular inverse for all): prefix[i] = dens[0] * ... * dens[i-1] mod p
    prefix = [1]
    for d in dens:
        prefix.append(prefix[-1] * d % prime)
    inv = pow(prefix[-1], -1, prime)
    num %= prime
    lam = [0] * len(dens)
    for i in range(len(dens) - 1, -1, -1):
        lam[i] = num * (inv * prefix[i] % prime) % prime
        inv = inv * dens[i] % prime
    return tuple(lam)


def combine(shares: Sequence[bytes], threshold: int, length: int = 32) -> bytes:
    """Reconstruct a ``length``-byte secret from at least ``threshold`` encoded shares (the first
    ``threshold`` of them, by holder number, are used). ValueError when there are too few shares,
    duplicates, malformed shares, or the result does not fit ``length`` bytes (inconsistent
    shares)."""
    if len(shares) < threshold or threshold < 1:
        raise ValueError(f"need at least {threshold} shares to reconstruct (got {len(shares)})")
    points = sorted(parse_share(s) for s in shares)
    xs = [x for x, _ in points]
    if len(set(xs)) != len(xs):
        raise ValueError(f"duplicate holder numbers among shares: {xs}")
    points = points[:threshold]
    lam = lagrange_at_zero(tuple(x for x, _ in points))
    secret = sum(l * y for l, (_, y) in zip(lam, points)) % PRIME
    if secret >> (8 * length):
        raise ValueError(f"shares are inconsistent: the result does not fit {length} bytes")
    return secret.to_bytes(length, "big")
