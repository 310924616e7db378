"""Helpers for fedcore's tests: a tiny numpy workload, configs, a fake clock, and a scripted
client that speaks to a :class:`RoundEngine` directly (no gRPC) the way the client daemon does."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from google.protobuf import any_pb2

from fedcore.common.params import ParamSpec, TensorSpec, decode_model, encode_vector
from fedcore.common.stages import Stage
from fedcore.config.coordinator import CoordinatorConfig, parse_coordinator
from fedcore.coordinator.checkpoint import CheckpointStore
from fedcore.coordinator.engine import RoundEngine
from fedcore.plain import PlainServer
from fedcore.proto.fedpsyau.v1 import federation_pb2 as pb
from fedcore.strategy import make_strategy
from fedcore.transport.chunks import sha256

FED = "fed-test"
SPEC = ParamSpec((TensorSpec("w", (2, 3)), TensorSpec("b", (2,))))


class TinyWorkload:
    """8 parameters starting at 0..7; statistics of length 3 (max value 100) unless disabled."""

    name = "tiny"

    def __init__(self, stats: bool = True, size: int | None = None):
        self.stats = stats
        self.spec = SPEC if size is None else ParamSpec((TensorSpec("w", (size,)),))

    def initial_parameters(self, settings, seed):
        return np.arange(self.spec.size, dtype=np.float32), self.spec

    def statistics_spec(self, settings):
        return (3, 100.0) if self.stats else None

    def make_trainer(self, settings, client_id, workdir, device):  # pragma: no cover - not used here
        raise NotImplementedError


def config(run_dir: Path, **sections: dict[str, Any]) -> CoordinatorConfig:
    data: dict[str, Any] = {
        "federation": {"id": FED, "rounds": 2, "aggregation": "plain", "min_clients": 2, "workload": "tests:unused"},
        "server": {"address": "127.0.0.1:0", "run_dir": str(run_dir)},
        "deadlines": {
            "join": 10.0,
            "train": 30.0,
            "stage": 20.0,
            "evaluate": 15.0,
            "heartbeat_interval": 1.0,
            "heartbeat_timeout": 5.0,
            "max_round_retries": 1,
            "poll_interval": 0.1,
        },
    }
    for name, table in sections.items():
        data.setdefault(name, {}).update(table)
    return parse_coordinator(data, run_dir, insecure=True)


class FakeClock:
    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, dt: float) -> None:
        self.t += dt


def make_engine(run_dir: Path, clock=None, workload=None, **sections) -> RoundEngine:
    """An engine in plain mode over ``run_dir``; ``clock`` defaults to a FakeClock that never moves."""
    cfg = config(run_dir, **sections)
    return RoundEngine(
        cfg,
        workload or TinyWorkload(),
        PlainServer(FED, cfg.mode_settings),
        make_strategy(cfg.strategy.name, **cfg.strategy.options),
        CheckpointStore(run_dir / "checkpoints"),
        clock=clock or FakeClock(),
    )


def packed(msg) -> bytes:
    body = any_pb2.Any()
    body.Pack(msg)
    return body.SerializeToString()


class ScriptedClient:
    """Answers the engine's tasks like a client daemon would; its update is a constant delta."""

    def __init__(
        self,
        engine: RoundEngine,
        cid: str,
        delta: float = 1.0,
        examples: int = 10,
        stats=(1.0, 2.0, 3.0),
        fed: str = FED,
    ):
        self.engine, self.cid, self.delta, self.examples, self.stats, self.fed = (
            engine,
            cid,
            delta,
            examples,
            stats,
            fed,
        )
        self.last_task: pb.Task | None = None
        self.train_report = pb.TrainReport(ready=True, metrics={"loss": 1.0})
        self.silent = False

    def hdr(self, **kw) -> pb.Header:
        h = pb.Header(federation_id=self.fed, client_id=self.cid)
        for k, v in kw.items():
            setattr(h, k, v)
        return h

    def join(self) -> pb.JoinReply:
        return self.engine.join(self.cid, self.hdr())

    def task(self) -> pb.Task:
        self.last_task = self.engine.task(self.cid, self.hdr())
        return self.last_task

    def heartbeat(self) -> None:
        self.engine.heartbeat(self.cid, self.hdr())

    def submit(self, msg, header: pb.Header | None = None) -> pb.SubmitReply:
        payload = packed(msg)
        h = header if header is not None else self.last_task.header
        return self.engine.submit(self.cid, h, payload, sha256(payload))

    def answer(self, task: pb.Task):
        """The message this client submits for ``task``."""
        stage = Stage(task.header.stage)
        if stage == Stage.TRAIN:
            return self.train_report
        if stage == Stage.STATS:
            return pb.StatsReport(ready=True)
        if stage == Stage.PLAIN_INPUT:
            size = self.engine.state.spec.size
            vec = np.asarray(self.stats, np.float64) if task.header.round == 0 else np.full(size, self.delta)
            w = 1.0 if task.header.round == 0 else float(self.examples)
            return pb.PlainInput(weighted_update=encode_vector(vec * w, "float64"), weight=w)
        if stage == Stage.EVALUATE:
            return pb.EvaluateReport(metrics={"loss": 0.5}, num_examples=4, num_classes=2, confusion=[2, 0, 1, 1])
        raise AssertionError(f"no answer for stage {stage.name}")

    def step(self) -> pb.SubmitReply | None:
        """Poll once and answer the task if there is one (a silent client only polls)."""
        if self.silent:
            return None
        task = self.task()
        if task.header.stage in (Stage.WAIT, Stage.DONE):
            return None
        return self.submit(self.answer(task))


def model_of(engine: RoundEngine) -> np.ndarray:
    return engine.state.params.copy()


def blob_model(engine: RoundEngine) -> np.ndarray:
    model = pb.Model()
    model.ParseFromString(engine.state.blob.payload)
    return decode_model(model)[0]


def run_until(engine: RoundEngine, clients, done, limit: int = 200) -> None:
    """Let every client poll/answer and the engine tick until ``done()``, at most ``limit`` steps."""
    for _ in range(limit):
        engine.tick()
        if done():
            return
        for c in clients:
            c.step()
    raise AssertionError(f"not done after {limit} steps (phase {engine.state.phase})")


@contextmanager
def served_engine(engine: RoundEngine, pki, *, drive: bool = False, max_payload_bytes: int = 1 << 30):
    """Serve ``engine`` over mTLS on a loopback port (yields the port); ``drive`` runs its driver thread."""
    from fedcore.coordinator.servicer import FederationServicer
    from fedcore.transport.server import serve

    bound = serve(FederationServicer(engine, max_payload_bytes=max_payload_bytes), "127.0.0.1:0", pki.tls("server"))
    stop = threading.Event()
    driver = threading.Thread(target=engine.run, args=(stop,), daemon=True) if drive else None
    if driver:
        driver.start()
    try:
        yield bound.port
    finally:
        stop.set()
        with engine.changed:
            engine.changed.notify_all()
        if driver:
            driver.join(timeout=5)
        bound.stop(grace=None)
