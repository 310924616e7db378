"""Fixed-point quantisation into the ring Z_2^bits and back, with an overflow-free choice of f.

.. warning::
   Raw primitive. A value is encoded as the two's complement of round(clip(x, -c, c) * 2^f) (times
   the client's integer weight) in Z_2^bits; the sum of the encodings decodes correctly only while
   the true integer sum stays inside (-2^(bits-1), 2^(bits-1)). :func:`choose_params` picks ``f``
   so that this holds for every possible input; :func:`check_params` verifies a received choice.

No-overflow bound. With n clients, integer weights w_i <= W, |x| <= c and stochastic rounding
(|q| <= ceil(c 2^f) <= c 2^f + 1), per-client integer noise clipped to +-B (B = NOISE_TAIL * sigma):

    n * (W * (c * 2^f + 1) + B) < 2^(bits-1)                                    (1)

and the two extra coordinates (sum of weights n W, sum of clip counts n L) stay below 2^(bits-1).

Stochastic rounding q = floor(y) + [u < y - floor(y)], u uniform on [0, 1), is unbiased:
E[q] = y. By default u comes from an AES-CTR keystream under a fresh random key (a CSPRNG, 32-bit
resolution, bias <= 2^-32 per value); pass a seeded ``numpy.random.Generator`` for reproducible
tests.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from fedcore.secagg.prg import fill_mask

#: per-client DP noise is clipped to +-NOISE_TAIL * sigma (probability ~1e-32 for a Gaussian).
NOISE_TAIL = 12
#: the largest fractional precision chosen automatically (and accepted): float64 holds |q| < 2^53.
MAX_FRAC_BITS = 40
RING_DTYPES: dict[int, np.dtype[np.unsignedinteger]] = {32: np.dtype(np.uint32), 64: np.dtype(np.uint64)}
_SIGNED: dict[int, np.dtype[np.signedinteger]] = {32: np.dtype(np.int32), 64: np.dtype(np.int64)}


@dataclass(frozen=True)
class QuantParams:
    bits: int  # ring Z_2^bits, 32 or 64
    frac_bits: int  # f: values are scaled by 2^f
    clip: float  # c: values are clipped to [-c, c]
    max_weight: int  # W: integer weights are clipped to [1, W]
    noise_sigma: float = 0.0  # per-client noise standard deviation, in integer (quantised) units

    @property
    def noise_bound(self) -> int:
        return math.ceil(NOISE_TAIL * self.noise_sigma)


def _fits(bits: int, f: int, n: int, clip: float, max_weight: int, noise_bound: int, length: int) -> bool:
    half = 1 << (bits - 1)
    q_max = math.ceil(clip * 2.0**f)
    return (
        n * (max_weight * q_max + noise_bound) < half and n * max_weight < half and n * length < half and q_max < 2**53
    )


def max_frac_bits(bits: int, n: int, clip: float, max_weight: int, noise_bound: int = 0, length: int = 0) -> int:
    """The largest f in [0, MAX_FRAC_BITS] satisfying bound (1), or -1 when even f = 0 overflows."""
    best = -1
    for f in range(MAX_FRAC_BITS + 1):
        if not _fits(bits, f, n, clip, max_weight, noise_bound, length):
            break
        best = f
    return best


def choose_params(
    num_clients: int,
    clip: float,
    max_weight: float,
    *,
    bits: int | str = "auto",
    frac_bits: int | str = "auto",
    min_frac_bits: int = 16,
    noise_sigma: float = 0.0,
    length: int = 0,
) -> QuantParams:
    """Choose the ring and f for ``num_clients`` clients (ValueError naming the problem if none fits).

    ``bits="auto"`` takes 32 when it leaves at least ``min_frac_bits`` fractional bits, else 64.
    ``frac_bits="auto"`` takes the largest f that satisfies bound (1) (capped at MAX_FRAC_BITS);
    an explicit f is checked against the bound.
    """
    if not (math.isfinite(clip) and clip > 0):
        raise ValueError(f"clip must be a positive finite number (got {clip})")
    if num_clients < 1:
        raise ValueError(f"num_clients must be >= 1 (got {num_clients})")
    if not (math.isfinite(noise_sigma) and noise_sigma >= 0):
        raise ValueError(f"noise_sigma must be >= 0 and finite (got {noise_sigma})")
    w = max(1, math.floor(max_weight))
    nb = math.ceil(NOISE_TAIL * noise_sigma)
    if bits == "auto":
        f32 = max_frac_bits(32, num_clients, clip, w, nb, length)
        need = min_frac_bits if frac_bits == "auto" else int(frac_bits)
        bits = 32 if f32 >= need else 64
    if bits not in RING_DTYPES:
        raise ValueError(f"bits must be 32, 64 or 'auto' (got {bits!r})")
    best = max_frac_bits(bits, num_clients, clip, w, nb, length)
    if frac_bits == "auto":
        f = best
    else:
        f = int(frac_bits)
        if not 0 <= f <= best:
            f = -1
    if f < 0:
        raise ValueError(
            f"no fixed-point scale fits Z_2^{bits}: {num_clients} clients x max weight {w} x clip "
            f"{clip} (noise bound {nb}, frac_bits {frac_bits!r}) would overflow; lower clip or "
            f"max_weight, or use bits=64"
        )
    return QuantParams(bits, f, float(clip), w, float(noise_sigma))


def check_params(p: QuantParams, num_clients: int, length: int) -> None:
    """Raise ValueError unless ``p`` is a valid, overflow-free choice for ``num_clients`` vectors of
    ``length`` values (what a client verifies before using parameters chosen by the server)."""
    if p.bits not in RING_DTYPES:
        raise ValueError(f"bits must be 32 or 64 (got {p.bits})")
    if not 0 <= p.frac_bits <= MAX_FRAC_BITS:
        raise ValueError(f"frac_bits must be in [0, {MAX_FRAC_BITS}] (got {p.frac_bits})")
    if not (math.isfinite(p.clip) and p.clip > 0) or p.max_weight < 1:
        raise ValueError(f"clip must be positive and finite, max_weight >= 1 (got {p.clip}, {p.max_weight})")
    if not (math.isfinite(p.noise_sigma) and p.noise_sigma >= 0):
        raise ValueError(f"noise_sigma must be >= 0 and finite (got {p.noise_sigma})")
    if not _fits(p.bits, p.frac_bits, num_clients, p.clip, p.max_weight, p.noise_bound, length):
        raise ValueError(
            f"parameters overflow Z_2^{p.bits}: {num_clients} clients x max weight {p.max_weight} x "
            f"clip {p.clip} x 2^{p.frac_bits} (noise bound {p.noise_bound})"
        )


def quantize_weight(weight: float, max_weight: int) -> int:
    """A client's weight as an integer in [1, max_weight]: rounded half to even, then clipped."""
    if not math.isfinite(weight):
        raise ValueError(f"weight must be finite (got {weight})")
    return int(min(max(round(weight), 1), max_weight))


@dataclass
class Workspace:
    """Preallocated buffers for :func:`quantize` on vectors of one length (reused every round, so
    that no large temporary is allocated: fresh allocations cost page faults that dwarf the
    arithmetic at 1e5-1e6 values)."""

    real: np.ndarray  # float64 (L,)
    q: np.ndarray  # int64 (L,): the result lives here until the next call
    words: np.ndarray  # uint32 (L,): rounding randomness

    @classmethod
    def for_length(cls, length: int) -> Workspace:
        return cls(np.empty(length, np.float64), np.empty(length, np.int64), np.empty(length, np.uint32))


def quantize(
    x: np.ndarray, clip: float, frac_bits: int, rng: np.random.Generator | None = None, work: Workspace | None = None
) -> tuple[np.ndarray, int]:
    """Clip ``x`` to [-clip, clip], scale by 2^frac_bits and round stochastically.

    Returns (int64 array, number of values that were clipped); with ``work`` the array is
    ``work.q`` (overwritten by the next call). ValueError on NaN/Inf. ``x`` is never modified.
    """
    x = np.asarray(x)
    if x.ndim != 1:
        raise ValueError(f"expected a 1-D vector (got shape {x.shape})")
    if not np.isfinite(x).all():
        raise ValueError(f"cannot quantise {int((~np.isfinite(x)).sum())} NaN or Inf values")
    work = work or Workspace.for_length(x.shape[0])
    if work.real.shape != x.shape:
        raise ValueError(f"workspace is for {work.real.shape[0]} values (got {x.shape[0]})")
    y, q = work.real, work.q
    np.clip(x, -clip, clip, out=y)
    clipped = int(np.count_nonzero(np.not_equal(y, x)))
    y *= 2.0**frac_bits
    np.floor(y, out=q, casting="unsafe")  # exact: |y| < 2^53
    np.subtract(y, q, out=y)  # fractional part in [0, 1)
    if rng is not None:
        u = rng.random(y.shape[0])
        np.add(q, u < y, out=q, casting="unsafe")
    else:  # u = word / 2^32 < frac  <=>  word < frac * 2^32
        fill_mask(os.urandom(32), work.words)
        y *= 4294967296.0
        np.add(q, work.words < y, out=q, casting="unsafe")
    return q, clipped


def to_ring(values: np.ndarray, bits: int) -> np.ndarray:
    """Signed integers as their two's complement in Z_2^bits (uint32 or uint64)."""
    return np.asarray(values, np.int64).astype(_SIGNED[bits], copy=False).view(RING_DTYPES[bits])


def from_ring(values: np.ndarray, bits: int) -> np.ndarray:
    """Ring elements as signed integers in [-2^(bits-1), 2^(bits-1)) (int64)."""
    return np.asarray(values, RING_DTYPES[bits]).view(_SIGNED[bits]).astype(np.int64)


def dequantize(values: np.ndarray, frac_bits: int) -> np.ndarray:
    """Signed fixed-point integers back to float64 (divide by 2^frac_bits)."""
    return np.asarray(values, np.int64).astype(np.float64) * (2.0**-frac_bits)


def choose_noisy_params(
    num_clients: int,
    clip: float,
    max_weight: float,
    *,
    sigma_of_f: Callable[[int], float],
    bits: int | str = "auto",
    frac_bits: int | str = "auto",
    min_frac_bits: int = 16,
    length: int = 0,
) -> QuantParams:
    """Like :func:`choose_params`, with noise whose scale depends on f (distributed DP, statistics noise).

    The noise grows with 2^f, so f is chosen with its own noise: the largest f (or the given one)
    with ``max_frac_bits(bits, n, clip, W, ceil(NOISE_TAIL sigma_of_f(f)), length) >= f``; 32 bits
    when that leaves at least ``min_frac_bits`` under ``bits="auto"``, else 64. ValueError if none.
    """
    w = max(1, math.floor(max_weight))

    def best_f(ring: int) -> int:
        candidates = range(MAX_FRAC_BITS, -1, -1) if frac_bits == "auto" else [int(frac_bits)]
        for f in candidates:
            bound = math.ceil(NOISE_TAIL * sigma_of_f(f))
            if max_frac_bits(ring, num_clients, clip, w, bound, length) >= f:
                return f
        return -1

    if bits == "auto":
        f32 = best_f(32)
        bits = 32 if f32 >= (min_frac_bits if frac_bits == "auto" else int(frac_bits)) and f32 >= 0 else 64
    if bits not in RING_DTYPES:
        raise ValueError(f"bits must be 32, 64 or 'auto' (got {bits!r})")
    f = best_f(int(bits))
    if f < 0:
        raise ValueError(
            f"no fixed-point scale fits Z_2^{bits} with distributed DP noise: {num_clients} clients x "
            f"clip {clip} (frac_bits {frac_bits!r}) would overflow; lower the noise or use bits=64"
        )
    return choose_params(
        num_clients,
        clip,
        w,
        bits=int(bits),
        frac_bits=f,
        min_frac_bits=min_frac_bits,
        noise_sigma=sigma_of_f(f),
        length=length,
    )
