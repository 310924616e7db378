"""SIGKILL the coordinator after it served round 1's new model and before the round was over, and
restart it without one client: round 1 is never aggregated again (issue 13 item 1).

Before the fix the new model left at EVALUATE and the checkpoint came only after evaluation, so
the restarted coordinator re-ran round 1 over alice and bob; its model and the one already sent
out gave carol's update exactly. Now the checkpoint is on disk before EVALUATE opens and the
restart only re-evaluates that model.
"""

from __future__ import annotations

import json
import signal
import time

import numpy as np
import pytest
from e2e_kit import provision_fast, spawn, stop_all, wait_for

from fedcore.coordinator.checkpoint import CheckpointStore


def _wait_tight(predicate, timeout: float, what: str) -> None:
    """Poll every 5 ms: the clients must be stopped before all three finish evaluating."""
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.005)


@pytest.mark.slow  # real processes, about 40 s on a loaded 2-core machine
def test_coordinator_killed_after_serving_the_model_never_reaggregates_the_round(tmp_path, port):
    prov = provision_fast(tmp_path / "fed", port, rounds=2, min_clients=2, federation={"min_available": 3})
    logs = tmp_path / "logs"
    logs.mkdir()
    first, second = logs / "coordinator-1.log", logs / "coordinator-2.log"
    run = tmp_path / "fed" / "run"
    coord = spawn(["coordinator", "--config", str(prov.coordinator_config)], first)
    clients = {
        cid: spawn(["client", "--config", str(path)], logs / f"{cid}.log") for cid, path in prov.client_configs.items()
    }
    procs = [coord, *clients.values()]
    try:
        _wait_tight(lambda: "round 1 attempt 0: stage EVALUATE open" in first.read_text(), 90, "round 1 EVALUATE")
        for p in clients.values():  # hold the stage open: nobody can finish the evaluation yet
            p.send_signal(signal.SIGSTOP)
        clients["alice"].send_signal(signal.SIGCONT)
        wait_for(
            lambda: "round 1 attempt 0 stage EVALUATE answered" in (logs / "alice.log").read_text(),
            30,
            "alice evaluating round 1's model",
            procs,
        )  # so the model has left the coordinator
        coord.send_signal(signal.SIGKILL)
        assert coord.wait(timeout=10) == -signal.SIGKILL
        # the model that left is on disk, with all three contributors, its evaluation pending
        at_kill = CheckpointStore(run / "checkpoints").load_latest()
        assert at_kill.round == 1 and at_kill.history[-1]["contributors"] == 3
        assert at_kill.extra["pending_eval"] == 1 and not (run / "metrics.jsonl").read_text().strip()
        clients["carol"].send_signal(signal.SIGKILL)  # the restarted coordinator could only use alice and bob
        clients["carol"].wait(timeout=10)
        clients["bob"].send_signal(signal.SIGCONT)
        # the same run folder; only "wait for three" is dropped, as an operator restarting without carol would
        restart = prov.coordinator_config.with_name("coordinator-restart.toml")
        restart.write_text(prov.coordinator_config.read_text().replace("min_available = 3", "min_available = 2"))
        coord2 = spawn(["coordinator", "--config", str(restart)], second)
        procs.append(coord2)
        assert coord2.wait(timeout=120) == 0, second.read_text()[-3000:]
        codes = {cid: clients[cid].wait(timeout=30) for cid in ("alice", "bob")}
    finally:
        stop_all(procs)
    assert codes == {"alice": 0, "bob": 0}
    log2 = second.read_text()
    assert "round 1's model is evaluated first" in log2
    assert "round 1 attempt" not in log2.replace("round 1 attempt 1: evaluating", "").replace(
        "round 1 attempt 1: stage EVALUATE", ""
    ), "the restarted coordinator ran more of round 1 than its evaluation"
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [x["round"] for x in lines] == [1, 2]
    assert lines[0]["contributors"] == 3 and lines[0]["eval"] and lines[1]["contributors"] == 2
    store = CheckpointStore(run / "checkpoints")
    np.testing.assert_array_equal(store.load(1).params, at_kill.params)  # round 1's model never changed
