"""Stopping a federation on request: after the round in flight, told to the clients, resumable;
the run folder's lock that keeps a second coordinator off it."""

from __future__ import annotations

import json

import pytest
from fedcore_testkit import ScriptedClient, TinyWorkload, make_engine, run_until

from fedcore.common.errors import ConfigError
from fedcore.common.stages import Stage
from fedcore.coordinator import control, phases
from fedcore.coordinator.state import Phase


def _engine(tmp_path, rounds=3):
    engine = make_engine(tmp_path, workload=TinyWorkload(stats=False), federation={"rounds": rounds})
    clients = [ScriptedClient(engine, c) for c in ("alice", "bob")]
    for c in clients:
        c.join()
    return engine, clients


def test_a_stop_request_ends_after_the_round_in_flight_and_a_restart_resumes(tmp_path):
    engine, clients = _engine(tmp_path)
    engine.tick()
    assert engine.state.phase == Phase.TRAIN and engine.state.round == 1
    with engine.lock:
        phases.request_stop(engine, "fedcore stop by test")
    run_until(engine, clients, lambda: engine.finished)
    assert engine.state.phase == Phase.DONE and len(engine.state.history) == 1  # round 1 completed, no round 2
    assert engine.state.outcome.startswith("stopped on request (fedcore stop by test) after round 1 of 3")
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "stopped" and summary["rounds"] == 1
    done = clients[0].task()
    assert done.header.stage == Stage.DONE

    again, clients = _engine(tmp_path)
    assert again.state.next_round == 2
    run_until(again, clients, lambda: again.finished)
    assert again.state.phase == Phase.DONE and len(again.state.history) == 3
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "completed"


def test_a_stop_while_waiting_for_clients_stops_at_once(tmp_path):
    engine = make_engine(tmp_path, workload=TinyWorkload(stats=False))
    engine.tick()
    assert engine.state.phase == Phase.JOINING
    with engine.lock:
        phases.request_stop(engine, "test")
    engine.tick()
    assert engine.state.phase == Phase.DONE and "after round 0" in engine.state.outcome


def test_a_stop_after_the_last_round_is_a_completed_run(tmp_path):
    engine, clients = _engine(tmp_path, rounds=1)
    engine.tick()
    with engine.lock:
        phases.request_stop(engine, "test")
    run_until(engine, clients, lambda: engine.finished)
    assert engine.state.outcome == "all 1 rounds completed"


def test_a_second_coordinator_on_the_same_run_dir_is_refused(tmp_path):
    with control.RunLock(tmp_path):
        assert control.running_pid(tmp_path) is not None
        with pytest.raises(ConfigError, match="in use by another coordinator"):
            control.RunLock(tmp_path).acquire()
    assert control.running_pid(tmp_path) is None  # released with the lock
    control.RunLock(tmp_path).acquire().release()


def test_stop_requests_are_written_read_and_cleared(tmp_path):
    assert control.read_stop(tmp_path) is None
    control.request_stop(tmp_path, "because")
    assert control.read_stop(tmp_path)["reason"] == "because"
    (tmp_path / control.STOP_FILE).write_text("{not json")
    assert "not JSON" in control.read_stop(tmp_path)["reason"]  # still a request
    assert control.clear_stop(tmp_path) and control.read_stop(tmp_path) is None
