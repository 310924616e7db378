"""The example workload's DP-SGD path: the ledger in the workdir, cumulative spending across a client
restart, refusal at the budget, and the state the client daemon reports."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from fedcore.common.workload import BudgetExhausted, load_workload
from fedcore.dp.accounting import account

W = load_workload("fedcore.examples.softmax:workload")
STEPS = math.ceil(180 / 32)


def _eps(rounds: int) -> float:
    return account([(1.0 / STEPS, 1.0, STEPS * rounds)], 1e-5, "rdp").epsilon


@pytest.mark.filterwarnings("ignore")
def test_softmax_dp_spends_cumulatively_across_a_restart_and_stops_at_the_budget(tmp_path):
    params, spec = W.initial_parameters({}, seed=0)
    config = {
        "rounds": 5,
        "lr": 0.1,
        "privacy": {"noise_multiplier": 1.0, "target_epsilon": (_eps(2) + _eps(3)) / 2, "accountant": "rdp"},
    }
    first = W.make_trainer({"client_index": 0}, "a", tmp_path, "cpu")
    fit = first.fit(params, spec, 1, config, None)
    assert fit.privacy.enabled and fit.privacy.epsilon == pytest.approx(_eps(1)) and fit.privacy.steps == STEPS
    assert set(fit.metrics) == {"steps", "empty_batches"}  # no loss on private data leaves the client
    assert not np.allclose(fit.parameters, params)
    restarted = W.make_trainer({"client_index": 0}, "a", tmp_path, "cpu")  # same workdir: the ledger persists
    assert restarted.fit(params, spec, 2, config, None).privacy.epsilon == pytest.approx(_eps(2))
    with pytest.raises(BudgetExhausted) as exc:
        restarted.fit(params, spec, 3, config, None)
    assert exc.value.privacy.exhausted and exc.value.privacy.epsilon == pytest.approx(_eps(2))
    ledger = json.loads((tmp_path / "privacy_ledger.json").read_text())
    assert [c["round"] for c in ledger["charges"]] == [1, 2] and ledger["epsilon"] <= ledger["target_epsilon"]


def test_softmax_without_a_privacy_table_trains_plain(tmp_path):
    params, spec = W.initial_parameters({}, seed=0)
    trainer = W.make_trainer({"client_index": 1}, "b", tmp_path, "cpu")
    for privacy in ({}, {"enabled": False, "target_epsilon": 1.0}):
        fit = trainer.fit(params, spec, 1, {"privacy": privacy}, None)
        assert not fit.privacy.enabled and "accuracy" in fit.metrics
    assert not (tmp_path / "privacy_ledger.json").exists()
