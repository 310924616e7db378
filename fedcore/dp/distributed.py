r"""Distributed discrete Gaussian noise for secure aggregation (client-level DP).

With secure aggregation the coordinator sees only the sum of the clients' integer (quantised)
updates, so the central noise must be added *by the clients*, in integers, before masking
(Kairouz, Liu, Steinke, "The Distributed Discrete Gaussian Mechanism for Federated Learning with
Secure Aggregation", ICML 2021, arXiv 2102.06387). Each client adds N_Z(0, sigma_c^2) noise
(:mod:`fedcore.dp.discrete`) to its quantised, clipped update; the sum over the survivors carries
the sum of their noises.

Pure functions, in the quantised (integer) domain where an update x of L2 norm <= c is scaled by
``scale`` = 2^f and stochastically rounded:

1. Sensitivity after rounding (Kairouz et al. 2021, Thm 1 with conditional randomized rounding,
   granularity gamma = 1/scale, failure probability beta)::

       Delta^2 = min{ (c + gamma sqrt(d))^2,
                      c^2 + gamma^2 d / 4 + sqrt(2 ln(1/beta)) gamma (c + gamma sqrt(d) / 2) }

   (in real units; times ``scale`` in integer units). The second bound holds for rounding that
   is re-drawn until the rounded norm is within it (or, with unconditioned stochastic rounding,
   with probability >= 1 - beta); the first holds always.
2. Per-client scale: the configured central noise multiplier z asks for sigma_total = z Delta on
   the sum. With at least t survivors (the secure-aggregation threshold), each client adds
   sigma_c = sigma_total / sqrt(t), so the sum of m >= t survivors' noise has variance
   m sigma_c^2 >= sigma_total^2 — the noise is planned for the *guaranteed* survivor count, and
   extra survivors only add noise.
3. Accounting (Kairouz et al. 2021, Thm 1 and Prop. 14 / Eq. 17): the sum Z_m of m independent
   d-dimensional N_Z(0, sigma_c^2) vectors satisfies, for every alpha >= 1,

       D_alpha(Z_m + x || Z_m + x') <= min{ alpha Delta^2 / (2 m sigma_c^2) + tau_m d,
                                            alpha/2 (Delta / (sqrt(m) sigma_c) + tau_m sqrt(d))^2 }
       tau_m = 10 sum_{k=1}^{m-1} exp(-2 pi^2 sigma_c^2 k / (k+1)).

   We use m = t in the first part (the guaranteed survivors; more only lower it) and tau with
   the largest possible m = max_clients (tau grows with m), so the bound holds for every
   survivor set of size >= t. **Approximation stated:** the sum of discrete Gaussians is not a
   discrete Gaussian; the tau terms are the price. Each extra client adds about
   10 exp(-pi^2 sigma_c^2) to tau: 5e-4 at sigma_c = 1, 1e-16 at sigma_c = 2, nothing
   representable at the sigma_c of any real quantisation (sigma_c ~ z 2^f c / sqrt(t) >> 10).
   :func:`distributed_epsilon` includes them anyway.
   Rounds compose by adding RDP; client sampling (q < 1) is accounted as q = 1 (no
   amplification claimed, which is conservative).

This is client-level DP (one client's whole update is the unit), separate from the
sample-level DP-SGD epsilon each client's ledger tracks. With the few clients of a
micro-expression federation it protects little (see :mod:`fedcore.dp.central`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from opacus.accountants.analysis import rdp as rdp_analysis

from .accounting import RDP_ORDERS
from .discrete import sample_discrete_gaussian
from .rng import RandomSource

__all__ = [
    "DEFAULT_BETA",
    "add_client_noise",
    "client_noise_stddev",
    "distributed_epsilon",
    "kairouz_tau",
    "noise_headroom",
    "quantised_l2_sensitivity",
    "sum_rdp",
]

#: Conditional-rounding failure probability used by Kairouz et al. 2021 in their experiments.
DEFAULT_BETA = math.exp(-0.5)


def _positive(name: str, value: float) -> float:
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0 (got {value})")
    return value


def _count(name: str, value: int, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum} (got {value!r})")
    return int(value)


def quantised_l2_sensitivity(clip_norm: float, scale: float, dim: int, beta: float | None = DEFAULT_BETA) -> float:
    """L2 sensitivity of one client's rounded update, in integer units (see module doc, 1).

    Args:
        clip_norm: c, the L2 clipping bound of an update (real units).
        scale: fixed-point scale 2^f (gamma = 1/scale).
        dim: d, number of coordinates.
        beta: conditional-rounding failure probability in (0, 1); ``None`` uses only the
            unconditional bound (c + gamma sqrt(d))^2.
    """
    c, s, d = _positive("clip_norm", clip_norm), _positive("scale", scale), _count("dim", dim)
    gamma = 1.0 / s
    bound = (c + gamma * math.sqrt(d)) ** 2
    if beta is not None:
        if not 0 < beta < 1:
            raise ValueError(f"beta must be in (0, 1) or None (got {beta})")
        conditional = (
            c * c + gamma * gamma * d / 4 + math.sqrt(2 * math.log(1 / beta)) * gamma * (c + gamma * math.sqrt(d) / 2)
        )
        bound = min(bound, conditional)
    return s * math.sqrt(bound)


def client_noise_stddev(noise_multiplier: float, sensitivity: float, threshold: int) -> float:
    """sigma_c = z * Delta / sqrt(t): the discrete Gaussian scale each client adds (integer units)."""
    z, delta_q = _positive("noise_multiplier", noise_multiplier), _positive("sensitivity", sensitivity)
    return z * delta_q / math.sqrt(_count("threshold", threshold))


def kairouz_tau(sigma_client: float, num_clients: int) -> float:
    """tau = 10 sum_{k=1}^{n-1} exp(-2 pi^2 sigma^2 k / (k+1)) (Kairouz et al. 2021, Thm 1)."""
    sigma = _positive("sigma_client", sigma_client)
    n = _count("num_clients", num_clients)
    k = np.arange(1, n, dtype=np.float64)
    return float(10.0 * np.sum(np.exp(-2 * math.pi**2 * sigma**2 * k / (k + 1))))


def sum_rdp(
    orders: Sequence[float], *, sensitivity: float, sigma_client: float, threshold: int, max_clients: int, dim: int
) -> np.ndarray:
    """Per-round RDP of the survivors' noisy sum, at each order (see module doc, 3)."""
    threshold, max_clients = _count("threshold", threshold), _count("max_clients", max_clients)
    if max_clients < threshold:
        raise ValueError(f"max_clients ({max_clients}) must be >= threshold ({threshold})")
    d = _count("dim", dim)
    tau = kairouz_tau(sigma_client, max_clients)
    scale = _positive("sensitivity", sensitivity) / (math.sqrt(threshold) * _positive("sigma_client", sigma_client))
    alpha = np.asarray(orders, dtype=np.float64)
    first = alpha * scale**2 / 2 + tau * d
    second = alpha / 2 * (scale + tau * math.sqrt(d)) ** 2
    return np.minimum(first, second)


def distributed_epsilon(
    *,
    noise_multiplier: float,
    clip_norm: float,
    scale: float,
    dim: int,
    threshold: int,
    max_clients: int,
    rounds: int,
    delta: float,
    beta: float | None = DEFAULT_BETA,
) -> float:
    """Client-level epsilon after ``rounds`` rounds of distributed discrete Gaussian noise.

    Each client adds N_Z(0, sigma_c^2) with sigma_c = :func:`client_noise_stddev` of
    ``noise_multiplier`` and the quantised sensitivity; at least ``threshold`` of at most
    ``max_clients`` clients survive each round.
    """
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1) (got {delta})")
    rounds = _count("rounds", rounds, minimum=0)
    if rounds == 0:
        return 0.0
    sensitivity = quantised_l2_sensitivity(clip_norm, scale, dim, beta)
    sigma_c = client_noise_stddev(noise_multiplier, sensitivity, threshold)
    per_round = sum_rdp(
        RDP_ORDERS,
        sensitivity=sensitivity,
        sigma_client=sigma_c,
        threshold=threshold,
        max_clients=max_clients,
        dim=dim,
    )
    eps, _ = rdp_analysis.get_privacy_spent(orders=list(RDP_ORDERS), rdp=per_round * rounds, delta=delta)
    return float(eps)


def add_client_noise(quantised: np.ndarray, sigma_client: float, rng: RandomSource | None = None) -> np.ndarray:
    """Return ``quantised + N_Z(0, sigma_client^2)`` per coordinate, as int64.

    Wrap into Z_2^k happens in the secure-aggregation encoder; leave room for the noise with
    :func:`noise_headroom`. ``rng=None`` uses a fresh :class:`~fedcore.dp.rng.SecureRNG`.
    """
    quantised = np.asarray(quantised)
    if not np.issubdtype(quantised.dtype, np.integer):
        raise TypeError(f"expected an integer (quantised) update (got dtype {quantised.dtype})")
    noise = sample_discrete_gaussian(sigma_client, quantised.shape, rng)
    return quantised.astype(np.int64) + noise


def noise_headroom(sigma_client: float, num_clients: int, dim: int, failure_prob: float = 1e-9) -> int:
    """Integer bound B with P[max_j |sum of the clients' noise in coordinate j| > B] <= failure_prob.

    The discrete Gaussian is sigma-sub-Gaussian (CKS 2020), so a sum of n is sigma sqrt(n)-sub-
    Gaussian: P[|S| > x] <= 2 exp(-x^2 / (2 n sigma^2)); a union bound over d coordinates gives
    B = sigma sqrt(n) sqrt(2 ln(2 d / failure_prob)). Add B to the fixed-point range so that the
    noisy sum does not wrap around the modulus.
    """
    sigma = _positive("sigma_client", sigma_client)
    n, d = _count("num_clients", num_clients), _count("dim", dim)
    if not 0 < failure_prob < 1:
        raise ValueError(f"failure_prob must be in (0, 1) (got {failure_prob})")
    return math.ceil(sigma * math.sqrt(n) * math.sqrt(2 * math.log(2 * d / failure_prob)))
