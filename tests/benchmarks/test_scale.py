"""The growth-exponent fit of benchmarks/scale.py."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "scale.py"
_spec = importlib.util.spec_from_file_location("bench_scale", _PATH)
scale = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(scale)


@pytest.mark.parametrize("b", [0.0, 1.0, 1.5, 2.0])
def test_fit_exponent_recovers_a_power_law(b):
    n = np.array([10, 50, 100, 200])
    fit = scale.fit_exponent(n, 3.0 * n**b)
    assert fit["exponent"] == pytest.approx(b, abs=1e-9)
    assert fit["coefficient"] == pytest.approx(3.0, rel=1e-9)
    assert fit["r2"] == pytest.approx(1.0)


def test_fit_exponent_with_noise_stays_close_and_r2_drops():
    rng = np.random.default_rng(0)
    n = np.array([10, 20, 50, 100, 200, 500])
    y = 0.01 * n**1.3 * np.exp(rng.normal(0, 0.05, n.size))
    fit = scale.fit_exponent(n, y)
    assert abs(fit["exponent"] - 1.3) < 0.1
    assert 0.9 < fit["r2"] < 1.0


@pytest.mark.parametrize("n,y", [([10, 10], [1.0, 2.0]), ([10, 50], [1.0, 0.0]), ([10, 50, 100], [1.0, 2.0])])
def test_fit_exponent_refuses_unusable_input(n, y):
    with pytest.raises(ValueError):
        scale.fit_exponent(n, y)


def test_held_bytes_counts_a_shared_buffer_once_and_stops_where_told():
    big = np.zeros(10_000)  # 80,000 bytes
    holder = {"a": big, "b": big, "c": [big]}
    held = scale.held_bytes(holder, [])
    assert 80_000 < held < 2 * 80_000
    assert scale.held_bytes(holder, [big]) < 10_000  # not entered: the array is someone else's


def test_held_bytes_reaches_the_buffer_behind_a_view():
    view = np.zeros(10_000)[10:]
    assert scale.held_bytes({"v": view}, []) > 80_000
