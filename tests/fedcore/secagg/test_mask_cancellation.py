"""Masks cancel: the unmasked sum is exact (up to quantisation) under every dropout pattern, and a
round with too few survivors aborts with a clear message instead of returning a wrong sum.

Every round runs the coordinator's engine and the client daemons over the in-memory transport. A
pattern sweep runs one pattern per attempt of one federation (``secagg_round(n, dropouts=...)``,
conftest's ``Dropouts``): the engine completes the round or fails the attempt and retries, so each
pattern gets a fresh key exchange, graph and masks, as a new round would.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from fedcore.common.stages import Stage
from fedcore.secagg.state import resolve_threshold
from fedcore.simulation_memory import Faults

#: sparse graphs for protocol tests: no coalition and no dropout is assumed, so any even k meets the
#: 2^-40 bound of fedcore.secagg.bounds (the privacy tests of the bound are in test_graph_bounds.py)
NO_ADVERSARY = {"corrupt_fraction": 0.0, "dropout_fraction": 0.0}

BEFORE, AFTER = Stage.SECAGG_MASKED_INPUT, Stage.SECAGG_UNMASK


def _ids(n: int) -> list[str]:
    return [f"client-{i:02d}" for i in range(n)]


def _drops(ids, pattern) -> dict[Stage, set[str]]:
    """A pattern (per client: None, BEFORE or AFTER) as stage -> the clients that drop there."""
    return {stage: {c for c, p in zip(ids, pattern) if p == stage} for stage in (BEFORE, AFTER)}


def _assert_exact(run, res, contributors, round_: int = 1):
    assert res is not None, "the round was expected to complete"
    want, weight = run.expected(contributors, round_)
    assert res.num_contributors == len(contributors)
    assert res.total_weight == weight
    np.testing.assert_allclose(res.weighted_sum, want, rtol=0, atol=weight * 2.0 ** -res.notes["frac_bits"] + 1e-12)


@pytest.mark.parametrize("n", [3, 4, 5, pytest.param(6, marks=pytest.mark.slow)])
def test_masks_cancel_under_every_dropout_pattern_complete_graph(secagg_round, n):
    """Each client is alive, drops before its masked input (after sharing keys: its pairwise masks
    must be rebuilt) or drops after it (its self mask must be rebuilt): all 3^n patterns (n = 6,
    729 patterns, is in the slow pass)."""
    t = resolve_threshold(0.5, n, 3)
    ids = _ids(n)
    patterns = list(itertools.product((None, BEFORE, AFTER), repeat=n))
    run = secagg_round(n, length=5, secagg={"k": "all"}, seed=n, dropouts=[_drops(ids, p) for p in patterns])
    attempts = run.sweep()
    assert len(attempts) == 3**n
    outcomes = {"exact": 0, "aborted": 0}
    for pattern, at in zip(patterns, attempts):
        assert at.pattern == {s: frozenset(c) for s, c in _drops(ids, pattern).items() if c}
        inputs = [c for c, p in zip(ids, pattern) if p != BEFORE]
        answered = [c for c, p in zip(ids, pattern) if p is None]
        if len(inputs) >= t and len(answered) >= t:
            _assert_exact(run, at.result, inputs, at.round)
            outcomes["exact"] += 1
        else:
            assert at.result is None and f"threshold is {t}" in at.failure, (pattern, at.failure)
            outcomes["aborted"] += 1
    assert outcomes["exact"] > 0 and outcomes["aborted"] > 0


@pytest.mark.parametrize("stage", [Stage.SECAGG_ADVERTISE_KEYS, Stage.SECAGG_SHARE_KEYS])
def test_early_dropouts_complete_or_abort_by_the_threshold(secagg_round, stage):
    n = 5
    ids = _ids(n)
    gone = [{ids[i] for i in g} for size in range(n + 1) for g in itertools.combinations(range(n), size)]
    run = secagg_round(n, length=4, dropouts=[{stage: g} for g in gone])
    attempts = run.sweep()
    assert len(attempts) == 2**n
    for dropped, at in zip(gone, attempts):
        if n - len(dropped) >= 3:
            _assert_exact(run, at.result, [c for c in ids if c not in dropped], at.round)
            assert at.result.notes["dropouts"][stage.name.removeprefix("SECAGG_").lower()] == sorted(dropped)
        else:
            assert at.result is None and f"only {n - len(dropped)} of {n}" in at.failure, (dropped, at.failure)


def test_sparse_graph_every_pattern_is_exact_or_a_clear_abort(secagg_round):
    """n = 6 with k = 2 (SecAgg+'s graph, share threshold 2 of 3): a thinned neighbourhood may
    exclude clients or abort, but a completed round is always exact for its contributors (all 73
    patterns with at most two dropouts; a fresh random graph each time)."""
    n, done = 6, 0
    ids = _ids(n)
    patterns = [p for p in itertools.product((None, BEFORE, AFTER), repeat=n) if sum(x is not None for x in p) <= 2]
    run = secagg_round(
        n, length=3, secagg={"k": 2, **NO_ADVERSARY}, seed=1, dropouts=[_drops(ids, p) for p in patterns]
    )
    attempts = run.sweep()
    assert len(attempts) == len(patterns) == 73
    for pattern, at in zip(patterns, attempts):
        if at.result is None:
            assert "threshold" in at.failure or "cannot unmask" in at.failure, at.failure
            continue
        excluded = set(at.result.notes["excluded"]["masked_input"])
        contributors = [c for c, p in zip(ids, pattern) if p != BEFORE and c not in excluded]
        _assert_exact(run, at.result, contributors, at.round)
        assert at.result.notes["degree"] == 2
        done += 1
    assert done >= 13  # no dropout, or any single one, always completes on a ring of 6 with t_nb = 2


def test_secagg_plus_with_twenty_clients_and_random_dropouts(secagg_round):
    """k = 6 on 20 clients; dropouts drawn (seeded) until every secret keeps enough live holders,
    since with a sparse graph that is what completion depends on. The drawn clients crash (go
    silent) at their stage."""
    faults = Faults(silent_at={})
    run = secagg_round(20, length=50, secagg={"k": 6, **NO_ADVERSARY}, faults=faults)
    ids = run.ids
    run.open(Stage.SECAGG_ADVERTISE_KEYS)  # the round has begun: its graph is drawn
    graph, t_nb = run.server.r.graph, run.server.r.share_threshold
    assert run.server.r.degree == 6 and t_nb == 4
    rng = np.random.default_rng(7)
    while True:
        gone = list(rng.choice(ids, 5, replace=False))
        before, after = set(gone[:3]), set(gone[3:])
        alive = set(ids) - before - after
        if all(len(graph[c] & alive) + (c in alive) >= t_nb for c in ids):
            break
    faults.silent_at.update({BEFORE: before, AFTER: after})
    assert run.run() == 0
    res = run.result()
    assert res.notes["excluded"]["masked_input"] == []
    assert res.notes["dropouts"]["masked_input"] == sorted(before)
    assert res.notes["dropouts"]["unmask"] == sorted(after)
    _assert_exact(run, res, [c for c in ids if c not in before])


def test_64_bit_ring_round(secagg_round):
    run = secagg_round(4, length=7, secagg={"bits": 64})
    assert run.run() == 0
    res = run.result()
    assert res.notes["bits"] == 64 and res.notes["frac_bits"] == 40
    _assert_exact(run, res, run.ids)


def test_consecutive_rounds_and_a_retried_attempt_reuse_the_same_objects(secagg_round):
    ids = _ids(5)
    run = secagg_round(5, length=4, dropouts=[{}, {Stage.SECAGG_SHARE_KEYS: set(ids[:3])}, {AFTER: {ids[0]}}])
    run.fed.start()
    server, clients = run.server, {c: run.client(c) for c in ids}
    first, refused, retry = run.sweep()
    _assert_exact(run, first.result, ids, 1)
    assert (refused.round, refused.attempt) == (2, 0) and refused.result is None
    assert "only 2 of 5 clients completed share_keys" in refused.failure
    assert (retry.round, retry.attempt) == (2, 1)
    _assert_exact(run, retry.result, ids, 2)  # dropped after its masked input: it still counts
    assert run.server is server and all(run.client(c) is m for c, m in clients.items())
