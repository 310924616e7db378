"""`fedpsyau bench epsilon`: its federations (the daemons' engine over the in-memory transport)
and the command's arguments."""

from __future__ import annotations

import argparse
import csv
import math

import numpy as np
import pytest

from fedcore.coordinator.checkpoint import CheckpointStore
from fedcore.examples.softmax import workload as softmax
from mer import bench_config
from mer.commands import bench

SETTINGS = {"num_features": 8, "samples": 60, "hidden": 4}
NO_DP = {"enabled": False}


def _run(mode: str, tmp_path, rounds: int = 2):
    res = bench.federate(
        mode, SETTINGS, 3, rounds, NO_DP, 3, tmp_path / mode, workload="fedcore.examples.softmax:workload"
    )
    return res, CheckpointStore(res.run_dir / "checkpoints").load_latest()


def test_secagg_engine_reaches_the_plain_global_model_up_to_quantisation(tmp_path):
    (plain, p_ck), (secagg, s_ck) = _run("plain", tmp_path), _run("secagg", tmp_path)
    init, _ = softmax.initial_parameters(SETTINGS, 3)
    assert np.abs(p_ck.params - init).max() > 1e-3  # the rounds really trained
    assert secagg.metrics[-1]["notes"]["private"] and not plain.metrics[-1]["notes"]["private"]
    # seeded clients train alike in both modes; fixed point with 2^-frac_bits resolution, then
    # float32: far below any training step
    np.testing.assert_allclose(s_ck.params, p_ck.params, atol=1e-6)
    assert secagg.metrics[-1]["eval"]["uf1"] == pytest.approx(plain.metrics[-1]["eval"]["uf1"])
    assert {"accuracy", "uf1", "uar"} <= set(plain.metrics[-1]["eval"])


def test_statistics_round_sums_the_clients_counts_exactly_through_secagg(tmp_path):
    _, ckpt = _run("secagg", tmp_path, rounds=1)
    want = sum(
        softmax.make_trainer({**SETTINGS, "client_index": i, "num_clients": 3}, "c", tmp_path, "cpu").statistics({})
        for i in range(3)
    )
    # counts are above the mode's default clip of 1.0: the engine must use the workload's bound
    assert want.max() > 1
    np.testing.assert_allclose(ckpt.statistics, want, atol=1e-6)


def test_engine_counts_model_and_mode_bytes_every_round(tmp_path):
    res, _ = _run("plain", tmp_path)
    assert all(m["bytes_up"] > 0 and m["bytes_down"] > 0 and m["contributors"] == 3 for m in res.metrics)
    assert not res.metrics[0].get("eval") and res.metrics[-1]["eval"]  # evaluated after the last round only


def test_run_federated_reports_the_last_evaluation_and_the_epsilon_spent(tmp_path):
    privacy = {"target_epsilon": 4.0, "max_grad_norm": 1.0, "secure_rng": False}
    row = bench.run_federated(
        "secagg", SETTINGS, 3, 2, privacy, 0, tmp_path / "r", workload="fedcore.examples.softmax:workload"
    )
    assert 0 < row["epsilon_spent"] <= 4.0 + 1e-9  # the ledgers' figure, statistics release included
    assert row["contributors"] == [3, 3] and row["test_samples"] > 0
    assert 0 <= row["uf1"] <= 1 and row["bytes_up"] > 0


def _args(argv):
    parser = argparse.ArgumentParser()
    bench.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["bench", "epsilon", *argv])


def test_bench_epsilon_lists_every_bad_argument_at_once(tmp_path):
    args = _args(
        [
            "--out",
            str(tmp_path),
            "--clients",
            "2",
            "--seeds",
            "0",
            "--rounds",
            "0",
            "--settings",
            "plain",
            "homomorphic",
            "--data",
            str(tmp_path / "missing"),
        ]
    )
    problems = bench.check_args(args)
    text = "\n".join(problems)
    assert len(problems) == 5
    for needle in (
        "--clients must be >= 3",
        "--seeds must be >= 1",
        "--rounds must be >= 1",
        "homomorphic",
        "does not exist",
    ):
        assert needle in text
    assert bench.run(args) == 2  # ExitCode.CONFIG, before any data is written
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("bad", ["0", "-1", "abc"])
def test_bench_epsilon_refuses_a_non_positive_epsilon(tmp_path, bad):
    with pytest.raises(SystemExit):
        _args(["--out", str(tmp_path), "--epsilons", "1", bad])


def test_bench_epsilon_requires_out():
    with pytest.raises(SystemExit):
        _args([])


def test_quick_plan_runs_ckks_at_one_budget_and_no_dp_last(tmp_path):
    plan = bench.make_plan(_args(["--out", str(tmp_path), "--quick"]))
    runs = plan.runs()
    assert {s for s, _, _, _ in runs} == {"centralised", "plain", "secagg", "ckks"}
    assert [e for s, _, e, _ in runs if s == "ckks"] == [8.0]
    assert {i for _, i, _, _ in runs} == {"pretrained"}
    assert math.isinf(plan.epsilons[-1]) and plan.seeds == 1
    full = bench.make_plan(_args(["--out", str(tmp_path), "--seeds", "2", "--rounds", "5"]))
    # every budget, both initialisations, every setting
    assert full.seeds == 2 and full.rounds == 5 and len(full.runs()) == 2 * 2 * 7 * 4
    only = bench.make_plan(_args(["--out", str(tmp_path), "--quick", "--inits", "none"]))
    assert {i for _, i, _, _ in only.runs()} == {"none"}


def test_recipe_comes_from_one_table_that_simulate_and_bench_share(monkeypatch):
    from mer.commands import simulate as federation
    from mer.cli import build_parser

    monkeypatch.setitem(bench_config.RECIPES, 8.0, {**bench_config.RECIPES[8.0], "lr": 0.5, "epochs": 3})
    assert bench_config.recipe(8.0)["lr"] == 0.5
    assert bench_config.recipe(9.5)["lr"] == 0.5  # between budgets: the next smaller one's recipe
    assert bench_config.recipe(8.0, "none") == bench_config.SCRATCH
    # simulate reads the same table for its defaults; an explicit option wins
    args = build_parser().parse_args(["simulate", "--epsilon", "8"])
    assert federation.training_options(args)["lr"] == 0.5 and federation.training_options(args)["epochs"] == 3
    args = build_parser().parse_args(["simulate", "--epsilon", "8", "--lr", "0.02"])
    assert federation.training_options(args)["lr"] == 0.02
    assert bench.privacy_table(math.inf, bench_config.recipe(math.inf)) == {"enabled": False}
    assert bench.privacy_table(2.0, bench_config.recipe(2.0))["target_epsilon"] == 2.0
    monkeypatch.setitem(bench_config.RECIPES, 2.0, {**bench_config.RECIPES[2.0], "momentum": 0.9})
    with pytest.raises(ValueError, match="momentum"):
        bench_config.recipe(2.0)


def test_outputs_hold_mean_and_sd_over_seeds_and_no_dp_as_inf(tmp_path):
    runs = [
        {
            "setting": s,
            "epsilon": e,
            "seed": k,
            "uf1": u + 0.1 * k,
            "uar": u,
            "accuracy": u,
            "seconds": 1.0,
            "epsilon_spent": None if math.isinf(e) else e,
        }
        for s in ("centralised", "secagg")
        for e, u in ((1.0, 0.2), (math.inf, 0.6))
        for k in (0, 1)
    ]
    summary = bench.summarise(runs)
    row = next(r for r in summary if r["setting"] == "secagg" and r["epsilon"] == 1.0)
    assert row["uf1_mean"] == pytest.approx(0.25) and row["uf1_sd"] == pytest.approx(0.1 / math.sqrt(2))
    result = {
        "plan": {"clients": 3, "rounds": 2, "seeds": 2},
        "data": {"name": "x", "classes": ["a", "b", "c"]},
        "summary": summary,
        "runs": runs,
    }
    paths = bench.write_outputs(result, tmp_path, "epsilon")
    assert all(p.stat().st_size > 0 for p in paths)
    rows = list(csv.DictReader(paths[1].open()))
    assert [r["epsilon"] for r in rows if r["setting"] == "secagg"] == ["1", "inf"]


def test_prepare_returns_the_class_names_and_sample_count(tmp_path):
    args = _args(["--out", str(tmp_path), "--subjects", "3"])
    data, cache, classes, n = bench.prepare(args, tmp_path)
    assert classes == ["happiness", "disgust", "repression", "surprise", "others"] or len(classes) == 5
    assert all(isinstance(c, str) for c in classes) and n >= 6 and data.is_dir()


def test_centralised_setting_trains_on_the_union_of_the_clients_training_splits(tmp_path):
    args = _args(["--out", str(tmp_path), "--subjects", "9"])
    data, cache, classes, _ = bench.prepare(args, tmp_path)
    settings = {
        "data": str(data),
        "format": "casme2",
        "cache_dir": str(cache),
        "partition": "subjects",
        "num_classes": len(classes),
        "model": "dpk-gat",
        "seed": 0,
        "test_fraction": 0.25,
        "epochs": 1,
        "batch_size": 16,
        "lr": 0.01,
        "dp_trainable": "head",
        "aug_mult": 1,
    }
    hp = bench_config.recipe(8.0)
    row = bench.run_centralised(
        settings, 3, 1, {**settings, "rounds": 1, "privacy": bench.privacy_table(8.0, hp)}, 0, tmp_path / "work"
    )
    assert row["epsilon_spent"] is not None and 0 < row["epsilon_spent"] <= 8.0 + 1e-6
    assert row["train_samples"] + row["test_samples"] > 0
