"""SIGKILL the coordinator in the middle of a round, restart it: nothing lost, nothing repeated, and
no client contributes the same update to the re-run attempt."""

from __future__ import annotations

import json
import signal

from e2e_kit import provision_fast, spawn, stop_all, wait_for

from fedcore.coordinator.checkpoint import CheckpointStore


def test_coordinator_killed_mid_round_resumes_and_finishes(tmp_path, port):
    rounds = 4
    prov = provision_fast(tmp_path / "fed", port, rounds=rounds, client_settings=[{"slowdown": 0.8}] * 3)
    logs = tmp_path / "logs"
    logs.mkdir()
    coord_log = logs / "coordinator.log"
    run = tmp_path / "fed" / "run"
    coord = spawn(["coordinator", "--config", str(prov.coordinator_config)], coord_log)
    clients = {
        cid: spawn(["client", "--config", str(path)], logs / f"{cid}.log") for cid, path in prov.client_configs.items()
    }
    procs = [coord, *clients.values()]
    try:
        wait_for(lambda: "round 2 attempt 0: stage TRAIN open" in coord_log.read_text(), 90, "round 2", procs)
        coord.send_signal(signal.SIGKILL)  # clients are training round 2 (0.8 s each)
        assert coord.wait(timeout=10) == -signal.SIGKILL
        before = [json.loads(x)["round"] for x in (run / "metrics.jsonl").read_text().splitlines()]
        assert before == [1]
        assert CheckpointStore(run / "checkpoints").load_latest().round == 1
        coord2 = spawn(["coordinator", "--config", str(prov.coordinator_config)], coord_log)
        procs.append(coord2)
        assert coord2.wait(timeout=120) == 0, coord_log.read_text()[-3000:]
        codes = {cid: p.wait(timeout=30) for cid, p in clients.items()}
    finally:
        stop_all(procs)
    assert codes == {"alice": 0, "bob": 0, "carol": 0}
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [x["round"] for x in lines] == list(range(1, rounds + 1))  # none lost, none repeated
    assert lines[1]["attempt"] >= 1  # round 2 re-run as a new attempt
    ckpt = CheckpointStore(run / "checkpoints").load_latest()
    assert ckpt.round == rounds and [h["round"] for h in ckpt.history] == list(range(1, rounds + 1))
    assert "resuming from the checkpoint of round 1" in coord_log.read_text()
    # the clients had trained round 2 for the same model, but the re-run is a new attempt: each trains again
    # (fresh randomness) instead of resending the update, which could otherwise be put into two aggregates
    texts = {cid: (logs / f"{cid}.log").read_text() for cid in clients}
    assert not any("resending the update trained for this same attempt" in t for t in texts.values())
    retrained = [cid for cid, t in texts.items() if "round 2 attempt" in t and "a new attempt trains again" in t]
    assert retrained
