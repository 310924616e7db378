"""A coordinator and three real client processes over mTLS on loopback, plain mode, example workload."""

from __future__ import annotations

import json

from e2e_kit import provision_fast, spawn, stop_all

from fedcore.coordinator.checkpoint import CheckpointStore


def test_three_client_processes_complete_every_round(tmp_path, port):
    prov = provision_fast(tmp_path / "fed", port, rounds=3)
    logs = tmp_path / "logs"
    logs.mkdir()
    coord = spawn(["coordinator", "--config", str(prov.coordinator_config)], logs / "coordinator.log")
    clients = {
        cid: spawn(["client", "--config", str(path)], logs / f"{cid}.log") for cid, path in prov.client_configs.items()
    }
    try:
        assert coord.wait(timeout=90) == 0, (logs / "coordinator.log").read_text()[-3000:]
        codes = {cid: p.wait(timeout=20) for cid, p in clients.items()}
    finally:
        stop_all([coord, *clients.values()])
    assert codes == {"alice": 0, "bob": 0, "carol": 0}
    run = tmp_path / "fed" / "run"
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [x["round"] for x in lines] == [1, 2, 3]
    assert all(x["contributors"] == 3 and set(x["train"]) == {"alice", "bob", "carol"} for x in lines)
    assert lines[-1]["eval"]["num_examples"] == 180 and lines[-1]["eval"]["accuracy"] > lines[0]["eval"]["accuracy"]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["rounds"] == 3 and summary["aggregation"] == "plain"
    assert summary["bytes_up"] > 0 and summary["bytes_down"] > 0 and 0 < summary["uf1"] <= 1
    assert CheckpointStore(run / "checkpoints").load_latest().round == 3
    coord_log = (logs / "coordinator.log").read_text()
    assert "TLS: mTLS" in coord_log and "NOT PRIVATE" in coord_log  # start-up summary names mode and TLS
