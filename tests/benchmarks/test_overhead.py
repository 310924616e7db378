"""benchmarks/overhead.py's in-memory breakdown names its stages as the daemons' logs do."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
_spec = importlib.util.spec_from_file_location("bench_overhead", _BENCH / "overhead.py")
overhead = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(overhead)  # puts benchmarks/ on sys.path (sized_workload)


def test_stage_breakdown_uses_the_wire_stage_names_of_the_daemon_logs(tmp_path):
    row = overhead.stage_breakdown(3000, "secagg", 1, tmp_path)
    # the names stage_samples cuts from "stage X open" lines of the coordinator's log (EVALUATE left out)
    assert list(row["stages"]) == [
        "TRAIN",
        "SECAGG_ADVERTISE_KEYS",
        "SECAGG_SHARE_KEYS",
        "SECAGG_MASKED_INPUT",
        "SECAGG_UNMASK",
    ]
    assert row["reps"] == 1 and row["round_s"] > 0
    train = row["stages"]["TRAIN"]
    assert train["client_s_median"] > 0 and train["bytes_down_per_client"] > 4 * 3000  # the model went down
    assert row["stages"]["SECAGG_MASKED_INPUT"]["bytes_up_per_client"] > 4 * 3000  # a masked vector came up
    assert str(_BENCH) in sys.path
