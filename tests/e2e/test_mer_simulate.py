"""The main job end to end: `fedpsyau simulate` with real daemons, DP-SGD, SecAgg and DPK-GAT.

A small synthetic set (6 subjects) keeps it short; everything else is the README's first command.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.mark.timeout(400)
@pytest.mark.parametrize("aggregation", ["secagg", "ckks"])
def test_simulate_trains_private_dpkgat_through_the_daemons(tmp_path, aggregation):
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "mer.cli",
        "simulate",
        "--out",
        str(out),
        "--rounds",
        "2",
        "--subjects",
        "9",
        "--epsilon",
        "8",
        "--timeout",
        "300",
        "--aggregation",
        aggregation,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=380, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["rounds"] == 2
    assert summary["aggregation"] == aggregation
    assert 0.0 <= summary["uf1"] <= 1.0 and 0.0 <= summary["uar"] <= 1.0
    # every client spent privacy budget, none beyond its target, and the maximum is reported
    assert len(summary["epsilon"]) == 3
    assert all(0 < e <= 8.0 + 1e-6 for e in summary["epsilon"].values())
    assert summary["epsilon_max"] == max(summary["epsilon"].values())
    assert summary["bytes_up"] > 0 and summary["bytes_down"] > 0
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if x.strip()]
    assert [m["round"] for m in lines] == [1, 2]
    assert all(m["notes"].get("mode") == aggregation for m in lines)
    # the statistical prior's AU counts went through the secure sum before round 1
    log = (out / "logs" / "coordinator.log").read_text()
    assert "round 0: statistics of 3 clients summed (78 values)" in log
    for png in ("metrics.png", "epsilon.png", "confusion.png"):
        assert (out / "report" / png).stat().st_size > 1000, png
    assert "completed: 2/2 rounds" in proc.stdout
