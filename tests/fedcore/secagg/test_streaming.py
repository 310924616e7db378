"""The server streams masked inputs: each goes into the running sum in Z_2^bits once it cannot be
excluded any more, so the server holds at most the inputs the prune could still exclude (none on
the complete graph), and dropout recovery stays exact."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from fedcore.common.stages import Stage
from fedcore.secagg.state import SecAggStage

NO_ADVERSARY = {"corrupt_fraction": 0.0, "dropout_fraction": 0.0}
BEFORE, AFTER = Stage.SECAGG_MASKED_INPUT, Stage.SECAGG_UNMASK


def _watch_inputs(server):
    """Record (arrived, folded, held) after every accepted masked input."""
    seen = []
    accept = server.accept

    def watched(stage, cid, body):
        accept(stage, cid, body)
        if SecAggStage.from_wire(stage) == SecAggStage.MASKED_INPUT:
            r = server.r
            seen.append((frozenset(r.bodies[SecAggStage.MASKED_INPUT]), frozenset(r.folded), frozenset(r.held)))
    server.accept = watched
    return seen


def _assert_exact(fed, run, contributors):
    want, weight = fed.expected(contributors)
    assert run.result.num_contributors == len(contributors) and run.result.total_weight == weight
    np.testing.assert_allclose(run.result.weighted_sum, want, rtol=0, atol=fed.tolerance(weight))


def test_complete_graph_folds_every_input_at_once_and_keeps_none(federation):
    fed = federation(6, length=40)
    seen = _watch_inputs(fed.server)
    run = fed.driver().run()
    assert len(seen) == 6
    for arrived, folded, held in seen:
        assert folded == arrived and not held
    assert fed.server.r.recorded == {} and fed.server.r.total is None  # freed once unmasked
    with pytest.raises(RuntimeError, match="record_inputs"):
        _ = fed.server.r.inputs
    _assert_exact(fed, run, fed.ctx.participants)


def test_complete_graph_with_dropouts_after_folding_stays_exact(federation):
    # inputs of clients that then drop before unmask are in the running sum: their self masks
    # are rebuilt from shares; clients that dropped before their input have their pair masks removed
    fed = federation(7, length=30, seed=3)
    ids = fed.ctx.participants
    run = fed.driver({BEFORE: {ids[0]}, AFTER: {ids[1], ids[2]}}).run()
    _assert_exact(fed, run, ids[1:])


def test_sparse_graph_holds_only_inputs_the_prune_could_still_exclude(federation):
    n, done = 6, 0
    for pattern in itertools.product((None, BEFORE, AFTER), repeat=n):
        if sum(x is not None for x in pattern) > 2:
            continue
        fed = federation(n, length=3, settings={"k": 2, **NO_ADVERSARY}, seed=1)
        ids = fed.ctx.participants
        seen = _watch_inputs(fed.server)
        drop = {stage: {c for c, p in zip(ids, pattern) if p == stage} for stage in (BEFORE, AFTER)}
        try:
            run = fed.driver(drop).run()
        except Exception as exc:  # noqa: BLE001 - aborts are checked by test_mask_cancellation
            assert "threshold" in str(exc) or "cannot unmask" in str(exc)
            continue
        r = fed.server.r
        kept_of = fed.server._kept
        for arrived, folded, held in seen:
            assert folded | held == arrived and not folded & held
            assert folded <= kept_of(arrived)  # only what no later arrival can exclude
        excluded = set(run.result.notes["excluded"]["masked_input"])
        assert not excluded & seen[-1][1]  # an excluded input was held, never added
        _assert_exact(fed, run, [c for c, p in zip(ids, pattern) if p != BEFORE and c not in excluded])
        assert r.held == {} and r.recorded == {}
        done += 1
    assert done >= 13


def test_first_input_on_a_ring_waits_for_a_neighbour(federation):
    fed = federation(6, length=3, settings={"k": 2, **NO_ADVERSARY}, seed=1)
    seen = _watch_inputs(fed.server)
    fed.driver().run()
    first_arrived, first_folded, first_held = seen[0]
    assert first_folded == frozenset() and first_held == first_arrived  # alone it could be excluded
    assert seen[-1][1] == frozenset(fed.ctx.participants) and not seen[-1][2]


@pytest.mark.parametrize("record", [False, True])
def test_record_inputs_is_off_by_default_and_keeps_copies_when_on(federation, record):
    fed = federation(4, length=8)
    if record:
        fed.server.record_inputs = True
    drv = fed.driver()
    for stage in fed.server.round_stages()[:3]:
        drv.run_stage(stage)
    assert (len(fed.server.r.recorded) == 4) is record
    _assert_exact(fed, drv.run(), fed.ctx.participants)
