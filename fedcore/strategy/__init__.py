"""Server strategies: FedAvg, FedProx and the adaptive server optimisers of Reddi et al.

``make_strategy("fedadam", server_lr=0.01)`` builds one; ``STRATEGY_OPTIONS`` lists every
strategy's options with their defaults.
"""

from fedcore.strategy.base import (
    STRATEGIES,
    STRATEGY_OPTIONS,
    Strategy,
    make_strategy,
    register,
)
from fedcore.strategy.fedavg import FedAvg
from fedcore.strategy.fedopt import FedAdagrad, FedAdam, FedYogi
from fedcore.strategy.fedprox import FedProx

__all__ = [
    "STRATEGIES",
    "STRATEGY_OPTIONS",
    "FedAdagrad",
    "FedAdam",
    "FedAvg",
    "FedProx",
    "FedYogi",
    "Strategy",
    "make_strategy",
    "register",
]
