"""A workload whose clients contribute known updates: the round protocol's test and benchmark load.

Client i's update in round r is a fixed function of the settings (:func:`update`), so whoever
ran the federation can recompute every contribution and check the aggregate exactly -- the role
the per-mode drivers played, now through the real engine and client daemons. No model, no data,
no torch: a round costs only what the protocol costs, at any ``size`` (1e6 parameters and more).

Settings (``[workload.settings]``; the daemons add ``client_index``):

==================  ==========  =========================================================
``size``            1000        parameters of the (flat, one-tensor) model
``scale``           0.01        standard deviation of each update value
``seed``            0           the updates' seed (with client index and round)
``num_examples``    0           the client's weight (0: 10 * (client_index + 1))
``statistics``      0           length of a round-0 statistics vector (0: none); client i
                                contributes ``i + 1`` in every slot, bound ``clip = 1e3``
==================  ==========  =========================================================

The initial model is zeros; the Trainer returns ``params + update`` (float64) and evaluates to
the model's mean and L2 norm, so metrics.jsonl shows the protocol ran.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from fedcore.common.params import ParamSpec, TensorSpec
from fedcore.common.workload import EvalResult, FitResult, PrivacyState


def _settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    out = {
        "size": int(settings.get("size", 1000)),
        "scale": float(settings.get("scale", 0.01)),
        "seed": int(settings.get("seed", 0)),
        "num_examples": int(settings.get("num_examples", 0)),
        "statistics": int(settings.get("statistics", 0)),
    }
    if out["size"] < 1:
        raise ValueError(f"updates workload: size must be >= 1 (got {out['size']})")
    return out


def weight(settings: Mapping[str, Any], client_index: int) -> int:
    """Client ``client_index``'s weight (its num_examples)."""
    n = _settings(settings)["num_examples"]
    return n if n > 0 else 10 * (int(client_index) + 1)


def update(settings: Mapping[str, Any], client_index: int, round_: int) -> np.ndarray:
    """Client ``client_index``'s update in ``round_`` (float64, length ``size``)."""
    s = _settings(settings)
    rng = np.random.default_rng([s["seed"], int(client_index), int(round_)])
    return rng.normal(0.0, s["scale"], s["size"])


def expected_mean(settings: Mapping[str, Any], contributors: list[int], round_: int) -> np.ndarray:
    """The weighted mean of the contributors' updates (what FedAvg adds to the model)."""
    ws = np.array([weight(settings, i) for i in contributors], np.float64)
    total = sum(w * update(settings, i, round_) for w, i in zip(ws, contributors))
    return total / ws.sum()


class UpdatesTrainer:
    def __init__(self, settings: Mapping[str, Any]):
        self.settings = dict(settings)
        self.index = int(settings.get("client_index", 0))

    def fit(self, params, spec, round, config, statistics) -> FitResult:
        new = np.asarray(params, np.float64) + update(self.settings, self.index, round)
        return FitResult(
            new, weight(self.settings, self.index), {"norm": float(np.linalg.norm(new))}, PrivacyState(enabled=False)
        )

    def evaluate(self, params, spec, round, config, statistics) -> EvalResult:
        p = np.asarray(params, np.float64)
        return EvalResult(
            weight(self.settings, self.index), {"mean": float(p.mean()), "norm": float(np.linalg.norm(p))}
        )

    def statistics(self, config) -> np.ndarray | None:
        length = _settings(self.settings)["statistics"]
        return np.full(length, float(self.index + 1)) if length else None


class UpdatesWorkload:
    """The :class:`fedcore.common.workload.Workload` (module docstring)."""

    name = "known-updates"

    def initial_parameters(self, settings, seed) -> tuple[np.ndarray, ParamSpec]:
        size = _settings(settings)["size"]
        return np.zeros(size, np.float32), ParamSpec((TensorSpec("w", (size,)),))

    def statistics_spec(self, settings) -> tuple[int, float] | None:
        length = _settings(settings)["statistics"]
        return (length, 1e3) if length else None

    def make_trainer(self, settings, client_id: str, workdir: Path, device: str) -> UpdatesTrainer:
        return UpdatesTrainer(settings)


workload = UpdatesWorkload()
