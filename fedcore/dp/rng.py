"""Cryptographically secure randomness for DP noise.

.. warning::
   Low-level primitive. Differential privacy holds only if the noise is unpredictable to the
   adversary: numpy's and torch's default generators (Mersenne Twister, PCG64, Philox) are
   *statistical* generators whose state can be recovered from their output. Use
   :class:`SecureRNG` wherever a DP guarantee is claimed; seeded numpy generators are for tests.

:class:`SecureRNG` draws a keystream from AES-256 in counter mode (pyca/cryptography), keyed with
32 bytes from ``os.urandom``; AES-CTR is a standard CSPRNG construction (NIST SP 800-90A's
CTR_DRBG without reseeding). It exposes the small part of the :class:`numpy.random.Generator`
interface that fedcore's samplers use: ``random_raw``, ``random`` and ``standard_normal``.

:func:`raw_uint64` lets the samplers accept either kind of generator.
"""

from __future__ import annotations

import os

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

__all__ = ["RandomSource", "SecureRNG", "raw_uint64", "uniform01"]

_KEY_BYTES = 32
_NONCE_BYTES = 16
_TWO_POW_MINUS_53 = 2.0**-53


class SecureRNG:
    """AES-256-CTR keystream generator (a CSPRNG) with a numpy-style interface.

    Args:
        key: 32-byte AES key. Default ``None`` takes it from ``os.urandom`` — always do that
            outside tests: a fixed key makes every "random" draw reproducible by anyone who
            knows it.

    The counter block starts at a random 128-bit value; AES-CTR stays indistinguishable from
    random for far more than the 2^64 blocks any run could draw.
    """

    def __init__(self, key: bytes | None = None) -> None:
        if key is None:
            key = os.urandom(_KEY_BYTES)
            nonce = os.urandom(_NONCE_BYTES)
        else:
            if not isinstance(key, bytes | bytearray) or len(key) != _KEY_BYTES:
                got = len(key) if isinstance(key, bytes | bytearray) else type(key).__name__
                raise ValueError(f"SecureRNG key must be {_KEY_BYTES} bytes (got {got})")
            nonce = bytes(_NONCE_BYTES)  # deterministic stream for a fixed test key
        self._encryptor = Cipher(algorithms.AES(bytes(key)), modes.CTR(nonce)).encryptor()

    def bytes(self, n: int) -> bytes:
        """``n`` keystream bytes."""
        if n < 0:
            raise ValueError(f"byte count must be >= 0 (got {n})")
        return self._encryptor.update(bytes(n))

    def random_raw(self, size: int) -> np.ndarray:
        """``size`` independent uniform 64-bit words, as a uint64 array."""
        size = int(size)
        src = np.zeros(size * 8, dtype=np.uint8)
        out = bytearray(size * 8 + 15)  # update_into needs room for one partial block
        self._encryptor.update_into(src, out)
        return np.frombuffer(out, dtype="<u8", count=size).astype(np.uint64, copy=False)

    def random(self, size: int | tuple[int, ...]) -> np.ndarray:
        """Uniform float64 values in [0, 1) with 53 random bits each."""
        shape = (size,) if isinstance(size, int | np.integer) else tuple(size)
        count = int(np.prod(shape, dtype=np.int64))
        return uniform01(self.random_raw(count)).reshape(shape)

    def standard_normal(self, size: int | tuple[int, ...]) -> np.ndarray:
        """Standard normal float64 values by the Box-Muller transform.

        z1 = sqrt(-2 ln u1) cos(2 pi u2),  z2 = sqrt(-2 ln u1) sin(2 pi u2), u1 in (0, 1].
        """
        shape = (size,) if isinstance(size, int | np.integer) else tuple(size)
        count = int(np.prod(shape, dtype=np.int64))
        pairs = (count + 1) // 2
        u = uniform01(self.random_raw(2 * pairs))
        radius = np.sqrt(-2.0 * np.log1p(-u[:pairs]))  # 1 - u in (0, 1]
        angle = (2.0 * np.pi) * u[pairs:]
        z = np.concatenate([radius * np.cos(angle), radius * np.sin(angle)])
        return z[:count].reshape(shape)


RandomSource = np.random.Generator | SecureRNG


def raw_uint64(rng: RandomSource, size: int) -> np.ndarray:
    """``size`` uniform 64-bit words from a :class:`SecureRNG` or a numpy ``Generator``."""
    if isinstance(rng, SecureRNG):
        return rng.random_raw(size)
    if isinstance(rng, np.random.Generator):
        return rng.integers(0, 2**64 - 1, size=size, dtype=np.uint64, endpoint=True)
    raise TypeError(
        f"expected a fedcore.dp.rng.SecureRNG or numpy.random.Generator (got {type(rng).__name__})"
    )


def uniform01(words: np.ndarray) -> np.ndarray:
    """Map uint64 words to float64 in [0, 1) using their top 53 bits."""
    return (words >> np.uint64(11)).astype(np.float64) * _TWO_POW_MINUS_53
