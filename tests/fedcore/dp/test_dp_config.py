"""PrivacyConfig validation and plan_privacy resolution."""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path

import pytest

from fedcore.dp.accounting import epsilon
from fedcore.dp.config import InsecureRNGWarning, PrivacyConfig, PrivacyConfigError
from fedcore.dp.plan import default_delta, plan_privacy

GOOD = {"target_epsilon": 8.0, "planned_rounds": 50, "local_epochs": 1, "batch_size": 32, "secure_rng": True}


def test_from_dict_collects_every_problem_in_one_error():
    bad = dict(GOOD, accountant="gdp", max_grad_norm=-1, delta=2.0, batch_size=0, secure_rng="yes")
    with pytest.raises(PrivacyConfigError) as err:
        PrivacyConfig.from_dict(bad, source="client.toml [privacy]")
    problems = err.value.problems
    assert len(problems) == 5
    text = str(err.value)
    assert "client.toml [privacy]" in text
    for field in ("accountant", "max_grad_norm", "delta", "batch_size", "secure_rng"):
        assert any(p.startswith(field) for p in problems), field
    assert "'prv', 'rdp'" in text  # allowed values named, from the registry


def test_unknown_and_missing_settings_are_named_with_the_allowed_list():
    data = {"target_epsilon": 3.0, "epsilon": 3.0, "local_epochs": 1}
    with pytest.raises(PrivacyConfigError) as err:
        PrivacyConfig.from_dict(data)
    text = str(err.value)
    assert "unknown setting 'epsilon'" in text and "allowed: enabled, target_epsilon" in text
    assert "missing required setting 'planned_rounds'" in text
    assert "missing required setting 'batch_size'" in text


def test_enabled_without_budget_or_noise_is_refused():
    with pytest.raises(PrivacyConfigError, match="neither is set"):
        PrivacyConfig.from_dict({k: v for k, v in GOOD.items() if k != "target_epsilon"})


def test_bool_is_not_accepted_where_a_count_is_expected():
    with pytest.raises(PrivacyConfigError, match="planned_rounds: expected an integer >= 1"):
        PrivacyConfig.from_dict(dict(GOOD, planned_rounds=True))


def test_insecure_rng_warns_loudly_and_logs(caplog):
    with caplog.at_level(logging.WARNING), pytest.warns(InsecureRNGWarning, match="secure_rng is off"):
        PrivacyConfig.from_dict(dict(GOOD, secure_rng=False))
    assert any("secure_rng is off" in r.getMessage() for r in caplog.records)


def test_secure_or_disabled_config_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error", InsecureRNGWarning)
        PrivacyConfig.from_dict(GOOD)
        PrivacyConfig(enabled=False, planned_rounds=1, local_epochs=1, batch_size=8)


def test_config_is_frozen_and_round_trips_through_dict():
    config = PrivacyConfig.from_dict(GOOD)
    with pytest.raises(AttributeError):
        config.target_epsilon = 100.0  # type: ignore[misc]
    assert PrivacyConfig.from_dict(config.to_dict()) == config


def test_default_delta_is_public_and_does_not_reveal_n():
    # min(1e-5, 1/(10 n)) told the coordinator n for every n > 10^4; the default is now one constant
    assert {default_delta(n) for n in (10, 255, 50_000, 99_999)} == {1e-5}
    assert {
        plan_privacy(PrivacyConfig.from_dict(dict(GOOD, noise_multiplier=1.0, accountant="rdp")), n).delta
        for n in (255, 50_000)
    } == {1e-5}
    with pytest.raises(PrivacyConfigError, match="public default; set a smaller delta"):
        plan_privacy(PrivacyConfig.from_dict(dict(GOOD, noise_multiplier=1.0)), 10**6)  # 1e-5 >= 1/n
    assert plan_privacy(PrivacyConfig.from_dict(dict(GOOD, noise_multiplier=1.0, delta=1e-8)), 10**6).delta == 1e-8


def test_given_delta_at_or_above_one_over_n_is_refused():
    config = PrivacyConfig.from_dict(dict(GOOD, delta=0.01, noise_multiplier=3.0))
    with pytest.raises(PrivacyConfigError, match=r"delta: must be < 1/n = 0.01 .* n = 100"):
        plan_privacy(config, 100)
    with pytest.raises(PrivacyConfigError):
        plan_privacy(config, 1000)  # more records: 1/n shrinks further below delta
    assert plan_privacy(config, 50).delta == 0.01  # 0.01 < 1/50: allowed


def test_derived_noise_keeps_the_whole_planned_run_within_target():
    # CASME II-sized client (FACTS §3): n=255, batch 32, 1 epoch a round, 50 rounds, eps 8 -> sigma ~1.8
    plan = plan_privacy(PrivacyConfig.from_dict(dict(GOOD, accountant="rdp")), 255)
    assert plan.sample_rate == 1 / 8 and plan.steps_per_round == 8 and plan.planned_steps == 400
    assert plan.derived and 1.7 < plan.noise_multiplier < 1.9
    spent = epsilon(plan.sample_rate, plan.noise_multiplier, plan.planned_steps, plan.delta)
    assert 7.9 < spent <= 8.0
    assert plan.planned_epsilon == pytest.approx(spent)
    # minimality: 3 % less noise would overspend
    assert epsilon(plan.sample_rate, 0.97 * plan.noise_multiplier, plan.planned_steps, plan.delta) > 8.0


def test_configured_noise_that_overspends_warns_that_training_will_stop(caplog):
    config = PrivacyConfig.from_dict(dict(GOOD, noise_multiplier=0.8))
    with pytest.warns(UserWarning, match="will stop training"):
        plan = plan_privacy(config, 255)
    assert not plan.derived and plan.noise_multiplier == 0.8
    assert plan.planned_epsilon > 8.0 and math.isfinite(plan.planned_epsilon)


def test_plan_fits_exactly_the_planned_rounds_into_the_ledger(tmp_path):
    plan = plan_privacy(
        PrivacyConfig.from_dict(dict(GOOD, planned_rounds=4, target_epsilon=3.0, accountant="rdp")), 255
    )
    ledger = plan.open_ledger(tmp_path / "ledger.json")
    for r in range(1, 5):
        assert plan.fits(ledger, r)
        ledger.charge(r, plan.sample_rate, plan.noise_multiplier, plan.steps_per_round)
    assert ledger.spent() <= 3.0
    assert not plan.fits(ledger, 5)  # the fifth round would overspend
    assert not plan.fits(ledger, 4)  # re-running round 4 is a new release, charged on top: it does not fit


def test_secure_rng_is_the_default_and_only_an_explicit_false_warns(recwarn):
    from fedcore.dp.config import InsecureRNGWarning

    default = PrivacyConfig(target_epsilon=8.0, planned_rounds=5, local_epochs=1, batch_size=32)
    assert default.secure_rng is True and default.accountant == "prv" and default.report_steps is False
    assert not [w for w in recwarn if issubclass(w.category, InsecureRNGWarning)]
    with pytest.warns(InsecureRNGWarning, match="seeded, reproducible experiments"):
        PrivacyConfig(target_epsilon=8.0, planned_rounds=5, local_epochs=1, batch_size=32, secure_rng=False)


def test_ledger_path_defaults_to_the_workdir_and_resolves_relative_paths(tmp_path):
    assert PrivacyConfig.from_dict(GOOD).ledger_path(tmp_path) == tmp_path / "privacy_ledger.json"
    shared = PrivacyConfig.from_dict(dict(GOOD, ledger="../ledgers/casme2.json"))
    assert shared.ledger_path(tmp_path) == tmp_path / "../ledgers/casme2.json"
    assert PrivacyConfig.from_dict(dict(GOOD, ledger="/abs/l.json")).ledger_path(tmp_path) == Path("/abs/l.json")
    with pytest.raises(PrivacyConfigError, match="ledger: expected a file path"):
        PrivacyConfig.from_dict(dict(GOOD, ledger=""))


def test_a_plan_over_a_ledger_with_the_statistics_release_still_ends_within_the_target(tmp_path):
    """The round-0 statistics charge is in the ledger before round 1 plans: the derived sigma fits
    the planned steps into what is left, so the last planned round is not refused."""
    from fedcore.dp.ledger import ChargeKey
    from fedcore.dp.plan import plan_and_open

    cfg = PrivacyConfig.from_dict(dict(GOOD, accountant="rdp"))
    path = tmp_path / "ledger.json"
    bare, ledger = plan_and_open(cfg, 200, path, workdir=tmp_path)
    ledger.charge_statistics(ChargeKey("f", "r", 0, 0, "statistics"), 2.0)
    plan, ledger = plan_and_open(cfg, 200, path, workdir=tmp_path)
    assert plan.noise_multiplier > bare.noise_multiplier
    for r in range(1, cfg.planned_rounds + 1):
        assert plan.fits(ledger, r), f"round {r} refused"
        ledger.charge(r, plan.sample_rate, plan.noise_multiplier, plan.steps_per_round)
    assert ledger.spent() <= cfg.target_epsilon
    without = plan_and_open(cfg, 200, tmp_path / "other.json", workdir=tmp_path / "o")[0]
    assert without.noise_multiplier == bare.noise_multiplier  # an empty ledger plans as before
