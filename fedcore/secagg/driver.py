"""An in-process round runner for any aggregation mode, for tests and benchmarks.

It plays the daemons' part of the :mod:`fedcore.common.aggregation` contract without gRPC: for
each stage it asks the server for every expected client's task, packs it into a
``google.protobuf.Any`` and serialises it to bytes, parses it back and hands it to the client;
the client's reply goes the same way (Any -> bytes -> Any -> one of ``body_types``) into
``accept``. So every message really crosses a serialisation boundary, and its bytes are counted.

Dropouts are scripted: ``drop[stage]`` lists clients that go silent at that stage (and stay
silent), e.g. ``{Stage.SECAGG_UNMASK: {"c3"}}`` for a client that dies after sending its masked
input. Time is split into the server's share (task, parse, accept, close, result) and the clients'
(parse, handle, serialise).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from google.protobuf import any_pb2

from fedcore.common.aggregation import (
    AggregateResult,
    AggregationContext,
    ClientJob,
    ClientMode,
    ServerMode,
)
from fedcore.common.errors import InvalidPayload
from fedcore.common.stages import Stage


@dataclass
class StageStats:
    stage: str
    expected: int
    responded: int
    dropped: list[str]
    server_s: float = 0.0      # task() + parse + accept() + close_stage() (+ result() after the last)
    client_s: float = 0.0      # sum over clients of parse + handle() + serialise
    client_max_s: float = 0.0  # the slowest client
    bytes_down: int = 0        # serialised task bodies, all clients
    bytes_up: int = 0          # serialised submissions, all clients


@dataclass
class RoundRun:
    result: AggregateResult
    stages: list[StageStats] = field(default_factory=list)

    @property
    def server_s(self) -> float:
        return sum(s.server_s for s in self.stages)

    @property
    def client_s(self) -> float:
        return sum(s.client_s for s in self.stages)

    @property
    def total_s(self) -> float:
        """Sequential cost of the round: every client's and the server's work, one after another."""
        return self.server_s + self.client_s


def _unpack_submission(raw: bytes, types: tuple) -> object:
    body = any_pb2.Any.FromString(raw)
    for cls in types:
        if body.Is(cls.DESCRIPTOR):
            msg = cls()
            body.Unpack(msg)
            return msg
    if types:
        raise InvalidPayload(f"submission of type {body.type_url!r} is not one of "
                             f"{[t.DESCRIPTOR.full_name for t in types]}")
    return body


class InProcessRound:
    """One aggregation across ``clients`` (id -> ClientMode) and ``server``, stage by stage."""

    def __init__(self, server: ServerMode, clients: Mapping[str, ClientMode], ctx: AggregationContext,
                 jobs: Mapping[str, ClientJob] | Callable[[str], ClientJob],
                 drop: Mapping[Stage, Iterable[str]] | None = None):
        self.server, self.clients, self.ctx = server, clients, ctx
        self._job = jobs if callable(jobs) else jobs.__getitem__
        self.drop = {Stage(k): frozenset(v) for k, v in (drop or {}).items()}
        self.dead: set[str] = set()
        self.stats: list[StageStats] = []
        self._begun = False

    def begin(self) -> None:
        t0 = time.perf_counter()
        self.server.begin(self.ctx)
        self._begin_s = time.perf_counter() - t0
        self._begun = True

    def run_stage(self, stage: Stage) -> StageStats:
        if not self._begun:
            self.begin()
        server = self.server
        t0 = time.perf_counter()
        expected = server.expected(stage)
        self.dead |= self.drop.get(Stage(stage), frozenset()) & expected
        alive = sorted(expected - self.dead)
        tasks = {cid: any_pb2.Any() for cid in alive}
        for cid in alive:
            tasks[cid].Pack(server.task(stage, cid))
        down = {cid: tasks[cid].SerializeToString() for cid in alive}
        stats = StageStats(Stage(stage).name, len(expected), 0, sorted(expected - set(alive)),
                           server_s=time.perf_counter() - t0 + getattr(self, "_begin_s", 0.0))
        self._begin_s = 0.0
        types = tuple(server.body_types(stage))
        for cid in alive:
            c0 = time.perf_counter()
            reply = self.clients[cid].handle(stage, any_pb2.Any.FromString(down[cid]), self._job(cid),
                                             self._no_blob)
            packed = any_pb2.Any()
            packed.Pack(reply)
            up = packed.SerializeToString()
            c1 = time.perf_counter()
            server.accept(stage, cid, _unpack_submission(up, types))
            stats.server_s += time.perf_counter() - c1
            stats.client_s += c1 - c0
            stats.client_max_s = max(stats.client_max_s, c1 - c0)
            stats.bytes_down += len(down[cid])
            stats.bytes_up += len(up)
        t1 = time.perf_counter()
        server.close_stage(stage, frozenset(alive))
        stats.server_s += time.perf_counter() - t1
        stats.responded = len(alive)
        self.stats.append(stats)
        return stats

    @staticmethod
    def _no_blob(name: str) -> bytes:
        raise KeyError(f"the in-process driver serves no blobs (asked for {name!r})")

    def run(self) -> RoundRun:
        """The stages of ``server.round_stages()`` not run yet, then ``result()``; exceptions propagate."""
        for stage in self.server.round_stages()[len(self.stats):]:
            self.run_stage(stage)
        t0 = time.perf_counter()
        result = self.server.result()
        self.stats[-1].server_s += time.perf_counter() - t0
        return RoundRun(result, self.stats)


def run_round(server: ServerMode, clients: Mapping[str, ClientMode], ctx: AggregationContext,
              jobs: Mapping[str, ClientJob] | Callable[[str], ClientJob],
              drop: Mapping[Stage, Iterable[str]] | None = None) -> RoundRun:
    """Run one full aggregation in process (see :class:`InProcessRound`)."""
    return InProcessRound(server, clients, ctx, jobs, drop).run()
