"""``fedpsyau simulate``: a private federation of DPK-GAT clients on loopback, in one command.

By default it writes the embedded synthetic data set (CASME II layout, real faces from installed
packages) into ``RUN_DIR/data``, splits it into ``--clients`` clients by subject, and runs
fedcore's simulation with the MER workload: real coordinator and client processes over mutual
TLS, the private statistical prior summed first (round 0), then DP-SGD rounds aggregated with
SecAgg+. It ends with the closing table, then says where to look: the status page it served
(``--status HOST:PORT``), the report PNGs under ``RUN_DIR/report/`` and ``RUN_DIR/summary.json``.

Every argument is checked before any data is written or process started (:func:`check_args`,
exit 2). Ctrl-C stops the coordinator and the clients (the newest checkpoint stays) and exits 130
with one line saying how to resume; a coordinator that cannot start gives its own error line and
exit code.
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
from mer.bench_config import DEFAULTS

log = logging.getLogger(__name__)

WORKLOAD = "mer.train.federated:workload"
#: the options that override the DP recipe (mer.bench_config.recipe; the federation's shape: DEFAULTS there)
RECIPE_OPTIONS = ("dp_trainable", "epochs", "batch_size", "lr", "max_grad_norm", "ema", "aug_mult")


def training_options(args: argparse.Namespace) -> dict[str, Any]:
    """The recipe for ``--epsilon`` / ``--init``, with every option the user gave on top of it."""
    from mer.bench_config import recipe
    from mer.train.federated import default_init

    eps = math.inf if args.no_dp else args.epsilon
    init = args.init or default_init(args.model)
    out = recipe(eps, "none" if init == "none" else "pretrained")
    for key in RECIPE_OPTIONS:
        given = getattr(args, key, None)
        if given is not None:
            out[key] = given
    return out


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


def apply_init_manifest(model: str, init: str) -> dict | None:
    """The manifest of checkpoint ``init`` for ``model`` (None for ``none``); refuses a bad one before any work."""
    from mer.model import build_model
    from mer.model.pretrained import apply_init

    if init == "none":
        return None
    return apply_init(build_model(model, 2), init)


def check_args(args: argparse.Namespace) -> list[str]:
    """Every problem with the ``simulate`` arguments, found before any data is written or process started.

    Also resolves ``--init`` (None: ``pretrained`` for dpk-gat, ``none`` otherwise).
    """
    from mer.model.pretrained import CheckpointError
    from mer.train.federated import default_init

    if args.init is None:
        args.init = default_init(args.model)
    problems = []
    if args.rounds < 1:
        problems.append(f"--rounds must be >= 1 (got {args.rounds})")
    if args.partition != "by-dataset":
        least = 1 if args.aggregation == "plain" else 3
        if args.clients < least:
            problems.append(
                f"--clients must be >= {least} for --aggregation {args.aggregation}"
                + (" (with fewer, one client could compute another's update from the sum)" if least == 3 else "")
                + f" (got {args.clients})"
            )
    if not args.no_dp and not args.epsilon > 0:
        problems.append(f"--epsilon must be > 0, or inf / --no-dp for no DP (got {args.epsilon})")
    if args.data is None and args.subjects < 2:
        problems.append(f"--subjects must be >= 2 (got {args.subjects})")
    if args.data is not None and not Path(args.data).exists():
        problems.append(f"--data {args.data} does not exist")
    if args.status and getattr(args, "transport", "grpc") == "memory":
        problems.append("--status needs the coordinator daemon: use it with --transport grpc (the default)")
    elif args.status:
        from fedcore.config.status import StatusSettings, status_problems

        problems += [
            p.replace("[status] address", "--status")
            for p in status_problems(StatusSettings(address=args.status), args.insecure)
        ]
    out = Path(args.out or "runs/demo")
    if not args.resume and (out / "metrics.jsonl").exists():
        problems.append(f"--out {out} holds an earlier run: choose a new --out, or add --resume to continue it")
    if args.resume and not (out / "federation" / "coordinator.toml").exists():
        problems.append(f"--resume: {out} holds no run to resume (no federation/coordinator.toml)")
    if not 0.0 < args.test_fraction < 1.0:
        problems.append(f"--test-fraction must lie in (0, 1) (got {args.test_fraction})")
    for name in ("epochs", "batch_size", "aug_mult"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            problems.append(f"--{name.replace('_', '-')} must be >= 1 (got {value})")
    for name in ("lr", "max_grad_norm"):
        value = getattr(args, name, None)
        if value is not None and not value > 0:
            problems.append(f"--{name.replace('_', '-')} must be > 0 (got {value})")
    if args.ema is not None and not 0.0 <= args.ema < 1.0:
        problems.append(f"--ema must lie in [0, 1) (got {args.ema})")
    if args.model != "dpk-gat" and args.init == "pretrained":
        problems.append(
            f"--init pretrained: the packaged checkpoint is for dpk-gat, not {args.model} "
            "(use --init none or a checkpoint folder of that model)"
        )
    else:
        try:
            apply_init_manifest(args.model, args.init)
        except (CheckpointError, ValueError) as exc:
            problems.append(f"--init {args.init}: {exc}")
    return problems


def check_partition(arrays, settings: dict[str, Any], clients: int) -> list[str]:
    """Every client's share of the data, split as its trainer will split it (the same functions):
    a client left without a training and a test subject is refused here, before any process starts."""
    from mer.data.partition import partition
    from mer.train.splits import holdout_split

    scheme, seed = settings["partition"], int(settings["seed"])
    try:
        parts = partition(
            arrays, scheme, None if scheme == "by-dataset" else clients, seed, float(settings.get("alpha", 0.5))
        )
    except ValueError as exc:
        return [f"--partition {scheme} of {len(set(arrays.subject.tolist()))} subjects into {clients} clients: {exc}"]
    problems = []
    for i, idx in sorted(parts.items()):
        subjects = arrays.subject[idx]
        try:
            holdout_split(subjects, float(settings["test_fraction"]), seed + i)
        except ValueError as exc:
            problems.append(
                f"client{i + 1} gets {len(set(subjects.tolist()))} subject(s) of the data ({exc}): "
                f"use more --subjects, fewer --clients or another --partition"
            )
    return problems


def run(args: argparse.Namespace) -> int:
    from fedcore.simulation import CoordinatorFailed, read_metrics

    problems = check_args(args)
    if problems:
        for problem in problems:
            print(f"fedpsyau simulate: {problem}", file=sys.stderr)
        return int(ExitCode.CONFIG)
    run_dir = Path(args.out or "runs/demo").resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    data, cache, arrays = prepare_data(run_dir, args.data, args.format, args.subjects, args.seed)
    classes = list(arrays.class_names)
    hp = training_options(args)
    settings: dict[str, Any] = {
        "data": str(data),
        "format": args.format,
        "cache_dir": str(cache),
        "partition": args.partition,
        "num_classes": len(classes),
        "model": args.model,
        "epochs": hp["epochs"],
        "batch_size": hp["batch_size"],
        "lr": hp["lr"],
        "ema": hp["ema"],
        "aug_mult": hp["aug_mult"],
        "dp_trainable": hp["dp_trainable"],
        "init": args.init,
        "seed": args.seed,
        "test_fraction": args.test_fraction,
    }
    doc = apply_init_manifest(args.model, args.init)
    if doc is not None:
        settings["init_sha256"] = doc["weights_sha256"]
    print(
        f"training: init {args.init}, dp_trainable {hp['dp_trainable']}, {hp['epochs']} local epochs, "
        f"batch {hp['batch_size']}, lr {hp['lr']:g}, clip {hp['max_grad_norm']:g}, ema {hp['ema']:g}, "
        f"augmentation multiplicity {hp['aug_mult']}",
        flush=True,
    )
    if args.partition == "dirichlet":
        settings["alpha"] = args.alpha
    if args.prior:
        settings["model_options"] = {"prior": args.prior}
    clients = args.clients
    if args.partition == "by-dataset":
        clients = len(set(arrays.dataset.tolist()))
    problems = check_partition(arrays, settings, clients)
    if problems:  # the data is written, but no process has started
        for problem in problems:
            print(f"fedpsyau simulate: {problem}", file=sys.stderr)
        return int(ExitCode.CONFIG)
    privacy: dict[str, Any] = (
        {"enabled": False}
        if args.no_dp or math.isinf(args.epsilon)
        else {
            "target_epsilon": args.epsilon,
            "max_grad_norm": hp["max_grad_norm"],
            "secure_rng": not args.insecure_rng,
            "planned_rounds": args.rounds,
            "local_epochs": hp["epochs"],
            "batch_size": hp["batch_size"],
        }
    )
    strategy: dict[str, Any] = {"name": args.strategy}
    if args.strategy == "fedprox":
        strategy["mu"] = args.mu
    try:
        res = _simulate(args, clients, run_dir, settings, privacy, strategy)
    except CoordinatorFailed as exc:
        print(f"fedpsyau simulate: {exc}", file=sys.stderr)
        return int(exc.returncode or ExitCode.INTERNAL)
    except KeyboardInterrupt:
        done = len(read_metrics(run_dir / "metrics.jsonl"))
        print(
            f"fedpsyau simulate: interrupted (Ctrl-C) after {done} of {args.rounds} rounds; the coordinator and "
            f"the clients are stopped. Resume with: fedpsyau simulate --out {run_dir} --resume "
            f"(and the same options)",
            file=sys.stderr,
        )
        return int(ExitCode.INTERRUPTED)
    return _finish(args, run_dir, classes, privacy, res)


def _simulate(args, clients, run_dir, settings, privacy, strategy):
    from fedcore.simulation import simulate

    return simulate(
        clients=clients,
        rounds=args.rounds,
        out=run_dir,
        aggregation=args.aggregation,
        workload=WORKLOAD,
        workload_settings=settings,
        privacy=privacy,
        strategy=strategy,
        insecure=args.insecure,
        seed=args.seed,
        timeout=args.timeout,
        resume=args.resume,
        status=args.status,
        transport=args.transport,
        seeded=args.insecure_rng,
    )


def _finish(args, run_dir: Path, classes, privacy, res) -> int:
    """The report, the privacy table, the summary line, and where everything is."""
    from mer.train.report import write_report

    summary = write_report(run_dir, classes)
    if privacy.get("enabled", True):
        from fedcore.dp.report import ReportError, privacy_report

        try:
            print("\nprivacy spent per client (sample-level, cumulative):", flush=True)
            privacy_report(run_dir, write_png=False, stream=sys.stdout)
        except ReportError as exc:
            log.warning("no privacy report: %s", exc)
    keys = ("status", "uf1", "uar", "accuracy", "epsilon_max", "rounds", "aggregation", "seconds", "wall_seconds")
    print(json.dumps({k: summary.get(k) for k in keys if k in summary}), flush=True)
    print(where_to_look(run_dir, res.status_page), flush=True)
    return res.returncode


def where_to_look(run_dir: Path, page: str = "") -> str:
    """The closing lines: the status page (if one was served), the report PNGs, summary.json."""
    pngs = sorted((run_dir / "report").glob("*.png"))
    coord = run_dir / "federation" / "coordinator.toml"
    lines = ["where to look:"]
    if page:
        lines.append(
            f"  status page:  {page} (served while the coordinator ran; now: fedpsyau status --config {coord})"
        )
    else:
        lines.append(f"  status:       fedpsyau status --config {coord}  (a live page: --status 127.0.0.1:8080)")
    lines.append(
        "  report:       "
        + (", ".join(str(p) for p in pngs) if pngs else f"{run_dir / 'report'} (no PNG: no round was evaluated)")
    )
    lines.append(f"  summary:      {run_dir / 'summary.json'}")
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", help="run folder (default runs/demo)")
    p.add_argument("--clients", type=int, default=DEFAULTS["clients"], help="client processes (default 3)")
    p.add_argument("--rounds", type=int, default=DEFAULTS["rounds"], help="training rounds (default 20)")
    p.add_argument(
        "--aggregation",
        choices=("secagg", "ckks", "plain"),
        default="secagg",
        help="secagg (default): pairwise masking; ckks: encrypted sum; plain: NOT private",
    )
    p.add_argument("--data", help="data folder (default: the embedded synthetic set, written into RUN_DIR/data)")
    p.add_argument("--format", default="casme2", choices=("casme2", "samm", "smic", "casme3", "composite", "manifest"))
    p.add_argument(
        "--partition",
        default="subjects",
        choices=("subjects", "by-dataset", "dirichlet"),
        help="how samples are split into clients; a subject never spans two clients",
    )
    p.add_argument("--alpha", type=float, default=0.5, help="Dirichlet label-skew concentration")
    p.add_argument("--subjects", type=int, default=24, help="subjects of the synthetic set (default 24)")
    p.add_argument("--test-fraction", type=float, default=0.25, help="share of each client's subjects held out")
    p.add_argument("--model", default="dpk-gat", choices=("dpk-gat", "flow-cnn", "ststnet"))
    p.add_argument("--prior", choices=("both", "psych", "stat", "none"), help="DPK-GAT prior (default both)")
    p.add_argument(
        "--init",
        default=None,
        help="pretrained (the public checkpoint in the package; default for dpk-gat) | none (default for "
        "other models) | a checkpoint folder",
    )
    p.add_argument(
        "--dp-trainable",
        choices=("all", "graph", "head"),
        default=None,
        help="parameters local training updates (default: the recipe's, head)",
    )
    p.add_argument("--epochs", type=int, default=None, help="local epochs per round (default: the recipe's)")
    p.add_argument("--batch-size", type=int, default=None, help="expected batch size (default: the recipe's)")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: the recipe's)")
    p.add_argument(
        "--ema", type=float, default=None, help="weight averaging of the released model (default: the recipe's)"
    )
    p.add_argument(
        "--aug-mult",
        type=int,
        default=None,
        help="augmentation multiplicity of head-only DP training (default: the recipe's)",
    )
    p.add_argument("--strategy", default="fedavg", choices=("fedavg", "fedprox", "fedadam", "fedyogi"))
    p.add_argument("--mu", type=float, default=0.01, help="FedProx proximal weight")
    p.add_argument(
        "--epsilon",
        type=float,
        default=DEFAULTS["epsilon"],
        help="each client's target epsilon for the whole run (default 8; inf = no DP)",
    )
    p.add_argument("--max-grad-norm", type=float, default=None, help="DP-SGD clipping bound (default: the recipe's)")
    p.add_argument(
        "--insecure-rng",
        action="store_true",
        help="seeded generators for DP noise, sampling, rounding and training seeds instead of the CSPRNG "
        "(the run is reproducible from --seed; warns)",
    )
    p.add_argument(
        "--transport",
        choices=("grpc", "memory"),
        default="grpc",
        help="grpc (default): a coordinator and client processes over mTLS on loopback; memory: the same "
        "engine and clients in this process, clients taking turns (fast for many clients; round "
        "seconds are then simulated time)",
    )
    p.add_argument("--no-dp", action="store_true", help="train without differential privacy")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=None, help="give up after this many seconds")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    p.add_argument("--insecure", action="store_true", help="no TLS (local debugging only; warns)")
    p.add_argument(
        "--status",
        default=None,
        metavar="HOST:PORT",
        help="serve the live status page and /metrics there (e.g. 127.0.0.1:8080; port 0 = any free port)",
    )


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "simulate", help="a private federation of DPK-GAT clients on loopback", description=__doc__.splitlines()[0]
    )
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
