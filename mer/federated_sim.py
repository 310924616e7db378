"""An in-process federation: the real aggregation modes and trainers, without daemons or gRPC.

:func:`run_federation` plays the coordinator's and the client daemons' parts of a whole run in one
process, for benchmarks that need many runs (``fedpsyau bench epsilon``). What it uses is what the
daemons use:

- the workload's own :class:`~fedcore.common.workload.Trainer` objects (for MER, the same
  :class:`~mer.train.federated.MERTrainer` the client daemons build, with DP-SGD and ledgers);
- the real :class:`~fedcore.common.aggregation.ServerMode` / ``ClientMode`` of ``plain``,
  ``secagg`` or ``ckks`` (CKKS with its key set-up, clients identified by certificates of a
  freshly made federation CA), driven stage by stage by
  :class:`fedcore.he.driver.InProcessDriver`: every task, submission and blob is packed into a
  ``google.protobuf.Any`` and serialised to bytes and back;
- the coordinator's round logic (:mod:`fedcore.coordinator.phases`): round 0 sums the clients'
  statistics through the mode (clip = the workload's bound, weight 1); each round every client
  fits from the global model (sent as an encoded ``Model`` message), forms ``delta = local -
  global`` with weight ``num_examples``, the mode sums the weighted deltas, ``result.mean`` goes
  to the fedcore strategy (FedAvg by default), and evaluation pools the clients' confusion
  matrices into UF1/UAR (:func:`fedcore.coordinator.reports.confusion_metrics`).

What it leaves out is the transport: no TLS, no deadlines, no process boundaries, clients train
one after another. Accuracy depends on the maths, which is identical; times are sequential sums.
A client whose privacy budget is exhausted sits out later rounds, as with the coordinator.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fedcore.common.workload import BudgetExhausted, Workload
from fedcore.common.aggregation import (
    AggregateResult,
    AggregationContext,
    ClientIdentity,
    ClientJob,
    client_mode,
    server_mode,
)
from fedcore.common.params import (
    ParamSpec,
    decode_model,
    decode_vector,
    encode_model,
    encode_vector,
)
from fedcore.coordinator.reports import confusion_metrics
from fedcore.he.driver import InProcessDriver, StageStats
from fedcore.proto.fedpsyau.v1 import federation_pb2 as pb
from fedcore.strategy import make_strategy
from fedcore.transport.certs import create_ca, issue_client

log = logging.getLogger(__name__)

FEDERATION_ID = "fedpsyau-inprocess"


@dataclass
class RoundRecord:
    round: int
    contributors: int
    train_s: float                  # all clients' fit(), one after another
    aggregate_s: float              # the mode's stages: server + clients (sequential)
    eval_s: float
    bytes_up: int                   # mode submissions
    bytes_down: int                 # model downloads + mode tasks and blobs
    epsilon: dict[str, float] = field(default_factory=dict)  # cumulative, per client (DP only)
    metrics: dict[str, float] = field(default_factory=dict)  # pooled accuracy / uf1 / uar, when evaluated
    notes: dict[str, Any] = field(default_factory=dict)


@dataclass
class FederationRun:
    aggregation: str
    params: np.ndarray
    spec: ParamSpec
    statistics: np.ndarray | None
    rounds: list[RoundRecord]
    setup_s: float = 0.0            # mode set-up (CKKS key exchange) + round 0 statistics
    confusion: np.ndarray | None = None
    excluded: dict[str, str] = field(default_factory=dict)

    @property
    def final(self) -> dict[str, float]:
        """The last evaluated round's pooled metrics."""
        return next((r.metrics for r in reversed(self.rounds) if r.metrics), {})

    @property
    def epsilon_max(self) -> float | None:
        eps = [e for r in self.rounds for e in r.epsilon.values()]
        return max(eps) if eps else None


class _Driver(InProcessDriver):
    """``InProcessDriver`` with the aggregation context made by the caller, as the coordinator does
    (its ``run_round`` always uses the server's settings and the default weight bound, but the
    statistics run needs the workload's clip and weight 1)."""

    def aggregate(self, ctx: AggregationContext, jobs: Mapping[str, ClientJob]) -> tuple[AggregateResult, list[StageStats]]:
        self.server.begin(ctx)
        stats: list[StageStats] = []
        self.last_stats = stats
        for stage in self.server.round_stages():
            self._stage(stage, jobs, {}, stats)
        return self.server.result(), stats


def _client_settings(settings: Mapping[str, Any], i: int, n: int,
                     per_client: Sequence[Mapping[str, Any]] | None) -> dict[str, Any]:
    """What ``fedcore.simulation.simulate`` gives client i: shared settings + index + count + own."""
    return {**dict(settings), "client_index": i, "num_clients": n, **dict(per_client[i] if per_client else {})}


def mode_objects(aggregation: str, ids: Sequence[str], mode_settings: Mapping[str, Any]):
    """The server mode and one client mode per id (CKKS clients get certificates of a fresh CA)."""
    server = server_mode(aggregation)(FEDERATION_ID, mode_settings)
    ca = create_ca("in-process federation CA") if aggregation == "ckks" else None
    clients = {}
    for cid in ids:
        if ca is not None:
            cred = issue_client(ca, cid)
            identity = ClientIdentity(cid, cred.cert_pem, cred.key_pem, ca.cert_pem)
        else:
            identity = ClientIdentity(cid)
        clients[cid] = client_mode(aggregation)(identity, FEDERATION_ID, mode_settings)
    return server, clients


def fit_seed(seed: int, round_: int, index: int) -> int:
    """The torch seed set before client ``index`` fits in ``round_`` of a run seeded ``seed``."""
    return (seed * 1_000_003 + round_ * 1009 + index) % (2**31)


def run_federation(workload: Workload, settings: Mapping[str, Any], *, clients: int, rounds: int,
                   aggregation: str = "secagg", privacy: Mapping[str, Any] | None = None,
                   mode_settings: Mapping[str, Any] | None = None, strategy: str = "fedavg",
                   strategy_options: Mapping[str, float] | None = None, seed: int = 0,
                   workdir: str | Path, device: str = "cpu", evaluate_every: int = 0,
                   client_settings: Sequence[Mapping[str, Any]] | None = None,
                   trainers: Mapping[str, Any] | None = None) -> FederationRun:
    """Run ``rounds`` rounds of a ``clients``-client federation in this process (module docstring).

    ``settings`` is the ``[workload]`` table (the coordinator's, also under every client's),
    ``privacy`` the ``[privacy]`` table every client gets (None or ``{"enabled": False}``: no DP),
    ``mode_settings`` the mode's table (``min_clients`` defaults to min(3, clients) as in
    ``simulate``). Evaluation runs after the last round and, if ``evaluate_every`` > 0, every that
    many rounds. The torch generator is re-seeded before every fit from (seed, round, client), so
    two runs that see the same global models train identically. ``trainers`` (client id -> trainer)
    replaces the ones the workload would make (ids ``client1..N``).
    """
    if clients < 1 or rounds < 1:
        raise ValueError(f"need clients >= 1 and rounds >= 1 (got {clients} and {rounds})")
    ids = [f"client{i + 1}" for i in range(clients)]
    workdir = Path(workdir)
    mode_settings = {"min_clients": min(3, clients), **dict(mode_settings or {})}
    params, spec = workload.initial_parameters(settings, seed)
    params = np.asarray(params, np.float32)
    if trainers is None:
        trainers = {cid: workload.make_trainer(_client_settings(settings, i, clients, client_settings), cid,
                                               workdir / cid, device) for i, cid in enumerate(ids)}
    elif sorted(trainers) != sorted(ids):
        raise ValueError(f"trainers must be keyed by {ids} (got {sorted(trainers)})")
    server, modes = mode_objects(aggregation, ids, mode_settings)
    driver = _Driver(server, modes)
    strat = make_strategy(strategy, **dict(strategy_options or {}))
    privacy_table = dict(privacy or {"enabled": False})

    t0 = time.perf_counter()
    driver.setup()
    statistics = None
    stats_spec = workload.statistics_spec(settings)
    if stats_spec is not None:
        config = {**dict(settings), "privacy": privacy_table}
        jobs = {cid: ClientJob(0, 0, np.asarray(trainers[cid].statistics(config), np.float64), 1.0) for cid in ids}
        ctx = AggregationContext(FEDERATION_ID, 0, 0, tuple(ids), int(stats_spec[0]),
                                 {**mode_settings, "clip": float(stats_spec[1])}, 1.0)
        result, _ = driver.aggregate(ctx, jobs)
        statistics = np.asarray(result.weighted_sum, np.float64).copy()
    setup_s = time.perf_counter() - t0

    run = FederationRun(aggregation, params, spec, statistics, [], setup_s)
    active = list(ids)
    for r in range(1, rounds + 1):
        blob = encode_model(params, spec, r - 1).SerializeToString()
        stats_msg = encode_vector(statistics, "float64").SerializeToString() if statistics is not None else None
        config = {**dict(settings), **strat.client_config(r), "rounds": rounds, "privacy": privacy_table}
        jobs: dict[str, ClientJob] = {}
        rec = RoundRecord(r, 0, 0.0, 0.0, 0.0, 0, 0)
        for cid in list(active):
            t0 = time.perf_counter()
            got, got_spec, _ = decode_model(pb.Model.FromString(blob))
            got_stats = decode_vector(pb.Vector.FromString(stats_msg), what="statistics") if stats_msg else None
            rec.bytes_down += len(blob) + len(stats_msg or b"")
            torch.manual_seed(fit_seed(seed, r, ids.index(cid)))
            try:
                fit = trainers[cid].fit(got, got_spec, r, config, got_stats)
            except BudgetExhausted as exc:
                log.warning("round %d: %s refused to train: %s", r, cid, exc)
                run.excluded[cid] = str(exc)
                active.remove(cid)
                continue
            finally:
                rec.train_s += time.perf_counter() - t0
            delta = np.asarray(fit.parameters, np.float64) - np.asarray(got, np.float64)
            jobs[cid] = ClientJob(r, 0, delta, float(fit.num_examples))
            if fit.privacy is not None and fit.privacy.enabled:
                rec.epsilon[cid] = float(fit.privacy.epsilon)
        ctx = AggregationContext(FEDERATION_ID, r, 0, tuple(sorted(jobs)), spec.size, mode_settings)
        t0 = time.perf_counter()
        result, stages = driver.aggregate(ctx, jobs)
        rec.aggregate_s = time.perf_counter() - t0
        rec.bytes_up = sum(s.bytes_up for s in stages)
        rec.bytes_down += sum(s.bytes_down for s in stages)
        rec.contributors, rec.notes = result.num_contributors, dict(result.notes)
        params = np.asarray(strat.apply(params, result.mean, r), np.float32)
        if r == rounds or (evaluate_every and r % evaluate_every == 0):
            t0 = time.perf_counter()
            cm = None
            eval_config = {**dict(settings), "rounds": rounds}
            for cid in ids:
                res = trainers[cid].evaluate(params, spec, r, eval_config, statistics)
                if res.confusion is not None:
                    c = np.asarray(res.confusion, np.int64)
                    cm = c if cm is None else cm + c
            if cm is not None:
                rec.metrics = confusion_metrics(cm)
                run.confusion = cm
            rec.eval_s = time.perf_counter() - t0
        run.rounds.append(rec)
    run.params = params
    return run
