"""FedAvg and FedProx against hand computations of x_{t+1} = x_t + eta * Delta_t."""

import numpy as np
import pytest

from fedcore.strategy import FedAvg, FedProx, make_strategy


def test_fedavg_matches_hand_computation_over_three_rounds():
    s = make_strategy("fedavg", server_lr=0.5)
    x0 = np.array([1.0, 2.0, -1.0], dtype=np.float32)
    deltas = [np.array([0.5, -1.0, 0.25]), np.array([-0.5, 0.0, 1.0]), np.array([2.0, 0.5, -0.5])]
    # x1 = x0 + 0.5 * d1 = [1 + 0.25, 2 - 0.5, -1 + 0.125]
    # x2 = x1 + 0.5 * d2 = [1.25 - 0.25, 1.5 + 0, -0.875 + 0.5]
    # x3 = x2 + 0.5 * d3 = [1.0 + 1.0, 1.5 + 0.25, -0.375 - 0.25]
    expected = [[1.25, 1.5, -0.875], [1.0, 1.5, -0.375], [2.0, 1.75, -0.625]]
    x = x0
    for r, (d, want) in enumerate(zip(deltas, expected), start=1):
        x = s.apply(x, d, r)
        assert x.dtype == np.float32
        np.testing.assert_allclose(x, want, rtol=0, atol=1e-7)


def test_fedavg_default_is_plain_weighted_average():
    # Two clients, weights 1 and 3, locals [2, 0] and [6, 4] around global [4, 4]:
    # mean delta = (1*[-2, -4] + 3*[2, 0]) / 4 = [1, -1]  ->  new global [5, 3] = weighted mean of locals.
    x = np.array([4.0, 4.0], dtype=np.float32)
    mean_delta = (1 * np.array([-2.0, -4.0]) + 3 * np.array([2.0, 0.0])) / 4
    np.testing.assert_array_equal(make_strategy("fedavg").apply(x, mean_delta, 1), [5.0, 3.0])


def test_fedavg_does_not_modify_its_inputs():
    x = np.array([1.0, 2.0], dtype=np.float32)
    d = np.array([0.5, 0.5])
    make_strategy("fedavg").apply(x, d, 1)
    np.testing.assert_array_equal(x, [1.0, 2.0])
    np.testing.assert_array_equal(d, [0.5, 0.5])


def test_fedprox_sends_mu_to_clients_and_updates_like_fedavg():
    s = make_strategy("fedprox", mu=0.05)
    assert isinstance(s, FedProx)
    assert s.client_config(1) == {"proximal_mu": 0.05}
    assert s.client_config(7) == {"proximal_mu": 0.05}
    assert make_strategy("fedprox").client_config(1) == {"proximal_mu": 0.01}
    x = np.array([0.0, 1.0], dtype=np.float32)
    # server_lr defaults to 1: x1 = [0 + 0.3, 1 - 0.2]; x2 = x1 + [0.1, 0.1]
    x = s.apply(x, np.array([0.3, -0.2]), 1)
    np.testing.assert_allclose(x, [0.3, 0.8], atol=1e-7)
    x = s.apply(x, np.array([0.1, 0.1]), 2)
    np.testing.assert_allclose(x, [0.4, 0.9], atol=1e-7)


def test_fedavg_sends_no_extra_client_config():
    assert make_strategy("fedavg").client_config(3) == {}


def test_stateless_strategies_round_trip_empty_state_and_refuse_foreign_state():
    s = FedAvg()
    assert s.state_dict() == {}
    s.load_state_dict({})
    with pytest.raises(ValueError, match="keeps no state"):
        s.load_state_dict({"m": np.zeros(2)})


@pytest.mark.parametrize(
    "bad",
    [
        (np.zeros((2, 2), np.float32), np.zeros((2, 2))),  # not 1-D
        (np.zeros(3, np.float32), np.zeros(4)),  # length mismatch
        (np.zeros(2, np.float32), np.array([0.0, np.nan])),  # NaN in the aggregate
    ],
)
def test_apply_refuses_malformed_inputs(bad):
    with pytest.raises(ValueError):
        make_strategy("fedavg").apply(*bad, 1)
