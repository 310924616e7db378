"""Centralised training of one model on :class:`MEArrays`, with a fixed schedule.

No epoch is ever chosen by test accuracy: the model trains for ``epochs`` epochs (AdamW or Adam;
a warm-up + cosine or a constant learning rate) and the last model is the result. Each model has
its own recipe (:data:`mer.model.registry.TRAIN_DEFAULTS`); :func:`train_config_for` starts from
it. ``init`` names the starting weights (:mod:`mer.model.pretrained`): ``none`` (scratch, the
dataclass default), ``pretrained`` (the packaged public AU checkpoint, DPK-GAT only) or a
checkpoint folder; :func:`train_config_for` fills in the model's default,
:func:`mer.train.federated.default_init` -- the one ``simulate`` uses (``pretrained`` for dpk-gat,
``none`` otherwise). Every parameter but the emotion classifier is loaded, then all of them are
fine-tuned with the model's own recipe; the classifier starts fresh. DPK-GAT's dynamic prior
factor r follows ``r_schedule`` (``decay``: 1 -> 0 linearly over all steps; ``fixed``:
``r_fixed``) and its statistical prior is counted from the training labels only.

Loss weights follow the AU coding of the training data (:func:`mer.model.loss.loss_weights_for`):
with no AU-labelled training sample the loss is the emotion cross-entropy alone (logged once
per process: "no AU labels: emotion loss only").
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field, fields

import numpy as np
import torch
from torch import Tensor, nn

from mer.data.arrays import MEArrays
from mer.model import LossWeights, balanced_class_weight, build_model, loss_weights_for, per_sample_loss
from mer.model.layers import resize_flow
from mer.model.pretrained import apply_init
from mer.model.registry import train_defaults
from mer.priors import cooccurrence_counts

R_SCHEDULES = ("decay", "fixed")
DEVICES = ("auto", "cpu", "cuda")
OPTIMIZERS = ("adamw", "adam")
LR_SCHEDULES = ("warmup-cosine", "constant")
log = logging.getLogger(__name__)
_logged: set[str] = set()


@dataclass(frozen=True)
class TrainConfig:
    model: str = "dpk-gat"  # a name in mer.model.MODELS
    model_options: dict = field(default_factory=dict)  # config fields of the model, e.g. {"prior": "psych"}
    epochs: int = 25  # fixed schedule; the last epoch's model is the result
    batch_size: int = 32
    lr: float = 3e-3  # peak learning rate (the paper's 5e-5 needs ~100x the steps)
    weight_decay: float = 1e-2
    optimizer: str = "adamw"  # adamw | adam (weight_decay then is L2 in the gradient)
    lr_schedule: str = "warmup-cosine"  # warmup-cosine | constant
    warmup: float = 0.1  # fraction of the steps with a linear warm-up (warmup-cosine)
    au_loss: bool = True  # False: emotion CE only (ablation)
    emotion_weight: float = 0.2  # base weights at full AU coding; scaled by the labelled
    au_weight: float = 0.8  # share of the training data (mer.model.loss_weights_for)
    r_schedule: str = "decay"  # decay: r goes 1 -> 0 over training | fixed: r = r_fixed
    r_fixed: float = 1.0
    class_balanced: bool = False  # inverse-frequency class weights in the CE
    init: str = "none"  # none | pretrained | a checkpoint folder (mer.model.pretrained);
    # train_config_for / `train` default to the model's (simulate's)
    device: str = "auto"  # auto | cpu | cuda
    seed: int = 0

    def problems(self) -> list[str]:
        p = []
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                p.append(f"{name} must be >= 1 (got {getattr(self, name)})")
        if self.lr <= 0:
            p.append(f"lr must be > 0 (got {self.lr})")
        if self.r_schedule not in R_SCHEDULES:
            p.append(f"r_schedule must be one of {', '.join(R_SCHEDULES)} (got {self.r_schedule!r})")
        if not 0.0 <= self.r_fixed <= 1.0:
            p.append(f"r_fixed must lie in [0, 1] (got {self.r_fixed})")
        if self.device not in DEVICES:
            p.append(f"device must be one of {', '.join(DEVICES)} (got {self.device!r})")
        if self.optimizer not in OPTIMIZERS:
            p.append(f"optimizer must be one of {', '.join(OPTIMIZERS)} (got {self.optimizer!r})")
        if self.lr_schedule not in LR_SCHEDULES:
            p.append(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)} (got {self.lr_schedule!r})")
        if self.init == "pretrained" and not ships_checkpoint(self.model):
            # as `simulate` words it (mer.commands.simulate.check_args)
            p.append(
                f"init pretrained: the packaged checkpoint is for dpk-gat, not {self.model} "
                "(use init none or a checkpoint folder of that model)"
            )
        return p

    def to_dict(self) -> dict:
        return asdict(self)

    def schedule_line(self) -> str:
        """One line naming the recipe, e.g. ``500 epochs, batch 256, Adam lr 5e-05 constant``."""
        opt = {"adamw": "AdamW", "adam": "Adam"}[self.optimizer]
        wd = f", weight decay {self.weight_decay:g}" if self.weight_decay else ""
        return f"{self.epochs} epochs, batch {self.batch_size}, {opt} lr {self.lr:g} {self.lr_schedule}{wd}"


def ships_checkpoint(model: str) -> bool:
    """Whether ``init = pretrained`` exists for ``model``: where simulate's default is ``pretrained``."""
    from mer.train.federated import default_init  # federated imports this module

    return default_init(model) == "pretrained"


def train_config_for(model: str, **overrides) -> TrainConfig:
    """A :class:`TrainConfig` with model ``model``'s own recipe, then ``overrides`` (None = keep).

    ``train_config_for("ststnet")`` is 500 epochs of Adam at 5e-5, batch 256, constant rate;
    ``train_config_for("ststnet", epochs=100)`` changes only the epochs. ``init`` not given is the
    model's default (:func:`mer.train.federated.default_init`, as ``simulate``): ``pretrained`` for
    dpk-gat, ``none`` otherwise. Unknown fields raise ValueError naming the valid ones.
    """
    from mer.train.federated import default_init  # federated imports this module

    valid = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(overrides) - valid)
    if unknown:
        raise ValueError(f"unknown TrainConfig field(s) {', '.join(unknown)}; valid: {', '.join(sorted(valid))}")
    values = {
        **train_defaults(model),
        "init": default_init(model),
        **{k: v for k, v in overrides.items() if v is not None},
    }
    return TrainConfig(model=model, **values)


def check_init(cfg: TrainConfig, num_classes: int = 2) -> dict | None:
    """The manifest of ``cfg.init`` for ``cfg``'s model (None for ``none``), checked before any work.

    Raises :class:`mer.model.pretrained.CheckpointError` naming every config field or parameter
    that differs (e.g. ``prior: checkpoint 'both', model 'psych'``), or a missing, corrupt or
    altered checkpoint; ValueError for ``pretrained`` with a model that has no packaged checkpoint.
    """
    if cfg.init == "none":
        return None
    if cfg.init == "pretrained" and not ships_checkpoint(cfg.model):
        raise ValueError(f"init pretrained: the packaged checkpoint is for dpk-gat, not {cfg.model}")
    return apply_init(build_model(cfg.model, num_classes, **cfg.model_options), cfg.init)


def au_known_share(data: MEArrays) -> float:
    """Share of the samples of ``data`` that carry AU labels (0 for an empty set)."""
    return float(np.mean(data.au_known)) if len(data) else 0.0


def loss_weights(cfg: TrainConfig, share: float, predicts_aus: bool = True) -> LossWeights:
    """The loss weights for training data with AU-labelled share ``share``.

    The share counts as 0 when ``au_loss`` is off or the model has no AU heads (flow-cnn,
    ststnet): the emotion cross-entropy then has the full weight ``emotion_weight + au_weight``.
    The first time in a process that data without any AU label leaves only the emotion loss,
    it is logged ("no AU labels: emotion loss only").
    """
    used = share if cfg.au_loss and predicts_aus else 0.0
    weights = loss_weights_for(used, LossWeights(cfg.emotion_weight, cfg.au_weight))
    if predicts_aus and cfg.au_loss and share == 0 and "no-au" not in _logged:
        _logged.add("no-au")
        log.info("no AU labels: emotion loss only (weight %g)", weights.emotion)
    return weights


def resolve_device(device: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; ``cuda`` without CUDA is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for but torch.cuda.is_available() is False")
    return torch.device(device)


def r_at(cfg: TrainConfig, step: int, total: int) -> float:
    """Dynamic prior factor at ``step`` of ``total``: linear 1 -> 0 (decay) or constant (fixed)."""
    if cfg.r_schedule == "fixed":
        return cfg.r_fixed
    return max(0.0, 1.0 - step / max(1, total - 1))


def lr_factor(cfg: TrainConfig, step: int, total: int) -> float:
    """Linear warm-up over ``warmup * total`` steps, then cosine decay to 0; 1 throughout if ``constant``."""
    warm = max(1, int(cfg.warmup * total))
    if cfg.lr_schedule == "constant":
        return 1.0
    if step < warm:
        return (step + 1) / warm
    return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))


def to_input(flow: np.ndarray, size: int, device: torch.device, chunk: int = 256) -> Tensor:
    """Flow images (N, 3, S, S) as one float32 tensor on ``device``, resized once to ``size``."""
    parts = [
        resize_flow(torch.from_numpy(np.ascontiguousarray(flow[i : i + chunk], dtype=np.float32)), size)
        for i in range(0, len(flow), chunk)
    ]
    return (torch.cat(parts) if parts else torch.zeros(0, 3, size, size)).to(device)


def make_model(cfg: TrainConfig, num_classes: int) -> nn.Module:
    """A fresh model of ``cfg``, its weights from ``cfg.init`` (the classifier always fresh)."""
    model = build_model(cfg.model, num_classes, **cfg.model_options)
    if cfg.init != "none":
        apply_init(model, cfg.init)
    return model


def train_model(data: MEArrays, cfg: TrainConfig, progress=None) -> nn.Module:
    """Train a new model on all of ``data``; returns it in eval mode on the chosen device.

    ``progress``, if given, is called as ``progress(epoch, mean_loss)`` after every epoch.
    """
    if cfg.problems():
        raise ValueError("invalid TrainConfig: " + "; ".join(cfg.problems()))
    if len(data) == 0:
        raise ValueError("cannot train on an empty data set")
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    k = len(data.class_names)
    model = make_model(cfg, k)
    if hasattr(model, "set_statistical_prior"):
        model.set_statistical_prior(cooccurrence_counts(data.au[data.au_known]))
    model.to(device).train()

    x = to_input(data.flow, model.input_size, device)
    y = torch.as_tensor(data.label, dtype=torch.int64, device=device)
    au = torch.as_tensor(data.au, dtype=torch.float32, device=device)
    known = torch.as_tensor(data.au_known, dtype=torch.bool, device=device)
    weights = loss_weights(cfg, au_known_share(data), getattr(model, "predicts_aus", False))
    class_weight = balanced_class_weight(data.label, k).to(device) if cfg.class_balanced else None

    optim = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    opt = optim(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    per_epoch = math.ceil(len(data) / cfg.batch_size)
    total, step = cfg.epochs * per_epoch, 0
    gen = torch.Generator().manual_seed(cfg.seed)
    for epoch in range(cfg.epochs):
        order = torch.randperm(len(data), generator=gen).to(device)
        losses = []
        for i in range(per_epoch):
            idx = order[i * cfg.batch_size : (i + 1) * cfg.batch_size]
            if hasattr(model, "set_r"):
                model.set_r(r_at(cfg, step, total))
            for g in opt.param_groups:
                g["lr"] = cfg.lr * lr_factor(cfg, step, total)
            loss = per_sample_loss(model(x[idx]), y[idx], au[idx], known[idx], weights, class_weight).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.detach())
            step += 1
        if progress is not None:
            progress(epoch, float(torch.stack(losses).mean()))
    return model.eval()


@torch.no_grad()
def predict(model: nn.Module, flow: np.ndarray, batch_size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Class predictions (N,) and softmax probabilities (N, K) of ``model`` (eval mode) on flow images."""
    model.eval()
    device = next(model.parameters()).device
    x = to_input(flow, model.input_size, device)
    probs = [torch.softmax(model(x[i : i + batch_size])[0].float(), dim=1) for i in range(0, len(x), batch_size)]
    p = torch.cat(probs).cpu().numpy() if probs else np.zeros((0, model.config.num_classes), np.float32)
    return p.argmax(axis=1), p
