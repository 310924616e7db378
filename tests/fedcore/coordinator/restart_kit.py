"""Kill-and-restart harness for the round engine: clients that download what they are served and
record it, so a test can check what left the coordinator in each round.

A "kill" is an exception raised between two events (a tick or one client's poll-and-answer) or,
through ``RoundEngine.fault_hook``, at a named point inside a tick; the engine object is then
dropped, and a new one starts on the same run folder, as a restarted coordinator process would.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from fedcore_testkit import FakeClock, ScriptedClient, TinyWorkload, config

from fedcore.common.params import decode_model
from fedcore.common.stages import Stage
from fedcore.coordinator.checkpoint import CheckpointStore
from fedcore.coordinator.engine import RoundEngine
from fedcore.plain import PlainServer
from fedcore.proto.fedpsyau.v1 import federation_pb2 as pb
from fedcore.strategy import make_strategy


class Killed(Exception):
    """The coordinator process "died" here."""


class Released:
    """Everything the clients were served that is derived from an aggregate, per round."""

    def __init__(self):
        self.models: dict[int, dict[bytes, np.ndarray]] = defaultdict(dict)  # model round -> sha -> params
        self.sums: dict[int, list[np.ndarray]] = defaultdict(list)  # round -> decrypted CKKS sums (grid units)

    def model(self, payload: bytes, digest: bytes) -> None:
        msg = pb.Model()
        msg.ParseFromString(payload)
        params, _, round_ = decode_model(msg)
        if round_ > 0:
            self.models[round_][digest] = params

    def distinct(self, round_: int) -> list[np.ndarray]:
        return list(self.models[round_].values())

    def distinct_sums(self, round_: int, tolerance: int = 1) -> list[np.ndarray]:
        """The decrypted sums of ``round_`` that differ by more than ``tolerance`` grid units."""
        out: list[np.ndarray] = []
        for s in self.sums[round_]:
            if not any(np.abs(s - o).max() <= tolerance for o in out):
                out.append(s)
        return out


class DownloadingClient(ScriptedClient):
    """A scripted plain-mode client that fetches the model blob of each TRAIN/EVALUATE task, as the
    client daemon does, and records it."""

    def __init__(self, engine, cid, delta, examples, released: Released):
        super().__init__(engine, cid, delta, examples)
        self.released = released

    def step(self):
        if self.silent:
            return None
        task = self.task()
        stage = Stage(task.header.stage)
        if stage in (Stage.WAIT, Stage.DONE):
            return None
        if stage in (Stage.TRAIN, Stage.EVALUATE):
            body = pb.TrainTask() if stage == Stage.TRAIN else pb.EvaluateTask()
            task.body.Unpack(body)
            payload, digest = self.engine.download(self.cid, task.header, body.model_blob)
            self.released.model(payload, digest)
        return self.submit(self.answer(task))


SPECS = {"alice": (1.0, 10), "bob": (2.0, 30), "carol": (3.0, 20)}


def plain_engine(run_dir, clock, **sections) -> RoundEngine:
    cfg = config(run_dir, **sections)
    return RoundEngine(
        cfg,
        TinyWorkload(stats=False),
        PlainServer(cfg.federation.id, cfg.mode_settings),
        make_strategy(cfg.strategy.name, **cfg.strategy.options),
        CheckpointStore(run_dir / "checkpoints"),
        clock=clock,
    )


def start(run_dir, names, released, clock=None, examples: int | None = None, **sections):
    """An engine on ``run_dir`` and joined clients ``names`` (``examples`` overrides every weight)."""
    clock = clock or FakeClock()
    eng = plain_engine(run_dir, clock, **sections)
    clients = [DownloadingClient(eng, n, SPECS[n][0], examples or SPECS[n][1], released) for n in names]
    for c in clients:
        c.join()
    return eng, clients


def drive(eng, clients, until, kill_after: int | None = None, limit: int = 400, armed=None) -> int:
    """Tick and let each client act, one event at a time, until ``until()``; with ``kill_after``,
    raise :class:`Killed` after that many events counted from the first one after which
    ``armed()`` holds (default: ``eng.state.model_round`` moved, i.e. the round's aggregate
    exists). Returns the events counted."""
    counted, start_round = 0, eng.state.model_round
    armed = armed or (lambda: eng.state.model_round != start_round)

    def event(fn):
        nonlocal counted
        fn()
        if counted or armed():
            counted += 1
            if kill_after is not None and counted > kill_after:
                raise Killed(f"after {kill_after} events")

    for _ in range(limit):
        event(eng.tick)
        if until():
            return counted
        for c in clients:
            event(c.step)
    raise AssertionError(f"not done after {limit} steps (phase {eng.state.phase})")


# -- any mode, with the real client-side mode (used for ckks) ------------------------------------
class ModeClient(DownloadingClient):
    """A client that answers mode stages with a real :class:`ClientMode` (keys, encryption,
    decryption) and records every aggregate it can read: the model blobs, and the sums it decrypts."""

    def __init__(self, engine, cid, delta, examples, released: Released, mode):
        super().__init__(engine, cid, delta, examples, released)
        self.mode = mode
        self.jobs: dict[tuple[int, int], object] = {}

    def step(self):
        from fedcore.client.handlers import unpack_any
        from fedcore.common.aggregation import ClientJob

        if self.silent:
            return None
        task = self.task()
        stage = Stage(task.header.stage)
        if stage in (Stage.WAIT, Stage.DONE):
            return None
        h = task.header
        if stage in (Stage.TRAIN, Stage.EVALUATE):
            body = pb.TrainTask() if stage == Stage.TRAIN else pb.EvaluateTask()
            task.body.Unpack(body)
            payload, digest = self.engine.download(self.cid, h, body.model_blob)
            self.released.model(payload, digest)
            if stage == Stage.TRAIN:  # the same update in every attempt: the worst case for the coordinator
                size = self.engine.state.spec.size
                self.jobs[(h.round, h.attempt)] = ClientJob(
                    h.round, h.attempt, np.full(size, self.delta), float(self.examples)
                )
            return self.submit(self.answer(task))
        job = self.jobs.get((h.round, h.attempt))
        answer = self.mode.handle(
            stage, unpack_any(task.body), job, lambda name: self.engine.download(self.cid, h, name)[0]
        )
        if stage == Stage.CKKS_DECRYPT:
            self.released.sums[h.round].append(np.frombuffer(answer.units.data, "<i8").copy())
        return self.submit(answer)


def ckks_federation(run_dir, names, released, ca, clock=None, **sections):
    from fedcore.common.aggregation import ClientIdentity
    from fedcore.he.client import CkksClient
    from fedcore.he.server import CkksServer
    from fedcore.transport.certs import issue_client

    clock = clock or FakeClock()
    sections.setdefault("federation", {}).update({"aggregation": "ckks", "min_clients": 3})
    cfg = config(run_dir, **sections)
    eng = RoundEngine(
        cfg,
        TinyWorkload(stats=False),
        CkksServer(cfg.federation.id, cfg.mode_settings),
        make_strategy(cfg.strategy.name, **cfg.strategy.options),
        CheckpointStore(run_dir / "checkpoints"),
        clock=clock,
    )
    clients = []
    for n in names:
        creds = issue_client(ca, n)
        identity = ClientIdentity(n, creds.cert_pem, creds.key_pem, ca.cert_pem)
        clients.append(
            ModeClient(
                eng,
                n,
                CKKS_SPECS[n][0],
                CKKS_SPECS[n][1],
                released,
                CkksClient(identity, cfg.federation.id, cfg.mode_settings),
            )
        )
    for c in clients:
        c.join()
    return eng, clients


CKKS_SPECS = {"alice": (1.0, 10), "bob": (2.0, 30), "carol": (3.0, 20), "dave": (4.0, 40)}
