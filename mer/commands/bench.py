"""``fedpsyau bench epsilon``: what differential privacy costs DPK-GAT in UF1/UAR, per setting.

For every privacy budget epsilon (per client, whole run, public delta 1e-5; ``inf`` = no DP),
initialisation (``pretrained``: the public checkpoint, the recipe of :func:`mer.bench_config.recipe`;
``none``: from scratch, :data:`mer.bench_config.SCRATCH`) and seed, it trains and evaluates:

- ``centralised``: one party holding the union of the clients' training subjects, DP-SGD
  (:func:`fedcore.dp.opacus_train.dp_train`, through the same ``MERTrainer.fit``) for the same
  schedule: ``rounds`` x ``epochs`` epochs, the AdamW state renewed every ``epochs`` as the
  clients' is, the statistical prior counted on the union;
- ``plain``, ``secagg``, ``ckks``: the federation of ``--clients`` clients (subjects dealt to
  clients, each holding out a quarter of its subjects), run by ``fedpsyau simulate``'s engine over
  the in-memory transport (:mod:`fedcore.simulation_memory`): the coordinator's round engine and
  the client daemons' stage handlers, trainers and ledgers, exactly as the daemons run them --
  selection, clipping, DP, aggregation, evaluation -- with messages serialised between them but
  no processes or TLS, to fit the time budget. The clients are seeded (``[client] seed``), so a
  run is reproducible, and a seeded run gives the very model the gRPC daemons give
  (``tests/e2e/test_transports_identical.py``).

Every setting is evaluated on the same subject-held-out test split (the union of the clients'
held-out subjects), with UF1 and UAR from the pooled confusion matrix. Seeds change the initial
model, the Poisson batches and the DP noise; the data split stays fixed (``--split-seed``), so the
settings are compared on the same test subjects. Hyper-parameters per epsilon come from
:func:`mer.bench_config.recipe`, the table ``fedpsyau simulate`` uses too.

Writes ``OUT/epsilon[_quick].{json,csv,png}``: every run, mean +- sd over seeds, and the plot of
UF1 (and UAR) against epsilon, one line per setting, log-x with "no DP" at the right. While it
runs: one line per finished training run with an ETA when stderr is not a terminal, a progress
bar (and the same lines above it) when it is (:mod:`mer.progress`).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import platform
import statistics
import tempfile
import time
import warnings
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import numpy as np

from fedcore.exitcodes import ExitCode
from mer import bench_config as bc
from mer.progress import StepProgress

log = logging.getLogger(__name__)

FORMATS = ("casme2", "samm", "smic", "casme3", "composite", "manifest")
MIN_CLIENTS = 3  # secagg and ckks refuse fewer (a pair would learn each other's update)


def _epsilon(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"epsilon must be > 0 or inf (got {text})")
    return value


def check_args(args: argparse.Namespace) -> list[str]:
    """Every problem with the ``bench epsilon`` arguments (empty when they are usable)."""
    problems = []
    if args.seeds is not None and args.seeds < 1:
        problems.append(f"--seeds must be >= 1 (got {args.seeds})")
    if args.clients < MIN_CLIENTS:
        problems.append(
            f"--clients must be >= {MIN_CLIENTS}: secagg and ckks refuse smaller federations (got {args.clients})"
        )
    if args.rounds is not None and args.rounds < 1:
        problems.append(f"--rounds must be >= 1 (got {args.rounds})")
    unknown = sorted(set(args.settings or ()) - set(bc.SETTINGS))
    if unknown:
        problems.append(f"--settings must be among {', '.join(bc.SETTINGS)} (got {', '.join(unknown)})")
    if args.threads < 1:
        problems.append(f"--threads must be >= 1 (got {args.threads})")
    if not 0 < args.test_fraction < 1:
        problems.append(f"--test-fraction must lie in (0, 1) (got {args.test_fraction})")
    if args.data is not None and not Path(args.data).exists():
        problems.append(f"--data {args.data} does not exist")
    return problems


def make_plan(args: argparse.Namespace) -> bc.SweepPlan:
    base = dict(bc.QUICK if args.quick else bc.FULL)
    if args.epsilons:
        base["epsilons"] = tuple(args.epsilons)
        base["ckks_epsilons"] = tuple(e for e in args.epsilons if e in base["ckks_epsilons"]) or tuple(args.epsilons)
    if args.settings:
        base["settings"] = tuple(s for s in bc.SETTINGS if s in args.settings)
    if args.seeds is not None:
        base["seeds"] = args.seeds
    if args.rounds is not None:
        base["rounds"] = args.rounds
    if args.inits:
        base["inits"] = tuple(args.inits)
    return bc.SweepPlan(clients=args.clients, **base)


def privacy_table(epsilon: float, hp: dict[str, Any]) -> dict[str, Any]:
    """The clients' [privacy] table; the accountant is fedcore's default, the noise seeded (reproducible)."""
    if math.isinf(epsilon):
        return {"enabled": False}
    return {"target_epsilon": float(epsilon), "max_grad_norm": float(hp["max_grad_norm"]), "secure_rng": False}


def _pooled(parts):
    """One MEArrays holding ``parts`` one after another."""
    from mer.data.arrays import MEArrays

    first = parts[0]
    kw = {f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(first) if f.name != "class_names"}
    return MEArrays(class_names=first.class_names, **kw)


def run_centralised(
    settings: dict[str, Any],
    clients: int,
    rounds: int,
    config: dict[str, Any],
    seed: int,
    workdir: Path,
    device: str = "cpu",
) -> dict[str, Any]:
    """DP-SGD on the union of the clients' training subjects, evaluated on the union of their test subjects."""
    import torch

    from fedcore.coordinator.reports import confusion_metrics
    from mer.train.federated import workload

    parts = [
        workload.make_trainer(
            {**settings, "client_index": i, "num_clients": clients}, f"client{i + 1}", workdir / f"split{i}", "cpu"
        )
        for i in range(clients)
    ]
    central = workload.make_trainer(
        {**settings, "client_index": 0, "num_clients": 1}, "centralised", workdir / "centralised", device
    )
    # the same subjects as the federation: train on the union of the clients' training splits
    central.use_split(_pooled([p.train for p in parts]), _pooled([p.test for p in parts]))
    params, spec = workload.initial_parameters(settings, seed)
    stats = central.statistics(config)
    epsilon = None
    for r in range(1, rounds + 1):
        torch.manual_seed((seed * 1_000_003 + r * 1009) % (2**31))  # new batches and noise each "round"
        fit = central.fit(params, spec, r, config, stats)
        params = fit.parameters
        if fit.privacy is not None and fit.privacy.enabled:
            epsilon = float(fit.privacy.epsilon)
    res = central.evaluate(params, spec, rounds, {**settings, "rounds": rounds}, stats)
    return {
        **confusion_metrics(res.confusion),
        "epsilon_spent": epsilon,
        "train_samples": len(central.train),
        "test_samples": len(central.test),
    }


def run_federated(
    setting: str,
    settings: dict[str, Any],
    clients: int,
    rounds: int,
    privacy: dict[str, Any],
    seed: int,
    workdir: Path,
    device: str = "cpu",
    **kwargs,
) -> dict[str, Any]:
    """One federation through the daemons' engine over the in-memory transport; its final pooled metrics."""
    res = federate(setting, settings, clients, rounds, privacy, seed, workdir, device=device, **kwargs)
    s = res.summary  # the coordinator's summary.json: last evaluation, epsilon_max, bytes (round 0 included)
    return {
        "uf1": s.get("uf1"),
        "uar": s.get("uar"),
        "accuracy": s.get("accuracy"),
        "epsilon_spent": s.get("epsilon_max"),
        "bytes_up": s.get("bytes_up", 0),
        "bytes_down": s.get("bytes_down", 0),
        "contributors": [m.get("contributors") for m in res.metrics],
        "test_samples": int(s.get("final", {}).get("num_examples", 0)),
    }


def federate(
    setting: str,
    settings: dict[str, Any],
    clients: int,
    rounds: int,
    privacy: dict[str, Any],
    seed: int,
    workdir: Path,
    *,
    device: str = "cpu",
    workload: str = "mer.train.federated:workload",
    **kwargs,
):
    """``simulate`` over the in-memory transport, seeded, quiet; raises when the run did not complete."""
    from fedcore.simulation import simulate

    res = simulate(
        clients=clients,
        rounds=rounds,
        out=workdir,
        aggregation=setting,
        workload=workload,
        workload_settings=settings,
        privacy=privacy,
        seed=seed,
        transport="memory",
        seeded=True,
        echo=False,
        progress=False,
        device=device,
        federation={"evaluate_every": 0},
        **kwargs,
    )
    if res.returncode != 0:
        raise RuntimeError(
            f"the {setting} federation in {workdir} ended with exit code {res.returncode} "
            f"({res.summary.get('status')}: {res.summary.get('reason', '')}); see {workdir / 'logs'}"
        )
    return res


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and sample sd over seeds per (setting, epsilon)."""
    out = []
    keys = sorted(
        {(r["setting"], r.get("init", "pretrained"), r["epsilon"]) for r in runs},
        key=lambda k: (bc.SETTINGS.index(k[0]), k[1] != "pretrained", k[1], k[2]),
    )
    for setting, init, eps in keys:
        rows = [
            r for r in runs if r["setting"] == setting and r.get("init", "pretrained") == init and r["epsilon"] == eps
        ]
        row: dict[str, Any] = {"setting": setting, "init": init, "epsilon": eps, "seeds": len(rows)}
        for m in ("uf1", "uar", "accuracy", "epsilon_spent", "seconds"):
            vals = [r[m] for r in rows if r.get(m) is not None]
            row[f"{m}_mean"] = statistics.fmean(vals) if vals else None
            row[f"{m}_sd"] = statistics.stdev(vals) if len(vals) > 1 else 0.0 if vals else None
        out.append(row)
    return out


def plot(summary: list[dict[str, Any]], path: Path, title: str, num_classes: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    finite = sorted({r["epsilon"] for r in summary if math.isfinite(r["epsilon"])})
    inf_x = (finite[-1] if finite else 1.0) * 4
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    styles = {
        "centralised": ("k", "o", "-"),
        "plain": ("C0", "s", "-"),
        "secagg": ("C1", "^", "--"),
        "ckks": ("C2", "D", ":"),
    }
    for ax, metric in zip(axes, ("uf1", "uar")):
        for setting in bc.SETTINGS:
            for init in sorted({r.get("init", "pretrained") for r in summary}, key=lambda i: i != "pretrained"):
                rows = sorted(
                    (r for r in summary if r["setting"] == setting and r.get("init", "pretrained") == init),
                    key=lambda r: r["epsilon"],
                )
                if not rows:
                    continue
                xs = [r["epsilon"] if math.isfinite(r["epsilon"]) else inf_x for r in rows]
                color, marker, ls = styles[setting]
                ax.errorbar(
                    xs,
                    [r[f"{metric}_mean"] for r in rows],
                    yerr=[r[f"{metric}_sd"] for r in rows],
                    color=color,
                    marker=marker,
                    ls=ls if init == "pretrained" else (0, (1, 3)),
                    alpha=1.0 if init == "pretrained" else 0.55,
                    capsize=3,
                    label=f"{setting} ({init})",
                )
        if metric == "uar":
            ax.axhline(1.0 / num_classes, color="grey", lw=0.8, ls=":", label=f"chance (1/{num_classes})")
        ax.set_xscale("log")
        ticks = finite + [inf_x]
        ax.set_xticks(ticks, [f"{e:g}" for e in finite] + ["no DP"])
        ax.minorticks_off()
        ax.set(xlabel="epsilon per client (delta <= 1e-5)", ylabel=metric.upper(), title=f"{metric.upper()} vs epsilon")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_outputs(result: dict[str, Any], out: Path, stem: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{stem}.json", out / f"{stem}.csv", out / f"{stem}.png"]
    paths[0].write_text(json.dumps(result, indent=1, default=lambda v: None))
    cols = [
        "setting",
        "init",
        "epsilon",
        "seeds",
        "uf1_mean",
        "uf1_sd",
        "uar_mean",
        "uar_sd",
        "accuracy_mean",
        "accuracy_sd",
        "epsilon_spent_mean",
        "seconds_mean",
    ]
    with paths[1].open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for row in result["summary"]:
            w.writerow(
                [
                    f"{row[c]:g}" if c == "epsilon" else (f"{row[c]:.4f}" if isinstance(row[c], float) else row[c])
                    for c in cols
                ]
            )
    p = result["plan"]
    plot(
        result["summary"],
        paths[2],
        f"DPK-GAT on {result['data']['name']}: {p['clients']} clients, {p['rounds']} "
        f"rounds, {p['seeds']} seed(s), mean +- sd; federated runs: the daemons' engine over the in-memory transport",
        len(result["data"]["classes"]),
    )
    return paths


def prepare(args: argparse.Namespace, out: Path) -> tuple[Path, Path, list[str], int]:
    from mer.commands.simulate import prepare_data

    data, cache, arrays = prepare_data(out, args.data, args.format, args.subjects, 0)
    return data, cache, list(arrays.class_names), len(arrays)


def run(args: argparse.Namespace) -> int:
    import torch

    problems = check_args(args)
    if problems:
        for p in problems:
            log.error("%s", p)
        return int(ExitCode.CONFIG)
    torch.set_num_threads(args.threads)
    if not getattr(args, "verbose", False):
        for name in ("mer.train", "mer.data", "fedcore"):
            logging.getLogger(name).setLevel(logging.WARNING)
    # seeded (non-cryptographic) DP noise keeps runs reproducible; said once here and in the JSON
    logging.getLogger("fedcore.dp.config").setLevel(logging.ERROR)
    print(
        "note: DP noise from torch's seeded generator (secure_rng off) so that seeds reproduce; "
        "deployments keep the CSPRNG default",
        flush=True,
    )
    from fedcore.dp.config import InsecureRNGWarning

    warnings.filterwarnings("ignore", category=InsecureRNGWarning)  # seeded noise, for reproducible runs
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    plan = make_plan(args)
    data, cache, classes, n_samples = prepare(args, out)
    settings = {
        "data": str(data),
        "format": args.format,
        "cache_dir": str(cache),
        "partition": "subjects",
        "num_classes": len(classes),
        "model": "dpk-gat",
        "seed": args.split_seed,
        "test_fraction": args.test_fraction,
    }
    todo = plan.runs()
    print(
        f"bench epsilon: {len(todo)} training runs ({', '.join(plan.settings)}; epsilon "
        f"{', '.join(f'{e:g}' for e in plan.epsilons)}; {plan.seeds} seed(s); {plan.rounds} rounds)",
        flush=True,
    )
    runs = []
    progress = StepProgress(len(todo), "bench epsilon", "run")
    with tempfile.TemporaryDirectory(prefix="bench-epsilon-") as tmp:
        for i, (setting, init, eps, seed) in enumerate(todo):
            hp = bc.recipe(args.recipe_epsilon or eps, init)
            s = {
                **settings,
                "init": init,
                "dp_trainable": hp["dp_trainable"],
                "epochs": int(hp["epochs"]),
                "batch_size": int(hp["batch_size"]),
                "lr": float(hp["lr"]),
                "ema": float(hp["ema"]),
                "aug_mult": int(hp["aug_mult"]),
            }
            privacy = privacy_table(eps, hp)
            work = Path(tmp) / f"run{i}"
            t0 = time.perf_counter()
            if setting == "centralised":
                config = {**s, "rounds": plan.rounds, "privacy": privacy}
                row = run_centralised(s, plan.clients, plan.rounds, config, seed, work, args.device)
            else:
                row = run_federated(setting, s, plan.clients, plan.rounds, privacy, seed, work, args.device)
            row = {
                "setting": setting,
                "init": init,
                "epsilon": eps,
                "seed": seed,
                "seconds": time.perf_counter() - t0,
                "hyperparameters": hp,
                **row,
            }
            runs.append(row)
            spent = row.get("epsilon_spent")
            progress.done(
                f"[{i + 1}/{len(todo)}] {setting:11s} {init:10s} eps={eps:<4g} seed={seed}: UF1 "
                f"{row['uf1']:.3f} UAR {row['uar']:.3f} (spent {'-' if spent is None else f'{spent:.2f}'}) "
                f"in {row['seconds']:.1f} s"
            )
    progress.close()
    summary = summarise(runs)
    result = {
        "benchmark": "bench epsilon",
        "quick": args.quick,
        "plan": asdict(plan),
        "data": {
            "path": str(data),
            "name": "the embedded synthetic set" if args.data is None else Path(args.data).name,
            "format": args.format,
            "samples": n_samples,
            "classes": classes,
            "split_seed": args.split_seed,
            "test_fraction": args.test_fraction,
        },
        "hyperparameters": {
            f"{init}/{e:g}": bc.recipe(args.recipe_epsilon or e, init) for init in plan.inits for e in plan.epsilons
        },
        "recipe_epsilon": args.recipe_epsilon,
        "engine": "federated settings: the daemons' round engine and client daemons over the in-memory "
        "transport (fedcore.simulation_memory; seeded clients); centralised: MERTrainer.fit "
        "(dp_train) on the union",
        "secure_rng": False,
        "threads": args.threads,
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "torch": torch.__version__},
        "elapsed_s": time.time() - started,
        "runs": runs,
        "summary": summary,
    }
    paths = write_outputs(result, out, args.stem or ("epsilon_quick" if args.quick else "epsilon"))
    print(f"{'setting':11s} {'init':10s} {'epsilon':>7s}  UF1 mean+-sd    UAR mean+-sd")
    for row in summary:
        print(
            f"{row['setting']:11s} {row['init']:10s} {row['epsilon']:7g}  {row['uf1_mean']:.3f}+-{row['uf1_sd']:.3f}    "
            f"{row['uar_mean']:.3f}+-{row['uar_sd']:.3f}"
        )
    print(f"done in {result['elapsed_s']:.0f} s: " + ", ".join(str(p) for p in paths), flush=True)
    return int(ExitCode.OK)


def register(subparsers) -> None:
    bench = subparsers.add_parser("bench", help="benchmarks users run (`bench epsilon`: accuracy vs privacy budget)")
    sub = bench.add_subparsers(dest="bench_command", required=True, metavar="BENCHMARK")
    p = sub.add_parser(
        "epsilon",
        help="UF1/UAR vs epsilon: centralised, federated plain / SecAgg / CKKS",
        description=__doc__.splitlines()[0],
    )
    p.add_argument("--data", help="data folder (default: the embedded synthetic set, written into OUT/data)")
    p.add_argument("--format", default="casme2", choices=FORMATS)
    p.add_argument("--out", required=True, help="output folder for epsilon[_quick].{json,csv,png}")
    p.add_argument(
        "--quick",
        action="store_true",
        help="epsilon 1, 8, inf; one seed; ckks only at epsilon 8 (under 5 minutes on 2 cores)",
    )
    p.add_argument("--seeds", type=int, default=None, help="seeds per point (default 3; --quick 1)")
    p.add_argument("--clients", type=int, default=3, help="federated clients, >= 3 (default 3)")
    p.add_argument("--rounds", type=int, default=None, help="federated rounds (default 20, as fedpsyau simulate)")
    p.add_argument("--epsilons", type=_epsilon, nargs="+", default=None, help="override the budgets (inf = no DP)")
    p.add_argument("--settings", nargs="+", default=None, help=f"a subset of {', '.join(bc.SETTINGS)}")
    p.add_argument(
        "--inits",
        nargs="+",
        default=None,
        choices=bc.INITS,
        help="initialisations to compare (default: pretrained; the full sweep: pretrained none)",
    )
    p.add_argument("--subjects", type=int, default=24, help="subjects of the synthetic set (default 24)")
    p.add_argument("--test-fraction", type=float, default=0.25, help="share of each client's subjects held out")
    p.add_argument("--split-seed", type=int, default=0, help="partition and hold-out seed (fixed across seeds)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument(
        "--recipe-epsilon",
        type=_epsilon,
        default=None,
        help="train every point with this budget's recipe (e.g. --epsilons 8 inf --recipe-epsilon 8: "
        "what DP costs with the recipe held fixed); default each budget's own",
    )
    p.add_argument("--stem", default=None, help="output file stem (default epsilon, or epsilon_quick with --quick)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    p.set_defaults(func=_safe_run)


def _safe_run(args: argparse.Namespace) -> int:
    from mer.commands.simulate import run_guarded

    return run_guarded(run, args)
