"""An in-process driver for any aggregation mode: one :class:`ServerMode`, N :class:`ClientMode`.

It runs the :mod:`fedcore.common.aggregation` contract the way the daemons do, without gRPC:
every task and submission is packed into ``google.protobuf.Any`` and serialised to bytes and back,
blobs go through ``fetch_blob``, a body whose type is not in ``body_types(stage)`` or that
``accept`` refuses (InvalidPayload) is dropped with the client, and a client that refuses
(ProtocolAbort) or is listed in ``dropouts`` for a stage answers nothing from then on. Set-up is
retried with a new attempt over the clients still alive, as the coordinator does.

Used by the tests and benchmarks/ckks.py; it counts bytes and seconds per stage.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from google.protobuf import any_pb2
from google.protobuf.message import Message

from fedcore.common.aggregation import (
    AggregateResult,
    AggregationContext,
    ClientJob,
    ClientMode,
    ServerMode,
)
from fedcore.common.errors import AggregationAborted, FedError, InvalidPayload
from fedcore.common.stages import Stage

#: tamper(stage, client_id, direction "down"/"up"/"blob", wire bytes) -> bytes actually delivered
Tamper = Callable[[Stage, str, str, bytes], bytes]


@dataclass
class StageStats:
    stage: Stage
    bytes_down: int = 0                                   # task bodies and blobs, all clients
    bytes_up: int = 0                                     # submissions, all clients
    client_seconds: dict[str, float] = field(default_factory=dict)
    server_seconds: float = 0.0                           # task + accept + close_stage
    refused: dict[str, str] = field(default_factory=dict)  # client -> why it gave no (valid) answer
    aborted: str = ""                                     # close_stage's AggregationAborted, if any


class InProcessDriver:
    def __init__(self, server: ServerMode, clients: Mapping[str, ClientMode], *, tamper: Tamper | None = None,
                 record: bool = False, max_setup_attempts: int = 3):
        self.server = server
        self.clients = dict(clients)
        self.federation_id = server.federation_id
        self.tamper = tamper
        self.max_setup_attempts = max_setup_attempts
        self.dead: set[str] = set()
        self.record = record
        self.server_received: list[bytes] = []  # every byte string the server was handed (record=True)
        self.last_stats: list[StageStats] = []  # stages of the latest setup()/run_round(), also when aborted

    def setup(self, dropouts: Mapping[Stage, Iterable[str]] | None = None) -> list[StageStats]:
        """Run the set-up stages until ``setup_done()``, retrying over the survivors."""
        stats: list[StageStats] = []
        self.last_stats = stats
        if not self.server.setup_stages():
            return stats
        for attempt in range(self.max_setup_attempts):
            alive = tuple(sorted(set(self.clients) - self.dead))
            ctx = AggregationContext(self.federation_id, 0, attempt, alive, 0, self.server.settings)
            self.server.begin_setup(ctx)
            try:
                for stage in self.server.setup_stages():
                    self._stage(stage, None, dropouts or {}, stats)
            except AggregationAborted:
                continue
            if self.server.setup_done():
                return stats
        raise AggregationAborted(f"set-up did not complete in {self.max_setup_attempts} attempts")

    def run_round(self, round_: int, jobs: Mapping[str, ClientJob], *, attempt: int = 0, max_weight: float = 1.0e6,
                  dropouts: Mapping[Stage, Iterable[str]] | None = None) -> tuple[AggregateResult, list[StageStats]]:
        """One aggregation over the clients that have a job and are alive."""
        participants = tuple(sorted(set(jobs) - self.dead))
        lengths = {jobs[c].vector.size for c in participants}
        if len(lengths) != 1:
            raise ValueError(f"all jobs need vectors of one length (got {sorted(lengths)})")
        ctx = AggregationContext(self.federation_id, round_, attempt, participants, lengths.pop(),
                                 self.server.settings, max_weight)
        self.server.begin(ctx)
        stats: list[StageStats] = []
        self.last_stats = stats
        for stage in self.server.round_stages():
            self._stage(stage, jobs, dropouts or {}, stats)
        return self.server.result(), stats

    # ---- one stage -----------------------------------------------------------------------------

    def _stage(self, stage: Stage, jobs: Mapping[str, ClientJob] | None,
               dropouts: Mapping[Stage, Iterable[str]], out: list[StageStats]) -> None:
        st = StageStats(stage)
        out.append(st)
        self.dead |= set(dropouts.get(stage, ()))
        responded: set[str] = set()
        for cid in sorted(self.server.expected(stage)):
            if cid in self.dead:
                st.refused[cid] = "dropped out"
                continue
            t0 = time.perf_counter()
            task = self.server.task(stage, cid)
            st.server_seconds += time.perf_counter() - t0
            down = self._wire(stage, cid, "down", task)
            st.bytes_down += len(down)
            body = any_pb2.Any.FromString(down)

            def fetch(name: str, cid: str = cid) -> bytes:
                data = self._deliver(stage, cid, "blob", self.server.blob(name, cid))
                st.bytes_down += len(data)
                return data

            t0 = time.perf_counter()
            try:
                answer = self.clients[cid].handle(stage, body, jobs.get(cid) if jobs else None, fetch)
            except FedError as exc:
                st.refused[cid] = f"client refused: {exc}"
                continue
            finally:
                st.client_seconds[cid] = time.perf_counter() - t0
            up = self._wire(stage, cid, "up", answer)
            st.bytes_up += len(up)
            if self.record:
                self.server_received.append(up)
            t0 = time.perf_counter()
            try:
                self.server.accept(stage, cid, self._unpack(stage, up))
                responded.add(cid)
            except InvalidPayload as exc:
                st.refused[cid] = f"server refused: {exc}"
            finally:
                st.server_seconds += time.perf_counter() - t0
        t0 = time.perf_counter()
        try:
            self.server.close_stage(stage, frozenset(responded))
        except AggregationAborted as exc:
            st.aborted = str(exc)
            raise
        finally:
            st.server_seconds += time.perf_counter() - t0

    def _wire(self, stage: Stage, cid: str, direction: str, msg: Message) -> bytes:
        packed = any_pb2.Any()
        packed.Pack(msg)
        return self._deliver(stage, cid, direction, packed.SerializeToString())

    def _deliver(self, stage: Stage, cid: str, direction: str, data: bytes) -> bytes:
        return self.tamper(stage, cid, direction, data) if self.tamper else data

    def _unpack(self, stage: Stage, data: bytes) -> Message:
        """What the coordinator daemon does: parse the Any, unpack it into one of body_types(stage)."""
        packed = any_pb2.Any.FromString(data)
        for cls in self.server.body_types(stage):
            if packed.Is(cls.DESCRIPTOR):
                msg = cls()
                packed.Unpack(msg)
                return msg
        raise InvalidPayload(f"{Stage(stage).name}: body type {packed.type_url!r} is not accepted here")
