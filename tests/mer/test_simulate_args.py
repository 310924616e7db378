"""`fedpsyau simulate` refuses bad arguments before it writes data, computes flow or starts a process."""

from __future__ import annotations

import pytest

from mer.cli import main


@pytest.mark.parametrize("argv, needle", [
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
])
def test_bad_simulate_argument_exits_2_with_the_option_and_writes_nothing(tmp_path, capsys, argv, needle):
    out = tmp_path / "run"
    assert main(["simulate", "--out", str(out), *argv]) == 2
    assert needle in capsys.readouterr().err
    assert not out.exists()


def test_every_problem_is_listed_at_once(tmp_path, capsys):
    assert main(["simulate", "--out", str(tmp_path / "r"), "--rounds", "0", "--clients", "1", "--epsilon", "0"]) == 2
    err = capsys.readouterr().err
    assert "--rounds" in err and "--clients" in err and "--epsilon" in err


def test_other_models_default_to_training_from_scratch():
    from mer.cli import build_parser
    from mer.federation import check_args

    args = build_parser().parse_args(["simulate", "--model", "flow-cnn"])
    assert check_args(args) == [] and args.init == "none"
    args = build_parser().parse_args(["simulate"])
    assert check_args(args) == [] and args.init == "pretrained"
