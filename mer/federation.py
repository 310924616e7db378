"""``fedpsyau simulate``: a private federation of DPK-GAT clients on loopback, in one command.

By default it writes the embedded synthetic data set (CASME II layout, real faces from installed
packages) into ``RUN_DIR/data``, splits it into ``--clients`` clients by subject, and runs
fedcore's simulation with the MER workload: real coordinator and client processes over mutual
TLS, the private statistical prior summed first (round 0), then DP-SGD rounds aggregated with
SecAgg+. It ends with the closing table, ``RUN_DIR/summary.json`` and PNGs under
``RUN_DIR/report/``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path
from typing import Any

from fedcore.exitcodes import ExitCode

log = logging.getLogger(__name__)

WORKLOAD = "mer.train.federated:workload"
# Tuned on the default set under DP (epsilon 8): full-batch steps (q = 1) and a small AdamW rate
# gave the best utility; see the README's federated results.
DEFAULTS = {"clients": 3, "rounds": 20, "epsilon": 8.0, "epochs": 1, "batch_size": 64, "lr": 1e-3}


def prepare_data(run_dir: Path, data: str | None, fmt: str, subjects: int, seed: int) -> tuple[Path, Path, Any]:
    """The data folder (synthesized when ``data`` is None), the flow cache, and the loaded MEArrays.

    Loading once here fills the flow cache, so the client processes do no flow work.
    """
    from mer.data.load import load_arrays
    from mer.data.synth import synthesize

    cache = run_dir / "cache"
    if data is None:
        root = run_dir / "data"
        if not (root / "CASME2-coding-synthetic.csv").exists():
            print(f"writing the embedded synthetic data set ({subjects} subjects) to {root}", flush=True)
            synthesize(root, subjects=subjects, seed=seed)
    else:
        root = Path(data)
    arrays = load_arrays(root, fmt, cache_dir=cache)
    return root, cache, arrays


def run(args: argparse.Namespace) -> int:
    from fedcore.simulation import simulate
    from mer.report import write_report

    run_dir = Path(args.out or "runs/demo").resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    data, cache, arrays = prepare_data(run_dir, args.data, args.format, args.subjects, args.seed)
    classes = list(arrays.class_names)
    settings: dict[str, Any] = {
        "data": str(data), "format": args.format, "cache_dir": str(cache), "partition": args.partition,
        "num_classes": len(classes), "model": args.model, "epochs": args.epochs, "batch_size": args.batch_size,
        "lr": args.lr, "seed": args.seed, "test_fraction": args.test_fraction,
    }
    if args.partition == "dirichlet":
        settings["alpha"] = args.alpha
    if args.prior:
        settings["model_options"] = {"prior": args.prior}
    clients = args.clients
    if args.partition == "by-dataset":
        clients = len(set(arrays.dataset.tolist()))
    privacy: dict[str, Any] = {"enabled": False} if args.no_dp or math.isinf(args.epsilon) else {
        "target_epsilon": args.epsilon, "max_grad_norm": args.max_grad_norm, "secure_rng": args.secure_rng,
        "planned_rounds": args.rounds, "local_epochs": args.epochs, "batch_size": args.batch_size}
    strategy: dict[str, Any] = {"name": args.strategy}
    if args.strategy == "fedprox":
        strategy["mu"] = args.mu
    res = simulate(clients=clients, rounds=args.rounds, out=run_dir, aggregation=args.aggregation,
                   workload=WORKLOAD, workload_settings=settings, privacy=privacy, strategy=strategy,
                   insecure=args.insecure, seed=args.seed, timeout=args.timeout, resume=args.resume)
    summary = write_report(run_dir, classes)
    if privacy.get("enabled", True):
        from fedcore.dp.report import ReportError, privacy_report

        try:
            print("\nprivacy spent per client (sample-level, cumulative):", flush=True)
            privacy_report(run_dir, write_png=False, stream=sys.stdout)
        except ReportError as exc:
            log.warning("no privacy report: %s", exc)
    print(json.dumps({k: summary.get(k) for k in ("status", "uf1", "uar", "accuracy", "epsilon_max", "rounds",
                                                  "aggregation", "seconds")}), flush=True)
    print(f"report: {run_dir / 'report'}", flush=True)
    return res.returncode


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", help="run folder (default runs/demo)")
    p.add_argument("--clients", type=int, default=DEFAULTS["clients"], help="client processes (default 3)")
    p.add_argument("--rounds", type=int, default=DEFAULTS["rounds"], help="training rounds (default 20)")
    p.add_argument("--aggregation", choices=("secagg", "ckks", "plain"), default="secagg",
                   help="secagg (default): pairwise masking; ckks: encrypted sum; plain: NOT private")
    p.add_argument("--data", help="data folder (default: the embedded synthetic set, written into RUN_DIR/data)")
    p.add_argument("--format", default="casme2", choices=("casme2", "samm", "smic", "casme3", "composite", "manifest"))
    p.add_argument("--partition", default="subjects", choices=("subjects", "by-dataset", "dirichlet"),
                   help="how samples are split into clients; a subject never spans two clients")
    p.add_argument("--alpha", type=float, default=0.5, help="Dirichlet label-skew concentration")
    p.add_argument("--subjects", type=int, default=24, help="subjects of the synthetic set (default 24)")
    p.add_argument("--test-fraction", type=float, default=0.25, help="share of each client's subjects held out")
    p.add_argument("--model", default="dpk-gat", choices=("dpk-gat", "flow-cnn"))
    p.add_argument("--prior", choices=("both", "psych", "stat", "none"), help="DPK-GAT prior (default both)")
    p.add_argument("--epochs", type=int, default=DEFAULTS["epochs"], help="local epochs per round")
    p.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"])
    p.add_argument("--lr", type=float, default=DEFAULTS["lr"])
    p.add_argument("--strategy", default="fedavg", choices=("fedavg", "fedprox", "fedadam", "fedyogi"))
    p.add_argument("--mu", type=float, default=0.01, help="FedProx proximal weight")
    p.add_argument("--epsilon", type=float, default=DEFAULTS["epsilon"],
                   help="each client's target epsilon for the whole run (default 8; inf = no DP)")
    p.add_argument("--max-grad-norm", type=float, default=1.0, help="DP-SGD per-sample clipping bound")
    p.add_argument("--secure-rng", action="store_true", help="CSPRNG for DP noise and sampling")
    p.add_argument("--no-dp", action="store_true", help="train without differential privacy")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=None, help="give up after this many seconds")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    p.add_argument("--insecure", action="store_true", help="no TLS (local debugging only; warns)")


def register(subparsers) -> None:
    p = subparsers.add_parser("simulate", help="a private federation of DPK-GAT clients on loopback",
                              description=__doc__.splitlines()[0])
    add_arguments(p)
    p.set_defaults(func=_safe_run)


def _safe_run(args: argparse.Namespace) -> int:
    return run_guarded(run, args)


def run_guarded(command, args: argparse.Namespace) -> int:
    """Run a MER command; a configuration or data error is logged and gives exit code 2."""
    from fedcore.common.errors import ConfigError
    from mer.data.errors import DataError

    try:
        return command(args)
    except (ConfigError, DataError, ValueError) as exc:
        log.error("%s", exc)
        return int(ExitCode.CONFIG)
