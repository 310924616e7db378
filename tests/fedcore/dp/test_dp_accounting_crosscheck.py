"""Independent check: our epsilon against Google's dp-accounting RDP accountant (within 1 %).

The two libraries share no code: dp-accounting composes PoissonSampledDpEvent(GaussianDpEvent)
with its own RDP formulas and order grid (FACTS §3: 20.45 vs 20.53 for q=0.125, sigma=1, 398).
"""

from __future__ import annotations

import dp_accounting
import pytest
from dp_accounting import rdp

from fedcore.dp.accounting import Segment, account, epsilon

SETTINGS = [
    (0.125, 1.0, 398, 1e-5),  # FACTS §3: ~20.5
    (0.125, 1.8, 400, 1e-5),  # CASME II-sized client, eps ~8
    (1 / 3, 3.0, 150, 1e-5),  # 80 records, batch 32
    (1 / 16, 1.1, 800, 1e-6),  # 500 records, 16 rounds
    (0.01, 1.1, 10_000, 1e-5),  # large data set
    (1.0, 5.0, 50, 1e-5),  # no subsampling
]


def google_epsilon(events, delta: float) -> float:
    accountant = rdp.RdpAccountant()
    for q, sigma, steps in events:
        event = dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma))
        accountant.compose(dp_accounting.SelfComposedDpEvent(event, steps))
    return accountant.get_epsilon(delta)


@pytest.mark.parametrize(("q", "sigma", "steps", "delta"), SETTINGS)
def test_epsilon_agrees_with_dp_accounting_within_one_percent(q, sigma, steps, delta):
    ours = epsilon(q, sigma, steps, delta)
    theirs = google_epsilon([(q, sigma, steps)], delta)
    assert ours == pytest.approx(theirs, rel=0.01), (ours, theirs)


def test_heterogeneous_history_agrees_with_dp_accounting():
    history = [(0.125, 1.8, 80), (1 / 16, 2.5, 160), (0.125, 1.2, 40)]
    ours = account([Segment(*h) for h in history], 1e-5).epsilon
    assert ours == pytest.approx(google_epsilon(history, 1e-5), rel=0.01)
