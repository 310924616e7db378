"""The ``train`` subcommands' parser, run in process (shared by the train command tests)."""

from __future__ import annotations

import argparse

from mer.train import commands


def run_cli(argv) -> int:
    """Parse ``argv`` with the train subcommands and run the chosen one; its exit code."""
    parser = argparse.ArgumentParser()
    commands.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))
