"""make_strategy / STRATEGY_OPTIONS: names, defaults and option validation."""

import pytest

from fedcore.common.errors import ConfigError
from fedcore.strategy import STRATEGY_OPTIONS, make_strategy


def test_every_documented_strategy_is_registered_with_its_defaults():
    assert STRATEGY_OPTIONS["fedavg"] == {"server_lr": 1.0}
    assert STRATEGY_OPTIONS["fedprox"] == {"mu": 0.01, "server_lr": 1.0}
    for name in ("fedadam", "fedyogi"):
        assert STRATEGY_OPTIONS[name] == {"server_lr": 1e-2, "beta1": 0.9, "beta2": 0.99, "tau": 1e-3}
    for name, defaults in STRATEGY_OPTIONS.items():
        s = make_strategy(name)
        assert s.name == name
        assert s.options == defaults


def test_unknown_strategy_lists_valid_names():
    with pytest.raises(ConfigError) as info:
        make_strategy("fedsgd")
    msg = str(info.value)
    assert "'fedsgd'" in msg
    for name in STRATEGY_OPTIONS:
        assert name in msg


def test_unknown_option_lists_valid_options():
    with pytest.raises(ConfigError) as info:
        make_strategy("fedprox", proximal_mu=0.1)
    msg = str(info.value)
    assert "proximal_mu" in msg and "valid options: mu, server_lr" in msg


def test_all_problems_are_reported_at_once():
    with pytest.raises(ConfigError) as info:
        make_strategy("fedyogi", server_lr=0.0, beta1=1.0, beta2=-0.1, tau=0.0, eps=1.0)
    problems = info.value.problems
    assert len(problems) == 5
    joined = " | ".join(problems)
    for part in (
        "eps",
        "server_lr must be > 0",
        "beta1 must be in [0, 1)",
        "beta2 must be in [0, 1)",
        "tau must be > 0",
    ):
        assert part in joined


@pytest.mark.parametrize("value", [True, "0.1", float("nan"), float("inf"), None])
def test_non_numeric_option_values_are_refused(value):
    with pytest.raises(ConfigError, match="server_lr must be a finite number"):
        make_strategy("fedavg", server_lr=value)


def test_negative_mu_is_refused_but_zero_is_fedavg():
    with pytest.raises(ConfigError, match="mu must be >= 0"):
        make_strategy("fedprox", mu=-0.01)
    assert make_strategy("fedprox", mu=0).client_config(1) == {"proximal_mu": 0.0}


def test_integer_options_are_accepted_as_floats():
    s = make_strategy("fedavg", server_lr=2)
    assert s.options["server_lr"] == 2.0 and isinstance(s.options["server_lr"], float)
