"""DP-FedAvg end to end on the coordinator: client clipping, noise on the aggregate, accounting, records."""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pytest
from fedcore_testkit import ScriptedClient, config, make_engine, run_until

from fedcore.client.handlers import client_update
from fedcore.common.errors import ConfigError, InvalidPayload
from fedcore.common.task_privacy import ClientLevelDP, TaskPrivacy, decode_privacy
from fedcore.coordinator.state import Phase
from fedcore.dp.accounting import Segment, account
from fedcore.dp.central import DPFedAvg
from fedcore.dp.report import ReportError, privacy_report
from fedcore.dp.rng import SecureRNG

pytestmark = pytest.mark.filterwarnings("ignore:client-level DP", "ignore:central DP noise from a numpy")

CENTRAL = {"enabled": True, "clip_norm": 1.0, "noise_multiplier": 1.0, "clients_total": 3}


def test_dp_fedavg_noise_on_the_mean_has_std_z_s_over_m():
    dp = DPFedAvg(clip_norm=0.5, noise_multiplier=1.5, clients_total=1000, delta=1e-6)
    size, m = 40_000, 3
    mean, record = dp.release(np.zeros(size), float(m), m, selected=m, rng=SecureRNG())
    expected = 1.5 * 0.5 / m
    assert record["mean_noise_std"] == pytest.approx(expected)
    assert np.std(mean) == pytest.approx(expected, rel=0.03)  # ~0.4 % sampling error at 40k draws
    assert abs(np.mean(mean)) < 5 * expected / math.sqrt(size)


def test_dp_fedavg_refuses_weighted_updates_without_charging():
    dp = DPFedAvg(clip_norm=1.0, noise_multiplier=1.0, clients_total=100, delta=1e-5)
    with pytest.raises(ValueError, match="weight 1 per client"):
        dp.release(np.zeros(4), 250.0, 3, selected=3)
    assert dp.epsilon() == 0.0 and dp.rates == []


def test_dp_fedavg_epsilon_composes_the_rounds_at_q_one_for_public_selection():
    dp = DPFedAvg(clip_norm=1.0, noise_multiplier=1.2, clients_total=200, delta=1e-5)
    for selected in (10, 20, 20):
        dp.release(np.zeros(2), float(selected), selected, selected=selected, rng=np.random.default_rng(0))
    want = account([Segment(1.0, 1.2, 3)], 1e-5, "rdp").epsilon
    assert dp.epsilon() == pytest.approx(want) and dp.record()["rounds"] == 3
    secret = DPFedAvg(clip_norm=1.0, noise_multiplier=1.2, clients_total=200, delta=1e-5, sample_rate=0.1)
    for selected in (10, 20, 20):
        secret.release(np.zeros(2), float(selected), selected, selected=selected, rng=np.random.default_rng(0))
    assert secret.epsilon() == pytest.approx(account([Segment(0.1, 1.2, 3)], 1e-5, "rdp").epsilon)


def test_three_clients_in_every_round_are_not_amplified_by_a_claimed_population_of_100():
    # the case: 3 clients, all selected every round, clients_total = 100 -> 1.77 reported, 30.1 true
    dp = DPFedAvg(clip_norm=1.0, noise_multiplier=1.0, clients_total=100, delta=1e-5)
    for _ in range(20):
        dp.release(np.zeros(2), 3.0, 3, selected=3, rng=np.random.default_rng(0))
    true = account([Segment(1.0, 1.0, 20)], 1e-5, "rdp").epsilon
    assert dp.epsilon() == pytest.approx(true) and dp.epsilon() > 10 * account([Segment(0.03, 1.0, 20)], 1e-5).epsilon
    assert dp.record()["sampling_rate"] == 1.0


def test_clients_total_that_does_not_match_the_federation_is_refused():
    from fedcore.dp.central import clients_total_problems

    assert clients_total_problems(3, 3) == []
    (problem,) = clients_total_problems(100, 3)
    assert "clients_total must equal the federation's 3 clients (got 100)" in problem
    assert clients_total_problems(3, None, sample_rate=1.5)[0].startswith("[central_dp] sample_rate")
    dp = DPFedAvg(clip_norm=1.0, noise_multiplier=1.0, clients_total=3, delta=1e-5)
    with pytest.raises(ValueError, match="clients_total must be the federation's real client count"):
        dp.release(np.zeros(2), 4.0, 4, selected=4)


def test_poisson_selection_draws_from_secrets_not_a_seeded_generator():
    from fedcore.dp.central import poisson_select

    pool = [f"c{i}" for i in range(2000)]
    draws = [poisson_select(pool, 0.25) for _ in range(2)]
    assert draws[0] != draws[1]  # nothing seeds it
    assert all(abs(len(d) - 500) < 5 * math.sqrt(2000 * 0.25 * 0.75) for d in draws)
    np.random.seed(0)
    a = poisson_select(pool, 0.25)
    np.random.seed(0)
    assert poisson_select(pool, 0.25) != a


@pytest.mark.parametrize("scale", [0.01, 0.5, 3.0, 200.0])
def test_client_clipped_update_norm_never_exceeds_clip(scale):
    rng = np.random.default_rng(7)
    delta = rng.normal(0, scale, 1000)
    clipped, weight = client_update(delta, 180.0, TaskPrivacy(central=ClientLevelDP(1.0)), round_=1)
    assert np.linalg.norm(clipped) <= 1.0 + 1e-12 and weight == 1.0
    if np.linalg.norm(delta) <= 1.0:
        np.testing.assert_array_equal(clipped, delta)
    else:  # same direction
        assert np.dot(clipped, delta) / (np.linalg.norm(clipped) * np.linalg.norm(delta)) == pytest.approx(1.0)
    same, weight = client_update(delta, 180.0, TaskPrivacy(), round_=1)  # without client-level DP: untouched
    assert weight == 180.0 and same is delta


def test_coordinator_noises_aggregate_and_records_client_level_epsilon(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    eng = make_engine(tmp_path, central_dp=CENTRAL)
    assert "needs thousands of clients" in caplog.text  # the start-up warning
    clients = [ScriptedClient(eng, c, delta=0.1, examples=1) for c in ("alice", "bob", "carol")]
    for c in clients:
        c.join()
    run_until(eng, clients, lambda: eng.finished)
    assert eng.state.phase == Phase.DONE
    noiseless = np.arange(8) + 0.2  # two rounds of mean delta 0.1
    assert not np.allclose(eng.state.params, noiseless, atol=1e-3)  # noise std 1/3 per coordinate was added
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    eps = [line["central_dp"]["epsilon"] for line in lines]
    assert eps[0] > 0 and eps[1] > eps[0]
    assert eps[1] == pytest.approx(account([Segment(1.0, 1.0, 2)], CENTRAL_DELTA, "rdp").epsilon)
    assert lines[0]["central_dp"]["noise_multiplier"] == 1.0 and lines[0]["central_dp"]["delta"] == CENTRAL_DELTA
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["central_dp"]["epsilon"] == pytest.approx(eps[1]) and summary["central_dp"]["rounds"] == 2
    assert "privacy" not in lines[0] and "epsilon_max" not in lines[0]  # no client ran DP-SGD
    with pytest.raises(ReportError, match="no record with a 'privacy' field"):  # not a malformed-line error
        privacy_report(tmp_path, write_png=False)
    restarted = make_engine(tmp_path, central_dp=CENTRAL)  # the account survives a coordinator restart
    assert restarted.client_dp.central.rates == [1.0, 1.0]
    assert restarted.client_dp.central.epsilon() == pytest.approx(eps[1])


CENTRAL_DELTA = min(1e-5, 1 / 30)


def test_coordinator_refuses_a_weighted_update_under_central_dp(tmp_path):
    eng = make_engine(tmp_path, central_dp=CENTRAL)
    clients = [ScriptedClient(eng, c, delta=0.1, examples=1) for c in ("alice", "bob")]
    heavy = ScriptedClient(eng, "carol", delta=0.1, examples=30)  # a daemon that ignored central_dp
    for c in (*clients, heavy):
        c.join()
    run_until(eng, [*clients, heavy], lambda: eng.state.phase == Phase.AGGREGATE)
    task = heavy.task()
    with pytest.raises(InvalidPayload, match="weight"):
        heavy.submit(heavy.answer(task))


def test_train_task_carries_the_clip_norm_in_its_privacy_message_only(tmp_path):
    eng = make_engine(tmp_path, central_dp={**CENTRAL, "clip_norm": 0.25})
    from fedcore.coordinator.bodies import task_privacy, train_config

    wire = task_privacy(eng)
    assert wire.HasField("central") and not wire.HasField("distributed")
    assert decode_privacy(wire).central == ClientLevelDP(0.25)
    assert "central_dp" not in train_config(eng, 1) and "privacy" not in train_config(eng, 1)
    assert not task_privacy(make_engine(tmp_path / "off")).HasField("central")


def test_central_dp_config_problems_are_reported_together(tmp_path):
    with pytest.raises(ConfigError) as exc:
        config(
            tmp_path,
            central_dp={
                "enabled": True,
                "clip_norm": -1.0,
                "noise_multiplier": 0.0,
                "clients_total": 1,
                "delta": 1.5,
                "sigma": 2,
            },
        )
    text = str(exc.value)
    for part in (
        "clip_norm must be > 0",
        "noise_multiplier must be > 0",
        "clients_total must be >=",
        "delta must be in",
        "unknown key 'sigma'",
    ):
        assert part in text


def test_coordinator_config_refuses_a_population_larger_than_the_federation_it_waits_for(tmp_path):
    from fedcore.common.errors import ConfigError
    from fedcore.config.coordinator import parse_coordinator

    def parse(clients_total):
        data = {
            "federation": {"min_available": 3},
            "tls": {"insecure": True},
            "central_dp": {"enabled": True, "clip_norm": 1.0, "noise_multiplier": 1.0, "clients_total": clients_total},
        }
        return parse_coordinator(data, tmp_path, check_files=False)

    with pytest.raises(ConfigError, match=r"clients_total must equal the federation's 3 clients \(got 100\)"):
        parse(100)
    assert parse(3).central_dp.clients_total == 3
