"""FedAdam / FedYogi / FedAdagrad against step-by-step hand computations of Reddi et al. (2021).

Every expected value is written out from the paper's equations with plain float arithmetic:
m_t = b1 m + (1-b1) D;  Adam v_t = b2 v + (1-b2) D^2;  Yogi v_t = v - (1-b2) D^2 sign(v - D^2);
Adagrad v_t = v + D^2;  x_{t+1} = x_t + eta m_t / (sqrt(v_t) + tau);  m_{-1} = 0, v_{-1} = tau^2.
"""

import io
from math import sqrt

import numpy as np
import pytest

from fedcore.common.errors import ConfigError
from fedcore.strategy import STRATEGY_OPTIONS, FedAdam, FedYogi, make_strategy

OPTS = {"server_lr": 0.1, "beta1": 0.5, "beta2": 0.75, "tau": 0.5}  # easy numbers: tau^2 = 0.25
X0 = [1.0, -2.0]
DELTAS = [[0.1, 1.0], [0.0, -0.5], [0.2, 0.2]]


def run(name, rounds=3):
    s = make_strategy(name, **{k: v for k, v in OPTS.items() if k in STRATEGY_OPTIONS[name]})
    x = np.array(X0, dtype=np.float32)
    out = []
    for r in range(rounds):
        x = s.apply(x, np.array(DELTAS[r]), r + 1)
        out.append(x)
    return s, out


def test_fedadam_matches_hand_computation_over_three_rounds():
    _, xs = run("fedadam")
    # element 0: D = 0.1, 0.0, 0.2
    m = 0.5 * 0 + 0.5 * 0.1  # 0.05
    v = 0.75 * 0.25 + 0.25 * 0.01  # 0.19
    x = 1.0 + 0.1 * m / (sqrt(v) + 0.5)
    e0 = [x]
    m = 0.5 * m + 0.5 * 0.0  # 0.025
    v = 0.75 * v + 0.25 * 0.0  # 0.1425
    x = x + 0.1 * m / (sqrt(v) + 0.5)
    e0.append(x)
    m = 0.5 * m + 0.5 * 0.2  # 0.1125
    v = 0.75 * v + 0.25 * 0.04  # 0.116875
    x = x + 0.1 * m / (sqrt(v) + 0.5)
    e0.append(x)
    # element 1: D = 1.0, -0.5, 0.2
    m = 0.5 * 1.0  # 0.5
    v = 0.75 * 0.25 + 0.25 * 1.0  # 0.4375
    x = -2.0 + 0.1 * m / (sqrt(v) + 0.5)
    e1 = [x]
    m = 0.5 * m + 0.5 * -0.5  # 0.0
    v = 0.75 * v + 0.25 * 0.25  # 0.390625
    x = x + 0.1 * m / (sqrt(v) + 0.5)  # unchanged: m = 0
    e1.append(x)
    m = 0.5 * m + 0.5 * 0.2  # 0.1
    v = 0.75 * v + 0.25 * 0.04  # 0.30296875
    x = x + 0.1 * m / (sqrt(v) + 0.5)
    e1.append(x)
    for r in range(3):
        np.testing.assert_allclose(xs[r], [e0[r], e1[r]], rtol=1e-6)
    assert xs[0][1] == xs[1][1]  # the m = 0 round left element 1 exactly in place


def test_fedyogi_matches_hand_computation_with_sign_update():
    s, xs = run("fedyogi")
    # element 0: v starts at 0.25 > D^2 = 0.01 -> sign +1 -> v decreases
    m = 0.05
    v = 0.25 - 0.25 * 0.01 * 1  # 0.2475
    x = 1.0 + 0.1 * m / (sqrt(v) + 0.5)
    e0 = [x]
    m = 0.025
    v = v - 0.25 * 0.0 * 1  # D = 0: v unchanged, 0.2475
    x = x + 0.1 * m / (sqrt(v) + 0.5)
    e0.append(x)
    m = 0.1125
    v = v - 0.25 * 0.04 * 1  # 0.2375
    x = x + 0.1 * m / (sqrt(v) + 0.5)
    e0.append(x)
    # element 1: 0.25 < D^2 = 1 -> sign -1 -> v increases; then 0.5 > 0.25 -> decreases
    m = 0.5
    v = 0.25 - 0.25 * 1.0 * -1  # 0.5 (Adam would give 0.4375)
    x = -2.0 + 0.1 * m / (sqrt(v) + 0.5)
    e1 = [x]
    m = 0.0
    v = v - 0.25 * 0.25 * 1  # 0.4375
    e1.append(x)
    m = 0.1
    v = v - 0.25 * 0.04 * 1  # 0.4275
    x = x + 0.1 * m / (sqrt(v) + 0.5)
    e1.append(x)
    for r in range(3):
        np.testing.assert_allclose(xs[r], [e0[r], e1[r]], rtol=1e-6)
    np.testing.assert_allclose(s.state_dict()["v"], [0.2375, 0.4275], rtol=1e-12)
    np.testing.assert_allclose(s.state_dict()["m"], [0.1125, 0.1], rtol=1e-12)
    assert s.state_dict()["step"] == 3


def test_fedadagrad_accumulates_squares():
    s, xs = run("fedadagrad", rounds=2)
    # element 1: v = 0.25 + 1 = 1.25, then 1.25 + 0.25 = 1.5; m = 0.5, then 0.0
    x = -2.0 + 0.1 * 0.5 / (sqrt(1.25) + 0.5)
    np.testing.assert_allclose(xs[1][1], x, rtol=1e-6)
    np.testing.assert_allclose(s.state_dict()["v"][1], 1.5, rtol=1e-12)


def test_moments_start_at_zero_and_tau_squared():
    s = make_strategy("fedadam", tau=0.5, beta1=0.5, beta2=0.75)
    assert s.state_dict() == {"step": 0}
    s.apply(np.zeros(2, np.float32), np.zeros(2), 1)
    # with D = 0: m = 0 and v = 0.75 * 0.25 (the decayed v_{-1} = tau^2)
    np.testing.assert_array_equal(s.state_dict()["m"], [0.0, 0.0])
    np.testing.assert_allclose(s.state_dict()["v"], [0.1875, 0.1875])


@pytest.mark.parametrize("name", ["fedadam", "fedyogi", "fedadagrad"])
def test_state_dict_round_trip_through_npz_continues_identically(name):
    a, _ = run(name, rounds=2)
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in a.state_dict().items()})
    buf.seek(0)
    with np.load(buf, allow_pickle=False) as z:
        state = {k: z[k] for k in z.files}
    b = make_strategy(name, **{k: v for k, v in OPTS.items() if k in STRATEGY_OPTIONS[name]})
    b.load_state_dict(state)
    x = np.array([0.3, -0.7], dtype=np.float32)
    for r in (3, 4):
        d = np.array([0.05 * r, -0.1])
        xa, xb = a.apply(x, d, r), b.apply(x, d, r)
        np.testing.assert_array_equal(xa, xb)
        x = xa
    assert a.state_dict()["step"] == b.state_dict()["step"] == 4


def test_state_dict_is_a_copy_not_a_live_view():
    s, _ = run("fedadam", rounds=1)
    state = s.state_dict()
    before = state["m"].copy()
    s.apply(np.zeros(2, np.float32), np.ones(2), 2)
    np.testing.assert_array_equal(state["m"], before)


@pytest.mark.parametrize(
    "state, match",
    [
        ({"m": np.zeros(2)}, "expects keys"),
        ({"m": np.zeros(2), "v": np.zeros(3), "step": 1}, "one length"),
        ({"m": np.zeros(2), "v": -np.ones(2), "step": 1}, "non-negative"),
        ({"step": 1.5}, "non-negative integer"),
    ],
)
def test_load_state_dict_refuses_malformed_state(state, match):
    with pytest.raises(ConfigError, match=match):
        FedAdam().load_state_dict(state)


def test_apply_refuses_a_model_of_another_length_than_the_moments():
    s = FedYogi()
    s.apply(np.zeros(3, np.float32), np.ones(3), 1)
    with pytest.raises(ValueError, match="holds moments for 3 parameters, the model has 4"):
        s.apply(np.zeros(4, np.float32), np.ones(4), 2)
