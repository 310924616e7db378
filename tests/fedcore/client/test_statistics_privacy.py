"""Round 0's statistics release: charged to the ledger as a Gaussian mechanism when DP is on."""

from __future__ import annotations

import json
import logging

import pytest

from fedcore.client.cache import UpdateCache
from fedcore.client.handlers import StageHandlers
from fedcore.client.trainer import load_workload
from fedcore.common.aggregation import ClientIdentity
from fedcore.dp.accounting import Segment, account
from fedcore.dp.statistics import statistics_epsilon
from fedcore.plain import PlainClient
from fedcore.proto.fedpsyau.v1 import federation_pb2 as pb
from fedcore.transport.structs import to_struct

FED = "fed-stats"
NOISE = {"sigma": 4.0, "sensitivity": 2.0, "delta": 1e-5}


def _handlers(tmp_path, privacy):
    trainer = load_workload("fedcore.examples.softmax:workload").make_trainer({}, "alice", tmp_path, "cpu")
    return StageHandlers(trainer, PlainClient(ClientIdentity("alice"), FED, {}), None, UpdateCache(tmp_path / "cache"),
                         privacy, federation=FED, run_id="run-7", workdir=tmp_path)


def _stats(handlers, attempt=0, noise=NOISE):
    config = {} if noise is None else {"statistics_noise": noise}
    header = pb.Header(federation_id=FED, round=0, attempt=attempt)
    return handlers.stats(header, pb.StatsTask(config=to_struct(config)))


def test_statistics_release_is_charged_as_a_gaussian_mechanism_per_attempt(tmp_path):
    handlers = _handlers(tmp_path, {"target_epsilon": 10.0, "accountant": "rdp"})
    assert _stats(handlers, attempt=0).ready and _stats(handlers, attempt=1).ready  # each attempt: fresh noise
    ledger = json.loads((tmp_path / "privacy_ledger.json").read_text())
    charges = ledger["charges"]
    assert [(c["kind"], c["round"], c["attempt"], c["run"], c["federation"]) for c in charges] == [
        ("statistics", 0, 0, "run-7", FED), ("statistics", 0, 1, "run-7", FED)]
    assert all(c["sample_rate"] == 1.0 and c["steps"] == 1 and c["noise_multiplier"] == 2.0 for c in charges)
    assert ledger["epsilon"] == pytest.approx(account([Segment(1.0, 2.0, 2)], 1e-5, "rdp").epsilon)


def test_statistics_past_the_budget_are_not_sent(tmp_path):
    handlers = _handlers(tmp_path, {"target_epsilon": 0.5 * statistics_epsilon(4.0, 2.0, 1e-5)})
    report = _stats(handlers)
    assert not report.ready and "budget exhausted" in report.refusal and not handlers.jobs


def test_statistics_without_dp_or_without_noise_are_logged_as_not_private(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="fedcore.client.privacy"):
        assert _stats(_handlers(tmp_path / "off", {"enabled": False})).ready
        assert _stats(_handlers(tmp_path / "bare", {"target_epsilon": 5.0}), noise=None).ready
    assert "DP is off, so these statistics are NOT private" in caplog.text
    assert "carries no statistics noise" in caplog.text and "NOT differentially private" in caplog.text
    assert not (tmp_path / "off" / "privacy_ledger.json").exists()


def test_workload_states_its_statistics_sensitivity_or_gets_sqrt_length():
    from fedcore.client.trainer import statistics_sensitivity

    softmax = load_workload("fedcore.examples.softmax:workload")
    assert statistics_sensitivity(softmax, {}) == 1.0  # one sample: one label count + 1

    class Undeclared:
        name = "counts"

        def statistics_spec(self, settings):
            return 78, 1000.0

    assert statistics_sensitivity(Undeclared(), {}) == pytest.approx(78 ** 0.5)
