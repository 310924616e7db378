"""Settings of ``fedpsyau bench epsilon``: the sweep, and the training hyper-parameters per epsilon.

:func:`hyperparameters` is the one place that says how DPK-GAT trains at a given privacy budget
(local epochs per round, expected batch size, AdamW learning rate, DP-SGD clipping bound). Every
setting of the sweep (centralised, federated plain / SecAgg / CKKS) takes its values from it, so a
retuned table changes all of them at once. ``math.inf`` means "no DP" (plain SGD, same schedule).

The defaults are read from ``fedpsyau simulate``'s (``mer.federation.DEFAULTS``: local epochs,
batch size, learning rate; clip 1.0), the same at every budget: add an entry to
:data:`HYPERPARAMETERS` (epsilon -> overrides, falling back to :data:`DEFAULT`) to tune one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mer.federation import DEFAULTS as _SIM

#: The full sweep's privacy budgets (per client, whole run, delta = min(1e-5, 1/(10 n))).
EPSILONS: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, math.inf)
#: ``--quick``: one strong, one moderate budget and no DP.
QUICK_EPSILONS: tuple[float, ...] = (1.0, 8.0, math.inf)
#: Every setting the sweep knows, in plotting order.
SETTINGS: tuple[str, ...] = ("centralised", "plain", "secagg", "ckks")

#: Training keys every entry holds.
KEYS = ("epochs", "batch_size", "lr", "max_grad_norm")
#: ``fedpsyau simulate``'s (tuned) training defaults, so the sweep trains what the main job trains.
DEFAULT: dict[str, float | int] = {"epochs": _SIM["epochs"], "batch_size": _SIM["batch_size"], "lr": _SIM["lr"],
                                   "max_grad_norm": 1.0}
#: epsilon -> overrides of DEFAULT (empty: the defaults everywhere).
HYPERPARAMETERS: dict[float, dict[str, float | int]] = {}


def hyperparameters(epsilon: float) -> dict[str, float | int]:
    """Training hyper-parameters at privacy budget ``epsilon`` (``math.inf``: no DP).

    Returns a new dict with exactly the keys of :data:`KEYS`.
    """
    if not (isinstance(epsilon, (int, float)) and epsilon > 0):
        raise ValueError(f"epsilon must be a number > 0 or math.inf (got {epsilon!r})")
    out = {**DEFAULT, **HYPERPARAMETERS.get(float(epsilon), {})}
    unknown = sorted(set(out) - set(KEYS))
    if unknown:
        raise ValueError(f"HYPERPARAMETERS[{epsilon}] has unknown keys {unknown} (allowed: {', '.join(KEYS)})")
    return out


@dataclass(frozen=True)
class SweepPlan:
    """What one ``bench epsilon`` invocation runs."""
    epsilons: tuple[float, ...]
    settings: tuple[str, ...]
    seeds: int
    rounds: int
    clients: int
    ckks_epsilons: tuple[float, ...]   # CKKS is the slowest mode: the budgets it runs at

    def runs(self) -> list[tuple[str, float, int]]:
        """(setting, epsilon, seed) of every training run, in execution order."""
        out = []
        for seed in range(self.seeds):
            for eps in self.epsilons:
                for s in self.settings:
                    if s != "ckks" or eps in self.ckks_epsilons:
                        out.append((s, eps, seed))
        return out


#: --quick: under 5 minutes on 2 cores (10 training runs of 20 rounds).
QUICK = {"epsilons": QUICK_EPSILONS, "settings": ("centralised", "plain", "secagg", "ckks"), "seeds": 1, "rounds": 20,
             "ckks_epsilons": (8.0,)}
#: the full sweep: under 60 minutes on 2 cores.
FULL = {"epsilons": EPSILONS, "settings": SETTINGS, "seeds": 3, "rounds": 20, "ckks_epsilons": EPSILONS}
