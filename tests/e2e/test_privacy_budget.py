"""The DP "done when": a simulated federation (real processes, mTLS) with DP-SGD on every client
shows cumulative epsilon per client in metrics.jsonl and in the privacy report, and stops a client
at its budget without breaking the round or overspending."""

from __future__ import annotations

import io
import json
import math

import pytest

from fedcore.dp.accounting import account
from fedcore.dp.report import privacy_report
from fedcore.secagg.stats_noise import sigma_for_epsilon
from fedcore.simulation import simulate

N_TRAIN = 180  # softmax example: 240 samples, a quarter held out
STEPS = math.ceil(N_TRAIN / 32)  # Poisson steps per round at batch 32 (q = 1 / STEPS)
DELTA = 1e-5  # the public default delta
SIGMA = 1.0
#: round 0's label counts: each plain-mode client adds its own discrete Gaussian for the default
#: statistics_epsilon 1 (sensitivity 1, the example's), charged as one Gaussian step before round 1
STATS_MULT = sigma_for_epsilon(1.0, DELTA, 1.0)


def _eps(rounds: int) -> float:  # the default accountant over the statistics release and the DP-SGD steps
    return account([(1.0, STATS_MULT, 1), (1.0 / STEPS, SIGMA, STEPS * rounds)], DELTA, "prv").epsilon


@pytest.mark.filterwarnings("ignore")
def test_client_is_stopped_at_its_budget_and_the_federation_goes_on(tmp_path):
    tiny = (_eps(1) + _eps(2)) / 2  # covers one round, not two
    run = tmp_path / "run"
    res = simulate(
        clients=4,
        rounds=3,
        out=run,
        aggregation="plain",
        progress=False,
        echo=False,
        federation={"min_clients": 3, "min_available": 4},
        privacy={"noise_multiplier": SIGMA, "target_epsilon": 100.0},
        client_privacy=[{"report_steps": True}, {}, {}, {"target_epsilon": tiny}],
        timeout=120,
    )
    assert res.returncode == 0, (run / "logs" / "coordinator.log").read_text()[-3000:]
    assert res.summary["status"] == "completed" and res.summary["rounds"] == 3
    lines = res.metrics
    assert [m["contributors"] for m in lines] == [4, 3, 3]
    assert "client4" in lines[1]["refused"] and "budget exhausted" in lines[1]["refused"]["client4"]
    assert all("client4" in m["excluded"] for m in lines[1:]) and "client4" not in lines[2]["clients"]
    # cumulative epsilon per client, exactly what the ledgers' accountant gives
    for r, m in enumerate(lines, start=1):
        for cid in ("client1", "client2", "client3"):
            assert m["privacy"][cid]["epsilon"] == pytest.approx(_eps(r), rel=1e-9)
            assert not m["privacy"][cid]["exhausted"] and m["privacy"][cid]["accountant"] == "prv"
        # step counts (and sigma) reveal n: only client1, which opted in with report_steps, sends them
        assert m["privacy"]["client1"]["steps"] == STEPS * r and m["privacy"]["client2"]["steps"] == 0
        assert "steps" in m["train"]["client1"] and "steps" not in m["train"]["client2"]
        assert m["epsilon_max"] == pytest.approx(_eps(r), rel=1e-9)
    stopped = lines[1]["privacy"]["client4"]
    assert stopped["exhausted"] and stopped["epsilon"] == pytest.approx(_eps(1)) and stopped["epsilon"] <= tiny
    ledger = json.loads((run / "federation" / "clients" / "client4" / "work" / "privacy_ledger.json").read_text())
    assert ledger["epsilon"] <= ledger["target_epsilon"] == pytest.approx(tiny) and ledger["version"] == 2
    assert [(c["kind"], c["round"]) for c in ledger["charges"]] == [("statistics", 0), ("dp-sgd", 1)]
    # the privacy report reads the same records
    out = io.StringIO()
    rows = {r.client: r for r in privacy_report(run, stream=out)}
    assert rows["client4"].status == "exhausted" and rows["client4"].epsilon <= tiny
    assert rows["client4"].rounds_trained == 1
    assert "client4 ledger: 1 statistics charge, 1 dp-sgd charge; epsilon" in out.getvalue()  # every charge shown
    assert "client1 ledger: 1 statistics charge, 3 dp-sgd charges" in out.getvalue()
    assert all(rows[c].status == "active" and rows[c].rounds_trained == 3 for c in ("client1", "client2", "client3"))
    assert (run / "report" / "epsilon.png").stat().st_size > 1000 and "exhausted" in out.getvalue()
    assert "excluded (privacy budget exhausted): client4" in (run / "logs" / "coordinator.log").read_text()
