"""What each party sees of clients' single-sample updates: plain, DP-SGD and SecAgg+.

- :func:`client_update`: a client takes one local SGD step (lr = 1) on one sample through the
  real client code path, :func:`fedcore.dp.opacus_train.dp_train`; the update it would send is
  ``new - old`` parameters = ``-grad`` (plain) or ``-(clip(grad, C) + N(0, sigma^2 C^2))`` with
  DP (Opacus per-sample clipping and noise; with n = 1 the Poisson rate is 1 and the expected
  batch size 1, so nothing else scales the step).
- :func:`secagg_view`: K clients submit their updates (weight 1 each) through a real SecAgg+
  round -- the coordinator's round engine and K client daemons over the in-memory transport
  (:func:`fedcore.simulation_memory.memory_federation`, every message serialised); it returns what
  the coordinator holds: each client's masked vector (ring elements, read as fixed point the way
  the final sum is) and the unmasked sum.
- :func:`dp_noise_for_epsilons`: the noise multipliers that give a realistic client the target
  epsilons (:func:`fedcore.dp.accounting.derive_noise_multiplier`, RDP).
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from fedcore.common.aggregation import AggregationContext
from fedcore.common.errors import AggregationAborted, ConfigError
from fedcore.common.stages import Stage
from fedcore.common.workload import EvalResult, FitResult, PrivacyState
from fedcore.dp.accounting import derive_noise_multiplier, epsilon
from fedcore.dp.config import PrivacyConfig
from fedcore.dp.opacus_train import dp_train
from fedcore.dp.plan import default_delta, plan_privacy
from fedcore.secagg import quantize as qz
from fedcore.secagg.server import SecAggServer

FED = "privacy-audit"


def _flat_params(model: nn.Module) -> Tensor:
    return torch.cat([p.detach().reshape(-1).clone() for p in model.parameters() if p.requires_grad])


def client_update(
    model: nn.Module,
    loss_fn,
    tensors: tuple[Tensor, ...],
    *,
    noise_multiplier: float | None = None,
    max_grad_norm: float = 1.0,
    seed: int = 0,
) -> np.ndarray:
    """The update vector (float64, (P,)) a client sends after one SGD step (lr 1) on ``tensors``.

    ``tensors`` = (x (1, ...), targets...) with a single sample. ``noise_multiplier`` None: plain
    SGD; a number: DP-SGD with clip ``max_grad_norm`` and that sigma. ``model`` is left unchanged.
    """
    if tensors[0].shape[0] != 1:
        raise ValueError(f"client_update attacks single-sample updates (got a batch of {tensors[0].shape[0]})")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    old = _flat_params(model)
    torch.manual_seed(seed)
    dp = noise_multiplier is not None
    with warnings.catch_warnings(), tempfile.TemporaryDirectory() as tmp:
        warnings.simplefilter("ignore")
        quiet = [logging.getLogger(n) for n in ("fedcore.dp.config", "fedcore.dp.plan", "fedcore.dp.opacus_train")]
        levels = [lg.level for lg in quiet]
        for lg in quiet:
            lg.setLevel(logging.ERROR)
        try:
            cfg = PrivacyConfig(
                enabled=dp,
                noise_multiplier=noise_multiplier,
                max_grad_norm=max_grad_norm,
                planned_rounds=1,
                local_epochs=1,
                batch_size=1,
            )
            plan = plan_privacy(cfg, 1) if dp else None
            ledger = plan.open_ledger(Path(tmp) / "ledger.json") if dp else None
            was_training = model.training
            dp_train(
                model,
                loss_fn,
                tensors,
                privacy=cfg,
                ledger=ledger,
                round=1,
                epochs=1,
                batch_size=1,
                lr=1.0,
                plan=plan,
                device="cpu",
            )
            model.train(was_training)
        finally:
            for lg, level in zip(quiet, levels, strict=True):
                lg.setLevel(level)
    update = (_flat_params(model) - old).double().numpy()
    model.load_state_dict(before)
    return update


@dataclass
class SecAggView:
    """The coordinator's view of one SecAgg+ round over K single-sample updates."""

    masked: dict[str, np.ndarray]  # client id -> its masked vector read as fixed point (float64, (P,))
    total: np.ndarray  # the unmasked sum of the K updates (float64, (P,))
    clients: tuple[str, ...]
    notes: dict  # the round's notes (bits, frac_bits, clip, clipped values, ...)


class _SendsUpdate:
    """A client's trainer that sends one fixed update with weight 1 (what :func:`secagg_view` audits)."""

    def __init__(self, update: np.ndarray):
        self.update = np.asarray(update, np.float64)

    def fit(self, params, spec, round, config, statistics) -> FitResult:
        return FitResult(np.asarray(params, np.float64) + self.update, 1, {}, PrivacyState(enabled=False))

    def evaluate(self, params, spec, round, config, statistics) -> EvalResult:
        return EvalResult(1, {})

    def statistics(self, config) -> None:
        return None


def secagg_view(updates: list[np.ndarray], settings: dict | None = None) -> SecAggView:
    """Run a real SecAgg+ round over ``updates`` (weight 1 each) and keep what the server sees.

    The round is the daemons' (coordinator engine and client daemons over the in-memory transport,
    ``settings`` the ``[secagg]`` table); the masked inputs are copied when the unmask stage opens
    (the server keeps none unless ``record_inputs``). Raises :class:`AggregationAborted` when the
    protocol refuses the round, e.g. for fewer than ``min_clients`` (3) participants.
    """
    from fedcore.coordinator.state import Phase
    from fedcore.simulation_memory import memory_federation

    ids = tuple(f"client{i + 1}" for i in range(len(updates)))
    length = int(updates[0].shape[0])
    trainers = {c: _SendsUpdate(u) for c, u in zip(ids, updates, strict=True)}
    masked_ring: dict[str, np.ndarray] = {}

    def at_unmask(engine) -> bool:
        st = engine.state
        if not masked_ring and st.stage is not None and st.stage.stage == Stage.SECAGG_UNMASK:
            masked_ring.update({c: v.copy() for c, v in engine.mode.r.inputs.items()})  # what arrived at masked-input
        return False

    quiet = logging.getLogger("fedcore")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # the per-client "DP is off" notices
    try:
        with tempfile.TemporaryDirectory() as tmp:
            fed = memory_federation(
                len(ids),
                1,
                Path(tmp) / "run",
                aggregation="secagg",
                workload="fedcore.examples.updates:workload",
                workload_settings={"size": length},
                secagg=dict(settings or {}),
                privacy={"enabled": False},
                federation={"evaluate_every": 0},
                trainers=trainers,
            )
            fed.engine.mode.record_inputs = True  # the audit looks at what arrived at masked-input
            with fed:
                fed.run_until(at_unmask)
    finally:
        quiet.setLevel(level)
    if fed.engine.state.phase != Phase.DONE or not masked_ring:
        raise AggregationAborted(f"secagg round of {len(ids)} clients: {fed.engine.state.outcome}")
    result = fed.engine.mode.result()
    notes = dict(result.notes)
    masked = {
        c: qz.dequantize(qz.from_ring(v[:length], notes["bits"]), notes["frac_bits"]) for c, v in masked_ring.items()
    }
    return SecAggView(masked, np.asarray(result.weighted_sum, np.float64), ids, notes)


def secagg_refusal(k: int, length: int = 8) -> str | None:
    """The protocol's refusal message for a round of ``k`` clients, or None if it accepts one."""
    try:
        server = SecAggServer(FED, {})
        server.begin(AggregationContext(FED, 1, 0, tuple(f"c{i}" for i in range(k)), length, {}, max_weight=1.0))
    except (AggregationAborted, ConfigError) as exc:
        return str(exc)
    return None


def dp_noise_for_epsilons(
    epsilons: list[float], *, n: int, batch_size: int, rounds: int, local_epochs: int = 1
) -> dict:
    """Noise multipliers giving a client with ``n`` records each target epsilon (RDP, delta default).

    The client samples with q = 1 / ceil(n / batch_size) and takes
    rounds * local_epochs * ceil(n / batch_size) steps (:func:`fedcore.dp.plan.plan_privacy`).
    """
    steps_per_epoch = -(-n // batch_size)
    q = 1.0 / steps_per_epoch
    steps = rounds * local_epochs * steps_per_epoch
    delta = default_delta(n)
    rows = []
    for eps in epsilons:
        sigma = derive_noise_multiplier(q, steps, eps, delta, "rdp")
        rows.append({"target_epsilon": eps, "noise_multiplier": sigma, "epsilon": epsilon(q, sigma, steps, delta)})
    return {
        "n": n,
        "batch_size": batch_size,
        "rounds": rounds,
        "local_epochs": local_epochs,
        "sample_rate": q,
        "steps": steps,
        "delta": delta,
        "accountant": "rdp",
        "rows": rows,
    }
