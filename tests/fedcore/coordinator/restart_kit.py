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
        self.models: dict[int, dict[bytes, np.ndarray]] = defaultdict(dict)   # model round -> sha -> params

    def model(self, payload: bytes, digest: bytes) -> None:
        msg = pb.Model()
        msg.ParseFromString(payload)
        params, _, round_ = decode_model(msg)
        if round_ > 0:
            self.models[round_][digest] = params

    def distinct(self, round_: int) -> list[np.ndarray]:
        return list(self.models[round_].values())


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
    return RoundEngine(cfg, TinyWorkload(stats=False), PlainServer(cfg.federation.id, cfg.mode_settings),
                       make_strategy(cfg.strategy.name, **cfg.strategy.options),
                       CheckpointStore(run_dir / "checkpoints"), clock=clock)


def start(run_dir, names, released, clock=None, examples: int | None = None, **sections):
    """An engine on ``run_dir`` and joined clients ``names`` (``examples`` overrides every weight)."""
    clock = clock or FakeClock()
    eng = plain_engine(run_dir, clock, **sections)
    clients = [DownloadingClient(eng, n, SPECS[n][0], examples or SPECS[n][1], released) for n in names]
    for c in clients:
        c.join()
    return eng, clients


def drive(eng, clients, until, kill_after: int | None = None, limit: int = 400) -> int:
    """Tick and let each client act, one event at a time, until ``until()``; with ``kill_after``,
    raise :class:`Killed` after that many events counted from the first one where
    ``eng.state.model_round`` moved (the round's aggregate exists). Returns the events counted."""
    counted, start_round = 0, eng.state.model_round

    def event(fn):
        nonlocal counted
        fn()
        if eng.state.model_round != start_round or counted:
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
