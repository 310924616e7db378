"""The round engine with a fake clock and scripted clients, in plain mode (no gRPC)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fedcore_testkit import (
    FED,
    FakeClock,
    ScriptedClient,
    blob_model,
    make_engine,
    packed,
    run_until,
)

from fedcore.common.errors import InvalidPayload, NotAuthorized, WrongStage
from fedcore.common.params import encode_vector
from fedcore.common.stages import Stage
from fedcore.coordinator.checkpoint import CheckpointStore
from fedcore.coordinator.state import Phase
from fedcore.proto.fedpsyau.v1 import federation_pb2 as pb
from fedcore.transport.chunks import sha256


def _federation(tmp_path, n=3, clock=None, **sections):
    clock = clock or FakeClock()
    eng = make_engine(tmp_path, clock, **sections)
    specs = [("alice", 1.0, 10), ("bob", 2.0, 30), ("carol", 3.0, 10), ("dave", 4.0, 10)][:n]
    clients = [ScriptedClient(eng, cid, delta, ex) for cid, delta, ex in specs]
    for c in clients:
        c.join()
    return eng, clients, clock


def _open_stage(eng, stage: Stage, clients):
    run_until(eng, clients, lambda: eng.state.stage is not None and eng.state.stage.stage == stage)


def test_full_run_applies_weighted_mean_and_records_each_round_once(tmp_path):
    eng, clients, _ = _federation(tmp_path)
    run_until(eng, clients, lambda: eng.finished)
    assert eng.state.phase == Phase.DONE
    # weighted mean delta = (1*10 + 2*30 + 3*10) / 50 = 2 per round, two rounds of FedAvg
    np.testing.assert_allclose(eng.state.params, np.arange(8) + 4.0)
    np.testing.assert_allclose(eng.state.statistics, [3.0, 6.0, 9.0])
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [x["round"] for x in lines] == [1, 2]
    assert lines[0]["contributors"] == 3 and lines[0]["clients"] == ["alice", "bob", "carol"]
    # pooled confusion [[6,0],[3,3]]: accuracy 0.75, recall (1, .5) -> UAR .75, F1 (.8, .667) -> UF1 .733
    assert lines[1]["eval"]["accuracy"] == pytest.approx(0.75)
    assert lines[1]["eval"]["uar"] == pytest.approx(0.75)
    assert lines[1]["eval"]["uf1"] == pytest.approx((0.8 + 2 / 3) / 2)
    assert lines[0]["bytes_up"] > 0 and lines[0]["bytes_down"] > 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["rounds"] == 2 and summary["aggregation"] == "plain"
    ckpt = CheckpointStore(tmp_path / "checkpoints").load_latest()
    assert ckpt.round == 2 and len(ckpt.history) == 2
    np.testing.assert_allclose(ckpt.params, eng.state.params)


def test_done_task_tells_clients_the_outcome(tmp_path):
    eng, clients, _ = _federation(tmp_path)
    run_until(eng, clients, lambda: eng.finished)
    task = clients[0].task()
    done = pb.DoneTask()
    task.body.Unpack(done)
    assert task.header.stage == Stage.DONE and done.success and "2 rounds" in done.reason


def test_wrong_round_stage_or_attempt_is_refused_and_changes_nothing(tmp_path):
    eng, clients, _ = _federation(tmp_path)
    _open_stage(eng, Stage.TRAIN, clients)
    alice = clients[0]
    task = alice.task()
    good = task.header
    for change in (
        {"round": good.round + 1},
        {"stage": int(Stage.EVALUATE)},
        {"attempt": good.attempt + 1},
        {"round": 0},
    ):
        bad = pb.Header()
        bad.CopyFrom(good)
        for k, v in change.items():
            setattr(bad, k, v)
        with pytest.raises(WrongStage, match="expected round"):
            alice.submit(alice.answer(task), header=bad)
        with pytest.raises(WrongStage):
            eng.download("alice", bad, task.body and eng.state.blob.name)
    assert eng.state.stage.responded == set() and eng.state.train_reports == {}
    assert alice.submit(alice.answer(task)).duplicate is False
    assert eng.state.stage.responded == {"alice"}


def test_duplicate_submission_is_idempotent_and_a_different_one_refused(tmp_path):
    eng, clients, _ = _federation(tmp_path)
    _open_stage(eng, Stage.TRAIN, clients)
    alice = clients[0]
    task = alice.task()
    first = alice.submit(alice.answer(task))
    again = alice.submit(alice.answer(task))
    assert not first.duplicate and again.duplicate
    assert eng.state.train_reports["alice"].metrics["loss"] == 1.0
    with pytest.raises(WrongStage, match="different result"):
        alice.submit(pb.TrainReport(ready=True, metrics={"loss": 9.0}), header=task.header)
    assert eng.state.train_reports["alice"].metrics["loss"] == 1.0


def test_bad_bodies_are_discarded_and_the_client_may_resubmit(tmp_path):
    eng, clients, _ = _federation(tmp_path, n=2)
    run_until(eng, clients, lambda: eng.state.phase == Phase.AGGREGATE)
    alice = clients[0]
    task = alice.task()
    assert task.header.stage == Stage.PLAIN_INPUT
    size = eng.state.spec.size
    bad_inputs = [
        pb.TrainReport(ready=True),  # wrong Any type
        pb.PlainInput(weighted_update=encode_vector(np.ones(size + 1), "float64"), weight=1.0),  # wrong shape
        pb.PlainInput(weighted_update=encode_vector(np.ones(size, np.float32), "float32"), weight=1.0),  # dtype
        pb.PlainInput(weighted_update=encode_vector(np.full(size, np.nan), "float64"), weight=1.0),  # NaN
        pb.PlainInput(weighted_update=encode_vector(np.full(size, np.inf), "float64"), weight=1.0),  # Inf
    ]
    for msg in bad_inputs:
        with pytest.raises(InvalidPayload):
            alice.submit(msg)
        assert "alice" in eng.state.stage.pending and (int(Stage.PLAIN_INPUT), "alice") not in eng.state.submissions
    with pytest.raises(InvalidPayload, match="not a serialized"):
        eng.submit("alice", task.header, b"\xff\xff\xff", sha256(b"\xff\xff\xff"))
    assert alice.submit(alice.answer(task)).duplicate is False
    assert eng.state.stage.responded == {"alice"}


def test_stage_deadline_proceeds_with_the_clients_that_finished(tmp_path):
    eng, clients, clock = _federation(tmp_path, n=3, federation={"rounds": 1})
    _open_stage(eng, Stage.TRAIN, clients)
    clients[2].silent = True
    for c in clients[:2]:
        c.step()
    eng.tick()
    assert eng.state.phase == Phase.TRAIN  # carol may still answer
    clock.advance(31)  # past the train deadline (30 s); everyone keeps heart-beating
    for c in clients:
        c.heartbeat()
    eng.tick()
    assert eng.state.phase == Phase.AGGREGATE and eng.state.participants == ("alice", "bob")
    clients[2].silent = False  # carol is back: not in this aggregation, but she evaluates
    run_until(eng, clients, lambda: eng.finished)
    assert set(eng.state.eval_reports) == {"alice", "bob", "carol"}
    # alice 1*10, bob 2*30 -> mean 70/40
    np.testing.assert_allclose(eng.state.params, np.arange(8) + 70 / 40)


def test_too_few_clients_retries_with_a_new_attempt_then_aborts(tmp_path):
    eng, clients, clock = _federation(tmp_path, n=2)
    _open_stage(eng, Stage.TRAIN, clients)
    assert eng.state.attempt == 0
    clients[0].step()  # only alice answers; min_clients = 2
    clock.advance(31)
    for c in clients:
        c.heartbeat()
    eng.tick()
    assert eng.state.phase == Phase.TRAIN and eng.state.attempt == 1 and eng.state.round == 1
    clock.advance(31)
    for c in clients:
        c.heartbeat()
    eng.tick()
    assert eng.state.phase == Phase.ABORTED
    assert "round 1 failed 2 times" in eng.state.outcome and "only 0 of 2" in eng.state.outcome
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "aborted" and summary["rounds"] == 0
    done = pb.DoneTask()
    clients[0].task().body.Unpack(done)
    assert not done.success


def test_dead_client_is_dropped_from_the_stage_at_once(tmp_path):
    eng, clients, clock = _federation(tmp_path, n=3, federation={"rounds": 1})
    _open_stage(eng, Stage.TRAIN, clients)
    clients[2].silent = True
    for c in clients[:2]:
        c.step()
    clock.advance(6)  # past heartbeat_timeout (5 s), well before the train deadline (30 s)
    for c in clients[:2]:
        c.heartbeat()
    eng.tick()
    assert eng.state.phase == Phase.AGGREGATE
    assert "carol" not in eng.registry.alive()
    run_until(eng, clients[:2], lambda: eng.finished)
    assert eng.state.phase == Phase.DONE


def test_budget_exhausted_client_is_excluded_from_later_rounds(tmp_path):
    eng, clients, _ = _federation(tmp_path, n=3, federation={"rounds": 2, "min_clients": 2})
    clients[2].train_report = pb.TrainReport(
        ready=False,
        refusal="epsilon 8.2 would exceed the budget 8.0",
        privacy=pb.PrivacyReport(enabled=True, epsilon=7.9, delta=1e-5, accountant="rdp", exhausted=True),
    )
    run_until(eng, clients, lambda: eng.finished)
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lines[0]["refused"] == {"carol": "epsilon 8.2 would exceed the budget 8.0"}
    assert lines[1]["clients"] == ["alice", "bob"] and lines[1]["excluded"] == ["carol"]
    assert lines[1]["privacy"]["carol"]["exhausted"] is True
    assert lines[1]["epsilon_max"] == pytest.approx(7.9)


def test_foreign_federation_and_unknown_clients_are_refused(tmp_path):
    eng, _clients, _ = _federation(tmp_path, n=2)
    with pytest.raises(NotAuthorized, match="fed-test"):
        eng.join("mallory", pb.Header(federation_id="other-fed", client_id="mallory"))
    with pytest.raises(WrongStage, match="has not joined"):
        eng.task("mallory", pb.Header(federation_id=FED, client_id="mallory"))
    assert "mallory" not in eng.registry


def test_join_deadline_before_the_first_round_keeps_waiting(tmp_path):
    clock = FakeClock()
    eng = make_engine(tmp_path, clock)
    alice = ScriptedClient(eng, "alice")
    alice.join()
    for _ in range(3):
        clock.advance(11)  # past the join deadline (10 s)
        alice.heartbeat()
        eng.tick()
    assert eng.state.phase == Phase.JOINING and not eng.finished
    bob = ScriptedClient(eng, "bob")
    bob.join()
    eng.tick()
    assert eng.state.phase == Phase.STATS


def test_restart_resumes_at_the_next_round_with_a_new_attempt(tmp_path):
    eng, clients, _ = _federation(tmp_path, n=2, federation={"rounds": 3})
    run_until(eng, clients, lambda: eng.state.history and eng.state.phase == Phase.TRAIN and eng.state.round == 2)
    in_flight = eng.state.attempt
    params_after_1 = eng.state.params.copy()
    # the process dies here; a new engine starts on the same run_dir
    eng2, clients2, _ = _federation(tmp_path, n=2, federation={"rounds": 3})
    np.testing.assert_allclose(eng2.state.params, params_after_1)
    run_until(eng2, clients2, lambda: eng2.state.phase == Phase.TRAIN)
    assert eng2.state.round == 2 and eng2.state.attempt == in_flight + 1
    assert eng2.state.statistics is not None  # round 0 not repeated
    run_until(eng2, clients2, lambda: eng2.finished)
    rounds = [json.loads(x)["round"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rounds == [1, 2, 3]


def test_evaluate_every_skips_evaluation_but_not_after_the_last_round(tmp_path):
    eng, clients, _ = _federation(tmp_path, n=2, federation={"rounds": 3, "evaluate_every": 2})
    run_until(eng, clients, lambda: eng.finished)
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [bool(x["eval"]) for x in lines] == [False, True, True]


def test_model_blob_matches_the_global_model_and_its_hash(tmp_path):
    eng, clients, _ = _federation(tmp_path)
    _open_stage(eng, Stage.TRAIN, clients)
    task = clients[0].task()
    train = pb.TrainTask()
    task.body.Unpack(train)
    payload, digest = eng.download("alice", task.header, train.model_blob)
    assert digest == sha256(payload) == train.model_sha256
    np.testing.assert_array_equal(blob_model(eng), np.arange(8, dtype=np.float32))
    assert list(np.frombuffer(train.statistics.data, "<f8")) == [3.0, 6.0, 9.0]


def test_unknown_blob_is_not_found(tmp_path):
    from fedcore.transport.status import UnknownBlob

    eng, clients, _ = _federation(tmp_path)
    _open_stage(eng, Stage.TRAIN, clients)
    task = clients[0].task()
    with pytest.raises(UnknownBlob, match="model/99"):
        eng.download("alice", task.header, "model/99")


def test_submission_from_a_client_not_selected_is_refused(tmp_path):
    eng, clients, _ = _federation(tmp_path, n=3, federation={"fraction": 0.5, "min_clients": 2})
    _open_stage(eng, Stage.TRAIN, clients)
    left_out = [c for c in clients if c.cid not in eng.state.selected]
    assert len(eng.state.selected) == 2 and len(left_out) == 1
    outsider = left_out[0]
    assert outsider.task().header.stage == Stage.WAIT
    header = clients[0].hdr(round=eng.state.round, stage=int(Stage.TRAIN), attempt=eng.state.attempt)
    header.client_id = outsider.cid
    with pytest.raises(WrongStage, match="not expected"):
        outsider.submit(pb.TrainReport(ready=True), header=header)
    assert packed(pb.TrainReport()) is not None
