"""benchmarks/secagg.py's round through the engine: the sum it checks and the compute it adds up."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "secagg.py"
_spec = importlib.util.spec_from_file_location("bench_secagg", _PATH)
secagg = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(secagg)


def test_engine_round_leaves_the_dropout_out_and_adds_up_every_stage(tmp_path):
    row = secagg.engine_round("secagg", 4, 500, {3}, tmp_path / "run")
    assert row["dropouts"] == 1 and row["max_abs_error"] < 1e-6
    assert list(row["stages"]) == [
        "TRAIN",
        "SECAGG_ADVERTISE_KEYS",
        "SECAGG_SHARE_KEYS",
        "SECAGG_MASKED_INPUT",
        "SECAGG_UNMASK",
    ]  # EVALUATE is not part of the round
    assert row["stages"]["SECAGG_MASKED_INPUT"]["responded"] == 3
    assert row["compute_s"] == pytest.approx(sum(s["server_s"] + s["clients_s"] for s in row["stages"].values()))
    assert 0 < row["compute_protocol_s"] < row["compute_s"]
    assert row["peer_key_checks_s"] > 0 and row["workload_fit_s"] > 0


def test_engine_round_refuses_a_release_that_is_not_the_survivors_mean(tmp_path, monkeypatch):
    from fedcore.examples import updates

    real = updates.expected_mean
    monkeypatch.setattr(updates, "expected_mean", lambda s, c, r: real(s, c, r) + 1e-3)
    with pytest.raises(RuntimeError, match="from the survivors' mean"):
        secagg.engine_round("plain", 3, 200, set(), tmp_path / "run")


def test_median_row_takes_medians_per_stage_and_the_worst_error():
    def row(x, err):
        return {
            "n": 3,
            "L": 10,
            "dropouts": 0,
            "compute_s": x,
            "max_abs_error": err,
            "mode": "plain",
            "stages": {"TRAIN": {"server_s": x, "clients_s": 2 * x}},
        }

    out = secagg.median_row([row(1.0, 1e-9), row(3.0, 1e-7), row(2.0, 1e-8)])
    assert out["compute_s"] == 2.0 and out["stages"]["TRAIN"] == {"server_s": 2.0, "clients_s": 4.0}
    assert out["max_abs_error"] == 1e-7 and out["reps"] == 3 and out["n"] == 3
