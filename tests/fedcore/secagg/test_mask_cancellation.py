"""Masks cancel: the unmasked sum is exact (up to quantisation) under every dropout pattern, and a
round with too few survivors aborts with a clear message instead of returning a wrong sum."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from fedcore.common.errors import AggregationAborted
from fedcore.common.stages import Stage
from fedcore.secagg.state import resolve_threshold

#: sparse graphs for protocol tests: no coalition and no dropout is assumed, so any even k meets the
#: 2^-40 bound of fedcore.secagg.bounds (the privacy tests of the bound are in test_graph_bounds.py)
NO_ADVERSARY = {"corrupt_fraction": 0.0, "dropout_fraction": 0.0}

BEFORE, AFTER = Stage.SECAGG_MASKED_INPUT, Stage.SECAGG_UNMASK


def _assert_exact(fed, run, contributors):
    want, weight = fed.expected(contributors)
    res = run.result
    assert res.num_contributors == len(contributors)
    assert res.total_weight == weight
    np.testing.assert_allclose(res.weighted_sum, want, rtol=0, atol=fed.tolerance(weight))


@pytest.mark.parametrize("n", [3, 4, 5, 6])
def test_masks_cancel_under_every_dropout_pattern_complete_graph(federation, n):
    """Each client is alive, drops before its masked input (after sharing keys: its pairwise masks
    must be rebuilt) or drops after it (its self mask must be rebuilt): all 3^n patterns."""
    t = resolve_threshold(0.5, n, 3)
    outcomes = {"exact": 0, "aborted": 0}
    for pattern in itertools.product((None, BEFORE, AFTER), repeat=n):
        fed = federation(n, length=5, settings={"k": "all"}, seed=n)
        ids = fed.ctx.participants
        drop = {stage: {c for c, p in zip(ids, pattern) if p == stage} for stage in (BEFORE, AFTER)}
        inputs = [c for c, p in zip(ids, pattern) if p != BEFORE]
        answered = [c for c, p in zip(ids, pattern) if p is None]
        if len(inputs) >= t and len(answered) >= t:
            _assert_exact(fed, fed.driver(drop).run(), inputs)
            outcomes["exact"] += 1
        else:
            with pytest.raises(AggregationAborted, match=f"threshold is {t}"):
                fed.driver(drop).run()
            outcomes["aborted"] += 1
    assert outcomes["exact"] > 0 and outcomes["aborted"] > 0


@pytest.mark.parametrize("stage", [Stage.SECAGG_ADVERTISE_KEYS, Stage.SECAGG_SHARE_KEYS])
def test_early_dropouts_complete_or_abort_by_the_threshold(federation, stage):
    n = 5
    for size in range(n + 1):
        for gone in itertools.combinations(range(n), size):
            fed = federation(n, length=4, seed=size)
            ids = fed.ctx.participants
            dropped = {ids[i] for i in gone}
            if n - size >= 3:
                run = fed.driver({stage: dropped}).run()
                _assert_exact(fed, run, [c for c in ids if c not in dropped])
                assert run.result.notes["dropouts"][stage.name.removeprefix("SECAGG_").lower()] == sorted(dropped)
            else:
                with pytest.raises(AggregationAborted, match=f"only {n - size} of {n}"):
                    fed.driver({stage: dropped}).run()


def test_sparse_graph_every_pattern_is_exact_or_a_clear_abort(federation):
    """n = 6 with k = 2 (SecAgg+'s graph, share threshold 2 of 3): a thinned neighbourhood may
    exclude clients or abort, but a completed round is always exact for its contributors (all 73
    patterns with at most two dropouts; a fresh random graph each time)."""
    n, done = 6, 0
    patterns = [p for p in itertools.product((None, BEFORE, AFTER), repeat=n) if sum(x is not None for x in p) <= 2]
    for pattern in patterns:
        fed = federation(n, length=3, settings={"k": 2, **NO_ADVERSARY}, seed=1)
        ids = fed.ctx.participants
        drop = {stage: {c for c, p in zip(ids, pattern) if p == stage} for stage in (BEFORE, AFTER)}
        try:
            run = fed.driver(drop).run()
        except AggregationAborted as exc:
            assert "threshold" in str(exc) or "cannot unmask" in str(exc)
            continue
        excluded = set(run.result.notes["excluded"]["masked_input"])
        contributors = [c for c, p in zip(ids, pattern) if p != BEFORE and c not in excluded]
        _assert_exact(fed, run, contributors)
        assert fed.server.r.degree == 2
        done += 1
    assert done >= 13  # no dropout, or any single one, always completes on a ring of 6 with t_nb = 2


def test_secagg_plus_with_twenty_clients_and_random_dropouts(federation):
    """k = 6 on 20 clients; dropouts drawn (seeded) until every secret keeps enough live holders,
    since with a sparse graph that is what completion depends on."""
    fed = federation(20, length=50, settings={"k": 6, **NO_ADVERSARY})
    ids = fed.ctx.participants
    drv = fed.driver()
    drv.begin()
    graph, t_nb = fed.server.r.graph, fed.server.r.share_threshold
    assert fed.server.r.degree == 6 and t_nb == 4
    rng = np.random.default_rng(7)
    while True:
        gone = list(rng.choice(ids, 5, replace=False))
        before, after = set(gone[:3]), set(gone[3:])
        alive = set(ids) - before - after
        if all(len(graph[c] & alive) + (c in alive) >= t_nb for c in ids):
            break
    drv.drop = {BEFORE: frozenset(before), AFTER: frozenset(after)}
    run = drv.run()
    assert run.result.notes["excluded"]["masked_input"] == []
    _assert_exact(fed, run, [c for c in ids if c not in before])


def test_64_bit_ring_round(federation):
    fed = federation(4, length=7, settings={"bits": 64})
    run = fed.driver().run()
    assert run.result.notes["bits"] == 64 and run.result.notes["frac_bits"] == 40
    _assert_exact(fed, run, fed.ctx.participants)


def test_consecutive_rounds_and_a_retried_attempt_reuse_the_same_objects(federation):
    fed = federation(5, length=4)
    ids = fed.ctx.participants
    _assert_exact(fed, fed.driver().run(), ids)
    second = fed.next_round(2)
    with pytest.raises(AggregationAborted):
        second.driver({Stage.SECAGG_SHARE_KEYS: set(ids[:3])}).run()
    retry = fed.next_round(2, attempt=1)
    _assert_exact(retry, retry.driver({AFTER: {ids[0]}}).run(), ids)
