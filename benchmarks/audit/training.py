"""Train the target and shadow models of the membership audit, with or without DP-SGD.

Every model (target and shadows alike, as LiRA assumes the attacker knows the training recipe)
trains through :func:`fedcore.dp.opacus_train.dp_train`, the code a client runs: Adam with a
linear warm-up and cosine decay of the learning rate and DPK-GAT's dynamic prior factor r going
1 -> 0 over the steps (both set from ``on_step``, as :mod:`mer.train.centralised` does). With
``target_epsilon`` the noise multiplier comes from :func:`fedcore.dp.plan.plan_privacy` for the
model's own training-set size n (q = 1 / ceil(n / batch), epochs * ceil(n / batch) steps,
delta = min(1e-5, 1 / (10 n))), and the epsilon reported is the ledger's (RDP).
"""

from __future__ import annotations

import logging
import math
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from fedcore.dp.config import PrivacyConfig
from fedcore.dp.opacus_train import dp_train
from fedcore.dp.plan import plan_privacy
from mer.model import LossWeights, build_model, per_sample_loss


@dataclass(frozen=True)
class TrainRecipe:
    model: str = "dpk-gat"
    model_options: tuple[tuple[str, object], ...] = (("prior", "psych"),)
    epochs: int = 30
    batch_size: int = 16
    lr: float = 3e-3
    warmup: float = 0.1  # fraction of steps with a linear warm-up
    max_grad_norm: float = 1.0  # DP clip C


@dataclass
class TrainedModel:
    logits: np.ndarray  # (N, K) eval-mode logits on every example of the pool
    epsilon: float | None
    delta: float | None
    noise_multiplier: float | None
    steps: int
    train_loss: float


def _loss(outputs, y, au, known) -> Tensor:
    return per_sample_loss(outputs, y, au, known, LossWeights()).mean()


def train_on(
    x: Tensor,
    label: np.ndarray,
    au: np.ndarray,
    au_known: np.ndarray,
    members: np.ndarray,
    recipe: TrainRecipe,
    *,
    num_classes: int,
    target_epsilon: float | None,
    seed: int,
) -> TrainedModel:
    """Train a fresh model on the ``members`` (bool (N,)) rows; return its logits on all N rows.

    ``x`` is the whole pool already at the model's input size. ``target_epsilon`` None: no DP.
    """
    idx = np.flatnonzero(members)
    n = len(idx)
    torch.manual_seed(seed)
    model = build_model(recipe.model, num_classes, **dict(recipe.model_options))
    tensors = (
        x[idx],
        torch.as_tensor(label[idx], dtype=torch.int64),
        torch.as_tensor(au[idx], dtype=torch.float32),
        torch.as_tensor(au_known[idx], dtype=torch.bool),
    )
    steps_per_epoch = math.ceil(n / recipe.batch_size)
    total = recipe.epochs * steps_per_epoch
    holder: dict[str, torch.optim.Optimizer] = {}

    def factory(params):
        holder["opt"] = torch.optim.Adam(params, lr=_lr(recipe, 0, total))
        return holder["opt"]

    def on_step(info) -> None:  # schedule for the next step
        for g in holder["opt"].param_groups:
            g["lr"] = _lr(recipe, info.step, total)
        if hasattr(model, "set_r"):
            model.set_r(max(0.0, 1.0 - info.step / max(1, total - 1)))

    if hasattr(model, "set_r"):
        model.set_r(1.0)
    dp = target_epsilon is not None
    with warnings.catch_warnings(), tempfile.TemporaryDirectory() as tmp:
        warnings.simplefilter("ignore")
        logging.getLogger("fedcore.dp").setLevel(logging.ERROR)
        cfg = PrivacyConfig(
            enabled=dp,
            target_epsilon=target_epsilon,
            max_grad_norm=recipe.max_grad_norm,
            planned_rounds=recipe.epochs,
            local_epochs=1,
            batch_size=recipe.batch_size,
        )
        plan = plan_privacy(cfg, n) if dp else None
        ledger = plan.open_ledger(Path(tmp) / "ledger.json") if dp else None
        stats = dp_train(
            model,
            _loss,
            tensors,
            privacy=cfg,
            ledger=ledger,
            round=1,
            epochs=recipe.epochs,
            batch_size=recipe.batch_size,
            optimizer_factory=factory,
            device="cpu",
            on_step=on_step,
            plan=plan,
        )
    model.eval()
    with torch.no_grad():
        logits = torch.cat([model(x[i : i + 128])[0] for i in range(0, len(x), 128)]).double().numpy()
    return TrainedModel(logits, stats.epsilon, stats.delta, stats.noise_multiplier, stats.steps, stats.loss)


def _lr(recipe: TrainRecipe, step: int, total: int) -> float:
    warm = max(1, int(recipe.warmup * total))
    if step < warm:
        return recipe.lr * (step + 1) / warm
    return recipe.lr * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))
