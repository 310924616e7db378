"""What noisy SecAgg rounds release besides the noisy sum: no clip count, and round 0's statistics noise.

Every round runs the coordinator's engine and the client daemons over the in-memory transport
(round 0 when the clients have statistics: ``secagg_round(stats=...)``; its bound is the workload's,
1e3 for the known-updates workload, and every weight is 1).
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest

from fedcore.common.stages import Stage
from fedcore.secagg.state import SecAggSettings, SecAggStage
from fedcore.secagg.stats_noise import epsilon_of, sigma_for_epsilon, stats_noise, stats_task_config
from fedcore.simulation_memory import Faults

DDP = {"noise_multiplier": 1.0, "clip_norm": 0.5, "delta": 1e-5}
STATS_CLIP = 1e3  # the known-updates workload's statistics bound (its statistics_spec)


def _full(n: int, length: int, value: float = 0.0) -> dict:
    return {f"client-{i:02d}": np.full(length, value) for i in range(n)}


def test_noisy_statistics_round_releases_no_clip_count(secagg_round):
    # every count exceeds the clip: a clear-text clip count would be n * L, summed without noise
    run = secagg_round(4, stats=_full(4, 20, 2 * STATS_CLIP), secagg={"stats_noise_sigma": 2.0}).until_statistics()
    res = run.result()
    assert res.notes["clip"] == STATS_CLIP and res.total_weight == 4
    assert res.notes["noise_sigma"] > 0
    assert res.notes["clipped"] == 0 and res.notes["clip_count_released"] is False


def test_distributed_dp_quantises_at_the_clip_norm_so_nothing_is_clipped(secagg_round):
    # a [secagg] clip below the L2 clip norm used to clip coordinates and count them in the clear
    vecs = _full(4, 8, 0.15)  # L2 norm 0.42 < clip_norm 0.5: left alone by the L2 clip
    run = secagg_round(
        4, length=8, secagg={"distributed_dp": DDP, "clip": 0.1}, vectors=vecs, weights={c: 1.0 for c in vecs}
    )
    assert run.run() == 0
    res = run.result()
    assert res.notes["max_weight"] == 1  # the engine caps weights at 1 under distributed DP
    assert res.notes["clip"] == DDP["clip_norm"]
    assert res.notes["clipped"] == 0 and res.notes["clip_count_released"] is False


def test_clip_count_is_still_reported_without_noise(secagg_round):
    run = secagg_round(4, length=5, secagg={"clip": 0.5}, vectors=_full(4, 5, 0.9))
    assert run.run() == 0
    res = run.result()
    assert res.notes["clipped"] == 20 and res.notes["clip_count_released"] is True


@pytest.mark.parametrize("dropped", [0, 2])
def test_statistics_get_noise_by_default_when_the_federation_has_dp(secagg_round, dropped):
    """With distributed DP configured and nothing said about the statistics, round 0 adds discrete
    Gaussian noise of sigma_total (from stats_epsilon 1.0 at delta 1e-5, sensitivity sqrt(L)) split
    as sigma_total / sqrt(T) per client: T = 3 survivors of 5 carry at least sigma_total."""
    n, length = 5, 3000
    ids = [f"client-{i:02d}" for i in range(n)]
    faults = Faults(silent_at={(Stage.SECAGG_MASKED_INPUT, 0): set(ids[:dropped])})
    run = secagg_round(n, stats=_full(n, length), secagg={"distributed_dp": DDP}, faults=faults).until_statistics()
    res = run.result()
    assert res.num_contributors == n - dropped and res.notes["dropouts"]["masked_input"] == ids[:dropped]
    note = res.noise
    total = sigma_for_epsilon(1.0, 1e-5, math.sqrt(length))
    assert note is not None and note.kind == "stats" and note.threshold == 3 and note.survivors == n - dropped
    assert note.sigma_total == pytest.approx(total) and note.delta == 1e-5
    assert note.sensitivity == pytest.approx(math.sqrt(length))
    assert res.notes["noise_sigma"] == pytest.approx(total / math.sqrt(3) * 2.0 ** res.notes["frac_bits"])
    survivors = n - dropped
    assert np.var(res.weighted_sum) == pytest.approx(total**2 * survivors / 3, rel=0.1)
    np.testing.assert_array_equal(run.engine.state.statistics, res.weighted_sum)  # what the federation keeps
    charged = {"sigma_total": total, "sensitivity": math.sqrt(length), "delta": 1e-5, "epsilon": 1.0}
    assert all(run.client(c).last_stats_dp == pytest.approx(charged) for c in ids[dropped:])


def test_statistics_go_without_noise_only_when_no_dp_is_on(secagg_round):
    run = secagg_round(4, stats=_full(4, 10, 3.0), secagg={"clip": 100.0}).until_statistics()
    res = run.result()
    assert res.noise is None and res.notes["noise_sigma"] == 0
    np.testing.assert_array_equal(res.weighted_sum, np.full(10, 12.0))
    assert SecAggSettings.from_mapping({"federation_dp": True}).stats_noise_on
    assert not SecAggSettings.from_mapping({"distributed_dp": DDP, "stats_noise": False}).stats_noise_on


def test_client_refuses_less_statistics_noise_than_its_own_budget(secagg_round, caplog):
    run = secagg_round(4, stats=_full(4, 10, 1.0), secagg={"federation_dp": True, "stats_epsilon": 2.0, "clip": 100.0})
    for c in run.ids:
        run.use_client_settings(c, {"federation_dp": True, "stats_epsilon": 1.0})
    with caplog.at_level(logging.WARNING):
        run.until(lambda: run.attempt == 1)  # round 0's first attempt failed
    refusals = [r.getMessage() for r in caplog.records if r.name == "fedcore.client" and r.levelno >= logging.ERROR]
    assert len(refusals) == 4 and all("statistics noise settings require" in m for m in refusals), refusals
    assert all(run.stage_of(c) == SecAggStage.ABORTED for c in run.ids)
    assert run.engine.state.statistics is None
    assert any("only 0 of 4 clients completed masked_input" in r.getMessage() for r in caplog.records)


def test_sigma_meets_the_budget_under_the_coordinators_rdp_accounting():
    from fedcore.dp.secagg_dp import stats_epsilon

    for eps, length, t in [(1.0, 78, 3), (0.5, 78, 10), (4.0, 500, 6)]:
        total = sigma_for_epsilon(eps, 1e-5, math.sqrt(length))
        assert epsilon_of(total, math.sqrt(length), 1e-5) == pytest.approx(eps)
        assert stats_epsilon(total / math.sqrt(t), length, t, 2 * t, 1e-5) <= eps


def test_statistics_task_carries_what_a_client_charges():
    cfg = stats_task_config({"distributed_dp": DDP, "stats_sensitivity": 4.0}, 78)
    assert cfg == {
        "stats_dp": {
            "sigma_total": pytest.approx(sigma_for_epsilon(1.0, 1e-5, 4.0)),
            "sensitivity": 4.0,
            "delta": 1e-5,
            "epsilon": pytest.approx(1.0),
        }
    }
    assert stats_task_config({}, 78) == {}
    assert stats_noise(SecAggSettings.from_mapping({"stats_noise": True}), 78).sigma_total == pytest.approx(
        sigma_for_epsilon(1.0, 1e-5, math.sqrt(78))
    )
