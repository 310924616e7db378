"""The round engine: the coordinator's state machine behind the gRPC servicer.

All run state lives in one :class:`~fedcore.coordinator.state.State` guarded by one lock (the
round's stage, the model, and what outlives a round: history, exhausted clients, privacy reports;
a checkpoint serialises the latter with the model). The engine itself holds only collaborators:
config, workload, mode, strategy, checkpoint store, records, registry, release journal and the
central-DP accountant. RPC
handlers call :meth:`join`, :meth:`task`, :meth:`submit`, :meth:`download` and
:meth:`heartbeat`; they check the caller's header against the open stage and record results, but
never change phase. Phase changes happen only in :meth:`tick`, which the driver thread calls when
woken by a submission or when a deadline or heartbeat expiry is due (tests call it with a fake
clock). The functions that perform each phase are in :mod:`fedcore.coordinator.phases`.

Two conditions share the lock, so no wake-up is lost between a check and a wait: ``changed``
wakes the driver (a join or a submission: the last expected report closes its stage in the same
instant), ``feed`` wakes the clients' held long polls (:meth:`task` with ``wait``) whenever a
tick changed a phase or stage, so a client learns of its next task as soon as it exists.

Restarts never release a second aggregate of a round (see :mod:`fedcore.coordinator.release`):
a round's checkpoint is written before its new model leaves, and a restart resumes after it.
``fault_hook`` (tests only) is called with the name of each point between an aggregate and its
checkpoint, so a test can "kill" the coordinator there by raising.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from google.protobuf import any_pb2
from google.protobuf.message import DecodeError

from fedcore.common.aggregation import ServerMode
from fedcore.common.errors import ConfigError, InvalidPayload, NotAuthorized, WrongStage
from fedcore.common.stages import Stage, wire
from fedcore.common.workload import Workload
from fedcore.config.coordinator import CoordinatorConfig
from fedcore.coordinator import bodies, phases
from fedcore.coordinator.checkpoint import CheckpointStore
from fedcore.coordinator.records import RunRecords
from fedcore.coordinator.registry import Registry
from fedcore.coordinator.release import ReleaseJournal
from fedcore.coordinator.state import Phase, State
from fedcore.dp.coordinator_dp import CoordinatorPrivacy
from fedcore.proto.fedpsyau.v1 import federation_pb2 as pb
from fedcore.transport.chunks import sha256
from fedcore.transport.settings import to_config
from fedcore.transport.status import UnknownBlob

log = logging.getLogger(__name__)

#: a tick that held the lock this long refreshes every live client's liveness
_BUSY = 0.5


class RoundEngine:
    def __init__(
        self,
        cfg: CoordinatorConfig,
        workload: Workload,
        mode: ServerMode,
        strategy,
        store: CheckpointStore,
        *,
        clock: Callable[[], float] = time.monotonic,
        poll_interval: float | None = None,
    ):
        self.cfg = cfg
        self.workload = workload
        self.mode = mode
        self.strategy = strategy
        self.store = store
        self.clock = clock
        self.poll_interval = cfg.deadlines.poll_interval if poll_interval is None else poll_interval
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)  # -> the driver: something to tick for
        self.feed = threading.Condition(self.lock)  # -> held GetTask calls: a stage opened or closed
        self.holding = 0  # GetTask calls parked on ``feed`` now
        self.records = RunRecords(cfg.server.run_dir)
        self.run_id = self.records.run_id()
        self.registry = Registry(cfg.limits.max_clients, cfg.deadlines.heartbeat_timeout)
        self.stats_spec = workload.statistics_spec(cfg.workload)
        self.fault_hook: Callable[[str], None] | None = None
        self.releases = ReleaseJournal(cfg.server.run_dir)
        self.state = self._restore()

    def fault(self, point: str) -> None:
        """A named point between an aggregate and its checkpoint (a no-op unless a test hooks it)."""
        if self.fault_hook is not None:
            self.fault_hook(point)

    # -- start-up -------------------------------------------------------------------------
    def _restore(self) -> State:
        params, spec = self.workload.initial_parameters(self.cfg.workload, self.cfg.federation.seed)
        ckpt = self.store.load_latest()
        now = self.clock()
        if ckpt is None:
            state = State(Phase.JOINING, 0, 0, 1, params, spec, 0, needs_stats=self.stats_spec is not None)
        else:
            if ckpt.spec != spec:
                raise ConfigError(
                    f"the checkpoint in {self.store.directory} holds a model of {ckpt.spec.size} "
                    f"parameters ({len(ckpt.spec.tensors)} tensors) that does not match the "
                    f"workload's ({spec.size}, {len(spec.tensors)} tensors)",
                    source="resume",
                )
            self.strategy.load_state_dict(ckpt.strategy_state)
            state = State(
                Phase.JOINING,
                0,
                0,
                ckpt.round + 1,
                ckpt.params,
                ckpt.spec,
                ckpt.round,
                statistics=ckpt.statistics,
                needs_stats=self.stats_spec is not None and ckpt.statistics is None,
            )
            state.history = list(ckpt.history)
            state.restore_extra(dict(ckpt.extra), ckpt.round)
            log.info(
                "resuming from the checkpoint of round %d: next round %d of %d%s",
                ckpt.round,
                ckpt.round + 1,
                self.cfg.federation.rounds,
                f"; round {ckpt.round}'s model is evaluated first" if state.pending_eval else "",
            )
        self.records.sync_metrics(state.history)
        # the central-DP accountant: its state is checkpointed with the rest (State.checkpoint_extra)
        self.client_dp = CoordinatorPrivacy(
            self.cfg.central_dp, self.cfg.mode_settings, self.cfg.federation.aggregation, state.client_dp_state
        )
        self.client_dp.startup()
        state.attempt = self.records.next_attempt(0)
        state.waiting_since = now
        self.releases.forget_before(state.next_round, keep_zero=state.needs_stats)
        for r, rel in sorted(self.releases.entries.items()):
            log.warning(
                "round %d's aggregate over %s was released at %s before the restart: that round may be "
                "released again only over the same clients",
                r,
                ", ".join(rel.contributors),
                rel.stage,
            )
        return state

    # -- helpers for RPCs -----------------------------------------------------------------
    def header(self, client_id: str = "") -> pb.Header:
        st = self.state
        stage = (
            st.stage.stage
            if st.stage
            else {Phase.DONE: Stage.DONE, Phase.ABORTED: Stage.DONE}.get(st.phase, Stage.WAIT)
        )
        return pb.Header(
            federation_id=self.cfg.federation.id,
            round=st.round,
            stage=wire(stage),
            attempt=st.attempt,
            client_id=client_id,
        )

    def _check_federation(self, header: pb.Header) -> None:
        if header.federation_id != self.cfg.federation.id:
            raise NotAuthorized(
                f"this coordinator serves federation {self.cfg.federation.id!r} (got {header.federation_id!r})"
            )

    def _check_joined(self, client_id: str) -> None:
        if client_id not in self.registry:
            raise WrongStage(f"client {client_id!r} has not joined (call Join first)")

    def _check_current(self, header: pb.Header) -> None:
        st = self.state
        if st.stage is None:
            raise WrongStage(
                f"no stage is open (phase {st.phase.value}); got round {header.round} "
                f"stage {_stage_name(header.stage)} attempt {header.attempt}"
            )
        want = (st.round, int(st.stage.stage), st.attempt)
        got = (header.round, header.stage, header.attempt)
        if got != want:
            raise WrongStage(
                f"expected round {want[0]} stage {st.stage.stage.name} attempt {want[2]} "
                f"(got round {got[0]} stage {_stage_name(got[1])} attempt {got[2]})"
            )

    def _known_submission(self, client_id: str, header: pb.Header) -> bytes | None:
        st = self.state
        if header.round == st.round and header.attempt == st.attempt:
            return st.submissions.get((header.stage, client_id))
        return None

    # -- RPCs -----------------------------------------------------------------------------
    def join(self, client_id: str, header: pb.Header, client_version: str = "") -> pb.JoinReply:
        with self.lock:
            self._check_federation(header)
            info = self.registry.join(client_id, self.clock())
            if client_id in self.state.exhausted and not info.exhausted:
                info.exhausted = self.state.exhausted[client_id]
            self.changed.notify_all()
            return pb.JoinReply(
                header=self.header(client_id),
                heartbeat_interval=self.cfg.deadlines.heartbeat_interval,
                settings=to_config(self.join_settings()),
            )

    def join_settings(self) -> dict:
        """What a JoinReply tells a client. No DP setting travels here: ``distributed_dp`` goes to
        the clients in each task's typed privacy message; the mode's ``federation_dp`` flag (round 0's
        statistics noise on) stays, and is set whenever distributed DP is configured."""
        fed = self.cfg.federation
        mode_settings = {k: v for k, v in self.cfg.mode_settings.items() if k != "distributed_dp"}
        if self.cfg.mode_settings.get("distributed_dp"):
            mode_settings.setdefault("federation_dp", True)
        return {
            "federation_id": fed.id,
            "aggregation": fed.aggregation,
            "rounds": fed.rounds,
            "min_clients": fed.min_clients,
            "workload": fed.workload,
            "mode_settings": mode_settings,
            "heartbeat_interval": self.cfg.deadlines.heartbeat_interval,
            "poll_interval": self.poll_interval,
            "run_id": self.run_id,
        }

    def task(
        self, client_id: str, header: pb.Header, wait: float = 0.0, active: Callable[[], bool] | None = None
    ) -> pb.Task:
        """This client's task now. ``wait`` > 0 makes it a long poll: while there is nothing for
        the client (STAGE_WAIT) the call is held on ``feed`` for up to ``wait`` seconds of real
        time (``time.monotonic``, whatever the engine's clock), and returns as soon as a tick opens
        a stage the client is expected in or ends the run; ``active()`` turning false (the caller
        went away) ends the hold too. A WAIT after a hold says ``retry_after = 0`` (ask again at
        once); one without a hold gives the poll interval, as before long polls existed."""
        with self.lock:
            self._check_federation(header)
            self._check_joined(client_id)
            self.registry.seen(client_id, self.clock())
            until = time.monotonic() + max(0.0, wait)
            while True:
                task = self._task_now(client_id)
                left = until - time.monotonic()
                if task.header.stage != Stage.WAIT or left <= 0 or (active is not None and not active()):
                    break
                self.holding += 1
                try:
                    self.feed.wait(left)
                finally:
                    self.holding -= 1
            if task.header.stage == Stage.WAIT and wait > 0:
                task.retry_after = 0.0
            if wait > 0:
                self.registry.seen(client_id, self.clock())
            self.state.tally.bytes_down += task.ByteSize()
            return task

    def _task_now(self, client_id: str) -> pb.Task:
        st = self.state
        body = any_pb2.Any()
        if st.phase in (Phase.DONE, Phase.ABORTED):
            self.registry.clients[client_id].told_done = True
            body.Pack(pb.DoneTask(reason=st.outcome, success=st.phase == Phase.DONE))
            return pb.Task(header=self.header(client_id), body=body)
        if st.stage is not None and client_id in st.stage.pending:
            body.Pack(bodies.task_body(self, client_id))
            return pb.Task(
                header=self.header(client_id), deadline_in=max(0.0, st.stage.deadline - self.clock()), body=body
            )
        body.Pack(pb.WaitTask(reason=bodies.wait_reason(self, client_id)))
        hdr = self.header(client_id)
        hdr.stage = wire(Stage.WAIT)
        return pb.Task(header=hdr, retry_after=self.poll_interval, body=body)

    def wake_feed(self) -> None:
        """Wake every held long poll to re-check (a caller went away, the server is stopping)."""
        with self.feed:
            self.feed.notify_all()

    def precheck_submit(self, client_id: str, header: pb.Header) -> None:
        """Refuse a stale submission before its payload is read (a possible duplicate passes)."""
        with self.lock:
            self._check_federation(header)
            self._check_joined(client_id)
            self.registry.seen(client_id, self.clock())
            if self._known_submission(client_id, header) is None:
                self._check_current(header)
                self._check_pending(client_id)

    def _check_pending(self, client_id: str) -> None:
        stage = self.state.open_stage()
        if client_id not in stage.pending:
            why = (
                "already answered"
                if client_id in stage.responded
                else "was dropped from it as dead"
                if client_id in stage.dropped
                else "is not expected in it"
            )
            raise WrongStage(f"client {client_id!r} {why} (stage {stage.stage.name})")

    def submit(self, client_id: str, header: pb.Header, payload: bytes | bytearray, digest: bytes) -> pb.SubmitReply:
        with self.lock:
            self._check_federation(header)
            self._check_joined(client_id)
            self.registry.seen(client_id, self.clock())
            known = self._known_submission(client_id, header)
            if known is not None:
                if known == digest:
                    return pb.SubmitReply(
                        header=self.header(client_id),
                        duplicate=True,
                        message="identical submission already accepted; nothing changed",
                    )
                raise WrongStage(
                    f"client {client_id!r} already submitted a different result for round "
                    f"{header.round} stage {_stage_name(header.stage)} attempt {header.attempt}"
                )
            self._check_current(header)
            self._check_pending(client_id)
            body = any_pb2.Any()
            try:
                body.ParseFromString(payload)
            except DecodeError:
                raise InvalidPayload(f"submission from {client_id!r} is not a serialized google.protobuf.Any") from None
            bodies.accept(self, client_id, body)
            st = self.state
            st.submissions[(header.stage, client_id)] = digest
            st.open_stage().responded.add(client_id)
            st.tally.bytes_up += len(payload)
            self.changed.notify_all()
            return pb.SubmitReply(header=self.header(client_id), message="accepted")

    def download(self, client_id: str, header: pb.Header, blob: str) -> tuple[bytes, bytes]:
        with self.lock:
            self._check_federation(header)
            self._check_joined(client_id)
            self.registry.seen(client_id, self.clock())
            self._check_current(header)
            st = self.state
            if st.blob is not None and blob == st.blob.name:
                return st.blob.payload, st.blob.sha256
            try:
                payload = self.mode.blob(blob, client_id)
            except KeyError:
                raise UnknownBlob(f"no blob {blob!r} at round {st.round} stage {st.open_stage().stage.name}") from None
            return payload, sha256(payload)

    def count_download(self, nbytes: int) -> None:
        with self.lock:
            self.state.tally.bytes_down += nbytes

    def heartbeat(self, client_id: str, header: pb.Header) -> pb.HeartbeatReply:
        with self.lock:
            self._check_federation(header)
            self._check_joined(client_id)
            self.registry.seen(client_id, self.clock())
            return pb.HeartbeatReply(header=self.header(client_id))

    # -- driver ---------------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        return self.state.phase in (Phase.DONE, Phase.ABORTED)

    def tick(self) -> float:
        """Advance the state machine as far as it can go now; return seconds until the next
        deadline or heartbeat expiry."""
        with self.lock:
            start = self.clock()
            st = self.state
            for cid in self.registry.expire(start):
                if st.stage is not None and cid in st.stage.pending:
                    st.stage.dropped.add(cid)
                    log.warning("round %d stage %s: %s dropped (dead)", st.round, st.stage.stage.name, cid)
            moved = False
            for _ in range(100):  # each step changes phase or stage; bounded for safety
                if not phases.advance(self, self.clock()):
                    break
                moved = True
            if moved:
                self.feed.notify_all()  # the held long polls learn of the new stage now
            end = self.clock()
            if end - start > _BUSY:
                self.registry.refresh_all(end)
            return phases.next_wake(self, end)

    def run(self, stop: threading.Event) -> None:
        """The driver loop: tick, then sleep until woken by an RPC or the next deadline.

        The lock is held from the tick into the wait (``Condition.wait`` releases it), so a
        submission that lands between the two is never missed: the stage it completes closes at
        once, not at the next timer tick."""
        with self.changed:
            while not stop.is_set() and not self.finished:
                wait = self.tick()
                if not self.finished and not stop.is_set():
                    self.changed.wait(timeout=min(max(wait, 0.01), 1.0))
        self.wake_feed()

    def all_told_done(self) -> bool:
        with self.lock:
            return all(c.told_done or not c.alive for c in self.registry.clients.values())


def _stage_name(value: int) -> str:
    try:
        return Stage(value).name
    except ValueError:
        return f"<unknown {value}>"
