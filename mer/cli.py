"""The ``fedpsyau`` command: fedcore's daemons and tools plus the MER commands.

Subcommands (``fedpsyau <command> --help`` for each):

    provision    create a federation CA, server and client certificates, and ready configs
    coordinator  run the coordinator daemon
    client       run a client daemon
    simulate     a whole federation on loopback (default: DPK-GAT, DP-SGD, SecAgg, synthetic data)
    privacy      privacy reports of a run (``privacy report RUN_DIR``)
    data         synthesize the embedded data set, inspect a data folder
    train        centralised training with LOSO or hold-out evaluation
    evaluate     evaluate a saved model on a data folder
    pretrain     pre-train DPK-GAT's AU module on the public synthetic AU corpus
    bench        benchmarks users run (``bench epsilon``: accuracy vs privacy budget)

Exit codes are fedcore's (see :mod:`fedcore.cli`).
"""

from __future__ import annotations

import argparse
import logging
import sys


def build_parser() -> argparse.ArgumentParser:
    from fedcore import cli as fed_cli
    from fedcore.dp import commands as dp_commands
    from mer import bench as mer_bench
    from mer import federation as mer_federation
    from mer.commands import pretrain as pretrain_command
    from mer.data import commands as data_commands
    from mer.train import commands as train_commands

    parser = argparse.ArgumentParser(prog="fedpsyau", description="Privacy-preserving federated micro-expression recognition.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    fed_cli.register(sub, exclude=("simulate",))
    mer_federation.register(sub)
    dp_commands.register(sub)
    data_commands.register(sub)
    train_commands.register(sub)
    pretrain_command.register(sub)
    mer_bench.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
