"""The one-command simulation through its Python API: real processes, TLS, per-client settings."""

from __future__ import annotations

import pytest

from fedcore.common.errors import ConfigError
from fedcore.config import load_client_config
from fedcore.simulation import simulate


def test_simulation_runs_every_round_and_reports(tmp_path, capsys):
    out = tmp_path / "run"
    res = simulate(
        clients=3,
        rounds=2,
        out=out,
        aggregation="plain",
        progress=False,
        client_settings=[{"alpha": 0.1}, {"alpha": 1.0}, {"alpha": 10.0, "hidden": 8}],
        workload_settings={"hidden": 8},
        strategy={"name": "fedprox", "mu": 0.01},
    )
    assert res.returncode == 0 and res.client_returncodes == {"client1": 0, "client2": 0, "client3": 0}
    assert [m["round"] for m in res.metrics] == [1, 2]
    assert res.summary["status"] == "completed" and res.summary["strategy"] == "fedprox"
    assert {p.name for p in (out / "logs").iterdir()} == {
        "coordinator.log",
        "client1.log",
        "client2.log",
        "client3.log",
    }
    cfg = load_client_config(out / "federation" / "clients" / "client3" / "client.toml")
    assert cfg.workload.settings["alpha"] == 10.0 and cfg.workload.settings["client_index"] == 2
    assert "completed: 2/2 rounds" in capsys.readouterr().out  # the closing table
    assert "TLS: mTLS" in (out / "logs" / "coordinator.log").read_text()


def test_simulation_refuses_to_overwrite_an_earlier_run(tmp_path):
    (tmp_path / "metrics.jsonl").write_text("{}\n")
    with pytest.raises(ConfigError, match="earlier run"):
        simulate(clients=2, rounds=1, out=tmp_path, aggregation="plain")


def test_failing_client_makes_the_federation_abort_with_exit_code_4(tmp_path):
    # client1 builds a model with a hidden layer the federation's model lacks: its training fails every time
    res = simulate(
        clients=2,
        rounds=2,
        out=tmp_path / "run",
        aggregation="plain",
        progress=False,
        echo=False,
        client_settings=[{"hidden": 8}, {}],
        deadlines={"max_round_retries": 1},
    )
    assert res.returncode == 4
    assert res.summary["status"] == "aborted" and res.summary["rounds"] == 0
    assert "round 1 failed 2 times" in res.summary["reason"] and "only 1 of 2" in res.summary["reason"]
    assert res.client_returncodes == {"client1": 4, "client2": 4}  # both learned that it aborted
    assert "training failed" in (tmp_path / "run" / "logs" / "coordinator.log").read_text()
