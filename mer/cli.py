"""The ``fedpsyau`` command: fedcore's daemons and tools plus the MER commands.

Subcommands by role (``fedpsyau <command> --help`` for each; ``fedpsyau --help`` lists them
grouped the same way, from :data:`ROLES`, and a test checks that every command has a role):

run a federation
    provision    create a federation CA, server and client certificates, and ready configs
    enroll       make a client's private key and a CSR for the operator
    coordinator  run the coordinator daemon
    client       run a client daemon
    simulate     a whole federation on loopback (default: DPK-GAT, DP-SGD, SecAgg, synthetic data)
    status       a running (or ended) federation: round, stage, clients, epsilon, metrics
    stop         ask the running coordinator to finish after the current round
data and models
    data         synthesize the embedded data set, inspect a data folder
    train        centralised training with LOSO or hold-out evaluation
    evaluate     evaluate a saved model on a data folder
    pretrain     pre-train DPK-GAT's AU module on the public synthetic AU corpus
privacy
    privacy      privacy reports of a run (``privacy report RUN_DIR``), planning, new budgets
benchmarks
    bench        benchmarks users run (``bench epsilon``: accuracy vs privacy budget)

Errors are one line and an exit code (fedcore's table, see :mod:`fedcore.cli`); ``--log-level
DEBUG`` (or ``-v``) adds the traceback of an unexpected error.
"""

from __future__ import annotations

import argparse
import logging
import sys

#: the roles ``fedpsyau --help`` groups the commands by, in this order
ROLES: dict[str, tuple[str, ...]] = {
    "run a federation": ("provision", "enroll", "coordinator", "client", "simulate", "status", "stop"),
    "data and models": ("data", "train", "evaluate", "pretrain"),
    "privacy": ("privacy",),
    "benchmarks": ("bench",),
}
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def grouped_commands(helps: dict[str, str]) -> str:
    """The ``commands`` section of ``--help``: one heading per role, one line per command."""
    width = max(map(len, helps)) + 2
    lines = ["commands:"]
    for role, names in ROLES.items():
        lines.append(f"  {role}:")
        lines += [f"    {name:<{width}}{helps[name]}" for name in names if name in helps]
    unplaced = sorted(set(helps) - {n for names in ROLES.values() for n in names})
    if unplaced:
        lines.append("  other:")
        lines += [f"    {name:<{width}}{helps[name]}" for name in unplaced]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    from fedcore import cli as fed_cli
    from fedcore.dp import commands as dp_commands
    from mer.commands import bench as mer_bench
    from mer.commands import simulate as mer_federation
    from mer.commands import pretrain as pretrain_command
    from mer.data import commands as data_commands
    from mer.train import commands as train_commands

    parser = argparse.ArgumentParser(
        prog="fedpsyau",
        usage="%(prog)s [-h] [-v] [--log-level LEVEL] COMMAND ...",
        description="Privacy-preserving federated micro-expression recognition.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="run `fedpsyau COMMAND --help` for a command's options",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging (as --log-level DEBUG)")
    parser.add_argument(
        "--log-level",
        dest="global_log_level",
        default=None,
        choices=LEVELS,
        help="log level (default INFO; DEBUG adds tracebacks of unexpected errors)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", help=argparse.SUPPRESS)
    helps: dict[str, str] = {}
    add_parser = sub.add_parser

    def recording(name, **kwargs):
        helps[name] = kwargs.get("help", "")
        return add_parser(name, **kwargs)

    sub.add_parser = recording  # the listing below is built from what each command registers
    fed_cli.register(sub, exclude=("simulate",))
    mer_federation.register(sub)
    dp_commands.register(sub)
    data_commands.register(sub)
    train_commands.register(sub)
    pretrain_command.register(sub)
    mer_bench.register(sub)
    sub.add_parser = add_parser
    parser.epilog = f"{grouped_commands(helps)}\n\n{parser.epilog}"
    parser.commands = dict(helps)  # for tests: every registered command and its help line
    return parser


def main(argv: list[str] | None = None) -> int:
    from fedcore.cli import guarded

    parser = build_parser()
    args = parser.parse_args(argv)
    level = "DEBUG" if args.verbose else (args.global_log_level or getattr(args, "log_level", None) or "INFO")
    if hasattr(args, "log_level") and (args.verbose or args.global_log_level):
        args.log_level = level  # fedcore's commands set their own level from it
    logging.basicConfig(level=getattr(logging, level), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return guarded(args.func, args, debug=level == "DEBUG", name=f"fedpsyau {args.command}")


if __name__ == "__main__":
    sys.exit(main())
