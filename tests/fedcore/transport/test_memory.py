"""The in-memory transport: the daemons' engine and clients in one process, on a manual clock.

Dropouts and stragglers are scripted and seen the way the daemons see them (heartbeat expiry,
stage deadlines), without sleeping; refusals reach the client as the errors it gets over gRPC."""

from __future__ import annotations

import json
import time

import numpy as np

import pytest

from fedcore.common.stages import Stage
from fedcore.common.errors import InvalidPayload, NotAuthorized, WrongStage
from fedcore.config.client import load_client_config
from fedcore.config.coordinator import load_coordinator_config
from fedcore.proto.fedpsyau.v1 import federation_pb2 as pb
from fedcore.provision import client_toml, provision
from fedcore.simulation import MEMORY_ADDRESS, simulate
from fedcore.simulation_memory import Faults, ManualClock, MemoryFederation
from fedcore.transport.chunks import PayloadTooLarge


def _run(tmp_path, **kwargs):
    res = simulate(out=tmp_path / "run", transport="memory", echo=False, **kwargs)
    return res


def test_a_client_dead_after_its_masked_input_is_recovered_by_the_unmask_stage(tmp_path):
    res = _run(
        tmp_path,
        clients=4,
        rounds=2,
        aggregation="secagg",
        faults=Faults(silent_at={("SECAGG_UNMASK", 1): {"client4"}}),
    )
    assert res.returncode == 0, res.summary
    first, second = res.metrics
    assert first["contributors"] == 4  # its masked input counts: its self-mask is recovered
    assert "client4" in first["notes"]["dropouts"]["unmask"]
    assert second["contributors"] == 3 and "client4" not in second["clients"]  # dead: not selected again
    assert res.client_returncodes["client4"] is None  # it never learned the end: it was "dead"


def test_a_client_silent_before_its_masked_input_is_left_out_of_the_sum(tmp_path):
    res = _run(
        tmp_path,
        clients=4,
        rounds=1,
        aggregation="secagg",
        faults=Faults(silent_at={("SECAGG_MASKED_INPUT", 1): {"client2"}}),
    )
    assert res.returncode == 0, res.summary
    (line,) = res.metrics
    assert line["contributors"] == 3
    assert "client2" in line["notes"]["dropouts"]["masked_input"]


def test_a_straggler_past_the_stage_deadline_is_dropped_and_no_one_sleeps(tmp_path):
    started = time.monotonic()
    res = _run(
        tmp_path,
        clients=4,
        rounds=1,
        aggregation="plain",
        deadlines={"train": 50.0},
        faults=Faults(late={"client3": 80.0}),
    )
    assert res.returncode == 0, res.summary
    (line,) = res.metrics
    assert line["contributors"] == 3 and "client3" not in line["train"]
    assert line["seconds"] >= 50.0  # simulated: the round waited out the deadline ...
    assert time.monotonic() - started < 50.0  # ... without waiting for it in real time


def test_a_straggler_within_the_deadline_still_counts(tmp_path):
    res = _run(
        tmp_path,
        clients=3,
        rounds=1,
        aggregation="plain",
        deadlines={"train": 50.0},
        faults=Faults(late={"client3": 20.0}),
    )
    assert res.returncode == 0
    assert res.metrics[0]["contributors"] == 3 and res.metrics[0]["seconds"] >= 20.0


def test_unknown_fault_stage_is_refused():
    with pytest.raises(ValueError, match="unknown stage 'UNMASK'"):
        Faults(silent_at={"UNMASK": {"c1"}}).goes_silent("c1", Stage.TRAIN, 1)


def test_memory_simulation_writes_what_a_grpc_one_writes(tmp_path):
    res = _run(tmp_path, clients=3, rounds=2, aggregation="secagg")
    assert res.returncode == 0
    assert [m["round"] for m in res.metrics] == [1, 2]
    assert res.summary["status"] == "completed" and res.summary["wall_seconds"] > 0
    assert (res.run_dir / "checkpoints").is_dir() and (res.run_dir / "logs" / "federation.log").stat().st_size > 0
    assert res.metrics[-1]["bytes_up"] > 0 and res.metrics[-1]["bytes_down"] > 0


# -- the connection itself --------------------------------------------------------------------
@pytest.fixture
def federation(tmp_path):
    prov = provision(
        tmp_path / "pki",
        ["client1", "client2", "client3"],
        address="127.0.0.1:1",
        aggregation="plain",
        rounds=1,
        min_clients=3,
        server={"run_dir": str(tmp_path / "run")},
        limits={"max_payload_bytes": 4096},
    )
    clients = []
    for cid in ("client1", "client2", "client3"):
        prov.client_configs[cid].write_text(
            client_toml(
                cid,
                federation="fedpsyau",
                coordinator=MEMORY_ADDRESS,
                workload="fedcore.examples.softmax:workload",
                settings={"client_index": int(cid[-1]) - 1, "num_clients": 3},
            )
        )
        clients.append(load_client_config(prov.client_configs[cid]))
    return MemoryFederation(load_coordinator_config(prov.coordinator_config), clients, clock=ManualClock())


def test_a_header_claiming_another_client_is_refused(federation):
    conn = federation.daemons["client1"].conn
    with pytest.raises(NotAuthorized, match="claims 'client2'"):
        conn.submit(pb.Header(federation_id="fedpsyau", client_id="client2"), b"")


def test_engine_refusals_arrive_as_the_grpc_client_errors(federation):
    conn = federation.daemons["client1"].conn
    with pytest.raises(WrongStage, match="has not joined"):  # FAILED_PRECONDITION over gRPC
        conn.get_task(pb.Header())
    conn.join("test")
    with pytest.raises(WrongStage, match="no stage is open"):
        conn.submit(conn.header(1, 10, 0), b"x")
    for daemon in federation.daemons.values():
        daemon.join()
    federation.engine.tick()  # opens round 1's TRAIN stage
    st = federation.engine.state
    with pytest.raises(InvalidPayload, match="no blob 'nothing'"):  # NOT_FOUND over gRPC
        conn.download(conn.header(st.round, int(st.stage.stage), st.attempt), "nothing")


def test_an_oversized_submission_is_refused_before_the_engine_parses_it(federation):
    for daemon in federation.daemons.values():
        daemon.join()
    federation.engine.tick()  # opens round 1's TRAIN stage
    st = federation.engine.state
    conn = federation.daemons["client1"].conn
    with pytest.raises(PayloadTooLarge, match="over the limit of 4096"):
        conn.submit(conn.header(st.round, int(st.stage.stage), st.attempt), b"\0" * 5000)
    assert "client1" in st.stage.pending  # nothing was accepted


def test_replies_cross_a_serialisation_boundary(federation):
    conn = federation.daemons["client1"].conn
    reply = conn.join("test")
    engine_header = federation.engine.header("client1")
    assert reply.header == engine_header and reply.header is not engine_header


# -- known updates through the real engine ------------------------------------------------------
@pytest.mark.parametrize("mode", ["plain", "secagg", "ckks"])
def test_the_engine_adds_the_known_updates_of_the_survivors_in_every_mode(tmp_path, mode):
    from fedcore.coordinator.checkpoint import CheckpointStore
    from fedcore.examples import updates
    from fedcore.simulation_memory import memory_federation

    settings = {"size": 3000, "seed": 5}
    silent = {("SECAGG_MASKED_INPUT", 1): {"client5"}} if mode == "secagg" else {("TRAIN", 1): {"client5"}}
    fed = memory_federation(
        5,
        1,
        tmp_path / mode,
        aggregation=mode,
        workload="fedcore.examples.updates:workload",
        workload_settings=settings,
        faults=Faults(silent_at=silent),
    )
    assert fed.run() == 0
    line = fed.engine.records.metrics_path.read_text().splitlines()
    assert len(line) == 1
    model = CheckpointStore(fed.cfg.server.run_dir / "checkpoints").load_latest().params
    want = updates.expected_mean(settings, [0, 1, 2, 3], 1)  # client5 (index 4) dropped
    atol = 1e-6 if mode != "plain" else 1e-7
    assert np.abs(model - want).max() < atol
    other = updates.expected_mean(settings, [0, 1, 2, 3, 4], 1)
    assert np.abs(model - other).max() > 100 * atol  # the dropout really changed the sum
    stages = {t.stage for t in fed.timings.values()}
    assert "TRAIN" in stages and all(t.server_s >= 0 for t in fed.timings.values())


def test_the_server_never_sees_a_secagg_update_and_a_corrupted_masked_input_releases_nothing(tmp_path):
    from fedcore.examples import updates
    from fedcore.simulation_memory import memory_federation

    settings = {"size": 500, "seed": 2}
    fed = memory_federation(
        3,
        1,
        tmp_path / "r",
        aggregation="secagg",
        workload="fedcore.examples.updates:workload",
        workload_settings=settings,
        record=True,
    )
    assert fed.run() == 0
    raw = updates.update(settings, 0, 1) * updates.weight(settings, 0)
    needles = [raw.astype(np.float32).tobytes()[:64], raw.tobytes()[:64]]
    assert fed.server_received and not any(n in b for b in fed.server_received for n in needles)

    flipped = []

    def flip(stage, cid, direction, data):
        if direction == "up" and stage == Stage.SECAGG_MASKED_INPUT and cid == "client2":
            flipped.append(cid)
            return data[:-3] + bytes(3)  # a corrupted masked input
        return data

    fed = memory_federation(
        4,
        1,
        tmp_path / "t",
        aggregation="secagg",
        workload="fedcore.examples.updates:workload",
        workload_settings=settings,
        tamper=flip,
    )
    assert fed.run() == 4  # ABORTED: every attempt's sum fails its range check
    assert flipped == ["client2"] * 4  # the first attempt and its 3 retries
    from fedcore.coordinator.checkpoint import CheckpointStore

    assert CheckpointStore(fed.cfg.server.run_dir / "checkpoints").load_latest() is None  # nothing released


def test_a_mode_that_refuses_to_begin_a_round_fails_the_attempt_not_the_engine(tmp_path):
    """SecAgg's own threshold above the survivors: the round's attempt fails (and the federation,
    out of retries, aborts cleanly) instead of the exception escaping the engine's tick."""
    from fedcore.simulation_memory import memory_federation

    fed = memory_federation(
        4,
        2,
        tmp_path / "r",
        aggregation="secagg",
        workload="fedcore.examples.updates:workload",
        workload_settings={"size": 50},
        secagg={"min_clients": 4},
        deadlines={"max_round_retries": 1},
        faults=Faults(silent_at={("TRAIN", 2): {"client4"}}),
    )
    assert fed.run() == 4  # ABORTED, not an exception
    lines = [json.loads(x) for x in fed.engine.records.metrics_path.read_text().splitlines()]
    assert [m["round"] for m in lines] == [1]  # round 1 done, round 2 never released
    assert "fewer than the threshold 4" in fed.engine.state.outcome
