"""Discrete Gaussian and discrete Laplace samplers for integer (secure-aggregation) noise.

The discrete Gaussian N_Z(0, sigma^2) on the integers has

    P[X = x] = exp(-x^2 / (2 sigma^2)) / sum_{y in Z} exp(-y^2 / (2 sigma^2)).

It gives the same zero-concentrated DP as the continuous Gaussian: adding N_Z(0, sigma^2) to an
integer query of L2 sensitivity Delta is (Delta^2 / (2 sigma^2))-zCDP (Canonne, Kamath, Steinke,
"The Discrete Gaussian for Differential Privacy", NeurIPS 2020, arXiv 2004.00010); it is
sigma-sub-Gaussian and its variance is *below* sigma^2 (same paper), so it never adds more
distortion than the continuous one.

Sampler (CKS 2020, Algorithm 3), vectorised: with t = floor(sigma) + 1,

    repeat:  Y ~ DLap(t)  (P[Y = y] proportional to exp(-|y| / t))
             accept Y with probability exp(-(|Y| - sigma^2 / t)^2 / (2 sigma^2))

and DLap(t) (CKS Algorithm 2) as a sign times a geometric G with P[G >= k] = exp(-k / t),
rejecting "negative zero" so that 0 is not counted twice.

Exactness: the rejection scheme is exact (no rounding of a continuous Gaussian). The geometric
is drawn by inverse transform, G = floor(-t ln(1 - U)), and the acceptance test compares a
uniform with exp(.) in float64; both use 53-bit uniforms, so each probability is exact up to
2^-53 relative error and the tail beyond 36.7 t is cut at probability 2^-53. CKS's
arbitrary-precision version removes even that; it cannot be vectorised, and a 2^-53 deviation is
far below any delta a federation would use. The sign comes from bit 0 of the same 64-bit word
whose top 53 bits give U, so it is independent of U.

Randomness: pass a :class:`~fedcore.dp.rng.SecureRNG` (the default) wherever privacy is claimed;
a seeded ``numpy.random.Generator`` is for tests and simulations.
"""

from __future__ import annotations

import math

import numpy as np

from .rng import RandomSource, SecureRNG, raw_uint64, uniform01

__all__ = [
    "discrete_gaussian_pmf",
    "discrete_gaussian_variance",
    "sample_discrete_gaussian",
    "sample_discrete_laplace",
]


def _check_scale(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0 (got {value})")
    return value


def _signed_geometric(t: float, words: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Discrete-Laplace candidates from 64-bit words: (values, valid mask).

    P[G >= k] = exp(-k / t) for the magnitude; the sign is bit 0; (-, 0) is marked invalid.
    """
    magnitude = np.floor(-t * np.log1p(-uniform01(words)))  # (n,) float64, exact integers
    negative = (words & np.uint64(1)).astype(bool)
    valid = ~(negative & (magnitude == 0))
    values = np.where(negative, -magnitude, magnitude)
    return values, valid


def sample_discrete_laplace(t: float, size: int, rng: RandomSource | None = None) -> np.ndarray:
    """``size`` draws of DLap(t): P[Y = y] proportional to exp(-|y| / t), as int64.

    Args:
        t: scale (> 0).
        size: number of samples.
        rng: :class:`SecureRNG` (default, a fresh one) or a numpy ``Generator``.
    """
    t = _check_scale("t", t)
    if t == 0:
        raise ValueError("discrete Laplace scale t must be > 0 (got 0)")
    rng = SecureRNG() if rng is None else rng
    out = np.empty(size, dtype=np.int64)
    filled = 0
    while filled < size:
        need = size - filled
        values, valid = _signed_geometric(t, raw_uint64(rng, need + need // 2 + 16))
        kept = values[valid][:need]
        out[filled : filled + kept.size] = kept
        filled += kept.size
    return out


def sample_discrete_gaussian(sigma: float, size: int | tuple[int, ...], rng: RandomSource | None = None) -> np.ndarray:
    """Draws of the discrete Gaussian N_Z(0, sigma^2), as an int64 array of shape ``size``.

    Args:
        sigma: scale parameter (>= 0; 0 gives zeros). The variance is slightly below sigma^2.
        size: number of samples or an array shape.
        rng: :class:`SecureRNG` (default, a fresh one keyed from ``os.urandom``) or a numpy
            ``Generator`` (not secure; tests and simulations).

    About 1.3 candidates are drawn per sample (acceptance rate ~0.75 for sigma >= 1).
    """
    sigma = _check_scale("sigma", sigma)
    shape = (size,) if isinstance(size, int | np.integer) else tuple(size)
    count = int(np.prod(shape, dtype=np.int64))
    if sigma == 0 or count == 0:
        return np.zeros(shape, dtype=np.int64)
    rng = SecureRNG() if rng is None else rng
    t = math.floor(sigma) + 1.0
    centre = sigma * sigma / t
    two_var = 2.0 * sigma * sigma
    out = np.empty(count, dtype=np.int64)
    filled = 0
    while filled < count:
        need = count - filled
        m = int(need * 1.45) + 64
        words = raw_uint64(rng, 2 * m)
        values, valid = _signed_geometric(t, words[:m])
        accept_prob = np.exp(-np.square(np.abs(values) - centre) / two_var)
        accepted = valid & (uniform01(words[m:]) < accept_prob)
        kept = values[accepted][:need]
        out[filled : filled + kept.size] = kept
        filled += kept.size
    return out.reshape(shape)


def discrete_gaussian_pmf(sigma: float, support: np.ndarray) -> np.ndarray:
    """P[X = k] of N_Z(0, sigma^2) for each integer k in ``support`` (sigma > 0)."""
    sigma = _check_scale("sigma", sigma)
    if sigma == 0:
        raise ValueError("discrete_gaussian_pmf needs sigma > 0 (got 0)")
    half_width = math.ceil(40.0 * sigma) + 1  # tail beyond 40 sigma < 1e-300
    grid = np.arange(-half_width, half_width + 1, dtype=np.float64)
    norm = np.exp(-np.square(grid) / (2 * sigma * sigma)).sum()
    support = np.asarray(support, dtype=np.float64)
    return np.exp(-np.square(support) / (2 * sigma * sigma)) / norm


def discrete_gaussian_variance(sigma: float) -> float:
    """Exact variance of N_Z(0, sigma^2) by summing the pmf (below sigma^2; CKS 2020)."""
    sigma = _check_scale("sigma", sigma)
    if sigma == 0:
        return 0.0
    half_width = math.ceil(40.0 * sigma) + 1
    grid = np.arange(-half_width, half_width + 1, dtype=np.float64)
    return float(np.sum(np.square(grid) * discrete_gaussian_pmf(sigma, grid)))
