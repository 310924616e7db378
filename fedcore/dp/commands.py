"""``privacy`` subcommands for the console script (wired in by the application's CLI).

- ``privacy report RUN_DIR [--no-png]``: per-client epsilon table of a run, and
  ``RUN_DIR/report/epsilon.png``. Exit 0; 2 if the run directory or its metrics are missing or
  malformed (the message names file, line and field).
- ``privacy plan --examples N --batch-size B --rounds R [--local-epochs E] (--epsilon EPS |
  --noise-multiplier SIGMA) [--delta D] [--accountant rdp|prv]``: the noise multiplier and
  epsilon a client of N records would get. Exit 0; 2 on invalid settings.
"""

from __future__ import annotations

import argparse
import sys

from .accounting import ACCOUNTANTS
from .config import PrivacyConfig, PrivacyConfigError
from .plan import plan_privacy
from .report import ReportError, privacy_report

__all__ = ["register"]

EXIT_OK = 0
EXIT_BAD_INPUT = 2


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``privacy report`` and ``privacy plan`` to ``subparsers``."""
    privacy = subparsers.add_parser("privacy", help="differential-privacy reports and planning")
    sub = privacy.add_subparsers(dest="privacy_command", required=True, metavar="{report,plan}")

    report = sub.add_parser("report", help="per-client epsilon table and plot of a run")
    report.add_argument("run_dir", metavar="RUN_DIR", help="the coordinator's run directory (holds metrics.jsonl)")
    report.add_argument("--no-png", action="store_true", help="do not write RUN_DIR/report/epsilon.png")
    report.set_defaults(func=_report)

    plan = sub.add_parser("plan", help="noise multiplier and epsilon for a client's data size")
    plan.add_argument("--examples", type=int, required=True, help="the client's training records n")
    plan.add_argument("--batch-size", type=int, default=32)
    plan.add_argument("--rounds", type=int, required=True, help="planned rounds")
    plan.add_argument("--local-epochs", type=int, default=1)
    budget = plan.add_mutually_exclusive_group(required=True)
    budget.add_argument("--epsilon", type=float, help="target epsilon (derive the noise)")
    budget.add_argument("--noise-multiplier", type=float, help="fixed noise multiplier")
    plan.add_argument("--delta", type=float, default=None, help="default: min(1e-5, 1/(10 n))")
    plan.add_argument("--accountant", choices=ACCOUNTANTS, default="rdp")
    plan.set_defaults(func=_plan)


def _report(args: argparse.Namespace) -> int:
    try:
        rows = privacy_report(args.run_dir, write_png=not args.no_png, stream=sys.stdout)
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if not args.no_png:
        print(f"\nwrote {args.run_dir}/report/epsilon.png ({len(rows)} clients)")
    return EXIT_OK


def _plan(args: argparse.Namespace) -> int:
    try:
        config = PrivacyConfig(  # secure_rng only matters when noise is drawn; planning draws none
            target_epsilon=args.epsilon, noise_multiplier=args.noise_multiplier, delta=args.delta,
            accountant=args.accountant, planned_rounds=args.rounds, local_epochs=args.local_epochs,
            batch_size=args.batch_size, secure_rng=True,
        )
        plan = plan_privacy(config, args.examples)
    except (PrivacyConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(plan.summary())
    return EXIT_OK
