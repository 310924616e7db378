r"""Privacy of a statistics release: one Gaussian mechanism (round 0's summed counts).

A workload's round-0 statistics (e.g. the MER workload's AU co-occurrence counts) are summed
across clients; with DP on, the sum carries Gaussian noise of standard deviation ``sigma`` (the
noise that survives in the released sum: the aggregation mode's ``sigma_total``).

**Sensitivity contract.** The workload states the L2 sensitivity of its statistics vector for
*one training sample*: the largest L2 norm by which adding or removing one sample of one client
can change that client's vector (which counts move, by how much). For a vector of 0/1
co-occurrence indicators summed over samples, one sample changes at most the k entries it
touches by 1 each, so the sensitivity is sqrt(k) (sqrt(L) if it may touch all L entries). The
vector must be computed so that the bound holds (clip per-sample contributions if it does not by
construction).

One release is the Gaussian mechanism with noise multiplier sigma / sensitivity. Alone, its
exact epsilon is given by the analytic Gaussian mechanism (Balle & Wang 2018, Thm. 8): with
mu = sensitivity / sigma, the release is (eps, delta)-DP iff

    Phi(mu / 2 - eps / mu) - e^eps Phi(-mu / 2 - eps / mu) <= delta,

and :func:`statistics_epsilon` returns the smallest such eps. In a client's ledger the release
is a charge of kind "statistics" with sample rate 1, one step and noise multiplier
sigma / sensitivity, composed with the DP-SGD steps by the ledger's accountant
(:meth:`fedcore.dp.ledger.PrivacyLedger.charge_statistics`).
"""

from __future__ import annotations

import math

from scipy.special import log_ndtr

__all__ = ["statistics_epsilon", "statistics_noise_multiplier"]


def statistics_noise_multiplier(sigma: float, sensitivity: float) -> float:
    """sigma / sensitivity, checked: the noise multiplier of the release."""
    for name, value in (("sigma", sigma), ("sensitivity", sensitivity)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a finite number > 0 (got {value!r})")
    return float(sigma) / float(sensitivity)


def _delta_of(eps: float, mu: float) -> float:
    # Phi(mu/2 - eps/mu) - exp(eps) Phi(-mu/2 - eps/mu), the second term in log space
    first = math.exp(log_ndtr(mu / 2 - eps / mu))
    second = math.exp(eps + log_ndtr(-mu / 2 - eps / mu))
    return max(0.0, first - second)


def statistics_epsilon(sigma: float, sensitivity: float, delta: float) -> float:
    """Exact epsilon of one Gaussian release with noise std ``sigma`` and L2 ``sensitivity`` at ``delta``.

    See the module docstring for the sensitivity contract. Monotone: more noise, less epsilon.
    """
    mu = 1.0 / statistics_noise_multiplier(sigma, sensitivity)
    if not (isinstance(delta, int | float) and 0 < delta < 1):
        raise ValueError(f"delta must be in (0, 1) (got {delta!r})")
    if _delta_of(0.0, mu) <= delta:
        return 0.0
    low, high = 0.0, 1.0
    while _delta_of(high, mu) > delta:
        low, high = high, 2 * high
    for _ in range(200):
        mid = 0.5 * (low + high)
        if _delta_of(mid, mu) > delta:
            low = mid
        else:
            high = mid
        if high - low <= 1e-12 * max(1.0, high):
            break
    return high
