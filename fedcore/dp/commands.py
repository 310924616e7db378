"""``privacy`` subcommands for the console script (wired in by the application's CLI).

- ``privacy report RUN_DIR [--no-png]``: per-client epsilon table of a run, and
  ``RUN_DIR/report/epsilon.png``. Exit 0; 2 if the run directory or its metrics are missing or
  malformed (the message names file, line and field). Given a client's workdir (or a ledger
  file) instead, it prints that client's own ledger: every charge with its key, steps, sample
  rate and noise multiplier (what the client keeps from the coordinator), and the epsilon.
- ``privacy new-budget --ledger PATH [--workdir DIR] --reason TEXT``: the operator starts a new
  privacy budget: the ledger's charges are archived (kept, no longer counted) and a new budget id
  is recorded, or, when the ledger is missing, a fresh ledger is created for the workdir. Logged
  as a warning. Exit 0; 2 on a bad ledger.
- ``privacy plan --examples N --batch-size B --rounds R [--local-epochs E] (--epsilon EPS |
  --noise-multiplier SIGMA) [--delta D] [--accountant rdp|prv]``: the noise multiplier and
  epsilon a client of N records would get. Exit 0; 2 on invalid settings.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .config import DEFAULT_DELTA, PrivacyConfig, PrivacyConfigError
from .names import ACCOUNTANTS, DEFAULT_ACCOUNTANT
from .report import ReportError, privacy_report

__all__ = ["register"]

EXIT_OK = 0
EXIT_BAD_INPUT = 2


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``privacy report`` and ``privacy plan`` to ``subparsers``."""
    privacy = subparsers.add_parser("privacy", help="differential-privacy reports and planning")
    sub = privacy.add_subparsers(dest="privacy_command", required=True, metavar="{report,plan,new-budget}")

    report = sub.add_parser("report", help="per-client epsilon table and plot of a run")
    report.add_argument(
        "run_dir",
        metavar="RUN_DIR",
        help="the coordinator's run directory (holds metrics.jsonl), or a client workdir / ledger file",
    )
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
    plan.add_argument("--delta", type=float, default=None, help=f"default: the public {DEFAULT_DELTA:g}")
    plan.add_argument("--accountant", choices=ACCOUNTANTS, default=DEFAULT_ACCOUNTANT)
    plan.set_defaults(func=_plan)

    budget_cmd = sub.add_parser("new-budget", help="start a new privacy budget (archives the old charges; logged)")
    budget_cmd.add_argument("--ledger", required=True, help="the ledger file")
    budget_cmd.add_argument("--workdir", default=None, help="the client workdir whose marker to update")
    budget_cmd.add_argument("--reason", required=True, help="why (stored in the ledger)")
    budget_cmd.set_defaults(func=_new_budget)


def _report(args: argparse.Namespace) -> int:
    target = Path(args.run_dir)
    ledger_file = target if target.is_file() else target / "privacy_ledger.json"
    if not (target / "metrics.jsonl").exists() and ledger_file.is_file():
        return _ledger_report(ledger_file)
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
            target_epsilon=args.epsilon,
            noise_multiplier=args.noise_multiplier,
            delta=args.delta,
            accountant=args.accountant,
            planned_rounds=args.rounds,
            local_epochs=args.local_epochs,
            batch_size=args.batch_size,
            secure_rng=True,
        )
        from .plan import plan_privacy  # Opacus (and torch) load only when a plan is made

        plan = plan_privacy(config, args.examples)
    except (PrivacyConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(plan.summary())
    return EXIT_OK


def _ledger_report(path: Path) -> int:
    from .ledger import LedgerError, PrivacyLedger

    try:
        ledger = PrivacyLedger.load(path)
        result = ledger.result()
    except LedgerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"ledger {path}: budget {ledger.budget['id']} ({ledger.budget['reason']}, since {ledger.budget['started']})")
    print("kind        federation/run                 round  attempt  steps  sample_rate  noise_multiplier")
    for c in ledger.charges:
        k = c.key
        print(
            f"{k.kind:<11} {k.federation + '/' + k.run:<30} {k.round:>5}  {k.attempt!s:>7}  {c.steps:>5}  "
            f"{c.sample_rate:>11.5g}  {c.noise_multiplier:>16.5g}"
        )
    target = "none" if ledger.target_epsilon is None else f"{ledger.target_epsilon:g}"
    print(
        f"epsilon {result.epsilon:.4f} (delta {result.delta:g}, {result.accountant}, {ledger.steps} DP-SGD steps, "
        f"target {target}); {len(ledger.archived)} archived budget(s)"
    )
    return EXIT_OK


def _new_budget(args: argparse.Namespace) -> int:
    import logging

    from .ledger import LedgerError, PrivacyLedger
    from .ledger_guard import write_marker

    logging.basicConfig(level=logging.WARNING)
    path = Path(args.ledger)
    try:
        if path.exists():
            ledger = PrivacyLedger.load(path, workdir=args.workdir)
            new_id = ledger.new_budget(args.reason)
        else:
            ledger = PrivacyLedger(
                path, accountant=DEFAULT_ACCOUNTANT, delta=DEFAULT_DELTA, target_epsilon=None, workdir=args.workdir
            )
            ledger.budget["reason"] = f"new budget by the operator: {args.reason}"
            ledger.save()
            new_id = ledger.budget["id"]
        if args.workdir:
            write_marker(args.workdir, path, new_id, 0)
    except (LedgerError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"NEW PRIVACY BUDGET {new_id} in {path} ({args.reason}); earlier charges are archived, not counted")
    return EXIT_OK
