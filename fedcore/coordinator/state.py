"""The coordinator's round state machine: phases, legal transitions and the state they act on.

Phases of a coordinator run (``round`` is the wire round: 0 for set-up and statistics)::

    JOINING --> SETUP --> STATS --> STATS_AGG --> TRAIN --> AGGREGATE --> EVALUATE --> TRAIN ...
       |          (mode key exchange, once)  (round 0)      (rounds 1..R)      \\--> DONE
       |-- EVALUATE first after a restart whose checkpoint holds a round not yet evaluated
       \\-- any stage phase goes back to JOINING when too few clients are left,
            repeats itself as a new attempt when it fails, or ends in ABORTED.

:data:`TRANSITIONS` is the single list of legal moves; :func:`transition` refuses every other one
(a bug, never a client's doing). The functions that perform the phases live in
:mod:`fedcore.coordinator.phases`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fedcore.common.params import ParamSpec
from fedcore.common.stages import Stage


class Phase(enum.StrEnum):
    JOINING = "joining"  # waiting for enough eligible clients
    SETUP = "setup"  # the mode's set-up stages (CKKS key exchange), once per run
    STATS = "stats"  # clients compute their local statistics (round 0)
    STATS_AGG = "stats_agg"  # the mode sums the statistics
    TRAIN = "train"  # selected clients train locally
    AGGREGATE = "aggregate"  # the mode sums the updates
    EVALUATE = "evaluate"  # clients evaluate the new global model
    DONE = "done"
    ABORTED = "aborted"


_WORK = {Phase.SETUP, Phase.STATS, Phase.TRAIN}
TRANSITIONS: dict[Phase, frozenset[Phase]] = {
    Phase.JOINING: frozenset(_WORK | {Phase.EVALUATE, Phase.JOINING, Phase.DONE, Phase.ABORTED}),
    Phase.SETUP: frozenset(_WORK | {Phase.JOINING, Phase.ABORTED}),
    Phase.STATS: frozenset({Phase.STATS_AGG, Phase.STATS, Phase.JOINING, Phase.ABORTED}),
    Phase.STATS_AGG: frozenset({Phase.TRAIN, Phase.STATS, Phase.JOINING, Phase.DONE, Phase.ABORTED}),
    Phase.TRAIN: frozenset({Phase.AGGREGATE, Phase.TRAIN, Phase.JOINING, Phase.ABORTED}),
    Phase.AGGREGATE: frozenset({Phase.EVALUATE, Phase.TRAIN, Phase.JOINING, Phase.DONE, Phase.ABORTED}),
    Phase.EVALUATE: frozenset({Phase.SETUP, Phase.TRAIN, Phase.JOINING, Phase.DONE, Phase.ABORTED}),
    Phase.DONE: frozenset(),
    Phase.ABORTED: frozenset(),
}

#: phases in which a wire stage is open
STAGE_PHASES = frozenset({Phase.SETUP, Phase.STATS, Phase.STATS_AGG, Phase.TRAIN, Phase.AGGREGATE, Phase.EVALUATE})


class IllegalTransition(RuntimeError):
    """The engine tried a move that :data:`TRANSITIONS` does not list (a bug)."""


@dataclass
class StageRun:
    """One open wire stage."""

    stage: Stage
    expected: frozenset[str]
    deadline: float
    responded: set[str] = field(default_factory=set)
    dropped: set[str] = field(default_factory=set)  # died during the stage

    @property
    def pending(self) -> frozenset[str]:
        return self.expected - self.responded - self.dropped


@dataclass
class ModelBlob:
    round: int
    name: str
    payload: bytes
    sha256: bytes


@dataclass
class RoundTally:
    """What one round (all its attempts) has cost so far."""

    started: float = 0.0
    bytes_up: int = 0
    bytes_down: int = 0


@dataclass
class State:
    phase: Phase
    round: int  # wire round: 0 = set-up/statistics, 1.. = training
    attempt: int
    next_round: int  # the next training round to run
    params: np.ndarray
    spec: ParamSpec
    model_round: int  # the round that produced ``params`` (0 = initial)
    pending_eval: int = 0  # a checkpointed round whose evaluation has not completed (0: none)
    statistics: np.ndarray | None = None
    needs_stats: bool = False
    setup_done: bool = False
    setup_members: frozenset[str] = frozenset()
    retries: int = 0  # failed attempts of the current work
    stage: StageRun | None = None
    mode_stages: tuple[Stage, ...] = ()
    stage_index: int = 0
    selected: tuple[str, ...] = ()
    participants: tuple[str, ...] = ()
    submissions: dict[tuple[int, str], bytes] = field(default_factory=dict)  # (stage, client) -> sha256
    train_reports: dict[str, Any] = field(default_factory=dict)  # client -> TrainReport
    eval_reports: dict[str, Any] = field(default_factory=dict)  # client -> EvaluateReport
    aggregate_notes: dict[str, Any] = field(default_factory=dict)
    contributors: int = 0
    waiting_since: float = 0.0
    tally: RoundTally = field(default_factory=RoundTally)
    blob: ModelBlob | None = None
    outcome: str = ""  # why the run ended
    # -- what outlives a round: checkpointed with the model (:meth:`checkpoint_extra`) ----------
    history: list[dict[str, Any]] = field(default_factory=list)  # metrics.jsonl: one line per completed round
    exhausted: dict[str, str] = field(default_factory=dict)  # client -> why it left for good (budget spent)
    privacy: dict[str, dict[str, Any]] = field(default_factory=dict)  # client -> its latest privacy report
    clients_before: frozenset[str] = frozenset()  # clients seen by earlier coordinator runs
    round0: dict[str, Any] = field(default_factory=dict)  # the statistics round's time and bytes
    client_dp_state: dict[str, Any] | None = None  # the central-DP accountant's state at restore
    # -- this coordinator run only ---------------------------------------------------------------
    round_dp: dict[str, Any] = field(default_factory=dict)  # this round's central/distributed DP records
    started_work: bool = False  # a first work phase has begun
    stop_request: str = ""  # why a stop after this round was asked for
    eval_mark: tuple[float, int, int] | None = None  # EVALUATE opened at (time, bytes up, bytes down)

    def model_blob(self) -> ModelBlob:
        """The serialised model that TRAIN and EVALUATE tasks name (:class:`IllegalTransition` when
        no stage that sends it was opened: a bug)."""
        if self.blob is None:
            raise IllegalTransition(f"no model blob in phase {self.phase.value}")
        return self.blob

    def open_stage(self) -> StageRun:
        """The open wire stage; :class:`IllegalTransition` when none is (a phase function called out
        of turn: a bug, never a client's doing)."""
        if self.stage is None:
            raise IllegalTransition(f"no wire stage is open in phase {self.phase.value}")
        return self.stage

    def checkpoint_extra(self, clients_now: set[str], client_dp: dict[str, Any]) -> dict[str, Any]:
        """The run state a checkpoint carries besides model, strategy and statistics (JSON-able;
        :meth:`restore_extra` reads it back)."""
        return {
            "excluded": dict(self.exhausted),
            "privacy": dict(self.privacy),
            "pending_eval": self.pending_eval,
            "client_dp": client_dp,
            "clients": sorted(set(self.clients_before) | set(clients_now)),
            "round0": dict(self.round0),
        }

    def restore_extra(self, extra: dict[str, Any], checkpoint_round: int) -> None:
        """The run state of a checkpoint written by :meth:`checkpoint_extra`."""
        self.exhausted = dict(extra.get("excluded", {}))
        self.privacy = dict(extra.get("privacy", {}))
        self.clients_before = frozenset(extra.get("clients", []))
        self.round0 = dict(extra.get("round0", {}))
        self.client_dp_state = extra.get("client_dp")
        self.pending_eval = (
            checkpoint_round if extra.get("pending_eval") == checkpoint_round and checkpoint_round else 0
        )

    def clients_ever(self, clients_now: set[str]) -> list[str]:
        """Every client this federation has seen, in this coordinator run or an earlier one."""
        return sorted(set(self.clients_before) | set(clients_now))


def transition(state: State, to: Phase) -> None:
    """Move ``state`` to phase ``to``; raises :class:`IllegalTransition` for an unlisted move."""
    if to not in TRANSITIONS[state.phase]:
        raise IllegalTransition(f"illegal phase change {state.phase.value} -> {to.value}")
    state.phase = to
    if to not in STAGE_PHASES:
        state.stage = None
