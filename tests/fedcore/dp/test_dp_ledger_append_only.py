"""The ledger never forgets: append-only charges, keys, shared budgets, no silent restart at zero."""

from __future__ import annotations

import json
import logging
import threading

import pytest
from dp_helpers import make_config

from fedcore.dp.accounting import epsilon
from fedcore.dp.ledger import LedgerError, PrivacyLedger
from fedcore.dp.plan import plan_privacy

Q, SIGMA, STEPS = 0.25, 1.0, 4


def test_every_charged_attempt_counts_so_epsilon_matches_all_steps_taken(tmp_path):
    ledger = PrivacyLedger(tmp_path / "l.json", accountant="rdp", delta=1e-5, target_epsilon=None)
    for r in range(1, 6):
        ledger.charge(r, Q, SIGMA, STEPS)  # attempt 0
        ledger.charge(r, Q, SIGMA, STEPS)  # the round re-run after a coordinator restart: its output left too
    assert ledger.steps == 40 and len(ledger.charges) == 10
    assert ledger.spent() == pytest.approx(epsilon(Q, SIGMA, 40, 1e-5))
    assert PrivacyLedger.load(tmp_path / "l.json").spent() == pytest.approx(epsilon(Q, SIGMA, 40, 1e-5))


def test_charges_are_keyed_by_federation_run_round_attempt(tmp_path):
    from fedcore.dp.ledger import ChargeKey

    ledger = PrivacyLedger(tmp_path / "l.json", accountant="rdp", delta=1e-5, target_epsilon=None)
    key = ChargeKey.from_task({"task": {"federation": "f", "run": "r9", "round": 2, "attempt": 1}}, 2)
    ledger.charge(2, Q, SIGMA, STEPS, key=key)
    stored = json.loads((tmp_path / "l.json").read_text())["charges"][0]
    assert (stored["federation"], stored["run"], stored["round"], stored["attempt"], stored["kind"]) == (
        "f",
        "r9",
        2,
        1,
        "dp-sgd",
    )
    with pytest.raises(ValueError, match="differs from its key's round"):
        ledger.charge(3, Q, SIGMA, STEPS, key=key)


def _plan(tmp_path):
    return plan_privacy(make_config(target_epsilon=None, noise_multiplier=1.0, batch_size=8), 32)


def test_missing_ledger_in_a_workdir_that_trained_is_refused_not_restarted_at_zero(tmp_path):
    plan = _plan(tmp_path)
    ledger = plan.open_ledger(tmp_path / "privacy_ledger.json")
    ledger.charge(1, plan.sample_rate, plan.noise_multiplier, plan.steps_per_round)
    (tmp_path / "privacy_ledger.json").unlink()
    with pytest.raises(LedgerError, match="is missing, but workdir .* shows earlier training"):
        plan.open_ledger(tmp_path / "privacy_ledger.json")
    other = tmp_path / "other"
    (other / "cache").mkdir(parents=True)
    (other / "cache" / "r000001-0123456789abcdef.json").write_text("{}")  # the update cache shows training too
    with pytest.raises(LedgerError, match="cached update"):
        plan.open_ledger(other / "privacy_ledger.json")
    plain = tmp_path / "plain"
    (plain / "cache").mkdir(parents=True)
    (plain / "cache" / "r000001-0123456789abcdef.json").write_text('{"privacy": {"enabled": false}}')
    assert plan.open_ledger(plain / "privacy_ledger.json").spent() == 0.0  # trained without DP only: a first budget


def test_corrupt_replaced_or_rolled_back_ledgers_are_refused(tmp_path):
    plan = _plan(tmp_path)
    path = tmp_path / "privacy_ledger.json"
    ledger = plan.open_ledger(path)
    for r in (1, 2):
        ledger.charge(r, plan.sample_rate, plan.noise_multiplier, plan.steps_per_round)
    good = path.read_text()
    path.write_text(good[: len(good) // 2])
    with pytest.raises(LedgerError, match="cannot read JSON"):
        plan.open_ledger(path)
    rolled = json.loads(good)
    rolled["charges"] = rolled["charges"][:1]
    path.write_text(json.dumps(rolled))
    with pytest.raises(LedgerError, match="rolled back"):
        plan.open_ledger(path)
    path.unlink()
    PrivacyLedger(tmp_path / "elsewhere.json", accountant="rdp", delta=plan.delta, target_epsilon=None).save()
    (tmp_path / "elsewhere.json").rename(path)  # a fresh ledger put in its place
    with pytest.raises(LedgerError, match="was replaced"):
        plan.open_ledger(path)


def test_federations_sharing_one_ledger_spend_one_budget_without_losing_charges(tmp_path):
    shared = tmp_path / "shared" / "casme2.json"
    a = PrivacyLedger.open(shared, accountant="rdp", delta=1e-5, target_epsilon=None, workdir=tmp_path / "fed-a")
    b = PrivacyLedger.open(shared, accountant="rdp", delta=1e-5, target_epsilon=None, workdir=tmp_path / "fed-b")

    def spend(ledger, n):
        for r in range(n):
            ledger.charge(r, Q, SIGMA, 1)

    threads = [threading.Thread(target=spend, args=(x, 20)) for x in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert a.steps == b.steps == PrivacyLedger.load(shared).steps == 40
    assert a.spent() == pytest.approx(epsilon(Q, SIGMA, 40, 1e-5))


def test_new_budget_is_explicit_archives_the_old_charges_and_is_logged_loudly(tmp_path, caplog):
    plan = _plan(tmp_path)
    path = tmp_path / "privacy_ledger.json"
    ledger = plan.open_ledger(path)
    ledger.charge(1, plan.sample_rate, plan.noise_multiplier, plan.steps_per_round)
    with caplog.at_level(logging.WARNING, logger="fedcore.dp.ledger"):
        new_id = ledger.new_budget("data set re-collected, new consent (ticket 42)")
    assert "NEW PRIVACY BUDGET" in caplog.text and ledger.spent() == 0.0
    stored = json.loads(path.read_text())
    assert stored["budget"]["id"] == new_id and len(stored["archived"]) == 1
    assert len(stored["archived"][0]["charges"]) == 1  # kept, no longer counted
    assert plan.open_ledger(path).spent() == 0.0  # the workdir's marker knows the archived budget: accepted


def test_version_1_ledger_is_migrated_with_a_warning_and_a_backup(tmp_path, caplog):
    path = tmp_path / "privacy_ledger.json"
    path.write_text(
        json.dumps(
            {
                "version": 1,
                "accountant": "rdp",
                "delta": 1e-5,
                "target_epsilon": 8.0,
                "charges": [{"round": 1, "sample_rate": Q, "noise_multiplier": SIGMA, "steps": 4}],
            }
        )
    )
    with caplog.at_level(logging.WARNING, logger="fedcore.dp.ledger"):
        ledger = PrivacyLedger.open(path, accountant="rdp", delta=1e-5, target_epsilon=8.0)
    assert ledger.steps == 4 and "migrated from version 1" in caplog.text and "lower bound" in caplog.text
    assert (tmp_path / "privacy_ledger.json.v1.bak").exists()
    ledger.charge(2, Q, SIGMA, 4)
    assert json.loads(path.read_text())["version"] == 2 and PrivacyLedger.load(path).steps == 8
