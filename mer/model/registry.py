"""Model registry: ``build_model(name, num_classes, **config)`` for every model the harness trains."""

from __future__ import annotations

from dataclasses import fields

from torch import nn

from mer.model.dpkgat import DPKGAT, DPKGATConfig
from mer.model.flow_cnn import FlowCNN, FlowCNNConfig

#: name -> (model class, config dataclass)
MODELS: dict[str, tuple[type[nn.Module], type]] = {
    "dpk-gat": (DPKGAT, DPKGATConfig),
    "flow-cnn": (FlowCNN, FlowCNNConfig),
}


def model_options(name: str) -> tuple[str, ...]:
    """Config fields a model accepts (besides num_classes)."""
    _check_name(name)
    return tuple(f.name for f in fields(MODELS[name][1]) if f.name != "num_classes")


def _check_name(name: str) -> None:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(sorted(MODELS))}")


def build_config(name: str, num_classes: int, **config):
    """The frozen config dataclass of model ``name``; all problems are reported together."""
    _check_name(name)
    cls = MODELS[name][1]
    valid = {f.name: f for f in fields(cls)}
    unknown = sorted(set(config) - set(valid))
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(unknown)} for model {name!r}; "
                         f"valid: {', '.join(k for k in valid if k != 'num_classes')}")
    # JSON brings tuples back as lists
    config = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}
    cfg = cls(num_classes=num_classes, **config)
    if cfg.problems():
        raise ValueError(f"invalid config for model {name!r}: " + "; ".join(cfg.problems()))
    return cfg


def build_model(name: str, num_classes: int, **config) -> nn.Module:
    """Build model ``name`` ("dpk-gat" | "flow-cnn") for ``num_classes`` emotion classes.

    Keyword arguments are fields of the model's config dataclass (e.g. ``prior="psych"`` for
    dpk-gat). The model keeps its config as ``model.config``.
    """
    cfg = build_config(name, num_classes, **config)
    return MODELS[name][0](cfg)
