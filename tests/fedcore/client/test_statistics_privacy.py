"""Round 0's statistics release: charged to the ledger as a Gaussian mechanism when DP is on."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from fedcore.client.cache import UpdateCache
from fedcore.client.handlers import StageHandlers
from fedcore.common.workload import load_workload
from fedcore.common.aggregation import ClientIdentity
from fedcore.dp.accounting import Segment, account
from fedcore.dp.statistics import statistics_epsilon
from fedcore.client.privacy import statistics_release
from fedcore.he.client import CkksClient
from fedcore.plain import PlainClient
from fedcore.secagg.client import SecAggClient
from fedcore.secagg.stats_noise import sigma_for_epsilon
from fedcore.proto.fedpsyau.v1 import federation_pb2 as pb
from fedcore.transport.settings import to_config

FED = "fed-stats"
#: what a (curious) coordinator might claim in the task: far more noise than anyone adds
CLAIMED = {"sigma": 400.0, "sensitivity": 1.0, "delta": 1e-5}


def _handlers(tmp_path, privacy, mode=None, sensitivity=1.0):
    trainer = load_workload("fedcore.examples.softmax:workload").make_trainer({}, "alice", tmp_path, "cpu")
    return StageHandlers(
        trainer,
        mode or PlainClient(ClientIdentity("alice"), FED, {}),
        None,
        UpdateCache(tmp_path / "cache"),
        privacy,
        federation=FED,
        run_id="run-7",
        workdir=tmp_path,
        stats_sensitivity=sensitivity,
    )


def _stats(handlers, attempt=0, claimed=CLAIMED):
    config = {} if claimed is None else {"statistics_noise": claimed}
    header = pb.Header(federation_id=FED, round=0, attempt=attempt)
    return handlers.stats(header, pb.StatsTask(config=to_config(config)))


def _own_sigma(epsilon=1.0, sensitivity=1.0):
    return sigma_for_epsilon(epsilon, 1e-5, sensitivity)


def test_statistics_release_is_noised_here_and_charged_per_attempt_whatever_the_task_claims(tmp_path):
    handlers = _handlers(tmp_path, {"target_epsilon": 10.0, "accountant": "rdp"})
    exact = handlers.trainer.statistics({})
    assert _stats(handlers, attempt=0).ready and _stats(handlers, attempt=1).ready  # each attempt: fresh noise
    sent = [handlers.jobs[(0, a)].vector for a in (0, 1)]
    assert all(np.array_equal(v, np.rint(v)) for v in sent)  # discrete noise on counts
    assert not np.array_equal(sent[0], exact) and not np.array_equal(sent[0], sent[1])
    ledger = json.loads((tmp_path / "privacy_ledger.json").read_text())
    charges = ledger["charges"]
    assert [(c["kind"], c["round"], c["attempt"], c["run"], c["federation"]) for c in charges] == [
        ("statistics", 0, 0, "run-7", FED),
        ("statistics", 0, 1, "run-7", FED),
    ]
    multiplier = _own_sigma()  # sensitivity 1: the client's own noise, not the task's 400
    assert all(
        c["sample_rate"] == 1.0 and c["steps"] == 1 and c["noise_multiplier"] == pytest.approx(multiplier)
        for c in charges
    )
    assert ledger["epsilon"] == pytest.approx(account([Segment(1.0, multiplier, 2)], 1e-5, "rdp").epsilon)


def test_statistics_past_the_budget_are_not_sent(tmp_path):
    handlers = _handlers(tmp_path, {"target_epsilon": 0.5 * statistics_epsilon(_own_sigma(), 1.0, 1e-5)})
    report = _stats(handlers)
    assert not report.ready and "budget exhausted" in report.refusal and not handlers.jobs


def test_statistics_without_dp_are_exact_and_logged_as_not_private(tmp_path, caplog):
    handlers = _handlers(tmp_path / "off", {"enabled": False})
    with caplog.at_level(logging.WARNING, logger="fedcore.client.privacy"):
        assert _stats(handlers).ready
    assert "DP is off, so these statistics are NOT private" in caplog.text
    assert np.array_equal(handlers.jobs[(0, 0)].vector, handlers.trainer.statistics({}))
    assert not (tmp_path / "off" / "privacy_ledger.json").exists()


@pytest.mark.parametrize("mode", ["plain", "ckks"])
def test_a_client_noises_its_own_counts_for_the_fewest_clients_any_visible_sum_holds(mode):
    """plain: each vector reaches the coordinator alone, so it carries all of sigma_total; ckks: no
    client decrypts a sum of fewer than its min_clients (4 here), so each adds sigma_total / 2."""
    client = (
        PlainClient(ClientIdentity("a"), FED, {})
        if mode == "plain"
        else CkksClient(ClientIdentity("a"), FED, {"min_clients": 4})
    )
    vec = np.full(40_000, 7.0)
    noised, record = statistics_release(
        vec, {"target_epsilon": 5.0, "statistics_epsilon": 0.5}, client, 2.0, rng=np.random.default_rng(0)
    )
    total = sigma_for_epsilon(0.5, 1e-5, 2.0)
    assert record == {"sigma": pytest.approx(total), "sensitivity": 2.0, "delta": 1e-5}
    cover = 1 if mode == "plain" else 4
    assert np.std(noised - vec) == pytest.approx(total / np.sqrt(cover), rel=0.03)
    assert abs(np.mean(noised - vec)) < 0.05 * total


def test_secagg_with_federation_dp_adds_its_own_noise_and_the_client_adds_none():
    client = SecAggClient(ClientIdentity("a"), FED, {"federation_dp": True, "stats_sensitivity": 2.0})
    vec = np.arange(12.0)
    same, record = statistics_release(vec, {"target_epsilon": 5.0}, client, 2.0)
    assert np.array_equal(same, vec)  # the distributed discrete Gaussian is added at masking
    assert record == {"sigma": pytest.approx(sigma_for_epsilon(1.0, 1e-5, 2.0)), "sensitivity": 2.0, "delta": 1e-5}


def test_the_coordinator_turns_on_secagg_statistics_noise_when_the_federation_has_dp(tmp_path):
    from fedcore.config.coordinator import parse_coordinator
    from fedcore.coordinator.daemon import with_statistics_dp

    softmax = load_workload("fedcore.examples.softmax:workload")

    def cfg(**tables):
        data = {
            "federation": {"aggregation": "secagg", "workload": "fedcore.examples.softmax:workload"},
            "tls": {"insecure": True},
            **tables,
        }
        return parse_coordinator(data, tmp_path, check_files=False)

    on = with_statistics_dp(cfg(privacy={"target_epsilon": 8.0}), softmax)
    assert on.mode_settings["federation_dp"] is True and on.mode_settings["stats_sensitivity"] == 1.0
    off = with_statistics_dp(cfg(), softmax)
    assert "federation_dp" not in off.mode_settings
    kept = with_statistics_dp(cfg(privacy={"target_epsilon": 8.0}, secagg={"stats_noise": False}), softmax)
    assert kept.mode_settings["stats_noise"] is False  # an explicit choice is the operator's


def test_workload_states_its_statistics_sensitivity_or_gets_sqrt_length():
    from fedcore.common.workload import statistics_sensitivity

    softmax = load_workload("fedcore.examples.softmax:workload")
    assert statistics_sensitivity(softmax, {}) == 1.0  # one sample: one label count + 1

    class Undeclared:
        name = "counts"

        def statistics_spec(self, settings):
            return 78, 1000.0

    assert statistics_sensitivity(Undeclared(), {}) == pytest.approx(78**0.5)
