"""The in-process driver: every message crosses a serialisation boundary; plain mode runs through it too."""

from __future__ import annotations

import numpy as np

from fedcore.common.aggregation import AggregationContext, ClientIdentity, ClientJob
from fedcore.common.stages import Stage
from fedcore.plain import PlainClient, PlainServer
from fedcore.secagg.driver import run_round


def test_plain_mode_runs_through_the_same_driver():
    ids = ("a", "b", "c")
    rng = np.random.default_rng(0)
    vecs = {c: rng.normal(size=9) for c in ids}
    ctx = AggregationContext("fed", 1, 0, ids, 9, {})
    clients = {c: PlainClient(ClientIdentity(c), "fed", {}) for c in ids}
    jobs = {c: ClientJob(1, 0, vecs[c], 2.0) for c in ids}
    run = run_round(PlainServer("fed", {}), clients, ctx, jobs, {Stage.PLAIN_INPUT: {"b"}})
    np.testing.assert_allclose(run.result.weighted_sum, 2 * (vecs["a"] + vecs["c"]))
    assert run.stages[0].dropped == ["b"] and run.stages[0].bytes_up > 2 * 9 * 8


def test_secagg_stats_count_bytes_and_time_per_stage(federation):
    fed = federation(4, length=100)
    run = fed.driver().run()
    assert [s.stage for s in run.stages] == ["SECAGG_ADVERTISE_KEYS", "SECAGG_SHARE_KEYS",
                                             "SECAGG_MASKED_INPUT", "SECAGG_UNMASK"]
    masked = run.stages[2]
    assert masked.bytes_up > 4 * 102 * 4  # four uint32 vectors of L + 2 values
    assert all(s.server_s > 0 and s.client_s > 0 for s in run.stages)
    assert run.total_s == run.server_s + run.client_s
