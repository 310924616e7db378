"""Shared set-up for the SecAgg+ tests. Two ways in, by what a test checks:

- a round (dropouts, exact sums, what the coordinator saw, tampering, a client's state in the
  middle of one): the ``secagg_round`` fixture -- the daemons' engine and client daemons over the
  in-memory transport (:mod:`fedcore.simulation_memory`), each client contributing the known
  updates of :mod:`fedcore.examples.updates`. :class:`SecAggRun` stops it with a stage open and
  reaches the engine's :class:`SecAggServer` and the clients' :class:`SecAggClient` there.
  ``vectors``, ``weights`` and ``stats`` replace a client's update, weight or round-0 statistics;
  ``dropouts`` runs one scripted dropout pattern per attempt (:class:`Dropouts`, for the tests of
  every dropout pattern) in one federation;
- one mode method against crafted messages from a fresh state: the ``federation`` fixture -- bare
  mode objects with the context and jobs a round would give them (:func:`make_federation`).
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fedcore.common.aggregation import AggregateResult, AggregationContext, ClientIdentity, ClientJob
from fedcore.common.stages import Stage
from fedcore.common.workload import FitResult
from fedcore.examples import updates
from fedcore.secagg.client import SecAggClient
from fedcore.secagg.server import SecAggServer
from fedcore.secagg.state import SecAggStage
from fedcore.simulation_memory import Faults, MemoryFederation, memory_federation

FED = "fed-test"
UPDATES = "fedcore.examples.updates:workload"


def client_ids(n: int) -> tuple[str, ...]:
    return tuple(f"client-{i:02d}" for i in range(n))


def no_blob(name: str) -> bytes:
    raise KeyError(f"no blobs in SecAgg+ (asked for {name!r})")


def _wire(stage: SecAggStage | Stage) -> Stage:
    return stage.wire if isinstance(stage, SecAggStage) else Stage(stage)


# -- rounds through the engine -------------------------------------------------------------------
class KnownTrainer(updates.UpdatesTrainer):
    """The updates workload's client, contributing the test's own ``vector`` (every round),
    ``weight`` or round-0 ``statistics`` where one is given (None: the workload's)."""

    def __init__(self, settings: Mapping[str, Any], vector=None, weight: float | None = None, statistics=None):
        super().__init__(settings)
        self.vector = None if vector is None else np.asarray(vector, np.float64)
        self.weight = weight
        self.stats = None if statistics is None else np.asarray(statistics, np.float64)

    def fit(self, params, spec, round, config, statistics) -> FitResult:
        fit = super().fit(params, spec, round, config, statistics)
        if self.vector is not None:
            fit.parameters = np.asarray(params, np.float64) + self.vector
        if self.weight is not None:
            fit.num_examples = self.weight
        return fit

    def statistics(self, config) -> np.ndarray | None:
        return super().statistics(config) if self.stats is None else self.stats.copy()


@dataclass
class Attempt:
    """How one (round, attempt) of a :class:`Dropouts` sweep ended."""

    round: int
    attempt: int
    pattern: dict[Stage, frozenset[str]]  # stage -> the clients that dropped there
    result: AggregateResult | None  # the round's aggregate; None when the attempt failed
    failure: str = ""  # the engine's reason for failing the attempt


_FAILED = re.compile(r"round (\d+) attempt (\d+) failed: (.*)", re.DOTALL)


class _Failures(logging.Handler):
    """The engine's "round r attempt a failed: reason" lines, by (round, attempt)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.reasons: dict[tuple[int, int], str] = {}

    def emit(self, record: logging.LogRecord) -> None:
        m = _FAILED.match(record.getMessage())
        if m:
            self.reasons[(int(m[1]), int(m[2]))] = m[3]


@dataclass
class Dropouts:
    """One dropout pattern per attempt of one federation, so that a sweep over hundreds of patterns
    costs attempts, not federations: the k-th (round, attempt) the engine runs gets ``patterns[k]``
    (stage -> client ids). A client that drops at a stage gets an unreadable task body there (the
    tamper hook), so it cannot answer: the stage closes at its deadline without it, the client is
    not among that stage's survivors, and no later stage of the attempt expects it -- to the server,
    a dropout at that stage. Unlike a crash (``Faults.silent_at``, for good) the client is back for
    the next attempt. The engine then completes the round (the next pattern gets the next round)
    or fails the attempt (the next pattern gets the retry; the reason is the engine's log line).
    Build the run with ``secagg_round(n, dropouts=patterns)``: it has a round and a retry for every
    pattern."""

    patterns: list[dict[Stage, frozenset[str]]]
    assigned: dict[tuple[int, int], int] = field(default_factory=dict)  # (round, attempt) -> pattern
    fed: MemoryFederation | None = None

    @classmethod
    def of(cls, patterns: Iterable[Mapping[Any, Iterable[str]]]) -> Dropouts:
        return cls([{_wire(s): frozenset(ids) for s, ids in p.items() if ids} for p in patterns])

    def tamper(self, stage: Stage, cid: str, direction: str, data: bytes) -> bytes:
        if direction != "down" or self.fed is None:
            return data
        st = self.fed.engine.state
        key = (st.round, st.attempt)
        if key not in self.assigned and len(self.assigned) < len(self.patterns):
            self.assigned[key] = len(self.assigned)
        k = self.assigned.get(key)
        if k is not None and cid in self.patterns[k].get(stage, ()):
            return b"\x0a\x01?"  # an Any naming no registered type: the client cannot answer
        return data

    def run(self, fed: MemoryFederation, check: Callable[[Attempt], None] | None = None) -> list[Attempt]:
        """Run every pattern; ``check(attempt)`` is called as each one ends, while the engine's mode
        still holds that attempt's round."""
        done: list[Attempt] = []
        failures = _Failures()
        logger = logging.getLogger("fedcore.coordinator.phases")
        logger.addHandler(failures)

        def ended(engine) -> bool:
            for key, k in self.assigned.items():
                if k < len(done):
                    continue
                history = engine.state.history
                completed = any((line.get("round"), line.get("attempt")) == key for line in history)
                if not completed and key not in failures.reasons:
                    break
                outcome = Attempt(
                    *key, self.patterns[k], engine.mode.result() if completed else None, failures.reasons.get(key, "")
                )
                done.append(outcome)
                if check is not None:
                    check(outcome)
            return len(done) == len(self.patterns)

        self.fed = fed
        try:
            assert fed.run_until(ended), "the federation stalled or ended before every pattern ran"
        finally:
            logger.removeHandler(failures)
        return done


class SecAggRun:
    """A SecAgg+ federation over the in-memory transport, driven stage by stage.

    :meth:`open` runs it until a stage is open: every client has answered the stages before it and
    none has been handed this one yet. Then :attr:`server` is the engine's mode in that state and
    :meth:`client` a client daemon's; :meth:`task` and :meth:`ask` hand a (crafted) task straight to
    one client's mode, as its daemon would. ``settings`` are the workload's (:mod:`fedcore.examples.
    updates`): :meth:`update` and :meth:`expected` recompute what each client contributed.
    """

    def __init__(
        self,
        fed: MemoryFederation,
        settings: Mapping[str, Any],
        known: Mapping[str, KnownTrainer] | None = None,
        dropouts: Dropouts | None = None,
    ):
        self.fed = fed
        self.settings = dict(settings)
        self.ids = tuple(fed.daemons)
        self.known = dict(known or {})
        self.dropouts = dropouts

    # -- where the run stands ---------------------------------------------------------------------
    @property
    def engine(self):
        return self.fed.engine

    @property
    def server(self) -> SecAggServer:
        return self.fed.engine.mode

    @property
    def round(self) -> int:
        return self.engine.state.round

    @property
    def attempt(self) -> int:
        return self.engine.state.attempt

    def client(self, cid: str) -> SecAggClient:
        self.fed.start()
        return self.fed.daemons[cid].handlers.mode

    def stage_of(self, cid: str) -> SecAggStage:
        st = self.client(cid).state
        return st.stage if st is not None else SecAggStage.IDLE

    def job(self, cid: str) -> ClientJob:
        """The job ``cid``'s daemon made for the current (round, attempt) when it trained."""
        return self.fed.daemons[cid].handlers.jobs[(self.round, self.attempt)]

    # -- driving ----------------------------------------------------------------------------------
    def until(self, done: Callable[[], bool]) -> SecAggRun:
        assert self.fed.run_until(lambda _engine: done()), "the federation stalled or ended first"
        return self

    def is_open(self, stage: SecAggStage | Stage, attempt: int | None = None) -> bool:
        st = self.engine.state
        return st.stage is not None and st.stage.stage == _wire(stage) and (attempt is None or st.attempt == attempt)

    def open(self, stage: SecAggStage | Stage, attempt: int | None = None) -> SecAggRun:
        return self.until(lambda: self.is_open(stage, attempt))

    def run(self) -> int:
        """Run to the end; the coordinator's exit code (0 completed, 4 aborted)."""
        return self.fed.run()

    def until_statistics(self) -> SecAggRun:
        """Run until round 0's statistics are summed (the engine's mode still holds that round)."""
        return self.until(lambda: self.engine.state.statistics is not None)

    def sweep(self, check: Callable[[Attempt], None] | None = None) -> list[Attempt]:
        """Run the ``dropouts`` patterns this run was built with (:meth:`Dropouts.run`)."""
        assert self.dropouts is not None, "build the run with secagg_round(n, dropouts=[...])"
        return self.dropouts.run(self.fed, check)

    def use_client_settings(self, cid: str, settings: Mapping[str, Any]) -> SecAggClient:
        """Give ``cid`` a mode with its own floors (``settings``) instead of the coordinator's table.
        Call before the round starts."""
        self.fed.start()
        daemon = self.fed.daemons[cid]
        daemon.handlers.mode = SecAggClient(daemon.identity, daemon.cfg.client.federation, settings)
        return daemon.handlers.mode

    # -- talking to one mode ----------------------------------------------------------------------
    def task(self, stage: SecAggStage | Stage, cid: str):
        return self.server.task(_wire(stage), cid)

    def ask(self, stage: SecAggStage | Stage, task, cid: str, job: ClientJob | None = None):
        return self.client(cid).handle(_wire(stage), task, job or self.job(cid), no_blob)

    # -- what should come out ---------------------------------------------------------------------
    def result(self) -> AggregateResult:
        """The engine mode's latest aggregate (the current round's once its unmask closed)."""
        return self.server.result()

    def update(self, cid: str, round_: int = 1) -> np.ndarray:
        known = self.known.get(cid)
        if known is not None and known.vector is not None:
            return known.vector.copy()
        return updates.update(self.settings, self.ids.index(cid), round_)

    def weight(self, cid: str) -> float:
        """``cid``'s weight as its trainer reports it (before the mode rounds and clips it)."""
        known = self.known.get(cid)
        if known is not None and known.weight is not None:
            return float(known.weight)
        return float(updates.weight(self.settings, self.ids.index(cid)))

    def expected(self, contributors: Iterable[str], round_: int = 1) -> tuple[np.ndarray, float]:
        """Plaintext weighted sum and total weight over ``contributors`` (weights as the mode rounds
        and clips them)."""
        max_weight = int(self.server.r.quant.max_weight)
        total = np.zeros(int(self.settings["size"]))
        weight = 0.0
        for cid in contributors:
            w = min(max(round(self.weight(cid)), 1), max_weight)
            total += w * self.update(cid, round_)
            weight += w
        return total, weight

    def tolerance(self, total_weight: float) -> float:
        """Worst-case quantisation error of a weighted sum: one unit of 2^-f per unit of weight."""
        return total_weight * 2.0**-self.server.r.quant.frac_bits + 1e-12


@pytest.fixture
def secagg_round(tmp_path):
    """``secagg_round(n, length=6, secagg={...}, ...)``: a :class:`SecAggRun` of ``n`` clients
    (``client-00`` ...), not started. ``secagg`` is the coordinator's ``[secagg]`` table; ``scale``,
    ``seed`` and ``num_examples`` go to the updates workload (``num_examples`` 0: client i weighs
    10 (i + 1)); ``vectors``, ``weights`` and ``stats`` (client id -> value) replace a client's
    update, weight and round-0 statistics (``stats`` turns round 0 on, at the vectors' length);
    ``dropouts`` is a list of patterns (stage -> client ids) for :meth:`SecAggRun.sweep`;
    ``faults``, ``tamper``, ``record``, ``rounds`` and ``deadlines`` are :func:`memory_federation`'s."""
    built: list[MemoryFederation] = []
    count = itertools.count()

    def build(
        n: int,
        *,
        length: int = 6,
        secagg: Mapping[str, Any] | None = None,
        scale: float = 0.1,
        seed: int = 0,
        num_examples: int = 0,
        rounds: int = 1,
        faults: Faults | None = None,
        tamper=None,
        record: bool = False,
        vectors: Mapping[str, Any] | None = None,
        weights: Mapping[str, float] | None = None,
        stats: Mapping[str, Any] | None = None,
        dropouts: Sequence[Mapping[Any, Iterable[str]]] | None = None,
        deadlines: Mapping[str, Any] | None = None,
    ) -> SecAggRun:
        ids = client_ids(n)
        settings = {"size": length, "scale": scale, "seed": seed, "num_examples": num_examples}
        if stats:
            settings["statistics"] = len(next(iter(stats.values())))
        known = {}
        if vectors or weights or stats:
            known = {
                c: KnownTrainer(
                    {**settings, "client_index": i},
                    (vectors or {}).get(c),
                    (weights or {}).get(c),
                    (stats or {}).get(c),
                )
                for i, c in enumerate(ids)
            }
        sweep = None
        if dropouts is not None:
            assert tamper is None, "dropouts use the tamper hook"
            sweep = Dropouts.of(dropouts)
            tamper, rounds = sweep.tamper, max(rounds, len(sweep.patterns))
            # a round and a retry for every pattern; a stage with a dropout closes at its deadline
            deadlines = {"max_round_retries": len(sweep.patterns), "stage": 5.0, **dict(deadlines or {})}
        fed = memory_federation(
            n,
            rounds,
            Path(tmp_path) / f"fed{next(count)}",
            aggregation="secagg",
            workload=UPDATES,
            workload_settings=settings,
            client_ids=ids,
            secagg=dict(secagg or {}),
            faults=faults,
            tamper=tamper,
            record=record,
            trainers=known or None,
            deadlines=deadlines,
        )
        built.append(fed)
        return SecAggRun(fed, settings, known, sweep)

    yield build
    for fed in built:
        fed.close()


# -- bare mode objects ---------------------------------------------------------------------------
@dataclass
class Federation:
    """A SecAgg+ server and clients that no round has touched yet, for tests of one mode method
    against crafted messages. (A whole round goes through ``secagg_round``.)"""

    server: SecAggServer
    clients: dict[str, SecAggClient]
    ctx: AggregationContext
    jobs: dict[str, ClientJob]

    def next_round(self, round_: int, attempt: int = 0) -> Federation:
        """The same server and clients, a new (round, attempt)."""
        ctx = AggregationContext(
            FED,
            round_,
            attempt,
            self.ctx.participants,
            self.ctx.vector_length,
            self.ctx.settings,
            max_weight=self.ctx.max_weight,
        )
        jobs = {c: ClientJob(round_, attempt, j.vector, j.weight) for c, j in self.jobs.items()}
        return Federation(self.server, self.clients, ctx, jobs)


def make_federation(
    n: int,
    length: int = 6,
    settings: dict[str, Any] | None = None,
    *,
    round_: int = 1,
    attempt: int = 0,
    max_weight: float = 100.0,
    weights: Mapping[str, float] | None = None,
    vectors: Mapping[str, np.ndarray] | None = None,
    seed: int = 0,
    client_settings: dict[str, Any] | None = None,
) -> Federation:
    settings = dict(settings or {})
    ids = client_ids(n)
    rng = np.random.default_rng(seed)
    vectors = dict(vectors) if vectors else {c: rng.uniform(-1, 1, length) for c in ids}
    weights = dict(weights) if weights else {c: float(rng.integers(1, 40)) for c in ids}
    ctx = AggregationContext(FED, round_, attempt, ids, length, settings, max_weight=max_weight)
    server = SecAggServer(FED, settings)
    csettings = settings if client_settings is None else client_settings
    clients = {
        c: SecAggClient(ClientIdentity(c), FED, csettings, rng=np.random.default_rng(seed + i))
        for i, c in enumerate(ids)
    }
    jobs = {c: ClientJob(round_, attempt, vectors[c], weights[c]) for c in ids}
    return Federation(server, clients, ctx, jobs)


@pytest.fixture(scope="session")
def federation():
    return make_federation
