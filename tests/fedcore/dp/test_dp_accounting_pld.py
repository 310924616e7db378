"""The default accountant (PRV) against Google's dp-accounting PLD, within 1 %, for the default settings.

PLD (privacy loss distributions, pessimistic estimate) is the tight reference; PRV must agree
with it within 1 % for the settings fedcore's defaults produce: q = 1 / ceil(n / batch) in
{0.125, 0.25, 0.5, 1}, sigma 0.6-4, 100-2000 steps, delta 1e-5. The plan's derived sigma is
checked the same way (its epsilon by PLD is within 1 % of the target), and RDP, the cross-check,
must stay an upper bound. The full grid is slow (PRV takes up to 4 s per point): a fast subset
runs always, the rest with ``-m slow``.
"""

from __future__ import annotations

import itertools

import pytest
from dp_helpers import make_config

from fedcore.dp.accounting import Segment, account, pld_epsilon
from fedcore.dp.plan import plan_privacy

FAST = [
    (0.125, 1.0, 400),
    (0.125, 4.0, 2000),
    (0.25, 0.6, 100),
    (0.25, 2.0, 400),
    (1.0, 1.0, 100),
    (1.0, 4.0, 400),
    (0.5, 1.0, 100),
]
GRID = [c for c in itertools.product((0.125, 0.25, 0.5, 1.0), (0.6, 1.0, 2.0, 4.0), (100, 400, 2000)) if c not in FAST]


def _check(q, sigma, steps):
    reference = pld_epsilon([Segment(q, sigma, steps)], 1e-5)
    prv = account([Segment(q, sigma, steps)], 1e-5, "prv")
    rdp = account([Segment(q, sigma, steps)], 1e-5, "rdp").epsilon
    assert prv.epsilon == pytest.approx(reference, rel=0.01), (prv, reference)
    assert rdp >= reference * (1 - 1e-6)  # the cross-check is looser, never tighter


@pytest.mark.parametrize(("q", "sigma", "steps"), FAST)
def test_default_accountant_agrees_with_dp_accounting_pld_within_one_percent(q, sigma, steps):
    _check(q, sigma, steps)


@pytest.mark.slow
@pytest.mark.parametrize(("q", "sigma", "steps"), GRID)
def test_default_accountant_agrees_with_dp_accounting_pld_on_the_whole_grid(q, sigma, steps):
    _check(q, sigma, steps)


@pytest.mark.parametrize(("n", "rounds", "target"), [(255, 50, 8.0), (64, 25, 3.0)])
def test_planned_sigma_meets_the_target_by_pld_within_one_percent_and_logs_the_rdp_cross_check(
    n, rounds, target, caplog
):
    config = make_config(accountant="prv", target_epsilon=target, planned_rounds=rounds, batch_size=32)
    with caplog.at_level("INFO", logger="fedcore.dp.plan"):
        plan = plan_privacy(config, n)
    reference = pld_epsilon([Segment(plan.sample_rate, plan.noise_multiplier, plan.planned_steps)], plan.delta)
    assert reference == pytest.approx(target, rel=0.01) and plan.planned_epsilon <= target
    assert plan.planned_epsilon_rdp > plan.planned_epsilon  # RDP would have needed more noise
    assert "rdp cross-check" in caplog.text and "accountant=prv" in caplog.text
