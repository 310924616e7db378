"""`fedpsyau simulate` refuses bad arguments before it writes data, computes flow or starts a process."""

from __future__ import annotations

import pytest

from mer.cli import main


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--rounds", "0"], "--rounds must be >= 1 (got 0)"),
        (["--clients", "1"], "--clients must be >= 3 for --aggregation secagg"),
        (["--clients", "2", "--aggregation", "ckks"], "--clients must be >= 3 for --aggregation ckks"),
        (["--epsilon", "-1"], "--epsilon must be > 0"),
        (["--subjects", "1"], "--subjects must be >= 2"),
        (["--test-fraction", "1.5"], "--test-fraction must lie in (0, 1)"),
        (["--batch-size", "0"], "--batch-size must be >= 1"),
        (["--lr", "0"], "--lr must be > 0"),
        (["--ema", "1.0"], "--ema must lie in [0, 1)"),
        (["--init", "/no/such/checkpoint"], "is not a pre-trained checkpoint"),
        (["--model", "flow-cnn", "--init", "pretrained"], "the packaged checkpoint is for dpk-gat"),
    ],
)
def test_bad_simulate_argument_exits_2_with_the_option_and_writes_nothing(tmp_path, capsys, argv, needle):
    out = tmp_path / "run"
    assert main(["simulate", "--out", str(out), *argv]) == 2
    assert needle in capsys.readouterr().err
    assert not out.exists()


def test_every_problem_is_listed_at_once(tmp_path, capsys):
    assert main(["simulate", "--out", str(tmp_path / "r"), "--rounds", "0", "--clients", "1", "--epsilon", "0"]) == 2
    err = capsys.readouterr().err
    assert "--rounds" in err and "--clients" in err and "--epsilon" in err


def test_other_models_default_to_training_from_scratch(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default --out runs/demo is relative: a README run in the checkout must not matter
    from mer.cli import build_parser
    from mer.commands.simulate import check_args

    args = build_parser().parse_args(["simulate", "--model", "flow-cnn"])
    assert check_args(args) == [] and args.init == "none"
    args = build_parser().parse_args(["simulate"])
    assert check_args(args) == [] and args.init == "pretrained"


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--status", "0.0.0.0:8080"], "--status '0.0.0.0:8080' is not a loopback address"),
        (["--status", "nowhere"], "--status must look like HOST:PORT"),
        (["--resume"], "holds no run to resume"),
    ],
)
def test_bad_status_and_resume_are_refused_before_any_work(tmp_path, capsys, argv, needle):
    out = tmp_path / "run"
    assert main(["simulate", "--out", str(out), *argv]) == 2
    assert needle in capsys.readouterr().err
    assert not out.exists()


def test_an_earlier_run_is_not_overwritten(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text('{"round": 1}\n')
    assert main(["simulate", "--out", str(out)]) == 2
    assert "holds an earlier run" in capsys.readouterr().err
    assert (out / "metrics.jsonl").read_text() == '{"round": 1}\n'


def test_a_client_left_without_a_test_subject_is_refused_before_any_process():
    import numpy as np

    from mer.data.arrays import MEArrays
    from mer.commands.simulate import check_partition

    n = 12
    subjects = np.array([f"casme2/s{i % 4}" for i in range(n)])  # 4 subjects for 3 clients
    arrays = MEArrays(
        np.zeros((n, 3, 4, 4), np.float32),
        np.zeros(n, np.int64),
        np.zeros((n, 12), np.float32),
        np.ones(n, bool),
        subjects,
        np.array(["casme2"] * n),
        np.array([str(i) for i in range(n)]),
        ("a", "b"),
    )
    settings = {"partition": "subjects", "seed": 0, "test_fraction": 0.25}
    problems = check_partition(arrays, settings, 3)
    assert problems and all("subject-disjoint split needs at least 2 subjects" in p for p in problems)
    assert check_partition(arrays, settings, 2) == []
