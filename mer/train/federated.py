"""DPK-GAT as a fedcore workload: each client trains on its own subjects with DP-SGD.

The daemons load this module by the import path ``mer.train.federated:workload``. A party reads
its ``[workload]`` settings once, when its trainer (or, on the coordinator, the initial model) is
made (:class:`~mer.train.settings.WorkloadSettings`):

==========================  ====================================================================
``data``                    data folder (required on clients)
``format``                  casme2 | samm | smic | casme3 | composite | manifest (default casme2)
``flow_method``             farneback | dis | tvl1 (default farneback)
``cache_dir``               folder of the flow feature cache (default none: no cache)
``partition``               subjects | by-dataset | dirichlet (default subjects)
``alpha``                   Dirichlet concentration of ``partition = dirichlet`` (default 0.5)
``num_clients``             clients in the partition (default 1)
``client_index``            this client's part of the partition, 0-based (default 0)
``test_fraction``           share of this client's *subjects* held out for evaluation (default 0.25)
``seed``                    partition and split seed, the same on every party (default 0)
``model``                   dpk-gat | flow-cnn | ststnet (default dpk-gat)
``model_options``           a table of model config fields (default empty)
``num_classes``             classes of the label map (default: the data's; 5 for the initial model)
``init``                    pretrained | none | a checkpoint folder (default pretrained for dpk-gat)
``init_sha256``             optional: the SHA-256 of the checkpoint's weights every party must hold
``dp_trainable``            all | graph | head: the parameters local training updates (default head)
``max_samples_per_client``  bound on one client's AU counts, sizes the statistics run (100000)
==========================  ====================================================================

Every round, local training reads its knobs from the task's config: the coordinator's
``[workload]`` table with the keys fedcore adds (:class:`~mer.train.settings.RoundConfig`):

==================  ============================================================================
``epochs``          local epochs per round (default 1)
``batch_size``      expected batch size of local training (default 16)
``lr``              learning rate (default 2e-3)
``optimizer``       adamw | sgd (default adamw)
``proximal_mu``     FedProx's mu, sent by the fedprox strategy (default 0: off)
``emotion_weight``  loss weight of the emotion term at full AU coding (default 0.2)
``au_weight``       loss weight of the AU term at full AU coding (default 0.8)
``ema``             decay of the average of the local iterates (default 0: off)
``aug_mult``        augmentation multiplicity K of head-only training (default 1)
``rounds``          the federation's rounds, added by the coordinator (default 1)
==================  ============================================================================

One table holds both kinds (``simulate`` gives every party the same one), so a party's settings
may name the round keys too; they are checked when it starts. Any other name is refused with the
allowed ones listed (``config_dir``, which fedcore adds, aside). Every problem comes in one
:class:`~fedcore.common.errors.ConfigError`.

Parameters outside ``dp_trainable`` are frozen at their initial (pre-trained) values on every
party: they are not in the federation's parameter vector at all, so they never travel, are never
noised, never aggregated and cost no privacy (Opacus sees only the trainable ones). Every party
builds them from the same checkpoint; ``init_sha256`` makes a client refuse a different one.

Evaluation is subject-held-out: every client keeps ``test_fraction`` of its subjects out of
training, and the coordinator pools the clients' confusion matrices, so UF1/UAR are computed over
subjects no model update ever saw.

Privacy: DP-SGD (Opacus, via :func:`fedcore.dp.opacus_train.dp_train`) with the client's
``[privacy]`` table; the ledger persists in the client's workdir. The training loss is computed on
private data without noise, so it stays in the client's log and is not reported. The statistical
prior's AU co-occurrence counts are this workload's round-0 statistics: the coordinator only ever
sees their secure sum.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fedcore.common.errors import ConfigError
from fedcore.common.params import ParamSpec, flatten, unflatten
from fedcore.common.workload import BudgetExhausted, EvalResult, FitResult, PrivacyState
from fedcore.dp.config import PrivacyConfig
from fedcore.dp.ledger import ChargeKey, PrivacyLedger
from fedcore.dp.opacus_train import dp_train, resolve_device
from fedcore.dp.plan import PrivacyPlan, plan_and_open
from mer.data.arrays import MEArrays
from mer.model import LossWeights, build_model, per_sample_loss
from mer.model.loss import loss_weights_for
from mer.model.pretrained import CheckpointError, apply_init, set_trainable
from mer.priors import cooccurrence_counts
from mer.priors.stat import VECTOR_LENGTH, counts_to_vector, vector_to_counts
from mer.train.centralised import to_input
from mer.train.metrics import confusion_matrix
from mer.train.settings import (
    MAX_SAMPLES_PER_CLIENT,  # noqa: F401 -- re-exported: callers import it from here
    OPTIMIZERS,
    RoundConfig,
    WorkloadSettings,
    default_init,  # noqa: F401 -- re-exported: callers import it from here
)

log = logging.getLogger(__name__)

#: AUs of one sample that count towards the co-occurrence statistics (bounds their sensitivity;
#: micro-expressions rarely code more: CASME II's median is 1-2 AUs per clip)
MAX_AUS_PER_SAMPLE = 4


def cap_aus(au: np.ndarray, k: int) -> np.ndarray:
    """Keep at most ``k`` active AUs per row (the first in AU_NODES order)."""
    on = np.asarray(au) > 0.5
    keep = on & (np.cumsum(on, axis=1) <= k)
    return keep.astype(np.float32)


def statistics_sensitivity_for(k: int) -> float:
    """L2 sensitivity of the upper-triangle co-occurrence counts when a sample holds at most k AUs."""
    return float(np.sqrt(k * (k + 1) / 2))


def _model(s: WorkloadSettings) -> torch.nn.Module:
    """The model with its initial weights: the checkpoint ``init`` names, then ``dp_trainable`` frozen."""
    model = build_model(s.model, s.model_num_classes, **s.model_options)
    init = s.resolved_init
    doc = apply_init(model, init)
    want = s.init_sha256
    if want and (doc is None or doc.get("weights_sha256") != want):
        got = None if doc is None else doc.get("weights_sha256")
        raise CheckpointError(f"init {init!r} has weights SHA-256 {got} but the federation expects {want}")
    set_trainable(s.model, model, s.dp_trainable)
    return model


def model_parameters(model: torch.nn.Module) -> tuple[np.ndarray, ParamSpec]:
    """The trainable parameters as fedcore's flat vector (frozen ones and buffers such as priors stay local)."""
    return flatten({n: p for n, p in model.named_parameters() if p.requires_grad})


def load_parameters(model: torch.nn.Module, vec: np.ndarray, spec: ParamSpec) -> None:
    named = {n: p for n, p in model.named_parameters() if p.requires_grad}
    names = [t.name for t in spec.tensors]
    if names != list(named):
        raise ValueError(
            f"the global model's parameters do not match this client's model "
            f"({len(names)} tensors vs {len(named)}; first difference at "
            f"{next((a for a, b in zip(names, named) if a != b), '?')!r})"
        )
    with torch.no_grad():
        for name, arr in unflatten(vec, spec).items():
            if tuple(arr.shape) != tuple(named[name].shape):
                raise ValueError(f"parameter {name}: expected shape {tuple(named[name].shape)} (got {arr.shape})")
            named[name].copy_(torch.from_numpy(np.array(arr)))


def make_optimizer(params, name: str, lr: float) -> torch.optim.Optimizer:
    """AdamW (weight decay 1e-2) or SGD with momentum 0.9; under DP-SGD's noise SGD is often steadier."""
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=1e-2)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9)
    raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)} (got {name!r})")


class Ema:
    """Exponential moving average of parameters over the optimiser steps of one local training.

    ``decay`` 0 turns it off. Averaging DP-SGD iterates is post-processing of outputs that are
    already private, so it costs no privacy (De et al. 2022 average weights the same way).
    """

    def __init__(self, params: list[torch.nn.Parameter], decay: float):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"ema must lie in [0, 1) (got {decay})")
        self.params, self.decay = params, decay
        self.shadow = [p.detach().clone() for p in params] if decay else []
        self.steps = 0

    @torch.no_grad()
    def update(self) -> None:
        """One step; the decay warms up as min(decay, (1 + t) / (10 + t)) so early steps count."""
        if not self.decay:
            return
        self.steps += 1
        d = min(self.decay, (1.0 + self.steps) / (10.0 + self.steps))
        for s, p in zip(self.shadow, self.params):
            s.mul_(d).add_(p.detach().to(s.device), alpha=1.0 - d)

    @torch.no_grad()
    def publish(self) -> None:
        for s, p in zip(self.shadow, self.params):
            p.copy_(s.to(p.device))


def shift_image(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """(B, C, H, W) shifted by (dy, dx) pixels, edges replicated (a small alignment jitter)."""
    if dy == 0 and dx == 0:
        return x
    h, w = x.shape[-2:]
    pad = torch.nn.functional.pad(x, (abs(dx), abs(dx), abs(dy), abs(dy)), mode="replicate")
    return pad[..., abs(dy) - dy : abs(dy) - dy + h, abs(dx) - dx : abs(dx) - dx + w]


def prior_r(round_: int, rounds: int) -> float:
    """DPK-GAT's dynamic prior factor over a federation: 1 in round 1, linear to 0 in the last."""
    return max(0.0, 1.0 - (round_ - 1) / max(1, rounds - 1))


class MERTrainer:
    """One client's data split, model and privacy ledger."""

    def __init__(
        self, settings: Mapping[str, Any], client_id: str, workdir: Path, device: str, data: MEArrays | None = None
    ):
        """``data``: the whole data set as arrays (benchmarks on in-memory corpora); by default it
        is read from the ``data`` folder of the settings."""
        from mer.data.load import load_arrays
        from mer.data.partition import partition
        from mer.train.splits import holdout_split

        self.settings = s = WorkloadSettings.from_mapping(settings, f"{client_id} [workload] settings")
        self.client_id = client_id
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.device = resolve_device(device)
        if data is None:
            if s.data is None:
                raise ConfigError(
                    "the MER workload needs settings 'data' (a data folder)", f"{client_id} [workload] settings"
                )
            data = load_arrays(s.data, s.format, flow_method=s.flow_method, cache_dir=s.cache_dir, verbose=False)
        parts = partition(data, s.partition, None if s.partition == "by-dataset" else s.num_clients, s.seed, s.alpha)
        if s.client_index not in parts:
            raise ValueError(f"client_index {s.client_index} is not in the partition (clients 0..{len(parts) - 1})")
        mine = data.subset(parts[s.client_index])
        fold = holdout_split(mine.subject, s.test_fraction, s.seed + s.client_index)
        self.train, self.test = mine.subset(fold.train), mine.subset(fold.test)
        self.classes = data.class_names
        if s.num_classes is not None and s.num_classes != len(self.classes):
            raise ValueError(
                f"num_classes {s.num_classes} differs from the data's {len(self.classes)} classes {list(self.classes)}"
            )
        self.model = _model(replace(s, num_classes=len(self.classes)))
        self.use_split(self.train, self.test)
        self._ledger: PrivacyLedger | None = None
        self._plan_: PrivacyPlan | None = None
        self._privacy_cfg: tuple[dict, PrivacyConfig] | None = None
        log.info(
            "client %s: %d training samples (%d subjects), %d test samples (%d subjects)",
            client_id,
            len(self.train),
            len(set(self.train.subject)),
            len(self.test),
            len(set(self.test.subject)),
        )

    def use_split(self, train: MEArrays, test: MEArrays) -> None:
        """Train on ``train`` and evaluate on ``test`` (before the first fit: the privacy plan is sized
        by the training split). The inputs are resized once here, not every round."""
        if self._plan_ if hasattr(self, "_plan_") else None:
            raise RuntimeError("use_split after training started: the privacy plan is sized for the old split")
        self.train, self.test = train, test
        self._train_tensors = (
            to_input(train.flow, self.model.input_size, torch.device("cpu")),
            torch.as_tensor(train.label, dtype=torch.int64),
            torch.as_tensor(train.au, dtype=torch.float32),
            torch.as_tensor(train.au_known, dtype=torch.bool),
        )

    # -- statistics ------------------------------------------------------------------------
    def statistics(self, config: Mapping[str, Any]) -> np.ndarray | None:
        """AU co-occurrence counts of the training split, as a flat vector to sum securely.

        Each sample counts at most :data:`MAX_AUS_PER_SAMPLE` of its AUs (the first ones in
        AU_NODES order), so one sample changes at most k(k+1)/2 counts by 1: the L2 sensitivity
        :meth:`MERWorkload.statistics_sensitivity` declares for the DP statistics release.
        """
        known = cap_aus(self.train.au[self.train.au_known], MAX_AUS_PER_SAMPLE)
        return counts_to_vector(cooccurrence_counts(known)).astype(np.float64)

    def _apply_statistics(self, statistics: np.ndarray | None) -> None:
        if statistics is None or not hasattr(self.model, "set_statistical_prior"):
            return
        if statistics.shape != (VECTOR_LENGTH,):
            raise ValueError(f"expected {VECTOR_LENGTH} summed AU counts (got shape {statistics.shape})")
        counts = np.clip(np.rint(statistics), 0, None).astype(np.int64)  # noise may leave it off-integer
        self.model.set_statistical_prior(vector_to_counts(counts))

    def _load(self, params, spec, round_: int, rc: RoundConfig, statistics) -> None:
        """The global parameters, the federation's statistical prior and this round's prior factor r."""
        load_parameters(self.model, params, spec)
        self._apply_statistics(statistics)
        if hasattr(self.model, "set_r"):
            self.model.set_r(prior_r(round_, rc.rounds))

    # -- training --------------------------------------------------------------------------
    def _privacy(self, config: Mapping[str, Any], rc: RoundConfig) -> PrivacyConfig:
        table = dict(config.get("privacy") or {})
        table.setdefault("planned_rounds", rc.rounds)
        table.setdefault("local_epochs", rc.epochs)
        table.setdefault("batch_size", rc.batch_size)
        if self._privacy_cfg is None or self._privacy_cfg[0] != table:  # parse (and warn) once per table
            self._privacy_cfg = (table, PrivacyConfig.from_dict(table, source=f"{self.client_id} [privacy]"))
        return self._privacy_cfg[1]

    def _plan(self, privacy: PrivacyConfig) -> tuple[PrivacyPlan, PrivacyLedger]:
        """The privacy plan (noise derived once for the whole planned run) and the persisted ledger."""
        if self._ledger is None:
            self._plan_, self._ledger = plan_and_open(
                privacy, len(self.train), privacy.ledger_path(self.workdir), workdir=self.workdir
            )
            log.info(
                "client %s: %s; noise multiplier %.4f (%s), planned epsilon %.3f at delta %.2e",
                self.client_id,
                privacy.summary(),
                self._plan_.noise_multiplier,
                "derived" if self._plan_.derived else "given",
                self._plan_.planned_epsilon,
                self._plan_.delta,
            )
        return self._plan_, self._ledger

    def _state(self, plan: PrivacyPlan | None, ledger: PrivacyLedger | None, exhausted: bool = False) -> PrivacyState:
        if plan is None or ledger is None:
            return PrivacyState(enabled=False)
        return PrivacyState(
            enabled=True,
            epsilon=float(ledger.spent()),
            delta=float(plan.delta),
            accountant=plan.accountant,
            steps=int(ledger.steps),
            noise_multiplier=float(plan.noise_multiplier),
            target_epsilon=float(plan.target_epsilon or 0.0),
            exhausted=exhausted or ledger.exhausted,
        )

    def fit(self, params, spec, round, config, statistics) -> FitResult:
        rc = RoundConfig.from_mapping(config, f"{self.client_id} round {round} task config")
        self._load(params, spec, round, rc, statistics)
        privacy = self._privacy(config, rc)
        plan, ledger = self._plan(privacy) if privacy.enabled else (None, None)
        lr, mu = rc.lr, rc.proximal_mu
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        anchor = [p.detach().clone() for p in trainable]

        def proximal(_info) -> None:
            # FedProx: the gradient of mu/2 ||w - w_global||^2 is data-independent, so it is applied
            # after the private step as a decoupled pull towards the global model (no privacy cost).
            if mu > 0:
                with torch.no_grad():
                    for p, a in zip(trainable, anchor):
                        p.sub_(lr * mu * (p - a.to(p.device)))

        base = LossWeights(rc.emotion_weight, rc.au_weight)
        weights = loss_weights_for(float(np.mean(self.train.au_known)) if len(self.train) else 0.0, base)
        ema = Ema(trainable, rc.ema)

        def on_step(info) -> None:
            proximal(info)
            ema.update()

        tr = self.train
        module, tensors = self.model, self._train_tensors

        def loss_fn(outputs, label, au, known):
            return per_sample_loss(outputs, label, au, known, weights).mean()

        if self._head_only():
            # Only the classifier trains: run the frozen network once (eval mode, this round's r and
            # prior) and DP-train the classifier on its inputs. Only the emotion term reaches the
            # classifier; its weight is 1 (a constant factor would only rescale the clipping bound).
            # With augmentation multiplicity K > 1 (De et al. 2022) each sample's gradient is the mean
            # over K shifted copies of its flow image, taken before clipping: less variance per
            # sample, the same sensitivity, no privacy cost.
            mult = rc.aug_mult
            module, tensors = self.model.classifier, (self._classifier_inputs(mult), *tensors[1:])

            def loss_fn(logits, label, au, known):  # noqa: F811 -- the head-only loss
                if logits.dim() == 3:  # (B, K, C): average over the K augmentations of each sample
                    k = logits.shape[1]
                    per = torch.nn.functional.cross_entropy(
                        logits.reshape(-1, logits.shape[-1]), label.repeat_interleave(k), reduction="none"
                    )
                    return per.reshape(-1, k).mean(dim=1).mean()
                return torch.nn.functional.cross_entropy(logits, label)

        try:
            task_seed = (config.get("task") or {}).get("seed")
            if isinstance(task_seed, int):
                torch.manual_seed(task_seed)  # a retried attempt trains afresh (new batches, new noise)
            stats = dp_train(
                module,
                loss_fn,
                tensors,
                privacy=privacy,
                ledger=ledger,
                round=round,
                plan=plan,
                charge_key=ChargeKey.from_task(config, round),
                epochs=rc.epochs,
                batch_size=rc.batch_size,
                optimizer_factory=lambda ps: make_optimizer([p for p in ps if p.requires_grad], rc.optimizer, lr),
                device=self.device,
                on_step=on_step,
            )
        except BudgetExhausted as exc:
            raise exc.with_privacy(self._state(plan, ledger, exhausted=True)) from None
        log.info(
            "client %s round %d: %d steps, local loss %.4f (kept local)", self.client_id, round, stats.steps, stats.loss
        )
        ema.publish()  # what leaves the client: the average of its DP iterates (post-processing, free)
        vec, _ = model_parameters(self.model)
        return FitResult(vec, len(tr), {"steps": float(stats.steps)}, self._state(plan, ledger))

    def _head_only(self) -> bool:
        names = [n for n, p in self.model.named_parameters() if p.requires_grad]
        return bool(names) and all(n.startswith("classifier.") for n in names) and hasattr(self.model, "classifier")

    @torch.no_grad()
    def _classifier_inputs(self, mult: int = 1, chunk: int = 256) -> torch.Tensor:
        """Inputs of the classifier for the training split, from the frozen network in eval mode:
        (n, F), or (n, K, F) with ``mult`` = K > 1 (the image itself, then K - 1 copies shifted by
        up to 2 pixels, fresh shifts every round)."""
        if mult < 1:
            raise ValueError(f"aug_mult must be >= 1 (got {mult})")
        seen: list[torch.Tensor] = []
        handle = self.model.classifier.register_forward_pre_hook(lambda _m, args: seen.append(args[0].cpu()))
        self.model.to(self.device).eval()
        x = self._train_tensors[0]
        views = [x] + [shift_image(x, *torch.randint(-2, 3, (2,)).tolist()) for _ in range(mult - 1)]
        try:
            for v in views:
                for i in range(0, len(v), chunk):
                    self.model(v[i : i + chunk].to(self.device))
        finally:
            handle.remove()
            self.model.cpu()
        if not seen:
            return torch.zeros(0, self.model.classifier[-1].in_features)
        flat = torch.cat(seen)  # (K*n, F), view by view
        return flat if mult == 1 else flat.reshape(mult, len(x), -1).transpose(0, 1).contiguous()  # (n, K, F)

    # -- evaluation ------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, params, spec, round, config, statistics) -> EvalResult:
        from mer.train.centralised import predict

        rc = RoundConfig.from_mapping(config, f"{self.client_id} round {round} task config")
        self._load(params, spec, round, rc, statistics)
        self.model.to(self.device)
        pred, _ = predict(self.model, self.test.flow)
        self.model.cpu()
        k = len(self.classes)
        cm = confusion_matrix(self.test.label, pred, k)
        acc = float(np.trace(cm) / max(1, cm.sum()))
        return EvalResult(len(self.test), {"accuracy": acc}, cm)


class MERWorkload:
    """The fedcore :class:`~fedcore.common.workload.Workload` of DPK-GAT micro-expression recognition."""

    name = "mer"

    def initial_parameters(self, settings: Mapping[str, Any], seed: int) -> tuple[np.ndarray, ParamSpec]:
        s = WorkloadSettings.from_mapping(settings)
        torch.manual_seed(seed)
        return model_parameters(_model(s))

    def statistics_spec(self, settings: Mapping[str, Any]) -> tuple[int, float] | None:
        s = WorkloadSettings.from_mapping(settings)
        if s.model != "dpk-gat" or s.model_options.get("prior", "both") not in ("stat", "both"):
            return None
        return VECTOR_LENGTH, float(s.max_samples_per_client)

    def statistics_sensitivity(self, settings: Mapping[str, Any]) -> float:
        """One sample adds 1 to at most k(k+1)/2 counts (k = MAX_AUS_PER_SAMPLE): sqrt(10) for k = 4."""
        return statistics_sensitivity_for(MAX_AUS_PER_SAMPLE)

    def make_trainer(
        self, settings: Mapping[str, Any], client_id: str, workdir: Path, device: str, data: MEArrays | None = None
    ) -> MERTrainer:
        return MERTrainer(settings, client_id, workdir, device, data)


workload = MERWorkload()
