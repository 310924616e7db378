"""Cryptographically secure randomness for DP noise.

.. warning::
   Low-level primitive. Differential privacy holds only if the noise is unpredictable to the
   adversary: numpy's and torch's default generators (Mersenne Twister, PCG64, Philox) are
   *statistical* generators whose state can be recovered from their output. Use
   :class:`SecureRNG` wherever a DP guarantee is claimed; seeded numpy generators are for tests.

:class:`SecureRNG` draws a keystream from AES-256 in counter mode (pyca/cryptography), keyed with
32 bytes from ``os.urandom``; AES-CTR is a standard CSPRNG construction (NIST SP 800-90A's
CTR_DRBG without reseeding). It exposes the small part of the :class:`numpy.random.Generator`
interface that fedcore's samplers use: ``random_raw``, ``random`` and ``standard_normal``, plus
:meth:`SecureRNG.normal_sum4`, the fast noise draw of DP-SGD.

:func:`raw_uint64` lets the samplers accept either kind of generator.
"""

from __future__ import annotations

import math
import os

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

__all__ = ["RandomSource", "SecureRNG", "raw_uint64", "uniform01"]

_KEY_BYTES = 32
_NONCE_BYTES = 16
_TWO_POW_MINUS_53 = 2.0**-53
_LOW53 = (1 << 53) - 1
_BLOCK = 16  # AES block bytes
_CHUNK = 1 << 20  # keystream bytes encrypted per update_into call
_NOISE_CHUNK = 8000  # values per torch op in normal_sum4: 4 x 8000 < torch's grain of 32768 elements


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
        self._zeros = np.zeros(0, dtype=np.uint8)  # plaintext block: CTR(0) is the keystream
        self._scratch = np.zeros(0, dtype=np.uint8)

    def bytes(self, n: int) -> bytes:
        """``n`` keystream bytes."""
        if n < 0:
            raise ValueError(f"byte count must be >= 0 (got {n})")
        return self._encryptor.update(bytes(n))

    def _keystream(self, nbytes: int, scratch: bool = False) -> np.ndarray:
        """``nbytes`` keystream bytes as a uint8 array, encrypted from a cached zero block.

        ``update_into`` writes the keystream straight into the array (no per-call ``bytes(n)``
        source); with ``scratch`` the array is this generator's reused buffer, valid until the
        next call (for draws consumed at once, such as :meth:`normal_sum4`).
        """
        if len(self._zeros) < min(nbytes, _CHUNK):
            self._zeros = np.zeros(min(nbytes, _CHUNK), dtype=np.uint8)
        if scratch:
            if len(self._scratch) < nbytes + _BLOCK:
                self._scratch = np.empty(nbytes + _BLOCK, dtype=np.uint8)
            out = self._scratch
        else:
            out = np.empty(nbytes + _BLOCK, dtype=np.uint8)  # update_into needs room for one partial block
        for start in range(0, nbytes, _CHUNK):  # a bounded zero block, however large the draw
            size = min(_CHUNK, nbytes - start)
            self._encryptor.update_into(self._zeros[:size].data, out[start:].data)  # .data: no copy
        return out[:nbytes]

    def random_raw(self, size: int) -> np.ndarray:
        """``size`` independent uniform 64-bit words, as a uint64 array."""
        size = int(size)
        return self._keystream(size * 8).view("<u8").astype(np.uint64, copy=False)

    def random(self, size: int | tuple[int, ...]) -> np.ndarray:
        """Uniform float64 values in [0, 1) with 53 random bits each."""
        shape = (size,) if isinstance(size, int | np.integer) else tuple(size)
        count = int(np.prod(shape, dtype=np.int64))
        return uniform01(self.random_raw(count)).reshape(shape)

    def standard_normal(self, size: int | tuple[int, ...]) -> np.ndarray:
        """Standard normal float64 values by the Box-Muller transform.

        z1 = sqrt(-2 ln(1 - u1)) cos(2 pi u2),  z2 = sqrt(-2 ln(1 - u1)) sin(2 pi u2), with u1, u2
        the 53-bit uniforms of :func:`uniform01` (1 - u1 in (0, 1] is exact in float64).
        """
        shape = (size,) if isinstance(size, int | np.integer) else tuple(size)
        count = int(np.prod(shape, dtype=np.int64))
        pairs = (count + 1) // 2
        u = uniform01(self.random_raw(2 * pairs))
        radius = u[:pairs]
        np.subtract(1.0, radius, out=radius)
        np.log(radius, out=radius)  # 1 - u in (0, 1]
        radius *= -2.0
        np.sqrt(radius, out=radius)
        angle = u[pairs:]
        angle *= 2.0 * np.pi
        z = np.empty(2 * pairs)
        np.multiply(radius, np.cos(angle), out=z[:pairs])
        np.multiply(radius, np.sin(angle), out=z[pairs:])
        return z[:count].reshape(shape)

    def normal_sum4(self, count: int, device=None):
        """``count`` values (z1 + z2 + z3 + z4) / 2, z_k independent N(0, 1): a torch float64 tensor.

        The floating-point defence of Opacus's secure mode (Holohan et al. 2021, arXiv 2107.10138,
        Sec. 5.1) for DP-SGD's Gaussian noise; N(0, 1) in distribution. The 4 * count normals are
        :meth:`standard_normal`'s Box-Muller pairs (the same keystream-to-value map, up to the order
        of the final sum), computed with torch's vectorised float64 math on a reused keystream
        buffer -- numpy's trigonometry alone costs 2-3x this whole draw. Chunks of
        :data:`_NOISE_CHUNK` values keep every op below torch's intra-op parallel grain (32768
        elements), so the draw never waits on a thread pool that is busy elsewhere.
        ``device``: where the tensor goes (default CPU).
        """
        import torch  # only DP-SGD calls this; the rest of this module needs numpy alone

        count = int(count)
        if count < 0:
            raise ValueError(f"count must be >= 0 (got {count})")
        words = torch.from_numpy(self._keystream(32 * count, scratch=True).view(np.int64)).view(4, count)
        out = torch.empty(count, dtype=torch.float64)
        with torch.inference_mode():  # plain arithmetic: no autograd bookkeeping per op (out stays a normal tensor)
            for start in range(0, count, _NOISE_CHUNK):
                w = words[:, start : start + _NOISE_CHUNK]  # (4, k): rows 0-1 give u1 of 2k pairs, rows 2-3 their u2
                u = torch.bitwise_right_shift(w, 11).bitwise_and_(_LOW53).to(torch.float64).mul_(_TWO_POW_MINUS_53)
                radius = u[:2].neg_().add_(1.0).log_().mul_(-2.0).sqrt_()  # sqrt(-2 ln(1 - u1)), 1 - u1 in (0, 1]
                angle = u[2:].mul_(2.0 * math.pi)
                cos, sin = angle.cos(), angle.sin()
                z = torch.mul(radius[0], cos[0], out=out[start : start + _NOISE_CHUNK])  # 4 normals r_k cos, r_k sin
                z.addcmul_(radius[1], cos[1]).addcmul_(radius[0], sin[0]).addcmul_(radius[1], sin[1]).mul_(0.5)
        return out if device is None else out.to(device)


RandomSource = np.random.Generator | SecureRNG


def raw_uint64(rng: RandomSource, size: int) -> np.ndarray:
    """``size`` uniform 64-bit words from a :class:`SecureRNG` or a numpy ``Generator``."""
    if isinstance(rng, SecureRNG):
        return rng.random_raw(size)
    if isinstance(rng, np.random.Generator):
        return rng.integers(0, 2**64 - 1, size=size, dtype=np.uint64, endpoint=True)
    raise TypeError(f"expected a fedcore.dp.rng.SecureRNG or numpy.random.Generator (got {type(rng).__name__})")


def uniform01(words: np.ndarray) -> np.ndarray:
    """Map uint64 words to float64 in [0, 1) using their top 53 bits."""
    return (words >> np.uint64(11)).astype(np.float64) * _TWO_POW_MINUS_53
