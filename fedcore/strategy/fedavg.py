"""FedAvg: the server takes a (scaled) step along the clients' weighted mean update.

McMahan et al., "Communication-Efficient Learning of Deep Networks from Decentralized Data"
(AISTATS 2017), with the server learning rate of Reddi et al. (ICLR 2021)::

    Delta_t = sum_i n_i (x_i - x_t) / sum_i n_i
    x_{t+1} = x_t + eta * Delta_t

``eta = server_lr = 1`` is plain weighted model averaging.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from fedcore.strategy.base import Strategy, register


@register
class FedAvg(Strategy):
    """``x_{t+1} = x_t + server_lr * mean_delta``. Options: ``server_lr`` (default 1.0, > 0)."""

    name = "fedavg"
    defaults: ClassVar[dict[str, float]] = {"server_lr": 1.0}

    def apply(self, global_params: np.ndarray, mean_delta: np.ndarray, round: int) -> np.ndarray:
        g, d = self._check_inputs(global_params, mean_delta)
        return (g + self.options["server_lr"] * d).astype(np.float32)
