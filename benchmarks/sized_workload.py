"""A benchmark workload whose parameter count is a setting, with optional DP-SGD.

It is fedcore's example workload (:mod:`fedcore.examples.softmax`: a one-hidden-layer MLP on
generated non-IID data) with two additions for ``benchmarks/overhead.py``:

- ``parameters`` (setting): the hidden width is chosen so the model has about that many
  parameters (``num_features`` inputs, default 1000; ``num_classes`` outputs): see :func:`sized`;
- training goes through :func:`fedcore.dp.opacus_train.dp_train` both with and without DP (the
  client's ``[privacy]`` table under ``config["privacy"]``, ``enabled = false`` for plain SGD), so
  DP and non-DP client times differ only by DP-SGD itself (Poisson sampling, per-sample
  gradients, clipping, noise).

The daemons load it as ``sized_workload:workload`` with ``benchmarks/`` on ``PYTHONPATH`` (the
name ``benchmarks`` is taken by a package that Opacus installs).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fedcore.common.workload import FitResult, PrivacyState
from fedcore.common.params import flatten
from fedcore.dp.config import PrivacyConfig
from fedcore.dp.opacus_train import dp_train
from fedcore.dp.plan import plan_privacy
from fedcore.examples.softmax import SoftmaxTrainer, SoftmaxWorkload
from fedcore.examples.synthetic import DataSettings


def sized(parameters: int, num_features: int = 1000, num_classes: int = 4) -> dict[str, int]:
    """Settings of an MLP ``num_features -> hidden -> num_classes`` with about ``parameters`` weights.

    Count: ``F*H + H + H*C + C``, so ``H = round((P - C) / (F + 1 + C))``.
    """
    hidden = max(1, round((parameters - num_classes) / (num_features + 1 + num_classes)))
    return {"num_features": num_features, "num_classes": num_classes, "hidden": hidden}


def count(settings: Mapping[str, Any]) -> int:
    s = DataSettings.from_mapping(settings)
    return s.num_features * s.hidden + s.hidden + s.hidden * s.num_classes + s.num_classes


def _resolve(settings: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(settings)
    if "parameters" in out:
        out.update(
            sized(int(out.pop("parameters")), int(out.get("num_features", 1000)), int(out.get("num_classes", 4)))
        )
    return out


class SizedTrainer(SoftmaxTrainer):
    """The example trainer, trained through ``dp_train`` (DP-SGD when the privacy table enables it)."""

    def __init__(self, settings: DataSettings, workdir: Path, device: str = "cpu"):
        super().__init__(settings, device)
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._plan = self._ledger = None

    def fit(self, params, spec, round, config, statistics) -> FitResult:
        self._load(params, spec)
        epochs, batch = int(config.get("epochs", 1)), int(config.get("batch_size", 32))
        table = {
            "planned_rounds": int(config.get("rounds", 1)),
            "local_epochs": epochs,
            "batch_size": batch,
            **dict(config.get("privacy") or {}),
        }
        privacy = PrivacyConfig.from_dict(table, source="sized workload [privacy]")
        if privacy.enabled and self._plan is None:
            self._plan = plan_privacy(privacy, len(self.y_train))
            self._ledger = self._plan.open_ledger(self.workdir / "privacy_ledger.json")
        stats = dp_train(
            self.model,
            nn.CrossEntropyLoss(),
            (self.x_train, self.y_train),
            privacy=privacy,
            ledger=self._ledger,
            round=round,
            plan=self._plan,
            epochs=epochs,
            batch_size=batch,
            lr=float(config.get("lr", 0.1)),
            device=self.device,
        )
        vec, _ = flatten(self.model.state_dict())
        state = (
            PrivacyState(
                True,
                float(stats.epsilon),
                float(stats.delta),
                str(stats.accountant),
                stats.steps,
                float(stats.noise_multiplier),
            )
            if privacy.enabled
            else PrivacyState(enabled=False)
        )
        return FitResult(np.asarray(vec, np.float32), len(self.y_train), {"loss": float(stats.loss)}, state)


class SizedWorkload(SoftmaxWorkload):
    name = "sized-mlp"

    def initial_parameters(self, settings, seed):
        return super().initial_parameters(_resolve(settings), seed)

    def statistics_spec(self, settings):
        return super().statistics_spec(_resolve(settings))

    def make_trainer(self, settings, client_id: str, workdir: Path, device: str) -> SizedTrainer:
        with torch.random.fork_rng(devices=[]):
            return SizedTrainer(DataSettings.from_mapping(_resolve(settings)), workdir, device)


workload = SizedWorkload()
