"""The coordinator's client-level DP bookkeeping: DP-FedAvg noise and the distributed-DP accounts.

One :class:`CoordinatorPrivacy` per coordinator run, built from the config and the checkpoint's
``extra["client_dp"]`` (so the accounts survive a restart). The round engine asks it:

- :meth:`max_weight` -- weights are capped at 1 under either kind of client-level DP (one
  client's contribution is then bounded by the clip norm whatever its sample count);
- :meth:`task_privacy` -- the typed privacy settings of each TrainTask/StatsTask
  (:class:`fedcore.common.task_privacy.TaskPrivacy`: the DP-SGD defaults, and the clip norm of
  client-level DP, central or distributed, under which the client clips its update and sends
  weight 1);
- :meth:`release` -- for each aggregate: add DP-FedAvg noise (if on) and charge the accounts; it
  returns the mean to hand to the strategy and the fields for ``metrics.jsonl``;
- :meth:`stats_release` -- round 0's statistics noise (``[secagg] stats_noise_sigma``).

Records (``metrics.jsonl`` per round, ``summary.json`` at the end)::

    "central_dp":     {"epsilon", "delta", "noise_multiplier", "clip_norm", "clients_total", "rounds",
                       "sampling_rate", "accountant", "contributors", "mean_noise_std"}
    "distributed_dp": {"epsilon", "delta", "noise_multiplier", "clip_norm", "rounds", "threshold",
                       "sigma_client", "sensitivity", "accountant"}
    summary.json "stats_dp": {"epsilon", "delta", "stats_noise_sigma", "sensitivity", "threshold"}
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from fedcore.common.aggregation import AggregateResult
from fedcore.common.task_privacy import ClientLevelDP, TaskPrivacy

from .secagg_dp import (
    DistributedAccountant,
    DistributedDP,
    parse_distributed_dp,
    stats_epsilon,
)

# .central (numpy + Opacus's accountant, hence torch) is imported only when DP-FedAvg is on.

__all__ = ["CoordinatorPrivacy"]

log = logging.getLogger(__name__)


class CoordinatorPrivacy:
    """Client-level DP of one coordinator run (see the module docstring).

    Args:
        central: the ``[central_dp]`` section (:class:`fedcore.config.coordinator.CentralDP`).
        mode_settings: the aggregation mode's table (``distributed_dp``, ``stats_noise_sigma`` for secagg).
        aggregation: the mode's name.
        saved: ``extra["client_dp"]`` of the latest checkpoint, or None.
        rng: noise source for DP-FedAvg (None: a fresh SecureRNG per round; tests pass a Generator).
    """

    def __init__(self, central: Any, mode_settings: dict, aggregation: str, saved: dict | None = None, rng: Any = None):
        saved = saved or {}
        self.rng = rng
        self.central = None
        if central.enabled:
            from .central import DPFedAvg

            self.central = DPFedAvg(
                float(central.clip_norm),
                float(central.noise_multiplier),
                int(central.clients_total),
                float(central.resolved_delta),
                rates=[float(q) for q in saved.get("central_rates", [])],
            )
        self.distributed: DistributedDP | None = None
        self.dist_account: DistributedAccountant | None = None
        if aggregation == "secagg":
            self.distributed = parse_distributed_dp(mode_settings.get("distributed_dp"))[0]
        if self.distributed is not None:
            self.dist_account = DistributedAccountant(self.distributed.delta, list(saved.get("distributed_rounds", [])))
        self.stats_delta = self.distributed.delta if self.distributed else 1e-5
        self.stats: dict[str, Any] | None = saved.get("stats_dp")

    # -- start-up -----------------------------------------------------------------------------
    def startup(self) -> list[str]:
        """Log (and return) the start-up lines; warns when DP-FedAvg has too few clients."""
        lines = []
        if self.central is not None:
            c = self.central
            lines.append(
                f"central DP (DP-FedAvg): clip_norm {c.clip_norm}, noise_multiplier {c.noise_multiplier}, "
                f"noise std on the sum {c.noise_std:.4g}, clients_total {c.clients_total}, "
                f"delta {c.delta:.3g}; updates weighted 1 per client"
            )
            from .central import warn_if_few_clients

            warn_if_few_clients(c.clients_total)
        if self.distributed is not None:
            d = self.distributed
            lines.append(
                f"distributed DP in secagg: clip_norm {d.clip_norm}, noise_multiplier {d.noise_multiplier}, "
                f"delta {d.delta:.3g}; per-client discrete Gaussian scaled for the survivor threshold"
            )
        for line in lines:
            log.info("%s", line)
        return lines

    def _distributed(self) -> tuple[DistributedDP, DistributedAccountant] | None:
        """The distributed-DP settings and their accountant (set together), or None without distributed DP."""
        if self.distributed is None or self.dist_account is None:
            return None
        return self.distributed, self.dist_account

    # -- per round ----------------------------------------------------------------------------
    def max_weight(self) -> float | None:
        """1.0 under client-level DP (uniform weights), else None (the mode's default)."""
        return 1.0 if (self.central is not None or self.distributed is not None) else None

    def task_privacy(self, local: Mapping[str, Any]) -> TaskPrivacy:
        """The privacy settings of a task: ``local`` (the ``[privacy]`` defaults) and client-level DP."""
        central = ClientLevelDP(self.central.clip_norm) if self.central is not None else None
        d = self.distributed
        distributed = ClientLevelDP(d.clip_norm, d.noise_multiplier, d.delta) if d is not None else None
        return TaskPrivacy(dict(local), central, distributed)

    def release(self, result: AggregateResult, selected: int) -> tuple[np.ndarray, dict[str, Any]]:
        """(mean for the strategy, fields for the round's metrics line). ValueError: not releasable."""
        fields: dict[str, Any] = {}
        noise = result.noise
        distributed = self._distributed()
        if distributed is not None:
            dp, account = distributed
            if noise is None or noise.kind != "update":
                raise ValueError("distributed DP is configured but the secagg result carries no noise record")
            account.charge(
                sensitivity=noise.sensitivity,
                sigma_client=noise.sigma_client,
                threshold=noise.threshold,
                participants=noise.participants,
                dim=noise.dim,
            )
            fields["distributed_dp"] = account.record(dp)
        if self.central is None:
            return result.mean, fields
        mean, fields["central_dp"] = self.central.release(
            result.weighted_sum, result.total_weight, result.num_contributors, selected, self.rng
        )
        return mean, fields

    def stats_release(self, result: AggregateResult) -> dict[str, Any] | None:
        """The round-0 statistics' sample-level DP record, or None without statistics noise."""
        noise = result.noise
        if noise is None or noise.kind != "stats":
            return None
        sigma, length = noise.sigma_client, noise.dim
        sens = noise.sensitivity or math.sqrt(length)  # the workload's stated sensitivity
        delta = noise.delta or self.stats_delta
        self.stats = {
            "epsilon": stats_epsilon(sigma, length, noise.threshold, noise.participants, delta, sensitivity=sens),
            "delta": delta,
            "stats_noise_sigma": sigma,
            "sensitivity": sens,
            "threshold": noise.threshold,
            "level": "sample",
        }
        log.info(
            "round 0 statistics: distributed discrete Gaussian noise %.3g counts per client, epsilon %.4g "
            "(delta %.3g, sample level, L2 sensitivity %.4g; each client's ledger charges its own record)",
            sigma,
            self.stats["epsilon"],
            delta,
            sens,
        )
        return self.stats

    # -- persistence and summary ------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """For the checkpoint's ``extra["client_dp"]``."""
        return {
            "central_rates": list(self.central.rates) if self.central else [],
            "distributed_rounds": list(self.dist_account.rounds) if self.dist_account else [],
            "stats_dp": self.stats,
        }

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.central is not None:
            out["central_dp"] = self.central.record()
        distributed = self._distributed()
        if distributed is not None:
            out["distributed_dp"] = distributed[1].record(distributed[0])
        if self.stats is not None:
            out["stats_dp"] = self.stats
        return out
