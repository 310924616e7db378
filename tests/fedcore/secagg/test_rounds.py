"""Whole rounds through the daemons' engine and client daemons (in-memory transport): plain mode
runs the same path as SecAgg+, and every stage's bytes and seconds are counted."""

from __future__ import annotations

import numpy as np

from fedcore.common.stages import Stage
from fedcore.examples import updates
from fedcore.simulation_memory import Faults, memory_federation


def test_plain_mode_runs_through_the_same_engine(tmp_path):
    settings = {"size": 9, "seed": 4, "scale": 0.5}
    ids = ("a", "b", "c", "d")  # the federation's min_clients (3) holds for plain updates too
    fed = memory_federation(
        4,
        1,
        tmp_path / "plain",
        aggregation="plain",
        workload="fedcore.examples.updates:workload",
        workload_settings=settings,
        client_ids=ids,
        faults=Faults(silent_at={Stage.PLAIN_INPUT: {"b"}}),
    )  # trained, then died
    assert fed.run() == 0
    res = fed.engine.mode.result()
    want = sum(updates.weight(settings, i) * updates.update(settings, i, 1) for i in (0, 2, 3))
    np.testing.assert_allclose(res.weighted_sum, want, rtol=1e-12, atol=0)
    assert res.num_contributors == 3 and res.total_weight == sum(updates.weight(settings, i) for i in (0, 2, 3))
    (plain,) = [t for t in fed.timings.values() if t.stage == "PLAIN_INPUT"]
    assert set(plain.client_s) == {"a", "c", "d"} and plain.bytes_up > 3 * 9 * 8  # three float64 vectors, and more


def test_secagg_timings_count_bytes_and_time_per_stage(secagg_round):
    run = secagg_round(4, length=100)
    assert run.run() == 0
    stages = [t for t in run.fed.timings.values() if t.round == 1 and t.stage.startswith("SECAGG_")]
    assert [s.stage for s in stages] == [
        "SECAGG_ADVERTISE_KEYS",
        "SECAGG_SHARE_KEYS",
        "SECAGG_MASKED_INPUT",
        "SECAGG_UNMASK",
    ]
    masked = stages[2]
    ring = np.dtype(f"uint{run.result().notes['bits']}").itemsize
    assert masked.bytes_up > 4 * 102 * ring  # four ring vectors of L + 2 values
    assert all(s.server_s > 0 and set(s.client_s) == set(run.ids) and min(s.client_s.values()) > 0 for s in stages)
