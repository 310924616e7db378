r"""Distributed DP inside secure aggregation: settings, noise scale per fixed-point scale, accounting.

Glue between the pure maths of :mod:`fedcore.dp.distributed` and the SecAgg+ mode
(:mod:`fedcore.secagg`). Two uses, both configured in the coordinator's ``[secagg]`` table:

``distributed_dp = {noise_multiplier = z, clip_norm = S, delta = 1e-5}`` (training rounds)
    Each client clips its update (new - global, float, *before* quantisation) to L2 norm S, with
    weight 1 (the server caps weights at 1: a weight would multiply the sensitivity), quantises it
    at scale 2^f and adds discrete Gaussian noise of scale

        sigma_c(f) = z * Delta_q(f) / sqrt(t),  Delta_q(f) = 2^f (S + 2^-f sqrt(d))

    in integer units (:func:`update_noise_sigma`; Delta_q is the unconditional rounding bound of
    :func:`~fedcore.dp.distributed.quantised_l2_sensitivity`, since SecAgg's stochastic rounding
    is not the conditional kind). t is the round's survivor threshold T, so the sum over any
    >= t survivors carries noise of variance >= (z Delta_q)^2. The server picks the largest f for
    which the quantised values *plus the noise tails* (+-NOISE_TAIL sigma_c per client) cannot
    overflow the ring (:func:`fedcore.secagg.quantize.choose_noisy_params`); every client recomputes sigma_c from its own
    settings and refuses a smaller one.

``stats_noise_sigma = s`` (round 0, the statistics sum)
    Each client adds discrete Gaussian noise of std s *counts* (s 2^f integer units) to its
    statistics vector (e.g. AU co-occurrence counts). One training sample changes each of the L
    entries by at most 1, so the L2 sensitivity is sqrt(L) (sqrt(78) for the 78 AU-pair counts):
    this is *sample-level* DP of the released sum, accounted once (:func:`stats_epsilon`).

Accounting (:class:`DistributedAccountant`): each round's RDP is
:func:`~fedcore.dp.distributed.sum_rdp` with the guaranteed survivors t; rounds add up; the
result is client-level (epsilon, delta) with q = 1 (no amplification claimed).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# fedcore.dp.distributed (and through it Opacus and torch) is imported inside the functions that need
# it: the secagg settings parser imports this module, and a coordinator without DP should not pay for torch.

__all__ = [
    "DISTRIBUTED_KEYS",
    "DistributedAccountant",
    "DistributedDP",
    "parse_distributed_dp",
    "stats_epsilon",
    "update_noise_sigma",
]

#: keys of the ``distributed_dp`` table (``delta`` is optional, default 1e-5)
DISTRIBUTED_KEYS = ("noise_multiplier", "clip_norm", "delta")


@dataclass(frozen=True)
class DistributedDP:
    noise_multiplier: float  # z: the noise on the survivors' sum is z times the sensitivity
    clip_norm: float  # S: L2 bound of each client's update, in real (float) units
    delta: float = 1e-5  # client-level delta of the accounting


def _num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def parse_distributed_dp(table: Any, where: str = "distributed_dp") -> tuple[DistributedDP | None, list[str]]:
    """(settings or None when absent/empty, every problem found)."""
    if table is None or table == {}:
        return None, []
    if not isinstance(table, Mapping):
        return None, [f"{where} must be a table {{{', '.join(DISTRIBUTED_KEYS)}}} (got {table!r})"]
    problems = [
        f"{where}: unknown key {k!r} (expected {', '.join(DISTRIBUTED_KEYS)})"
        for k in table
        if k not in DISTRIBUTED_KEYS
    ]
    for key in ("noise_multiplier", "clip_norm"):
        if key not in table:
            problems.append(f"{where}: {key} is required")
        elif not (_num(table[key]) and table[key] > 0):
            problems.append(f"{where}: {key} must be a finite number > 0 (got {table[key]!r})")
    delta = table.get("delta", 1e-5)
    if not (_num(delta) and 0 < delta < 1):
        problems.append(f"{where}: delta must be in (0, 1) (got {delta!r})")
    if problems:
        return None, problems
    return DistributedDP(float(table["noise_multiplier"]), float(table["clip_norm"]), float(delta)), []


def update_noise_sigma(dp: DistributedDP, frac_bits: int, threshold: int, dim: int) -> float:
    """sigma_c in integer units for updates of ``dim`` values at scale 2^frac_bits (module doc)."""
    from .distributed import quantised_l2_sensitivity

    sensitivity = quantised_l2_sensitivity(dp.clip_norm, 2.0**frac_bits, dim, beta=None)
    return dp.noise_multiplier * sensitivity / math.sqrt(threshold)


def _epsilon(rdp: np.ndarray, delta: float) -> float:
    from opacus.accountants.analysis import rdp as rdp_analysis

    from .accounting import RDP_ORDERS

    eps, _ = rdp_analysis.get_privacy_spent(orders=list(RDP_ORDERS), rdp=rdp, delta=delta)
    return float(eps)


def stats_epsilon(
    stats_sigma: float,
    length: int,
    threshold: int,
    participants: int,
    delta: float = 1e-5,
    sensitivity: float | None = None,
) -> float:
    """Sample-level epsilon of the round-0 statistics sum (noise std ``stats_sigma`` counts per client,
    >= ``threshold`` survivors, L2 ``sensitivity``; None: sqrt(length), each count moved by <= 1), one release."""
    from .accounting import RDP_ORDERS
    from .distributed import sum_rdp

    sens = math.sqrt(length) if sensitivity is None else float(sensitivity)
    rdp = sum_rdp(
        RDP_ORDERS,
        sensitivity=sens,
        sigma_client=stats_sigma,
        threshold=threshold,
        max_clients=participants,
        dim=length,
    )
    return _epsilon(rdp, delta)


@dataclass
class DistributedAccountant:
    """Client-level RDP of the distributed discrete Gaussian, composed over released rounds.

    ``rounds`` holds one dict per round (sensitivity and sigma in integer units, threshold t,
    participants n, dim d), enough to recompute everything after a coordinator restart.
    """

    delta: float
    rounds: list[dict[str, float]] = field(default_factory=list)

    def charge(self, *, sensitivity: float, sigma_client: float, threshold: int, participants: int, dim: int) -> None:
        self.rounds.append(
            {
                "sensitivity": float(sensitivity),
                "sigma_client": float(sigma_client),
                "threshold": int(threshold),
                "participants": int(participants),
                "dim": int(dim),
            }
        )

    def epsilon(self) -> float:
        if not self.rounds:
            return 0.0
        from .accounting import RDP_ORDERS
        from .distributed import sum_rdp

        total = np.zeros(len(RDP_ORDERS))
        for r in self.rounds:
            total += sum_rdp(
                RDP_ORDERS,
                sensitivity=r["sensitivity"],
                sigma_client=r["sigma_client"],
                threshold=int(r["threshold"]),
                max_clients=int(r["participants"]),
                dim=int(r["dim"]),
            )
        return _epsilon(total, self.delta)

    def record(self, dp: DistributedDP) -> dict[str, Any]:
        """What the coordinator logs per round (metrics.jsonl ``distributed_dp``) and in summary.json."""
        last = self.rounds[-1] if self.rounds else {}
        return {
            "epsilon": self.epsilon(),
            "delta": self.delta,
            "noise_multiplier": dp.noise_multiplier,
            "clip_norm": dp.clip_norm,
            "rounds": len(self.rounds),
            "threshold": last.get("threshold"),
            "sigma_client": last.get("sigma_client"),
            "sensitivity": last.get("sensitivity"),
            "accountant": "rdp (Kairouz et al. 2021, distributed discrete Gaussian)",
        }
