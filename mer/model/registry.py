"""Model registry: ``build_model(name, num_classes, **config)`` for every model the harness trains.

:data:`TRAIN_DEFAULTS` is each model's own training recipe (epochs, batch, optimiser, learning
rate and its schedule, weight decay), used by ``fedpsyau train`` for every value the user does
not give. The recipes were fixed before any test fold was looked at and are never tuned on one:

======== ====== ===== ======= ====== ============= ============ ==================================
model    epochs batch optim.  lr     schedule      weight decay source
======== ====== ===== ======= ====== ============= ============ ==================================
dpk-gat  25     32    AdamW   3e-3   warm-up+cos   1e-2         this package (the paper's 5e-5
                                                                needs ~100x the steps)
flow-cnn 25     32    AdamW   3e-3   warm-up+cos   1e-2         this package, as dpk-gat
ststnet  500    256   Adam    5e-5   constant      0            Liong et al. 2019 and their port
======== ====== ===== ======= ====== ============= ============ ==================================
"""

from __future__ import annotations

from dataclasses import fields

from torch import nn

from mer.model.dpkgat import DPKGAT, DPKGATConfig
from mer.model.flow_cnn import FlowCNN, FlowCNNConfig
from mer.model.ststnet import STSTNet, STSTNetConfig

#: name -> (model class, config dataclass)
MODELS: dict[str, tuple[type[nn.Module], type]] = {
    "dpk-gat": (DPKGAT, DPKGATConfig),
    "flow-cnn": (FlowCNN, FlowCNNConfig),
    "ststnet": (STSTNet, STSTNetConfig),
}

_OURS = {
    "epochs": 25,
    "batch_size": 32,
    "optimizer": "adamw",
    "lr": 3e-3,
    "lr_schedule": "warmup-cosine",
    "weight_decay": 1e-2,
}
#: name -> the model's own training recipe (fields of mer.train.centralised.TrainConfig); see the table above
TRAIN_DEFAULTS: dict[str, dict] = {
    "dpk-gat": dict(_OURS),
    "flow-cnn": dict(_OURS),
    "ststnet": {
        "epochs": 500,
        "batch_size": 256,
        "optimizer": "adam",
        "lr": 5e-5,
        "lr_schedule": "constant",
        "weight_decay": 0.0,
    },
}


def train_defaults(name: str) -> dict:
    """A copy of model ``name``'s training recipe (:data:`TRAIN_DEFAULTS`)."""
    _check_name(name)
    return dict(TRAIN_DEFAULTS[name])


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
        raise ValueError(
            f"unknown option(s) {', '.join(unknown)} for model {name!r}; "
            f"valid: {', '.join(k for k in valid if k != 'num_classes')}"
        )
    # JSON brings tuples back as lists
    config = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}
    cfg = cls(num_classes=num_classes, **config)
    if cfg.problems():
        raise ValueError(f"invalid config for model {name!r}: " + "; ".join(cfg.problems()))
    return cfg


def build_model(name: str, num_classes: int, **config) -> nn.Module:
    """Build model ``name`` ("dpk-gat" | "flow-cnn" | "ststnet") for ``num_classes`` emotion classes.

    Keyword arguments are fields of the model's config dataclass (e.g. ``prior="psych"`` for
    dpk-gat). The model keeps its config as ``model.config``.
    """
    cfg = build_config(name, num_classes, **config)
    return MODELS[name][0](cfg)
