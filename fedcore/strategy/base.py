"""The server-strategy interface and the registry that builds a strategy from its config.

A strategy turns the round's aggregate into the next global model. The coordinator computes
``mean_delta``, the weighted mean over contributing clients of ``local - global`` (float64, from
the :class:`~fedcore.common.aggregation.AggregateResult`), and calls
``strategy.apply(global_params, mean_delta, round)``. Before a round it merges
``strategy.client_config(round)`` into each client's ``TrainTask.config`` (FedProx's
``proximal_mu``). A strategy's state (server-optimiser moments) goes into the coordinator's
checkpoint through :meth:`Strategy.state_dict`, which holds numpy arrays and numbers only, so it
can be written with ``np.savez`` and read back with ``allow_pickle=False``.

Build strategies with :func:`make_strategy`; :data:`STRATEGY_OPTIONS` lists every strategy's
options and their defaults, for config validation and documentation.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from numbers import Real
from typing import Any, ClassVar

import numpy as np

from fedcore.common.errors import ConfigError

StateDict = dict[str, "np.ndarray | float | int"]


class Strategy(ABC):
    """A server-side update rule ``(global, mean_delta, round) -> new global``.

    Subclasses set ``name`` and ``defaults`` (option name -> default value) and implement
    :meth:`apply`; stateful ones also override :meth:`state_dict` / :meth:`load_state_dict`.
    Options arrive already checked by :meth:`_validate` (unknown names and bad values are
    refused before an instance exists).
    """

    name: ClassVar[str] = ""
    defaults: ClassVar[dict[str, float]] = {}

    def __init__(self, **options: float):
        self.options: dict[str, float] = self._resolve(options)

    # -- options ----------------------------------------------------------------------------
    @classmethod
    def _resolve(cls, options: Mapping[str, Any]) -> dict[str, float]:
        """Merge ``options`` over the defaults and validate, collecting every problem."""
        problems: list[str] = []
        unknown = sorted(set(options) - set(cls.defaults))
        if unknown:
            valid = ", ".join(sorted(cls.defaults)) or "(none)"
            problems.append(f"unknown option(s) {', '.join(unknown)} for strategy {cls.name!r}; valid options: {valid}")
        merged: dict[str, float] = dict(cls.defaults)
        for key, value in options.items():
            if key not in cls.defaults:
                continue
            if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(float(value)):
                problems.append(f"{key} must be a finite number (got {value!r})")
                continue
            merged[key] = float(value)
        problems.extend(cls._validate(merged))
        if problems:
            raise ConfigError(problems, source=f"strategy {cls.name!r}")
        return merged

    @classmethod
    def _validate(cls, options: Mapping[str, float]) -> list[str]:
        """Return one message per invalid option value (empty when all are valid)."""
        problems = []
        if "server_lr" in options and not options["server_lr"] > 0:
            problems.append(f"server_lr must be > 0 (got {options['server_lr']})")
        return problems

    # -- the interface ----------------------------------------------------------------------
    def client_config(self, round: int) -> dict[str, float]:
        """Extra keys sent to every client in ``TrainTask.config`` for ``round`` (default none)."""
        return {}

    @abstractmethod
    def apply(self, global_params: np.ndarray, mean_delta: np.ndarray, round: int) -> np.ndarray:
        """Return the new global model (float32, same shape as ``global_params``).

        ``mean_delta`` is the weighted mean of ``local - global`` over the contributing clients.
        """

    def state_dict(self) -> StateDict:
        """The strategy's mutable state (numpy arrays and numbers only); stateless: ``{}``."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned, so that later rounds continue identically."""
        if state:
            raise ConfigError(
                f"strategy {self.name!r} keeps no state (got keys {sorted(state)})", source="strategy state"
            )

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v:g}" for k, v in sorted(self.options.items()))
        return f"{type(self).__name__}({opts})"

    # -- helpers for subclasses -------------------------------------------------------------
    @staticmethod
    def _check_inputs(global_params: np.ndarray, mean_delta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Both inputs as float64 1-D arrays of equal length with finite values, or ValueError."""
        g = np.asarray(global_params)
        d = np.asarray(mean_delta)
        if g.ndim != 1:
            raise ValueError(f"global_params must be a 1-D vector (got shape {g.shape})")
        if d.shape != g.shape:
            raise ValueError(f"mean_delta must have the shape of global_params {g.shape} (got {d.shape})")
        if not np.isfinite(d).all():
            raise ValueError(f"mean_delta has {int((~np.isfinite(d)).sum())} NaN or Inf values")
        return g.astype(np.float64), d.astype(np.float64)


#: name -> strategy class, filled by :func:`register`.
STRATEGIES: dict[str, type[Strategy]] = {}

#: name -> {option: default}; the single source for config validation and docs.
STRATEGY_OPTIONS: dict[str, dict[str, float]] = {}


def register(cls: type[Strategy]) -> type[Strategy]:
    """Class decorator: add a strategy to :data:`STRATEGIES` and :data:`STRATEGY_OPTIONS`."""
    if not cls.name or cls.name in STRATEGIES:
        raise ValueError(f"strategy class {cls.__name__} needs a unique name (got {cls.name!r})")
    STRATEGIES[cls.name] = cls
    STRATEGY_OPTIONS[cls.name] = dict(cls.defaults)
    return cls


def make_strategy(name: str, **options: float) -> Strategy:
    """Build the strategy ``name`` with ``options`` over its defaults.

    Raises :class:`~fedcore.common.errors.ConfigError` for an unknown name (listing the valid
    names), unknown options (listing the valid ones) or invalid values (all problems at once).
    """
    if name not in STRATEGIES:
        raise ConfigError(f"strategy must be one of {', '.join(STRATEGIES)} (got {name!r})", source="strategy")
    return STRATEGIES[name](**options)
