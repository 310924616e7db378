"""statistics_epsilon: the exact epsilon of one Gaussian release, checked against Google's PLD."""

from __future__ import annotations

import pytest

from fedcore.dp.accounting import Segment, pld_epsilon, rdp_epsilon
from fedcore.dp.statistics import statistics_epsilon


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.0, 5.0, 20.0])
@pytest.mark.parametrize("sensitivity", [1.0, 3.0])
def test_statistics_epsilon_is_the_gaussian_mechanism_dp_accounting_computes(sigma, sensitivity):
    exact = statistics_epsilon(sigma, sensitivity, 1e-5)
    pld = pld_epsilon([Segment(1.0, sigma / sensitivity, 1)], 1e-5, discretization=1e-4)
    assert exact == pytest.approx(pld, rel=1e-3) and exact <= pld + 1e-9  # PLD's pessimistic bound is above
    assert exact < rdp_epsilon([Segment(1.0, sigma / sensitivity, 1)], 1e-5)  # RDP is looser


def test_statistics_epsilon_falls_with_noise_and_rejects_bad_inputs():
    values = [statistics_epsilon(s, 1.0, 1e-5) for s in (0.5, 1, 2, 4, 8)]
    assert values == sorted(values, reverse=True) and values[-1] > 0
    for args, name in (((0.0, 1.0, 1e-5), "sigma"), ((1.0, -1.0, 1e-5), "sensitivity"), ((1.0, 1.0, 1.5), "delta")):
        with pytest.raises(ValueError, match=name):
            statistics_epsilon(*args)
