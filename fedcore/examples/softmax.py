"""The example workload: softmax regression (or a one-hidden-layer MLP) on generated non-IID data.

It goes through exactly the :mod:`fedcore.common.workload` interface and is fast (a round of
local training takes milliseconds), so the daemons, the simulation and the end-to-end tests use
it. Settings (the ``[workload]`` tables) are those of :class:`~.synthetic.DataSettings` plus the
training keys the coordinator sends in ``TrainTask.config``:

- ``epochs`` (1), ``lr`` (0.1), ``batch_size`` (32): local SGD;
- ``proximal_mu`` (0): FedProx's ``mu/2 * ||w - w_global||^2`` term when > 0;
- ``balance`` (true): weight the loss by inverse class frequency taken from the federation's summed
  label counts (the round-0 statistics this workload declares).

Round-0 statistics: each client's training label counts (length ``num_classes``, at most
``samples`` each), summed across the federation by the aggregation mode.

Privacy: when ``config["privacy"]`` asks for it (:func:`fedcore.examples.privacy.wants_dp`), local
training is DP-SGD (Opacus, Poisson sampling, :func:`fedcore.dp.opacus_train.dp_train`) charged to
a ledger in the client's workdir; a round that would pass the client's ``target_epsilon`` is
refused with :class:`~fedcore.common.workload.BudgetExhausted`. The reported metrics are then only
``steps`` and ``empty_batches`` (the training loss on private data stays in the local log).
Otherwise plain SGD, reporting ``PrivacyState(enabled=False)``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fedcore.common.params import ParamSpec, flatten, unflatten
from fedcore.common.workload import BudgetExhausted, EvalResult, FitResult, PrivacyState
from fedcore.examples.privacy import ClientPrivacy, wants_dp
from fedcore.examples.synthetic import DataSettings, make_shard

log = logging.getLogger(__name__)


def build_model(s: DataSettings) -> nn.Module:
    if s.hidden:
        return nn.Sequential(nn.Linear(s.num_features, s.hidden), nn.ReLU(), nn.Linear(s.hidden, s.num_classes))
    return nn.Sequential(nn.Linear(s.num_features, s.num_classes))


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class SoftmaxTrainer:
    """Trains this client's shard; implements :class:`fedcore.common.workload.Trainer`."""

    def __init__(
        self, settings: DataSettings, device: str = "cpu", client_id: str = "client", workdir: Path | None = None
    ):
        self.s = settings
        self.device = resolve_device(device)
        shard = make_shard(settings)
        self.x_train = torch.from_numpy(shard.x_train).to(self.device)
        self.y_train = torch.from_numpy(shard.y_train).to(self.device)
        self.x_test = torch.from_numpy(shard.x_test).to(self.device)
        self.y_test = torch.from_numpy(shard.y_test).to(self.device)
        self.model = build_model(settings).to(self.device)
        self.privacy = ClientPrivacy(client_id, workdir, len(self.y_train))

    def _load(self, params: np.ndarray, spec: ParamSpec) -> None:
        named = unflatten(np.asarray(params, np.float32), spec)
        state = {k: torch.from_numpy(np.array(v)) for k, v in named.items()}
        self.model.load_state_dict(state, strict=True)

    def _class_weights(self, config: Mapping[str, Any], statistics: np.ndarray | None) -> torch.Tensor | None:
        if not config.get("balance", True) or statistics is None or statistics.shape != (self.s.num_classes,):
            return None
        counts = np.maximum(np.asarray(statistics, np.float64), 1.0)
        weights = counts.sum() / (len(counts) * counts)  # inverse frequency, mean-ish 1
        return torch.tensor(weights, dtype=torch.float32, device=self.device)

    def fit(self, params, spec, round, config, statistics) -> FitResult:
        if self.s.slowdown:
            time.sleep(self.s.slowdown)
        self._load(params, spec)
        if wants_dp(config):
            return self._fit_dp(round, config, statistics)
        epochs, lr = int(config.get("epochs", 1)), float(config.get("lr", 0.1))
        batch, mu = int(config.get("batch_size", 32)), float(config.get("proximal_mu", 0.0))
        anchor = [p.detach().clone() for p in self.model.parameters()]
        loss_fn = nn.CrossEntropyLoss(weight=self._class_weights(config, statistics))
        opt = torch.optim.SGD(self.model.parameters(), lr=lr)
        task = config.get("task") or {}
        seed = None if self.s.fixed_shuffle else task.get("seed")  # the daemon's fresh seed per attempt
        gen = torch.Generator().manual_seed(
            int(seed) if isinstance(seed, int) else int(self.s.data_seed * 1000 + self.s.client_index * 100 + round)
        )
        n = len(self.y_train)
        total, correct, seen = 0.0, 0, 0
        self.model.train()
        for _ in range(epochs):
            order = torch.randperm(n, generator=gen).to(self.device)
            for start in range(0, n, batch):
                idx = order[start : start + batch]
                logits = self.model(self.x_train[idx])  # (B, C)
                loss = loss_fn(logits, self.y_train[idx])
                if mu > 0:
                    prox = sum(((p - a) ** 2).sum() for p, a in zip(self.model.parameters(), anchor))
                    loss = loss + 0.5 * mu * prox
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
                correct += int((logits.argmax(1) == self.y_train[idx]).sum())
                seen += len(idx)
        vec, _ = flatten(self.model.state_dict())
        return FitResult(
            vec,
            num_examples=n,
            metrics={"loss": total / seen, "accuracy": correct / seen},
            privacy=PrivacyState(enabled=False),
        )

    def _fit_dp(self, round: int, config: Mapping[str, Any], statistics: np.ndarray | None) -> FitResult:
        """DP-SGD for this round (see the module docstring); BudgetExhausted past the target."""
        from fedcore.dp.ledger import ChargeKey
        from fedcore.dp.opacus_train import dp_train

        privacy, plan, ledger = self.privacy.prepare(config)
        lr, mu = float(config.get("lr", 0.1)), float(config.get("proximal_mu", 0.0))
        weights = self._class_weights(config, statistics)
        anchor = [p.detach().clone() for p in self.model.parameters()]

        def loss_fn(logits, y):  # per-sample weights, then a plain batch mean (what Opacus assumes)
            losses = nn.functional.cross_entropy(logits, y, reduction="none")  # (B,)
            return (losses * weights[y]).mean() if weights is not None else losses.mean()

        def proximal(_info) -> None:  # FedProx pull towards the global model: data-independent, no privacy cost
            if mu > 0:
                with torch.no_grad():
                    for p, a in zip(self.model.parameters(), anchor):
                        p.sub_(lr * mu * (p - a))

        task_seed = (config.get("task") or {}).get("seed")
        if isinstance(task_seed, int):  # a new attempt draws new batches (and, with secure_rng off, new noise)
            torch.manual_seed(task_seed)
        try:
            stats = dp_train(
                self.model,
                loss_fn,
                (self.x_train, self.y_train),
                privacy=privacy,
                ledger=ledger,
                round=round,
                plan=plan,
                epochs=int(config.get("epochs", 1)),
                batch_size=int(config.get("batch_size", 32)),
                lr=lr,
                device=self.device,
                on_step=proximal,
                charge_key=ChargeKey.from_task(config, round),
            )
        except BudgetExhausted as exc:
            raise exc.with_privacy(self.privacy.state(exhausted=True)) from None
        log.info(
            "round %d: %d DP-SGD steps, local loss %.4f (kept local), epsilon %.4g",
            round,
            stats.steps,
            stats.loss,
            stats.epsilon,
        )
        vec, _ = flatten(self.model.state_dict())
        return FitResult(
            vec,
            num_examples=len(self.y_train),
            metrics={"steps": float(stats.steps), "empty_batches": float(stats.empty_batches)},
            privacy=self.privacy.state(),
        )

    @torch.no_grad()
    def evaluate(self, params, spec, round, config, statistics) -> EvalResult:
        self._load(params, spec)
        self.model.eval()
        logits = self.model(self.x_test)  # (N, C)
        loss = float(nn.functional.cross_entropy(logits, self.y_test))
        pred = logits.argmax(1).cpu().numpy()
        truth = self.y_test.cpu().numpy()
        confusion = np.zeros((self.s.num_classes, self.s.num_classes), np.int64)
        np.add.at(confusion, (truth, pred), 1)
        return EvalResult(len(truth), {"loss": loss, "accuracy": float((pred == truth).mean())}, confusion)

    def statistics(self, config) -> np.ndarray:
        return np.bincount(self.y_train.cpu().numpy(), minlength=self.s.num_classes).astype(np.float64)


class SoftmaxWorkload:
    """The example :class:`fedcore.common.workload.Workload`."""

    name = "synthetic-softmax"

    def initial_parameters(self, settings, seed):
        s = DataSettings.from_mapping(settings)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = build_model(s)
        return flatten(model.state_dict())

    def statistics_spec(self, settings):
        s = DataSettings.from_mapping(settings)
        return s.num_classes, float(s.samples)

    def statistics_sensitivity(self, settings) -> float:
        """One training sample adds 1 to exactly one label count: L2 sensitivity 1."""
        return 1.0

    def make_trainer(self, settings, client_id: str, workdir: Path, device: str) -> SoftmaxTrainer:
        return SoftmaxTrainer(DataSettings.from_mapping(settings), device, client_id, workdir)


workload = SoftmaxWorkload()
