"""A client whose configuration or data is broken stops the federation at once with its message;
other refusals are retried, and the retry says why."""

from __future__ import annotations

import json

import pytest
from fedcore_testkit import FED, ScriptedClient, TinyWorkload, make_engine, served_engine

from fedcore.client.cache import UpdateCache
from fedcore.client.connection import Connection
from fedcore.client.handlers import StageHandlers
from fedcore.common.aggregation import ClientIdentity
from fedcore.common.stages import Stage
from fedcore.coordinator.refusals import STARTUP_PREFIX, fatal_reason, fatal_refusal
from fedcore.coordinator.state import Phase
from fedcore.dp.config import PrivacyConfigError
from fedcore.plain import PlainClient
from fedcore.proto.fedpsyau.v1 import federation_pb2 as pb


@pytest.mark.parametrize(
    "refusal, fatal",
    [
        (STARTUP_PREFIX + "client alice: DataError: no coding sheet in /data", True),
        ("training failed: PrivacyConfigError: privacy config:\n  - target_epsilon must be > 0 (got -1)", True),
        ("training failed: ConfigError: [workload] data: missing", True),
        ("training failed: FileNotFoundError: [Errno 2] No such file or directory: '/x'", True),
        ("training failed: MyWorkloadConfigError: bad key", True),
        ("this workload computes no statistics", True),
        ("statistics refused: [privacy] statistics_epsilon / delta: must be > 0", True),
        ("statistics refused: privacy ledger: the ledger's digest does not match", True),
        ("training failed: RuntimeError: CUDA out of memory", False),
        ("round 3: privacy budget exhausted: epsilon spent 7.9 of target 8", False),
        ("statistics refused: privacy budget exhausted: the statistics release would bring epsilon to 9", False),
        ("the trainer returned 3 NaN/Inf parameters", False),
        ("", False),
    ],
)
def test_only_broken_configuration_or_data_is_fatal(refusal, fatal):
    assert fatal_refusal(refusal) is fatal


def test_the_abort_reason_is_one_line_naming_the_client_and_its_words():
    why = fatal_reason(
        {
            "alice": "training failed: PrivacyConfigError: privacy config:\n  - target_epsilon must be > 0",
            "bob": "training failed: RuntimeError: flaky",
        },
        2,
    )
    assert "\n" not in why and why.startswith("alice cannot take part (round 2)")
    assert "target_epsilon must be > 0" in why and "bob" not in why


def _three(tmp_path):
    engine = make_engine(tmp_path, workload=TinyWorkload(stats=False), federation={"min_clients": 3})
    clients = [ScriptedClient(engine, c) for c in ("alice", "bob", "carol")]
    for c in clients:
        c.join()
    engine.tick()
    assert engine.state.phase == Phase.TRAIN
    return engine, clients


def test_a_broken_client_aborts_at_once_before_the_others_answer(tmp_path):
    engine, (alice, bob, _carol) = _three(tmp_path)
    alice.train_report = pb.TrainReport(
        ready=False, refusal="training failed: PrivacyConfigError: target_epsilon must be > 0 (got -1)"
    )
    alice.step()
    engine.tick()
    assert engine.state.phase == Phase.ABORTED and engine.state.attempt == 0  # no retry
    assert "alice cannot take part (round 1)" in engine.state.outcome
    assert "target_epsilon must be > 0 (got -1)" in engine.state.outcome
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "aborted" and "target_epsilon must be > 0" in summary["reason"]
    done = bob.task()
    assert done.header.stage == Stage.DONE  # the others are told


def test_a_client_that_cannot_start_is_fatal_in_round_0(tmp_path):
    engine = make_engine(tmp_path, federation={"min_clients": 3})
    clients = [ScriptedClient(engine, c) for c in ("alice", "bob", "carol")]
    for c in clients:
        c.join()
    engine.tick()
    assert engine.state.phase == Phase.STATS
    task = clients[0].task()
    clients[0].submit(
        pb.StatsReport(ready=False, refusal=STARTUP_PREFIX + "client alice: ValueError: no data"), task.header
    )
    engine.tick()
    assert engine.state.phase == Phase.ABORTED and "no data" in engine.state.outcome


def test_a_transient_refusal_is_retried_and_the_retry_says_why(tmp_path, caplog):
    engine, (alice, bob, carol) = _three(tmp_path)
    alice.train_report = pb.TrainReport(ready=False, refusal="training failed: RuntimeError: flaky")
    for c in (alice, bob, carol):
        c.step()
    engine.tick()
    assert engine.state.phase != Phase.ABORTED and engine.state.attempt == 1
    assert "refused by alice: training failed: RuntimeError: flaky" in caplog.text


class BrokenPrivacyTrainer:
    def fit(self, params, spec, round, config, statistics):
        raise PrivacyConfigError(["target_epsilon must be > 0 (got -1.0)"])

    def evaluate(self, params, spec, round, config, statistics):  # pragma: no cover - never reached
        raise AssertionError

    def statistics(self, config):  # pragma: no cover
        return None


def test_the_real_handlers_report_a_privacy_config_error_that_aborts_the_federation(tmp_path, pki):
    """The refusal text is the client handlers' own (a format change there would fail this)."""
    engine = make_engine(tmp_path, workload=TinyWorkload(stats=False))
    with served_engine(engine, pki) as port:
        conns = {
            c: Connection(f"127.0.0.1:{port}", pki.tls(c), client_id=c, federation_id=FED, reconnect_timeout=5)
            for c in ("alice", "bob")
        }
        try:
            for conn in conns.values():
                conn.join("t")
            engine.tick()
            conn = conns["alice"]
            task = conn.get_task(pb.Header())
            assert task.header.stage == Stage.TRAIN
            handlers = StageHandlers(
                BrokenPrivacyTrainer(),
                PlainClient(ClientIdentity("alice"), FED, {}),
                conn,
                UpdateCache(tmp_path / "cache"),
                {},
                federation=FED,
                run_id="r",
            )
            report = handlers.handle(task)
            assert not report.ready and fatal_refusal(report.refusal)
            from google.protobuf import any_pb2

            body = any_pb2.Any()
            body.Pack(report)
            conn.submit(task.header, body.SerializeToString())
            engine.tick()
            assert engine.state.phase == Phase.ABORTED
            assert "target_epsilon must be > 0 (got -1.0)" in engine.state.outcome
        finally:
            for conn in conns.values():
                conn.close()
