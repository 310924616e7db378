"""Adaptive server optimisers: FedAdam, FedYogi and FedAdagrad.

Reddi et al., "Adaptive Federated Optimization" (ICLR 2021), Algorithm 2. The server treats the
negated mean client update as a pseudo-gradient, ``g_t = -Delta_t``, and feeds it to an adaptive
optimiser. With ``Delta_t = sum_i n_i (x_i - x_t) / sum_i n_i`` (``mean_delta``)::

    m_t = beta1 * m_{t-1} + (1 - beta1) * Delta_t
    FedAdagrad: v_t = v_{t-1} + Delta_t^2
    FedAdam:    v_t = beta2 * v_{t-1} + (1 - beta2) * Delta_t^2
    FedYogi:    v_t = v_{t-1} - (1 - beta2) * Delta_t^2 * sign(v_{t-1} - Delta_t^2)
    x_{t+1} = x_t + eta * m_t / (sqrt(v_t) + tau)

(all operations element-wise). Written with ``g_t = -Delta_t`` this is the familiar
``x_{t+1} = x_t - eta * m^g_t / (sqrt(v_t) + tau)`` with ``m^g_t = -m_t``; ``v`` only sees squares.
Initialisation as in the paper: ``m_{-1} = 0`` and ``v_{-1} = tau^2`` (the paper requires
``v_{-1} >= tau^2``). As in the paper there is no bias correction; ``tau`` controls the degree of
adaptivity (smaller = more adaptive). Defaults: ``server_lr`` (eta) 1e-2, ``beta1`` 0.9,
``beta2`` 0.99, ``tau`` 1e-3.

State (for checkpoints): ``m`` and ``v`` (float64 vectors, once the first round has run) and
``step`` (rounds applied).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from fedcore.common.errors import ConfigError
from fedcore.strategy.base import StateDict, Strategy, register


class _FedOpt(Strategy):
    """Shared moments and update; subclasses define :meth:`_second_moment`."""

    defaults: ClassVar[dict[str, float]] = {"server_lr": 1e-2, "beta1": 0.9, "beta2": 0.99, "tau": 1e-3}

    def __init__(self, **options: float):
        super().__init__(**options)
        self.m: np.ndarray | None = None
        self.v: np.ndarray | None = None
        self.step = 0

    @classmethod
    def _validate(cls, options: Mapping[str, float]) -> list[str]:
        problems = super()._validate(options)
        for key in ("beta1", "beta2"):
            if key in options and not 0.0 <= options[key] < 1.0:
                problems.append(f"{key} must be in [0, 1) (got {options[key]})")
        if not options["tau"] > 0:
            problems.append(f"tau must be > 0 (got {options['tau']})")
        return problems

    @abstractmethod
    def _second_moment(self, v: np.ndarray, delta_sq: np.ndarray) -> np.ndarray:
        """v_t from v_{t-1} and Delta_t^2 (Adam, Yogi and Adagrad differ only here)."""

    def apply(self, global_params: np.ndarray, mean_delta: np.ndarray, round: int) -> np.ndarray:
        x, delta = self._check_inputs(global_params, mean_delta)
        tau = self.options["tau"]
        if self.m is None or self.v is None:
            self.m = np.zeros_like(x)  # m_{-1} = 0
            self.v = np.full_like(x, tau * tau)  # v_{-1} = tau^2
        elif self.m.shape != x.shape:
            raise ValueError(
                f"strategy {self.name!r} holds moments for {self.m.shape[0]} parameters, the model has {x.shape[0]}"
            )
        beta1 = self.options["beta1"]
        m = beta1 * self.m + (1.0 - beta1) * delta
        v = self._second_moment(self.v, delta * delta)
        new = x + self.options["server_lr"] * m / (np.sqrt(v) + tau)
        self.m, self.v, self.step = m, v, self.step + 1
        return new.astype(np.float32)

    def state_dict(self) -> StateDict:
        if self.m is None or self.v is None:
            return {"step": self.step}
        return {"m": self.m.copy(), "v": self.v.copy(), "step": self.step}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        problems = []
        keys = set(state)
        if keys not in ({"step"}, {"m", "v", "step"}):
            raise ConfigError(
                f"strategy {self.name!r} expects keys ['m', 'v', 'step'] or ['step'] (got {sorted(keys)})",
                source="strategy state",
            )
        step = np.asarray(state["step"])
        if step.shape != () or step.dtype.kind not in "iu" or int(step) < 0:
            problems.append(f"step must be a non-negative integer (got {state['step']!r})")
        m = v = None
        if "m" in keys:
            m = np.asarray(state["m"], dtype=np.float64)
            v = np.asarray(state["v"], dtype=np.float64)
            if m.ndim != 1 or v.shape != m.shape:
                problems.append(f"m and v must be 1-D vectors of one length (got {m.shape} and {v.shape})")
            elif not (np.isfinite(m).all() and np.isfinite(v).all()):
                problems.append("m and v must be finite")
            elif (v < 0).any():
                problems.append("v must be non-negative")
        if problems:
            raise ConfigError(problems, source=f"strategy {self.name!r} state")
        self.m = None if m is None else m.copy()
        self.v = None if v is None else v.copy()
        self.step = int(step)


@register
class FedAdam(_FedOpt):
    """``v_t = beta2 v_{t-1} + (1 - beta2) Delta_t^2`` (Reddi et al. 2021)."""

    name = "fedadam"

    def _second_moment(self, v: np.ndarray, delta_sq: np.ndarray) -> np.ndarray:
        beta2 = self.options["beta2"]
        return beta2 * v + (1.0 - beta2) * delta_sq


@register
class FedYogi(_FedOpt):
    """``v_t = v_{t-1} - (1 - beta2) Delta_t^2 sign(v_{t-1} - Delta_t^2)`` (Reddi et al. 2021).

    Unlike Adam, ``v`` changes by at most ``(1 - beta2) Delta_t^2`` per round and only in the
    direction of ``Delta_t^2``, so the effective rate cannot collapse after one large update. With
    ``v_{-1} = tau^2 > 0`` the update keeps ``v`` non-negative.
    """

    name = "fedyogi"

    def _second_moment(self, v: np.ndarray, delta_sq: np.ndarray) -> np.ndarray:
        beta2 = self.options["beta2"]
        return v - (1.0 - beta2) * delta_sq * np.sign(v - delta_sq)


@register
class FedAdagrad(_FedOpt):
    """``v_t = v_{t-1} + Delta_t^2`` (Reddi et al. 2021). Options: server_lr, beta1, tau."""

    name = "fedadagrad"
    defaults: ClassVar[dict[str, float]] = {"server_lr": 1e-2, "beta1": 0.9, "tau": 1e-3}

    def _second_moment(self, v: np.ndarray, delta_sq: np.ndarray) -> np.ndarray:
        return v + delta_sq
