"""FedProx: FedAvg's server update plus a proximal term in every client's objective.

Li et al., "Federated Optimization in Heterogeneous Networks" (MLSys 2020). Client k solves,
starting from the global model x_t,

    min_w  F_k(w) + mu / 2 * ||w - x_t||^2

and the server then applies ``x_{t+1} = x_t + eta * Delta_t`` exactly as FedAvg does.

The proximal term is applied by the client's trainer, which receives ``proximal_mu`` in
``TrainTask.config`` (see :meth:`FedProx.client_config`); the server's only part is sending
``mu``. ``mu = 0`` reduces to FedAvg.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from fedcore.strategy.base import register
from fedcore.strategy.fedavg import FedAvg


@register
class FedProx(FedAvg):
    """FedAvg's server update; clients add ``mu/2 ||w - w_global||^2`` to their loss.

    Options: ``mu`` (default 0.01, >= 0; sent to clients as ``proximal_mu``), ``server_lr``
    (default 1.0, > 0).
    """

    name = "fedprox"
    defaults: ClassVar[dict[str, float]] = {"mu": 0.01, "server_lr": 1.0}

    @classmethod
    def _validate(cls, options: Mapping[str, float]) -> list[str]:
        problems = super()._validate(options)
        if options["mu"] < 0:
            problems.append(f"mu must be >= 0 (got {options['mu']})")
        return problems

    def client_config(self, round: int) -> dict[str, float]:
        return {"proximal_mu": self.options["mu"]}
