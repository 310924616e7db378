"""The console script: every documented command is present and wired."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mer.cli import build_parser

COMMANDS = ("provision", "coordinator", "client", "simulate", "privacy", "data", "train", "evaluate", "bench", "pretrain")


def test_help_lists_every_command():
    out = subprocess.run([sys.executable, "-m", "mer.cli", "--help"], capture_output=True, text=True, timeout=120,
                         check=False)
    assert out.returncode == 0, out.stderr
    for command in COMMANDS:
        assert f"    {command} " in out.stdout, f"{command} missing from fedpsyau --help:\n{out.stdout}"


def test_simulate_is_the_mer_one_with_privacy_defaults():
    args = build_parser().parse_args(["simulate"])
    assert args.aggregation == "secagg"
    assert args.epsilon > 0 and not args.no_dp
    assert args.func.__module__ == "mer.federation"


@pytest.mark.parametrize("argv", [["simulate", "--aggregation", "rot13"], ["simulate", "--partition", "random"]])
def test_simulate_rejects_unknown_choices(argv):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    assert exc.value.code == 2
