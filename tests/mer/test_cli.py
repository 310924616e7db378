"""The console script: every documented command is present and wired."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mer.cli import build_parser

COMMANDS = (
    "provision",
    "coordinator",
    "client",
    "simulate",
    "privacy",
    "data",
    "train",
    "evaluate",
    "bench",
    "pretrain",
)


def test_help_lists_every_command():
    out = subprocess.run(
        [sys.executable, "-m", "mer.cli", "--help"], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    for command in COMMANDS:
        assert f"    {command} " in out.stdout, f"{command} missing from fedpsyau --help:\n{out.stdout}"


def test_simulate_is_the_mer_one_with_privacy_defaults():
    args = build_parser().parse_args(["simulate"])
    assert args.aggregation == "secagg"
    assert args.epsilon > 0 and not args.no_dp
    assert args.func.__module__ == "mer.commands.simulate"


@pytest.mark.parametrize("argv", [["simulate", "--aggregation", "rot13"], ["simulate", "--partition", "random"]])
def test_simulate_rejects_unknown_choices(argv):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    assert exc.value.code == 2


def test_help_groups_every_command_by_role_in_order():
    from mer.cli import ROLES

    parser = build_parser()
    placed = [name for names in ROLES.values() for name in names]
    assert sorted(placed) == sorted(parser.commands), "every registered command has exactly one role"
    text = parser.format_help()
    headings = [text.index(f"  {role}:\n") for role in ROLES]
    assert headings == sorted(headings) and "  other:" not in text
    for role, names in ROLES.items():
        block = text[text.index(f"  {role}:\n") :]
        nxt = [block.index(f"  {r}:\n") for r in ROLES if r != role and f"  {r}:\n" in block[1:]]
        block = block[: min(nxt)] if nxt else block
        for name in names:
            assert f"    {name} " in block, f"{name} not under {role!r}:\n{text}"


def test_an_unexpected_error_is_one_line_with_the_traceback_only_at_debug(caplog):
    import argparse

    from fedcore.cli import guarded

    def buggy(args):
        raise ZeroDivisionError("the bug")

    assert guarded(buggy, argparse.Namespace(command="x")) == 1
    (record,) = [r for r in caplog.records if "internal error in x" in r.getMessage()]
    assert "ZeroDivisionError: the bug (run with --log-level DEBUG" in record.getMessage() and not record.exc_info
    caplog.clear()
    assert guarded(buggy, argparse.Namespace(command="x"), debug=True) == 1
    assert any(r.exc_info for r in caplog.records)
