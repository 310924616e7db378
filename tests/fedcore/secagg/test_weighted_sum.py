"""Weighted aggregation, the statistics run (exact integer counts), clipping and the DP noise hook.

Every round runs the coordinator's engine and the client daemons over the in-memory transport,
the clients contributing the vectors and weights a test gives them (``secagg_round(vectors=,
weights=, stats=)``). Without DP the engine bounds a client's weight by 1e6 (``max_weight``).
"""

from __future__ import annotations

import logging

import numpy as np

from fedcore.common.stages import Stage
from fedcore.secagg import noise as noise_mod
from fedcore.secagg.state import SecAggStage
from fedcore.simulation_memory import Faults

IDS = [f"client-{i:02d}" for i in range(5)]
ENGINE_MAX_WEIGHT = 1_000_000  # fedcore.common.aggregation.AggregationContext's default, the engine's without DP


def test_au_cooccurrence_counts_sum_exactly(secagg_round):
    """The statistics run (round 0): 12 x 12 integer count matrices, weight 1, max weight 1, one
    client gone before its masked input and one after it."""
    rng = np.random.default_rng(3)
    counts = {c: rng.integers(0, 900, 144).astype(np.int64) for c in IDS}
    faults = Faults(silent_at={(Stage.SECAGG_UNMASK, 0): {"client-04"}, (Stage.SECAGG_MASKED_INPUT, 0): {"client-01"}})
    run = secagg_round(5, stats=counts, faults=faults).until_statistics()
    res = run.result()
    contributors = [c for c in IDS if c != "client-01"]
    want = sum(counts[c] for c in contributors).astype(float)
    np.testing.assert_array_equal(res.weighted_sum, want)
    np.testing.assert_array_equal(run.engine.state.statistics, want)  # what the federation keeps
    assert res.total_weight == 4 and res.notes["clipped"] == 0 and res.notes["max_weight"] == 1


def test_weights_are_summed_under_the_masks(secagg_round):
    weights = {c: float(w) for c, w in zip(IDS, [3, 17, 40, 1, 9])}
    run = secagg_round(5, length=10, weights=weights)
    run.server.record_inputs = True  # keep what the coordinator received
    run.open(Stage.SECAGG_UNMASK)
    for c in IDS:  # the weight coordinate the coordinator received is masked, not the weight
        assert int(run.server.r.inputs[c][10]) != weights[c]
    assert run.run() == 0
    res = run.result()
    assert res.total_weight == 70
    want, _ = run.expected(IDS)
    np.testing.assert_allclose(res.weighted_sum, want, atol=run.tolerance(70))
    np.testing.assert_allclose(res.mean, want / 70, atol=run.tolerance(70) / 70)


def test_weights_are_rounded_and_clipped_to_max_weight(secagg_round):
    weights = dict(zip(IDS, [0.3, 2.5, 1e9, 7.7, 50.0]))
    run = secagg_round(5, length=4, weights=weights)
    assert run.run() == 0
    res = run.result()
    assert res.total_weight == 1 + 2 + ENGINE_MAX_WEIGHT + 8 + 50
    assert res.notes["max_weight"] == ENGINE_MAX_WEIGHT


def test_clipped_values_are_counted_and_the_sum_is_of_clipped_values(secagg_round):
    vectors = {c: np.array([0.5, 3.0, -2.0, 0.25]) for c in IDS}
    run = secagg_round(5, length=4, vectors=vectors, weights={c: 1.0 for c in IDS}, secagg={"clip": 1.0})
    assert run.run() == 0
    res = run.result()
    assert res.notes["clipped"] == 10
    np.testing.assert_allclose(res.weighted_sum, 5 * np.array([0.5, 1.0, -1.0, 0.25]), atol=1e-9)


def _noisy(secagg_round, sampler=None, sigma=2.0, faults=None):
    counts = {c: np.arange(6, dtype=np.int64) for c in IDS}
    run = secagg_round(
        5,
        length=6,
        vectors=counts,
        weights={c: 1.0 for c in IDS},
        faults=faults,
        secagg={"clip": 100.0, "noise_sigma": sigma},
    )
    run.fed.start()  # the daemons have joined: their modes exist
    for c in IDS:
        run.client(c).noise_sampler = sampler
    return run


def test_injected_noise_sampler_is_added_in_integer_units(secagg_round):
    calls = []

    def plus_three(sigma, size):
        calls.append((sigma, size))
        return np.full(size, 3, np.int64)

    run = _noisy(secagg_round, plus_three, faults=Faults(silent_at={Stage.SECAGG_MASKED_INPUT: {"client-02"}}))
    assert run.run() == 0
    res = run.result()
    f = res.notes["frac_bits"]
    np.testing.assert_array_equal(res.weighted_sum, 4 * np.arange(6) + 4 * 3 * 2.0**-f)
    assert calls == [(2.0, 6)] * 4 and res.notes["noise_sigma"] == 2.0


def test_module_level_noise_hook_and_tail_clipping(secagg_round, monkeypatch):
    monkeypatch.setattr(noise_mod, "NOISE_SAMPLER", lambda sigma, size: np.full(size, 10**9, np.int64))
    run = _noisy(secagg_round, None, sigma=1.0)
    assert run.run() == 0
    res = run.result()
    f = res.notes["frac_bits"]
    np.testing.assert_array_equal(res.weighted_sum, 5 * np.arange(6) + 5 * 12 * 2.0**-f)  # clipped to 12 sigma


def test_a_broken_noise_sampler_aborts_the_client(secagg_round, caplog):
    """The client refuses to send (ProtocolAbort, logged by its daemon); the round goes on without it."""
    run = _noisy(secagg_round, None)
    run.client("client-00").noise_sampler = lambda sigma, size: np.zeros(size + 1)
    with caplog.at_level(logging.ERROR, logger="fedcore.client"):
        assert run.run() == 0
    assert any(
        "cannot answer" in r.getMessage() and "noise sampler must return 6 integers" in r.getMessage()
        for r in caplog.records
    )
    assert run.stage_of("client-00") == SecAggStage.ABORTED  # its mode ended its part in the round
    res = run.result()
    assert res.notes["dropouts"]["masked_input"] == ["client-00"] and res.num_contributors == 4


def test_default_noise_is_the_dp_packages_discrete_gaussian(secagg_round):
    """Without an injected sampler the clients use fedcore.dp.discrete (secure RNG): the sum of five
    clients' noise has standard deviation about sqrt(5) * sigma, in integer units, and is integer."""
    assert noise_mod.default_sampler() is not None
    length, sigma = 4000, 4.0
    counts = {c: np.full(length, 7, np.int64) for c in IDS}
    run = secagg_round(
        5, length=length, vectors=counts, weights={c: 1.0 for c in IDS}, secagg={"clip": 100.0, "noise_sigma": sigma}
    )
    assert run.run() == 0
    res = run.result()
    assert all(run.client(c).noise_sampler is None for c in IDS)  # the daemons' modes, as deployed
    units = (res.weighted_sum - 35) * 2.0 ** res.notes["frac_bits"]
    np.testing.assert_array_equal(units, np.round(units))
    assert abs(units.mean()) < 0.7  # 5 standard errors
    assert 0.85 * np.sqrt(5) * sigma < units.std() < 1.1 * np.sqrt(5) * sigma
