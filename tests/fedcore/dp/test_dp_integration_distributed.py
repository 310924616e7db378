"""Distributed DP inside SecAgg+: noise scaled for the survivor threshold, exact sums, no overflow,
statistics noise, accounting and the [secagg] settings check (the daemons' engine and client
daemons over the in-memory transport, real crypto)."""

from __future__ import annotations

import logging
import math
import re

import numpy as np
import pytest
from fedcore_testkit import config

from fedcore.common.errors import ConfigError
from fedcore.coordinator.checkpoint import CheckpointStore
from fedcore.dp.central import clip_update
from fedcore.dp.discrete import sample_discrete_gaussian
from fedcore.dp.distributed import distributed_epsilon, quantised_l2_sensitivity
from fedcore.dp.secagg_dp import (
    DistributedAccountant,
    DistributedDP,
    stats_epsilon,
)
from fedcore.examples import updates
from fedcore.secagg import quantize as qz
from fedcore.secagg.client import SecAggClient
from fedcore.secagg.quantize import choose_noisy_params
from fedcore.secagg.server import SecAggServer
from fedcore.simulation_memory import Faults, memory_federation

DDP = {"noise_multiplier": 1.0, "clip_norm": 1.0, "delta": 1e-5}


def _ids(n):
    return [f"c{i}" for i in range(n)]


def _federation(tmp_path, n: int, secagg: dict, *, length: int, scales=None, statistics: bool = False, drop=None):
    """``n`` clients of the known-updates workload (weight 1; client i's update has std
    ``scales[i]``, default 0: zeros; with ``statistics`` a round-0 vector of ``length`` too), one
    round; ``drop``: stage -> clients that go silent when handed it."""
    settings = {
        "size": length,
        "scale": 0.0,
        "num_examples": 1,
        "seed": 7,
        **({"statistics": length} if statistics else {}),
    }
    fed = memory_federation(
        n,
        1,
        tmp_path / "run",
        aggregation="secagg",
        workload="fedcore.examples.updates:workload",
        workload_settings=settings,
        client_ids=_ids(n),
        secagg=secagg,
        client_settings=[{"scale": s} for s in scales] if scales else None,
        faults=Faults(silent_at={s: set(ids) for s, ids in (drop or {}).items()}),
    )
    return fed, settings


def _round(tmp_path, n, secagg, **kwargs):
    """Round 1's aggregate, as the engine's mode produced it."""
    fed, _ = _federation(tmp_path, n, secagg, **kwargs)
    assert fed.run() == 0
    return fed.engine.mode.result()


def _statistics(tmp_path, n, secagg, *, length):
    """(round 0's statistics aggregate, the engine's record of its release)."""
    fed, _ = _federation(tmp_path, n, secagg, length=length, statistics=True)
    with fed:
        assert fed.run_until(lambda e: e.state.statistics is not None)
        return fed.engine.mode.result(), fed.engine.client_dp.stats


@pytest.mark.parametrize("dropped", [2, 0])
def test_survivors_sum_carries_at_least_the_configured_central_variance(tmp_path, dropped):
    d, ids = 4000, _ids(5)
    settings = {"threshold": 0.5, "distributed_dp": DDP}  # t = 3 of 5
    res = _round(tmp_path, 5, settings, length=d, drop={("SECAGG_MASKED_INPUT", 1): ids[:dropped]})
    note, f = res.noise, res.notes["frac_bits"]
    assert note is not None and note.kind == "update" and note.survivors == 5 - dropped
    assert note.threshold == 3 and res.num_contributors == 5 - dropped and res.notes["clipped"] == 0
    central = (DDP["noise_multiplier"] * quantised_l2_sensitivity(1.0, 2.0**f, d, beta=None)) ** 2  # integer units
    assert res.notes["noise_sigma"] == pytest.approx(math.sqrt(central / 3))
    variance = np.var(res.weighted_sum * 2.0**f)
    # the sum over m >= t survivors has variance m/t of the target; 4000 values: ~2.2 % sampling error
    assert variance >= 0.93 * central
    assert variance == pytest.approx(central * (5 - dropped) / 3, rel=0.08)


def test_noisy_sum_is_exact_up_to_the_noise_and_rounding_with_no_overflow(tmp_path):
    d, ids = 300, _ids(4)
    scales = (0.01, 0.2, 1.0, 5.0)  # the last two get clipped
    drawn: dict[str, np.ndarray] = {}

    def recorder(i, cid):
        gen = np.random.default_rng(100 + i)

        def sample(sigma, size):
            drawn[cid] = sample_discrete_gaussian(sigma, size, gen)
            return drawn[cid]

        return sample

    settings = {"threshold": 0.6, "distributed_dp": DDP}
    fed, workload = _federation(tmp_path, 4, settings, length=d, scales=scales)
    fed.start()
    for i, cid in enumerate(ids):  # each client daemon's mode draws its noise through a recorder
        fed.daemons[cid].handlers.mode.noise_sampler = recorder(i, cid)
    assert fed.run() == 0
    res = fed.engine.mode.result()
    vectors = {c: updates.update({**workload, "scale": s}, i, 1) for i, (c, s) in enumerate(zip(ids, scales))}
    f, bound = res.notes["frac_bits"], math.ceil(qz.NOISE_TAIL * res.notes["noise_sigma"])
    assert res.notes["max_weight"] == 1 and res.total_weight == 4.0 and sorted(drawn) == ids
    # ring headroom: 4 clients x (|q| + noise tail) stays below 2^(bits-1)
    assert 4 * (math.ceil(2.0**f) + bound) < 2 ** (res.notes["bits"] - 1)
    clipped_sum = sum(clip_update(v, 1.0)[0] for v in vectors.values())
    noise = sum(np.clip(n, -bound, bound) for n in drawn.values())
    residual = np.rint(res.weighted_sum * 2.0**f) - noise - clipped_sum * 2.0**f
    assert np.abs(residual).max() <= 4  # stochastic rounding: < 1 unit per client
    assert np.linalg.norm(clip_update(vectors[ids[3]], 1.0)[0]) == pytest.approx(1.0)


def test_client_refuses_less_noise_than_its_distributed_dp_settings_require(tmp_path, caplog):
    """Clients whose own floors ask for distributed DP refuse a coordinator that offers none: every
    attempt fails at the masked input and no aggregate is released."""
    ids = _ids(4)
    fed, _ = _federation(tmp_path, 4, {"threshold": 0.6}, length=50)
    fed.start()
    for cid in ids:  # the client's mode with its own settings (floors) instead of the coordinator's table
        daemon = fed.daemons[cid]
        daemon.handlers.mode = SecAggClient(
            daemon.identity, daemon.cfg.client.federation, {"threshold": 0.6, "distributed_dp": DDP}
        )
    with caplog.at_level(logging.ERROR, logger="fedcore.client"):
        assert fed.run() == 4  # aborted
    refusals = [
        r.getMessage() for r in caplog.records if r.name == "fedcore.client" and "cannot answer" in r.getMessage()
    ]
    assert refusals and all(re.search("noise_sigma .* below", m) for m in refusals)
    assert {m.split(" stage ")[1].split(":")[0] for m in refusals} == {"SECAGG_MASKED_INPUT"}
    assert CheckpointStore(fed.cfg.server.run_dir / "checkpoints").load_latest() is None


def test_statistics_round_gets_count_noise_of_the_configured_std(tmp_path):
    d, s = 3000, 4.0
    res, record = _statistics(tmp_path, 4, {"stats_noise_sigma": s}, length=d)
    note = res.noise
    assert (
        note is not None
        and note.kind == "stats"
        and res.notes["noise_sigma"] == pytest.approx(s * 2.0 ** res.notes["frac_bits"])
    )
    # in counts, over 4 clients (client i sends i + 1 in every slot: a constant, no variance of its own)
    assert np.var(res.weighted_sum) == pytest.approx(4 * s * s, rel=0.08)
    assert record["sensitivity"] == pytest.approx(math.sqrt(d))
    assert record["epsilon"] == pytest.approx(stats_epsilon(s, d, note.threshold, 4, 1e-5))


def test_accountant_composes_rounds_like_distributed_epsilon():
    dp = DistributedDP(1.2, 0.5, 1e-6)
    acc = DistributedAccountant(dp.delta)
    sens = quantised_l2_sensitivity(0.5, 2.0**20, 1000, beta=None)
    sigma = 1.2 * sens / math.sqrt(6)
    for _ in range(4):
        acc.charge(sensitivity=sens, sigma_client=sigma, threshold=6, participants=10, dim=1000)
    want = distributed_epsilon(
        noise_multiplier=1.2,
        clip_norm=0.5,
        scale=2.0**20,
        dim=1000,
        threshold=6,
        max_clients=10,
        rounds=4,
        delta=1e-6,
        beta=None,
    )
    assert acc.epsilon() == pytest.approx(want) and acc.record(dp)["rounds"] == 4


def test_chosen_scale_is_the_largest_whose_noise_tails_fit_the_ring():
    dp = DistributedDP(2.0, 1.0)

    def sigma(f):
        return 2.0 * quantised_l2_sensitivity(1.0, 2.0**f, 10_000, beta=None) / math.sqrt(30)

    p = choose_noisy_params(50, 1.0, 1.0, sigma_of_f=sigma, length=10_000)
    assert p.noise_sigma == pytest.approx(sigma(p.frac_bits)) and p.bits == 32
    qz.check_params(p, 50, 10_000)
    assert qz.max_frac_bits(32, 50, 1.0, 1, math.ceil(qz.NOISE_TAIL * sigma(p.frac_bits + 1)), 10_000) < p.frac_bits + 1
    assert dp.clip_norm == 1.0


def test_validate_settings_reports_every_bad_secagg_value_at_once(tmp_path):
    bad = {
        "threshold": -3,
        "k": 1,
        "clip": 0.0,
        "colour": "red",
        "stats_noise_sigma": -1.0,
        "distributed_dp": {"noise_multiplier": -1.0, "sigma": 2},
    }
    problems = SecAggServer.validate_settings(bad)
    text = "\n".join(problems)
    for part in (
        "unknown key 'colour'",
        "absolute threshold must be >= 2",
        "k must be",
        "clip must be a positive",
        "stats_noise_sigma must be",
        "noise_multiplier must be a finite number > 0",
        "unknown key 'sigma'",
        "clip_norm is required",
    ):
        assert part in text, part
    assert SecAggServer.validate_settings({"threshold": 0.6, "distributed_dp": DDP, "stats_noise_sigma": 2.0}) == []
    with pytest.raises(ConfigError) as exc:  # and the coordinator's config loader reports them at load
        config(tmp_path, federation={"aggregation": "secagg", "min_clients": 3}, secagg=bad)
    assert "[secagg] unknown key 'colour'" in str(exc.value) and "[secagg] k must be" in str(exc.value)


def test_statistics_record_uses_the_workloads_stated_sensitivity_not_sqrt_length(tmp_path):
    d, s = 300, 4.0
    res, record = _statistics(tmp_path, 4, {"stats_noise_sigma": s, "stats_sensitivity": 3.0}, length=d)
    assert res.noise is not None
    threshold = res.noise.threshold
    assert record["sensitivity"] == 3.0
    assert record["epsilon"] == pytest.approx(stats_epsilon(s, d, threshold, 4, 1e-5, sensitivity=3.0))
    assert record["epsilon"] < stats_epsilon(s, d, threshold, 4, 1e-5)  # sqrt(300) would overstate it
