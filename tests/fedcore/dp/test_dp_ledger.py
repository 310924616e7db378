"""PrivacyLedger: persistence, restart, append-only charges, budget refusal, corrupt files."""

from __future__ import annotations

import json
import os

import pytest

from fedcore.dp.accounting import epsilon
from fedcore.dp.ledger import BudgetExhausted, LedgerError, PrivacyLedger

Q, SIGMA, STEPS = 0.125, 2.0, 8


def new_ledger(path, target=3.0) -> PrivacyLedger:
    return PrivacyLedger(path, accountant="rdp", delta=1e-5, target_epsilon=target)


def test_spending_survives_a_client_restart(tmp_path):
    path = tmp_path / "ledger.json"
    ledger = new_ledger(path)
    for r in (1, 2, 3):
        ledger.charge(r, Q, SIGMA, STEPS)
    reloaded = PrivacyLedger.open(path, accountant="rdp", delta=1e-5, target_epsilon=3.0)
    assert reloaded.charges == ledger.charges
    assert reloaded.steps == 24
    assert reloaded.spent() == pytest.approx(epsilon(Q, SIGMA, 24, 1e-5))
    stored = json.loads(path.read_text())
    assert stored["version"] == 2 and stored["accountant"] == "rdp" and stored["delta"] == 1e-5
    assert [c["round"] for c in stored["charges"]] == [1, 2, 3]


def test_training_past_the_budget_is_refused_with_spent_and_target(tmp_path):
    ledger = new_ledger(tmp_path / "l.json", target=2.0)
    rounds = 0
    while not ledger.would_exceed(Q, SIGMA, STEPS):
        rounds += 1
        ledger.check(rounds, Q, SIGMA, STEPS)
        ledger.charge(rounds, Q, SIGMA, STEPS)
    assert rounds >= 2 and ledger.spent() <= 2.0
    with pytest.raises(BudgetExhausted) as err:
        ledger.check(rounds + 1, Q, SIGMA, STEPS)
    exc = err.value
    assert exc.spent == pytest.approx(ledger.spent()) and exc.target == 2.0
    assert exc.would_spend > 2.0 and exc.round == rounds + 1
    assert "epsilon spent" in str(exc) and "of target 2" in str(exc)
    # re-running the last charged round is a new release: it does not fit either
    with pytest.raises(BudgetExhausted):
        ledger.check(rounds, Q, SIGMA, STEPS)


def test_ledger_without_target_records_but_never_refuses(tmp_path):
    ledger = new_ledger(tmp_path / "l.json", target=None)
    ledger.charge(1, Q, 0.5, 400)
    assert ledger.spent() > 50 and not ledger.would_exceed(Q, 0.5, 400) and not ledger.exhausted
    ledger.check(2, Q, 0.5, 400)


def test_a_failed_write_keeps_the_old_ledger_and_leaves_no_temp_file(tmp_path, monkeypatch):
    path = tmp_path / "l.json"
    ledger = new_ledger(path)
    ledger.charge(1, Q, SIGMA, STEPS)
    before = path.read_bytes()

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        ledger.charge(2, Q, SIGMA, STEPS)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["l.json", "l.json.lock"]


def test_changed_settings_on_restart_recompute_epsilon_from_the_charges(tmp_path, caplog):
    path = tmp_path / "l.json"
    new_ledger(path).charge(1, Q, SIGMA, 80)
    reopened = PrivacyLedger.open(path, accountant="rdp", delta=1e-6, target_epsilon=3.0)
    assert reopened.steps == 80 and reopened.delta == 1e-6
    assert reopened.spent() == pytest.approx(epsilon(Q, SIGMA, 80, 1e-6))
    assert "settings changed" in caplog.text
    assert PrivacyLedger.load(path).delta == 1e-6


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "cannot read JSON"),
        ("[]", "expected a JSON object"),
        ('{"version": 7}', "expected ledger version 1 or 2"),
        ('{"version": 1, "accountant": "rdp", "delta": 1e-5}', "missing field\\(s\\) target_epsilon, charges"),
        (
            '{"version": 1, "accountant": "gdp", "delta": 1e-5, "target_epsilon": 1, "charges": []}',
            "accountant must be one of prv, rdp",
        ),
        (
            (
                '{"version": 1, "accountant": "rdp", "delta": 1e-5, "target_epsilon": 1, "charges": '
                '[{"round": 1, "sample_rate": 0.1, "noise_multiplier": -1, "steps": 8}]}'
            ),
            r"charges\[0\]: noise_multiplier must be a number > 0",
        ),
        (
            (
                '{"version": 1, "accountant": "rdp", "delta": 1e-5, "target_epsilon": 1, "charges": '
                '[{"round": 1, "sample_rate": 0.1, "noise_multiplier": 1, "steps": 8},'
                ' {"round": 1, "sample_rate": 0.1, "noise_multiplier": 1, "steps": 8}]}'
            ),
            r"v1 ledger repeats a round",
        ),
    ],
)
def test_corrupt_ledger_files_are_reported_with_path_and_field(tmp_path, content, message):
    path = tmp_path / "ledger.json"
    path.write_text(content)
    with pytest.raises(LedgerError, match=message) as err:
        PrivacyLedger.load(path)
    assert str(path) in str(err.value)


def test_missing_ledger_file_is_a_clear_error_but_open_starts_fresh(tmp_path):
    with pytest.raises(LedgerError, match="file not found"):
        PrivacyLedger.load(tmp_path / "none.json")
    fresh = PrivacyLedger.open(tmp_path / "none.json", accountant="prv", delta=1e-5, target_epsilon=2.0)
    assert fresh.spent() == 0.0 and fresh.charges == ()
