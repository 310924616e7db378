"""Pure accounting functions: RDP / PRV, composition, noise derivation."""

from __future__ import annotations

import logging
import math
import sys

import numpy as np
import pytest
from opacus.accountants import PRVAccountant, RDPAccountant
from opacus.accountants.analysis import rdp as opacus_rdp

from fedcore.dp.accounting import (
    RDP_ORDERS,
    Segment,
    account,
    compose,
    derive_noise_multiplier,
    epsilon,
    rdp_epsilon,
)


def test_rdp_matches_opacus_rdp_accountant_on_the_facts_setting():
    acc = RDPAccountant()
    acc.history = [(1.0, 0.125, 398)]
    ours = epsilon(0.125, 1.0, 398, 1e-5)
    assert ours == pytest.approx(acc.get_epsilon(1e-5), rel=1e-9)
    assert ours == pytest.approx(20.45, abs=0.01)  # FACTS §3


@pytest.mark.filterwarnings("ignore:Optimal order is the largest alpha")  # Opacus's own grid, on purpose
def test_extra_large_orders_never_loosen_the_bound():
    acc = RDPAccountant()
    for q, sigma, steps in [(0.01, 8.0, 100), (0.125, 1.8, 400), (1.0, 20.0, 10)]:
        acc.history = [(sigma, q, steps)]
        assert epsilon(q, sigma, steps, 1e-5) <= acc.get_epsilon(1e-5) + 1e-12


def test_epsilon_grows_with_steps_and_falls_with_noise():
    eps = [epsilon(0.125, 1.5, t, 1e-5) for t in (8, 80, 400)]
    assert eps[0] < eps[1] < eps[2]
    eps = [epsilon(0.125, s, 400, 1e-5) for s in (1.5, 2.0, 4.0)]
    assert eps[0] > eps[1] > eps[2]


def test_fifty_rounds_compose_like_one_segment_of_all_steps():
    rounds = [Segment(0.125, 1.8, 8)] * 50
    assert compose(rounds) == [Segment(0.125, 1.8, 400)]
    assert rdp_epsilon(rounds, 1e-5) == pytest.approx(epsilon(0.125, 1.8, 400, 1e-5), rel=1e-12)


def test_heterogeneous_history_adds_rdp_of_each_segment():
    history = [Segment(0.125, 2.0, 16), Segment(0.0625, 3.0, 64), Segment(0.125, 2.0, 8)]
    orders = list(RDP_ORDERS)
    total = opacus_rdp.compute_rdp(q=0.125, noise_multiplier=2.0, steps=24, orders=orders) + opacus_rdp.compute_rdp(
        q=0.0625, noise_multiplier=3.0, steps=64, orders=orders
    )
    expected, _ = opacus_rdp.get_privacy_spent(orders=orders, rdp=np.asarray(total), delta=1e-5)
    assert rdp_epsilon(history, 1e-5) == pytest.approx(expected, rel=1e-12)
    assert rdp_epsilon(history, 1e-5) > max(rdp_epsilon([s], 1e-5) for s in history)


def test_prv_is_tighter_than_rdp_and_matches_opacus_prv():
    result = account([Segment(0.125, 1.0, 398)], 1e-5, "prv")
    assert result.accountant == "prv" and result.note is None
    acc = PRVAccountant()
    acc.history = [(1.0, 0.125, 398)]
    assert result.epsilon == pytest.approx(acc.get_epsilon(1e-5), rel=1e-6)
    assert result.epsilon < epsilon(0.125, 1.0, 398, 1e-5)


def test_prv_that_cannot_discretise_falls_back_to_pld_then_rdp_and_never_raises(caplog, monkeypatch):
    # small sigma, large q: Opacus's PRV would build a 6e7-point grid for minutes and return inf
    from fedcore.dp import accounting

    accounting._account_cached.cache_clear()
    with caplog.at_level(logging.WARNING, logger="fedcore.dp.accounting"):
        result = account([Segment(0.5, 0.3, 1000)], 1e-5, "prv")
    assert result.accountant == "pld" and "fell back to dp_accounting's PLD" in result.note
    assert math.isfinite(result.epsilon) and 0 < result.epsilon <= epsilon(0.5, 0.3, 1000, 1e-5)
    assert any("fell back to dp_accounting" in r.getMessage() for r in caplog.records)
    accounting._account_cached.cache_clear()
    monkeypatch.setitem(sys.modules, "dp_accounting", None)  # not installed: RDP answers
    result = account([Segment(0.5, 0.3, 1000)], 1e-5, "prv")
    assert result.accountant == "rdp" and "fell back to RDP" in result.note
    assert result.epsilon == pytest.approx(epsilon(0.5, 0.3, 1000, 1e-5))
    accounting._account_cached.cache_clear()


def test_derived_noise_meets_the_target_and_is_minimal_within_tolerance():
    q, steps, target = 1 / 5, 250, 3.0
    sigma = derive_noise_multiplier(q, steps, target, 1e-5)
    spent = epsilon(q, sigma, steps, 1e-5)
    assert target - 0.01 <= spent <= target
    assert epsilon(q, sigma * 0.98, steps, 1e-5) > target


def test_derivation_accounts_for_already_spent_history():
    prior = [Segment(0.125, 4.0, 80)]
    fresh = derive_noise_multiplier(0.125, 320, 3.0, 1e-5)
    after_prior = derive_noise_multiplier(0.125, 320, 3.0, 1e-5, prior=prior)
    assert after_prior > fresh
    assert rdp_epsilon([*prior, Segment(0.125, after_prior, 320)], 1e-5) <= 3.0
    with pytest.raises(ValueError, match="already spends"):
        derive_noise_multiplier(0.125, 8, 1.0, 1e-5, prior=[Segment(0.125, 1.0, 400)])


def test_unreachable_target_is_refused_with_the_setting():
    with pytest.raises(ValueError, match="unreachable"):
        derive_noise_multiplier(1.0, 10**6, 1e-4, 1e-5)


@pytest.mark.parametrize(
    ("segment", "delta", "accountant", "message"),
    [
        ((1.5, 1.0, 10), 1e-5, "rdp", "sample_rate must be in"),
        ((0.1, 0.0, 10), 1e-5, "rdp", "noise_multiplier must be"),
        ((0.1, 1.0, -3), 1e-5, "rdp", "steps must be an integer"),
        ((0.1, 1.0, 10), 0.0, "rdp", "delta must be in"),
        ((0.1, 1.0, 10), 1e-5, "gdp", "accountant must be one of prv, rdp"),
    ],
)
def test_bad_accounting_inputs_name_the_parameter(segment, delta, accountant, message):
    with pytest.raises(ValueError, match=message):
        account([segment], delta, accountant)


def test_empty_history_spends_nothing():
    assert account([], 1e-5).epsilon == 0.0
    assert account([Segment(0.1, 1.0, 0)], 1e-5, "prv").epsilon == 0.0


def test_an_accountant_that_cannot_run_never_crashes_the_client_rdp_answers():
    # sigma 1e-6: PRV needs 3.6e14 grid points and PLD would try to allocate petabytes
    from fedcore.dp import accounting

    accounting._account_cached.cache_clear()
    result = account([Segment(1.0, 1e-6, 1)], 1e-5, "prv")
    assert result.accountant == "rdp" and result.epsilon > 1e6 and "reported by RDP" in result.note
