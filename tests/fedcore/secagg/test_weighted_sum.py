"""Weighted aggregation, the statistics run (exact integer counts), clipping and the DP noise hook."""

from __future__ import annotations

import numpy as np
import pytest

from fedcore.common.aggregation import ClientIdentity
from fedcore.common.errors import ProtocolAbort
from fedcore.common.stages import Stage
from fedcore.secagg import noise as noise_mod
from fedcore.secagg.client import SecAggClient

IDS = [f"client-{i:02d}" for i in range(5)]


def test_au_cooccurrence_counts_sum_exactly(federation):
    """The statistics run: 12 x 12 integer count matrices, large clip, weight 1, max weight 1."""
    rng = np.random.default_rng(3)
    counts = {c: rng.integers(0, 900, 144).astype(np.int64) for c in IDS}
    fed = federation(5, length=144, settings={"clip": 1e4}, vectors=counts, weights={c: 1.0 for c in IDS},
                     max_weight=1)
    run = fed.driver({Stage.SECAGG_UNMASK: {"client-04"}, Stage.SECAGG_MASKED_INPUT: {"client-01"}}).run()
    contributors = [c for c in IDS if c != "client-01"]
    np.testing.assert_array_equal(run.result.weighted_sum, sum(counts[c] for c in contributors).astype(float))
    assert run.result.total_weight == 4 and run.result.notes["clipped"] == 0


def test_weights_are_summed_under_the_masks(federation):
    weights = {c: float(w) for c, w in zip(IDS, [3, 17, 40, 1, 9])}
    fed = federation(5, length=10, weights=weights)
    fed.server.record_inputs = True  # keep what the coordinator received
    drv = fed.driver()
    for stage in fed.server.round_stages()[:3]:
        drv.run_stage(stage)
    for c in IDS:  # the weight coordinate the coordinator received is masked, not the weight
        assert int(fed.server.r.inputs[c][10]) != weights[c]
    run = drv.run()
    assert run.result.total_weight == 70
    want, _ = fed.expected(IDS)
    np.testing.assert_allclose(run.result.weighted_sum, want, atol=fed.tolerance(70))
    np.testing.assert_allclose(run.result.mean, want / 70, atol=fed.tolerance(70) / 70)


def test_weights_are_rounded_and_clipped_to_max_weight(federation):
    weights = dict(zip(IDS, [0.3, 2.5, 1e9, 7.7, 50.0]))
    fed = federation(5, length=4, weights=weights, max_weight=20)
    run = fed.driver().run()
    assert run.result.total_weight == 1 + 2 + 20 + 8 + 20
    assert run.result.notes["max_weight"] == 20


def test_clipped_values_are_counted_and_the_sum_is_of_clipped_values(federation):
    vectors = {c: np.array([0.5, 3.0, -2.0, 0.25]) for c in IDS}
    fed = federation(5, length=4, vectors=vectors, weights={c: 1.0 for c in IDS}, settings={"clip": 1.0})
    run = fed.driver().run()
    assert run.result.notes["clipped"] == 10
    np.testing.assert_allclose(run.result.weighted_sum, 5 * np.array([0.5, 1.0, -1.0, 0.25]), atol=1e-9)


def _noisy(federation, sampler=None, sigma=2.0):
    counts = {c: np.arange(6, dtype=np.int64) for c in IDS}
    fed = federation(5, length=6, vectors=counts, weights={c: 1.0 for c in IDS}, max_weight=1,
                     settings={"clip": 100.0, "noise_sigma": sigma})
    for c in IDS:
        fed.clients[c] = SecAggClient(ClientIdentity(c), "fed-test", {}, noise_sampler=sampler)
    return fed


def test_injected_noise_sampler_is_added_in_integer_units(federation):
    calls = []

    def plus_three(sigma, size):
        calls.append((sigma, size))
        return np.full(size, 3, np.int64)

    fed = _noisy(federation, plus_three)
    run = fed.driver({Stage.SECAGG_MASKED_INPUT: {"client-02"}}).run()
    f = run.result.notes["frac_bits"]
    np.testing.assert_array_equal(run.result.weighted_sum, 4 * np.arange(6) + 4 * 3 * 2.0 ** -f)
    assert calls == [(2.0, 6)] * 4 and run.result.notes["noise_sigma"] == 2.0


def test_module_level_noise_hook_and_tail_clipping(federation, monkeypatch):
    monkeypatch.setattr(noise_mod, "NOISE_SAMPLER", lambda sigma, size: np.full(size, 10**9, np.int64))
    fed = _noisy(federation, None, sigma=1.0)
    run = fed.driver().run()
    f = run.result.notes["frac_bits"]
    np.testing.assert_array_equal(run.result.weighted_sum, 5 * np.arange(6) + 5 * 12 * 2.0 ** -f)  # clipped to 12 sigma


def test_a_broken_noise_sampler_aborts_the_client(federation):
    fed = _noisy(federation, lambda sigma, size: np.zeros(size + 1))
    with pytest.raises(ProtocolAbort, match="noise sampler must return 6 integers"):
        fed.driver().run()


def test_default_noise_is_the_dp_packages_discrete_gaussian(federation):
    """Without an injected sampler the clients use fedcore.dp.discrete (secure RNG): the sum of five
    clients' noise has standard deviation about sqrt(5) * sigma, in integer units, and is integer."""
    assert noise_mod.default_sampler() is not None
    length, sigma = 4000, 4.0
    counts = {c: np.full(length, 7, np.int64) for c in IDS}
    fed = federation(5, length=length, vectors=counts, weights={c: 1.0 for c in IDS}, max_weight=1,
                     settings={"clip": 100.0, "noise_sigma": sigma})
    for c in IDS:
        fed.clients[c] = SecAggClient(ClientIdentity(c), "fed-test", {})
    run = fed.driver().run()
    units = (run.result.weighted_sum - 35) * 2.0 ** run.result.notes["frac_bits"]
    np.testing.assert_array_equal(units, np.round(units))
    assert abs(units.mean()) < 0.7  # 5 standard errors
    assert 0.85 * np.sqrt(5) * sigma < units.std() < 1.1 * np.sqrt(5) * sigma
