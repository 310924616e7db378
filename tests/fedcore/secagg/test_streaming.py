"""The server streams masked inputs: each goes into the running sum in Z_2^bits once it cannot be
excluded any more, so the server holds at most the inputs the prune could still exclude (none on
the complete graph), and dropout recovery stays exact.

Every round runs the coordinator's engine and the client daemons over the in-memory transport;
``_watch_inputs`` looks at the engine's mode after each masked input the engine hands it.
"""

from __future__ import annotations

import itertools
from collections import defaultdict

import numpy as np
import pytest

from fedcore.common.stages import Stage
from fedcore.secagg.state import SecAggStage
from fedcore.simulation_memory import Faults

NO_ADVERSARY = {"corrupt_fraction": 0.0, "dropout_fraction": 0.0}
BEFORE, AFTER = Stage.SECAGG_MASKED_INPUT, Stage.SECAGG_UNMASK


def _watch_inputs(server) -> dict[tuple[int, int], list]:
    """Record (arrived, folded, held) after every accepted masked input, by (round, attempt)."""
    seen = defaultdict(list)
    accept = server.accept

    def watched(stage, cid, body):
        accept(stage, cid, body)
        if SecAggStage.from_wire(stage) == SecAggStage.MASKED_INPUT:
            r = server.r
            seen[(r.ctx.round, r.ctx.attempt)].append(
                (frozenset(r.bodies[SecAggStage.MASKED_INPUT]), frozenset(r.folded), frozenset(r.held))
            )

    server.accept = watched
    return seen


def _assert_exact(run, res, contributors, round_: int = 1):
    want, weight = run.expected(contributors, round_)
    assert res.num_contributors == len(contributors) and res.total_weight == weight
    np.testing.assert_allclose(res.weighted_sum, want, rtol=0, atol=weight * 2.0 ** -res.notes["frac_bits"] + 1e-12)


def test_complete_graph_folds_every_input_at_once_and_keeps_none(secagg_round):
    run = secagg_round(6, length=40)
    seen = _watch_inputs(run.server)
    assert run.run() == 0
    (inputs,) = seen.values()
    assert len(inputs) == 6
    for arrived, folded, held in inputs:
        assert folded == arrived and not held
    assert run.server.r.recorded == {} and run.server.r.total is None  # freed once unmasked
    with pytest.raises(RuntimeError, match="record_inputs"):
        _ = run.server.r.inputs
    _assert_exact(run, run.result(), run.ids)


def test_complete_graph_with_dropouts_after_folding_stays_exact(secagg_round):
    # inputs of clients that then drop before unmask are in the running sum: their self masks
    # are rebuilt from shares; clients that dropped before their input have their pair masks removed
    ids = [f"client-{i:02d}" for i in range(7)]
    run = secagg_round(7, length=30, seed=3, faults=Faults(silent_at={BEFORE: {ids[0]}, AFTER: {ids[1], ids[2]}}))
    assert run.run() == 0
    res = run.result()
    assert res.notes["dropouts"]["masked_input"] == [ids[0]] and res.notes["dropouts"]["unmask"] == ids[1:3]
    _assert_exact(run, res, ids[1:])


def test_sparse_graph_holds_only_inputs_the_prune_could_still_exclude(secagg_round):
    n, done = 6, 0
    ids = [f"client-{i:02d}" for i in range(n)]
    patterns = [p for p in itertools.product((None, BEFORE, AFTER), repeat=n) if sum(x is not None for x in p) <= 2]
    drops = [
        {stage: {c for c, p in zip(ids, pattern) if p == stage} for stage in (BEFORE, AFTER)} for pattern in patterns
    ]
    run = secagg_round(n, length=3, secagg={"k": 2, **NO_ADVERSARY}, seed=1, dropouts=drops)
    seen = _watch_inputs(run.server)
    state = {}

    def at_end(at):  # while the engine's mode still holds this attempt's round (its graph)
        r, kept_of = run.server.r, run.server._kept
        state[(at.round, at.attempt)] = (
            [(*s, kept_of(s[0])) for s in seen[(at.round, at.attempt)]],
            r.held,
            r.recorded,
        )

    attempts = run.sweep(at_end)
    assert len(attempts) == len(patterns)
    for pattern, at in zip(patterns, attempts):
        if at.result is None:  # aborts are checked by test_mask_cancellation
            assert "threshold" in at.failure or "cannot unmask" in at.failure, at.failure
            continue
        inputs, held_at_end, recorded_at_end = state[(at.round, at.attempt)]
        for arrived, folded, held, kept in inputs:
            assert folded | held == arrived and not folded & held
            assert folded <= kept  # only what no later arrival can exclude
        excluded = set(at.result.notes["excluded"]["masked_input"])
        assert not excluded & inputs[-1][1]  # an excluded input was held, never added
        _assert_exact(run, at.result, [c for c, p in zip(ids, pattern) if p != BEFORE and c not in excluded], at.round)
        assert held_at_end == {} and recorded_at_end == {}
        done += 1
    assert done >= 13


def test_first_input_on_a_ring_waits_for_a_neighbour(secagg_round):
    run = secagg_round(6, length=3, secagg={"k": 2, **NO_ADVERSARY}, seed=1)
    seen = _watch_inputs(run.server)
    assert run.run() == 0
    (inputs,) = seen.values()
    first_arrived, first_folded, first_held = inputs[0]
    assert first_folded == frozenset() and first_held == first_arrived  # alone it could be excluded
    assert inputs[-1][1] == frozenset(run.ids) and not inputs[-1][2]


@pytest.mark.parametrize("record", [False, True])
def test_record_inputs_is_off_by_default_and_keeps_copies_when_on(secagg_round, record):
    run = secagg_round(4, length=8)
    if record:
        run.server.record_inputs = True
    run.open(Stage.SECAGG_UNMASK)  # every masked input is in
    assert (len(run.server.r.recorded) == 4) is record
    assert run.run() == 0
    _assert_exact(run, run.result(), run.ids)
