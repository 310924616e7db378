"""The interface a workload implements so that fedcore can train it, and nothing more.

fedcore never imports a workload: the daemons load one by the import path in their config
(``workload = "mer.train.federated:workload"``), call :meth:`Workload.initial_parameters` on the
coordinator and :meth:`Workload.make_trainer` on each client. Parameters cross this boundary as a
flat float32 vector plus its :class:`~fedcore.common.params.ParamSpec`.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from fedcore.common.errors import BudgetExhausted, ConfigError  # noqa: F401 (BudgetExhausted: part of the contract)
from fedcore.common.params import ParamSpec


@dataclass
class PrivacyState:
    """What a client reports about its privacy spending after a round (cumulative)."""

    enabled: bool
    epsilon: float = 0.0
    delta: float = 0.0
    accountant: str = ""
    steps: int = 0
    noise_multiplier: float = 0.0
    target_epsilon: float = 0.0
    exhausted: bool = False


@dataclass
class FitResult:
    parameters: np.ndarray  # (P,) float32: the locally trained parameters
    num_examples: int  # the client's weight in the average
    metrics: dict[str, float] = field(default_factory=dict)
    privacy: PrivacyState | None = None


@dataclass
class EvalResult:
    num_examples: int
    metrics: dict[str, float] = field(default_factory=dict)
    confusion: np.ndarray | None = None  # (C, C) int, rows = truth, for pooled UF1/UAR


@runtime_checkable
class Trainer(Protocol):
    def fit(
        self, params: np.ndarray, spec: ParamSpec, round: int, config: Mapping[str, Any], statistics: np.ndarray | None
    ) -> FitResult:
        """Train from ``params`` on local data; return the new parameters. ``config`` comes from
        the coordinator's TrainTask (epochs, lr, proximal_mu, ...), merged with the client's own
        ``[privacy]`` table under ``config["privacy"]``. ``statistics`` is the federation's summed
        statistics vector from round 0, or None."""

    def evaluate(
        self, params: np.ndarray, spec: ParamSpec, round: int, config: Mapping[str, Any], statistics: np.ndarray | None
    ) -> EvalResult:
        """Evaluate ``params`` on local held-out data."""

    def statistics(self, config: Mapping[str, Any]) -> np.ndarray | None:
        """The local statistics vector to sum securely before training (round 0), or None."""


@runtime_checkable
class Workload(Protocol):
    name: str

    def initial_parameters(self, settings: Mapping[str, Any], seed: int) -> tuple[np.ndarray, ParamSpec]:
        """The initial global model (on the coordinator)."""

    def statistics_spec(self, settings: Mapping[str, Any]) -> tuple[int, float] | None:
        """(length, max absolute value) of the statistics vector clients sum in round 0, or None."""

    def make_trainer(self, settings: Mapping[str, Any], client_id: str, workdir: Path, device: str) -> Trainer:
        """A Trainer over this client's data. ``settings`` is the client's ``[workload]`` table."""


def statistics_sensitivity(workload: Workload, settings: Mapping[str, Any]) -> float | None:
    """The L2 sensitivity of the workload's round-0 statistics vector for one training sample.

    A workload states it with an optional ``statistics_sensitivity(settings) -> float`` method:
    the largest L2 norm by which adding or removing *one sample* of one client changes that
    client's statistics vector (see :mod:`fedcore.dp.statistics`). Without that method the
    fallback is sqrt(length) of :meth:`Workload.statistics_spec`, which holds when one sample
    changes every entry by at most 1. None when the workload has no statistics.
    """
    declared = getattr(workload, "statistics_sensitivity", None)
    if callable(declared):
        value = float(declared(settings))
        if not (value > 0 and value < float("inf")):
            raise ConfigError(
                f"workload {getattr(workload, 'name', workload)!r}: statistics_sensitivity must be "
                f"a finite number > 0 (got {value})"
            )
        return value
    spec = workload.statistics_spec(settings)
    return None if spec is None else float(int(spec[0])) ** 0.5


def load_workload(path: str) -> Workload:
    """Import ``"package.module:attribute"``; the attribute is a Workload or a factory of one."""
    module, sep, attr = path.partition(":")
    if not sep or not module or not attr:
        raise ConfigError(f"workload must look like 'package.module:attribute' (got {path!r})")
    try:
        obj = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot load workload {path!r}: {exc}") from None
    if isinstance(obj, type) or (callable(obj) and not isinstance(obj, Workload)):
        obj = obj()
    if not isinstance(obj, Workload):
        raise ConfigError(f"workload {path!r} does not implement initial_parameters/statistics_spec/make_trainer")
    return obj
