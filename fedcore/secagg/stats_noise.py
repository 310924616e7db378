r"""Round 0's statistics noise: the scale for a stated (epsilon, delta), split over the survivors.

Pure functions, no state. The statistics vector (e.g. AU co-occurrence counts) is summed with
SecAgg in round 0. When noise is on (:attr:`~fedcore.secagg.state.SecAggSettings.stats_noise_on`:
by default whenever the federation has DP), each client adds discrete Gaussian noise of standard
deviation

.. math::

   \sigma_c = \sigma_{total} / \sqrt{T}

(in counts; ``sigma_c 2^f`` integer units after quantisation), so that the sum over *any* T or
more survivors carries noise of standard deviation at least sigma_total: the noise is scaled for
the worst case the round can complete with, not for the participants.

sigma_total comes from ``stats_epsilon`` / ``stats_delta`` and the L2 sensitivity Delta of the
statistics (``stats_sensitivity``; by default sqrt(L): one training sample changes each of the L
counts by at most 1). The discrete Gaussian with scale sigma satisfies rho-zCDP with
rho = Delta^2 / (2 sigma^2) (Canonne, Kamath & Steinke 2020, Thm. 4); rho-zCDP gives
(epsilon, delta)-DP with epsilon = rho + 2 sqrt(rho ln(1/delta)) (Bun & Steinke 2016, Prop. 1.3).
Solving for sigma:

.. math::

   \sqrt{\rho} = \sqrt{\ln(1/\delta) + \epsilon} - \sqrt{\ln(1/\delta)}, \qquad
   \sigma_{total} = \Delta / \sqrt{2 \rho}

A sum of T discrete Gaussians is not exactly one; Kairouz et al. (2021, Thm. 1) bound the gap by a
term tau that vanishes at the integer scale used here (sigma_c 2^f >> 1). The RDP accounting of
:mod:`fedcore.dp` (optimal order conversion) gives an epsilon at most this one for the same sigma, so
the budget is met whichever charges it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class StatsNoise:
    """What a client adds in round 0 and what it may charge for it."""

    sigma_total: float  # std of the noise on the survivors' sum, in counts (for >= T survivors)
    sensitivity: float  # L2 sensitivity of one client's statistics to one sample, in counts
    delta: float
    epsilon: float  # the epsilon this sigma_total gives (<= stats_epsilon)

    def client_sigma(self, threshold: int) -> float:
        """sigma_c = sigma_total / sqrt(T), in counts."""
        return client_sigma(self.sigma_total, threshold)

    def task_config(self) -> dict[str, float]:
        """The ``stats_dp`` table of the statistics task (what a client needs to charge its ledger)."""
        return {
            "sigma_total": self.sigma_total,
            "sensitivity": self.sensitivity,
            "delta": self.delta,
            "epsilon": self.epsilon,
        }


def sigma_for_epsilon(epsilon: float, delta: float, sensitivity: float) -> float:
    """sigma_total for (epsilon, delta)-DP of one release with L2 sensitivity Delta (module doc)."""
    if not (
        math.isfinite(epsilon) and epsilon > 0 and 0 < delta < 1 and math.isfinite(sensitivity) and sensitivity > 0
    ):
        raise ValueError(
            f"need epsilon > 0, delta in (0, 1) and sensitivity > 0 (got {epsilon}, {delta}, {sensitivity})"
        )
    log_inv = math.log(1 / delta)
    root_rho = math.sqrt(log_inv + epsilon) - math.sqrt(log_inv)
    return sensitivity / (math.sqrt(2.0) * root_rho)


def epsilon_of(sigma_total: float, sensitivity: float, delta: float) -> float:
    """epsilon = rho + 2 sqrt(rho ln(1/delta)), rho = Delta^2 / (2 sigma^2): the inverse of
    :func:`sigma_for_epsilon`."""
    rho = sensitivity**2 / (2 * sigma_total**2)
    return rho + 2 * math.sqrt(rho * math.log(1 / delta))


def client_sigma(sigma_total: float, threshold: int) -> float:
    if threshold < 1:
        raise ValueError(f"the survivor threshold must be >= 1 (got {threshold})")
    return sigma_total / math.sqrt(threshold)


def stats_noise(config: Any, length: int, threshold: int | None = None) -> StatsNoise | None:
    """The round-0 noise of a :class:`~fedcore.secagg.state.SecAggSettings`, or None when it is off.

    ``stats_noise_sigma > 0`` fixes sigma_c itself (counts per client; sigma_total = sigma_c sqrt(T),
    so it needs ``threshold``); otherwise sigma_total follows ``stats_epsilon`` and ``stats_delta``.
    """
    if not config.stats_noise_on:
        return None
    if length < 1:
        raise ValueError(f"the statistics vector needs at least one value (got length {length})")
    sensitivity = config.stats_sensitivity or math.sqrt(length)
    if config.stats_noise_sigma > 0:
        if threshold is None:
            raise ValueError("stats_noise_sigma fixes the per-client noise: sigma_total needs the round's threshold")
        total = config.stats_noise_sigma * math.sqrt(threshold)
    else:
        total = sigma_for_epsilon(config.stats_epsilon, config.stats_delta, sensitivity)
    return StatsNoise(total, sensitivity, config.stats_delta, epsilon_of(total, sensitivity, config.stats_delta))


def stats_task_config(settings: Mapping[str, Any], length: int, threshold: int | None = None) -> dict[str, Any]:
    """For the coordinator's ``StatsTask.config``: ``{"stats_dp": {sigma_total, sensitivity, delta,
    epsilon}}`` when the ``[secagg]`` table puts noise on the statistics, else ``{}``."""
    from fedcore.secagg.state import SecAggSettings

    noise = stats_noise(SecAggSettings.from_mapping(settings), length, threshold)
    return {"stats_dp": noise.task_config()} if noise is not None else {}
