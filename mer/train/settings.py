"""The MER workload's settings as two frozen dataclasses, read and checked in one place.

- :class:`WorkloadSettings`: what a party reads once, when its trainer (or, on the coordinator,
  the initial model) is made: the data, the partition, the model and its initialisation.
- :class:`RoundConfig`: the local-training knobs that the coordinator's ``TrainTask.config``
  carries every round (epochs, batch size, learning rate, ...), with the ``rounds`` it adds.

One ``[workload]`` table holds both kinds of key (the coordinator sends its whole table in every
task, and ``simulate`` gives every client the same table), so :meth:`WorkloadSettings.from_mapping`
accepts the names of both dataclasses, checks the round keys too (a bad ``epochs`` fails at
start-up, not in round 1), and refuses any other name. Every problem is collected and raised in
one :class:`~fedcore.common.errors.ConfigError` (a ``ValueError``). Numbers may have crossed a
``google.protobuf.Struct``, where every number is a double: an integer field takes ``3.0`` as
``3`` and refuses ``3.5``; a float field takes ``2`` as ``2.0``.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import numbers
import os
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, get_args, get_origin, get_type_hints

from fedcore.common.errors import ConfigError
from mer.bench_config import DEFAULT_TRAINABLE
from mer.data.partition import SCHEMES
from mer.data.readers import READERS
from mer.flow.methods import FLOW_METHODS
from mer.model.pretrained import TRAINABLE
from mer.model.registry import MODELS

#: Upper bound on one client's AU co-occurrence count (its number of samples); the secure sum of
#: the statistics run is sized for it.
MAX_SAMPLES_PER_CLIENT = 100_000
#: classes of the initial model when the settings do not say (the coordinator has no data)
FALLBACK_NUM_CLASSES = 5
#: local optimisers (:func:`mer.train.federated.make_optimizer`)
OPTIMIZERS = ("adamw", "sgd")
#: keys fedcore itself adds to a client's ``[workload.settings]`` (accepted, not read here)
FEDCORE_SETTINGS = ("config_dir",)
#: string fields that name a file or folder: a ``pathlib.Path`` is taken as its string
PATH_FIELDS = ("data", "cache_dir", "init")


def default_init(model: str) -> str:
    """``pretrained`` where a checkpoint ships for the model (DPK-GAT), else ``none``."""
    return "pretrained" if model == "dpk-gat" else "none"


@dataclass(frozen=True)
class WorkloadSettings:
    """A party's ``[workload]`` settings, read once (see the table in :mod:`mer.train.federated`)."""

    data: str | None = None  # data folder; required on a client unless arrays are given
    format: str = "casme2"  # a reader in mer.data.readers.READERS
    flow_method: str = "farneback"  # farneback | dis | tvl1 (mer.flow.methods.FLOW_METHODS)
    cache_dir: str | None = None  # flow feature cache; None: no cache
    partition: str = "subjects"  # subjects | by-dataset | dirichlet (mer.data.partition.SCHEMES)
    alpha: float = 0.5  # Dirichlet concentration (partition = dirichlet)
    num_clients: int = 1  # clients in the partition (ignored by by-dataset)
    client_index: int = 0  # this client's part, 0-based
    test_fraction: float = 0.25  # share of this client's subjects held out for evaluation
    seed: int = 0  # partition and split seed (the same on every party)
    model: str = "dpk-gat"  # a name in mer.model.MODELS
    model_options: dict[str, Any] = field(default_factory=dict)  # model config fields, e.g. {"prior": "psych"}
    num_classes: int | None = None  # None: the data's classes on a client, FALLBACK_NUM_CLASSES (5) otherwise
    init: str | None = None  # pretrained | none | a checkpoint folder; None: default_init(model)
    init_sha256: str | None = None  # SHA-256 of the checkpoint's weights every party must hold
    dp_trainable: str = DEFAULT_TRAINABLE  # all | graph | head: what local training updates ("head")
    max_samples_per_client: int = MAX_SAMPLES_PER_CLIENT  # bound of one client's AU counts (statistics run)

    @property
    def resolved_init(self) -> str:
        """``init``, or the model's default (:func:`default_init`)."""
        return default_init(self.model) if self.init is None else self.init

    @property
    def model_num_classes(self) -> int:
        """``num_classes``, or :data:`FALLBACK_NUM_CLASSES` where nothing says."""
        return FALLBACK_NUM_CLASSES if self.num_classes is None else self.num_classes

    def problems(self) -> list[str]:
        """Every value out of range (the types are already right)."""
        p = [
            _choice("format", self.format, READERS),
            _choice("flow_method", self.flow_method, FLOW_METHODS),
            _choice("partition", self.partition, SCHEMES),
            _choice("model", self.model, MODELS),
            _choice("dp_trainable", self.dp_trainable, TRAINABLE),
        ]
        if not self.alpha > 0:
            p.append(f"alpha: expected a number > 0 (got {self.alpha})")
        if self.num_clients < 1:
            p.append(f"num_clients: expected an integer >= 1 (got {self.num_clients})")
        if self.client_index < 0:
            p.append(f"client_index: expected an integer >= 0 (got {self.client_index})")
        if not 0 < self.test_fraction < 1:
            p.append(f"test_fraction: expected a number in (0, 1) (got {self.test_fraction})")
        if self.num_classes is not None and self.num_classes < 2:
            p.append(f"num_classes: expected an integer >= 2 (got {self.num_classes})")
        if self.max_samples_per_client < 1:
            p.append(f"max_samples_per_client: expected an integer >= 1 (got {self.max_samples_per_client})")
        return [x for x in p if x]

    @classmethod
    def from_mapping(cls, settings: Mapping[str, Any], source: str = "[workload] settings") -> WorkloadSettings:
        """The settings of ``settings``, checked; the round keys in it are checked too.

        Unknown names are refused (the allowed ones come from the fields of both dataclasses and
        :data:`FEDCORE_SETTINGS`); every problem is raised at once in one ConfigError.
        """
        if not isinstance(settings, Mapping):
            raise ConfigError(f"expected a table of settings (got {type(settings).__name__})", source)
        allowed = (*_names(cls), *_names(RoundConfig), *FEDCORE_SETTINGS)
        problems = [_unknown(key, allowed) for key in settings if key not in allowed]
        if problems:
            problems.append(f"allowed settings: {', '.join(sorted(allowed))}")
        values = _values(cls, settings, problems)
        round_values = _values(RoundConfig, settings, problems)
        problems += cls(**values).problems() + RoundConfig(**round_values).problems()
        if problems:
            raise ConfigError(problems, source)
        return cls(**values)


@dataclass(frozen=True)
class RoundConfig:
    """One round's local-training knobs, from the task's config (see :mod:`mer.train.federated`)."""

    epochs: int = 1  # local epochs per round
    batch_size: int = 16  # (expected Poisson) batch size
    lr: float = 2e-3  # learning rate of the local optimiser
    optimizer: str = "adamw"  # adamw (weight decay 1e-2) | sgd (momentum 0.9)
    proximal_mu: float = 0.0  # FedProx's mu (the fedprox strategy sends it); 0: off
    emotion_weight: float = 0.2  # loss weight of the emotion term at full AU coding
    au_weight: float = 0.8  # loss weight of the AU term at full AU coding
    ema: float = 0.0  # decay of the parameter average over the local steps; 0: off
    aug_mult: int = 1  # augmentation multiplicity K (head-only training)
    rounds: int = 1  # the federation's rounds (the coordinator adds it)

    def problems(self) -> list[str]:
        """Every value out of range (the types are already right)."""
        p = [_choice("optimizer", self.optimizer, OPTIMIZERS)]
        for name in ("epochs", "batch_size", "aug_mult", "rounds"):
            if getattr(self, name) < 1:
                p.append(f"{name}: expected an integer >= 1 (got {getattr(self, name)})")
        if not self.lr > 0:
            p.append(f"lr: expected a number > 0 (got {self.lr})")
        for name in ("proximal_mu", "emotion_weight", "au_weight"):
            if getattr(self, name) < 0:
                p.append(f"{name}: expected a number >= 0 (got {getattr(self, name)})")
        if not 0.0 <= self.ema < 1.0:
            p.append(f"ema: expected a number in [0, 1) (got {self.ema})")
        return [x for x in p if x]

    @classmethod
    def from_mapping(cls, config: Mapping[str, Any], source: str = "task config") -> RoundConfig:
        """This round's knobs from a task's config, checked (ConfigError lists every problem).

        Other keys are left alone: the rest of the coordinator's ``[workload]`` table (checked by
        :meth:`WorkloadSettings.from_mapping` when each party started) and fedcore's own
        (``privacy``, ``task``, ``central_dp``, ...).
        """
        if not isinstance(config, Mapping):
            raise ConfigError(f"expected a table of settings (got {type(config).__name__})", source)
        problems: list[str] = []
        values = _values(cls, config, problems)
        problems += cls(**values).problems()
        if problems:
            raise ConfigError(problems, source)
        return cls(**values)


def defaults(cls: type) -> dict[str, Any]:
    """``{field: default}`` of a settings dataclass."""
    return {
        f.name: f.default_factory() if f.default is dataclasses.MISSING else f.default for f in dataclasses.fields(cls)
    }


# -- reading values ------------------------------------------------------------------------
def _names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


def _unknown(key: Any, allowed: tuple[str, ...]) -> str:
    near = difflib.get_close_matches(str(key), allowed, n=1)
    return f"unknown setting {key!r}" + (f" (did you mean {near[0]!r}?)" if near else "")


def _choice(name: str, value: str, allowed) -> str:
    return "" if value in allowed else f"{name}: expected one of {', '.join(allowed)} (got {value!r})"


def _values(cls: type, data: Mapping[str, Any], problems: list[str]) -> dict[str, Any]:
    """The fields of ``cls`` present in ``data``, as their types; a wrong one is a problem, not a value."""
    hints = get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            value, problem = _coerce(f.name, hints[f.name], data[f.name])
            if problem:
                problems.append(problem)
            else:
                out[f.name] = value
    return out


def _coerce(name: str, hint: Any, value: Any) -> tuple[Any, str | None]:
    """``value`` as type ``hint`` (int, float, str, dict, or one of those or None), or the problem."""
    if isinstance(hint, types.UnionType):
        if value is None and type(None) in get_args(hint):
            return None, None
        hint = next(a for a in get_args(hint) if a is not type(None))
    number = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if hint is int:
        if number and (isinstance(value, numbers.Integral) or float(value).is_integer()):
            return int(value), None  # 3.0 (a number that crossed a Struct) is 3
        return None, f"{name}: expected an integer (got {_got(value)})"
    if hint is float:
        if number and math.isfinite(value):
            return float(value), None
        return None, f"{name}: expected a finite number (got {_got(value)})"
    if hint is str:
        if isinstance(value, str):
            return value, None
        if name in PATH_FIELDS and isinstance(value, os.PathLike):
            return os.fspath(value), None
        return None, f"{name}: expected a string (got {_got(value)})"
    if get_origin(hint) is dict:
        if isinstance(value, Mapping):
            return dict(value), None
        return None, f"{name}: expected a table (got {_got(value)})"
    raise TypeError(f"settings field {name}: unsupported type {hint}")  # a bug in the dataclass, not the input


def _got(value: Any) -> str:
    text = repr(value)
    return f"{text if len(text) <= 60 else text[:57] + '...'}, a {type(value).__name__}"
