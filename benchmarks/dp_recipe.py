"""Choose the DP training recipe per privacy budget on PUBLIC data only.

Tuning hyper-parameters on the clients' private data would itself leak (Papernot & Steinke 2022),
so the recipe table in ``mer/bench_config.py`` is chosen here on a public stand-in federation: the
default data set's layout rendered from the *pre-training* face pool
(``mer.data.corpus.render_samples("default", ..., pool="pretrain")``: no face of the default data
set or of any preset), split like ``fedpsyau simulate`` splits (3 clients by subject, a quarter of
each client's subjects held out), trained with the real MER workload from the packaged
pre-trained checkpoint through the in-process federation (plain sums: SecAgg and CKKS give the
same model up to quantisation). Each candidate runs with ``--seeds`` public draws (different
faces-to-subject assignments and clips); the candidate with the best mean UF1 wins per epsilon.

    python benchmarks/dp_recipe.py [--quick] [--seeds 2] [--out benchmarks/results]

writes ``dp_recipe.json`` (every run, the winners, the command) and ``dp_recipe.png``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: the candidate grid: (local epochs, expected batch, lr, clip, ema, augmentation multiplicity);
#: dp_trainable "head" throughout
GRID = [
    dict(epochs=e, batch_size=b, lr=lr, max_grad_norm=c, ema=m, aug_mult=k)
    for e, b, lr, c, m, k in itertools.product((5, 10, 20), (8, 16, 32), (0.01, 0.03), (1.0,), (0.0,), (1, 4))
]
#: --quick: six schedules with augmentation multiplicity 4, and the best schedule of a first
#: search without augmentation as the control
QUICK_GRID = [
    dict(epochs=e, batch_size=b, lr=lr, max_grad_norm=1.0, ema=0.0, aug_mult=k)
    for e, b, lr, k in (
        (5, 16, 0.01, 4),
        (10, 16, 0.01, 4),
        (10, 32, 0.03, 4),
        (20, 16, 0.01, 4),
        (20, 32, 0.03, 4),
        (5, 8, 0.01, 4),
        (10, 16, 0.01, 1),
    )
]
#: --grid low: a second search for the smallest budgets, where the first one's winners were
#: weakest: longer schedules, bigger expected batches (less noise per step), a higher rate,
#: more augmented views, weight averaging, a tighter clip; the first search's epsilon-1 winner as control
LOW_GRID = [
    dict(epochs=e, batch_size=b, lr=lr, max_grad_norm=c, ema=m, aug_mult=k)
    for e, b, lr, c, m, k in (
        (10, 32, 0.03, 1.0, 0.0, 4),
        (20, 32, 0.03, 1.0, 0.0, 4),
        (20, 64, 0.05, 1.0, 0.0, 4),
        (10, 64, 0.05, 1.0, 0.0, 4),
        (10, 32, 0.03, 1.0, 0.0, 8),
        (10, 32, 0.03, 0.5, 0.0, 4),
        (20, 32, 0.03, 1.0, 0.9, 4),
        (40, 64, 0.05, 1.0, 0.0, 4),
    )
]
#: --grid confirm: the first and second searches' small-budget winners, re-run on more public draws
#: (two draws select noisily: sd 0.03-0.05 UF1 between draws)
CONFIRM_GRID = [
    dict(epochs=e, batch_size=b, lr=lr, max_grad_norm=1.0, ema=0.0, aug_mult=4)
    for e, b, lr in ((5, 8, 0.01), (10, 32, 0.03), (10, 64, 0.05), (20, 64, 0.05))
]
EPSILONS = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, math.inf)


def public_federation(seed: int, samples: int = 221):
    from mer.data.corpus import render_samples

    return render_samples("default", samples, 1000 + seed, pool="pretrain")


def run_one(
    data, eps: float, cand: dict, seed: int, clients: int, rounds: int, trainable: str, init: str = "pretrained"
) -> dict:
    """One candidate on one public draw: a plain federation through the daemons' engine and client
    daemons over the in-memory transport (:func:`mer.commands.bench.federate`, seeded), the clients'
    trainers made on ``data`` in the work folders their daemons use."""
    from mer.commands.bench import run_federated
    from mer.train.federated import workload

    settings = {
        "format": "casme2",
        "partition": "subjects",
        "num_classes": len(data.class_names),
        "model": "dpk-gat",
        "seed": seed,
        "test_fraction": 0.25,
        "init": init,
        "dp_trainable": trainable,
        "epochs": cand["epochs"],
        "batch_size": cand["batch_size"],
        "lr": cand["lr"],
        "ema": cand["ema"],
        "aug_mult": cand["aug_mult"],
    }
    privacy = (
        {"enabled": False}
        if math.isinf(eps)
        else {"target_epsilon": eps, "max_grad_norm": cand["max_grad_norm"], "secure_rng": False}
    )
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        run_dir = Path(d) / "run"
        ids = [f"client{i + 1}" for i in range(clients)]
        trainers = {
            cid: workload.make_trainer(
                {**settings, "client_index": i, "num_clients": clients},
                cid,
                run_dir / "federation" / "clients" / cid / "work",
                "cpu",
                data=data,
            )
            for i, cid in enumerate(ids)
        }
        run = run_federated("plain", settings, clients, rounds, privacy, seed, run_dir, trainers=trainers)
    return {
        "epsilon": eps,
        **cand,
        "seed": seed,
        "uf1": run["uf1"],
        "uar": run["uar"],
        "epsilon_spent": run["epsilon_spent"],
        "seconds": round(time.perf_counter() - t0, 1),
    }


def main(argv=None) -> int:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="7 candidates instead of 36")
    ap.add_argument(
        "--grid",
        choices=("full", "quick", "low", "confirm"),
        default=None,
        help="candidate grid (default full; --quick = quick; low: the second search for small budgets)",
    )
    ap.add_argument("--stem", default="dp_recipe", help="output file stem (default dp_recipe)")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--clients", type=int, default=3)
    ap.add_argument("--epsilons", default=",".join(str(e) for e in EPSILONS))
    ap.add_argument("--trainable", default="head")
    ap.add_argument("--init", default="pretrained", help="checkpoint to tune from (default: the packaged one)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    epsilons = [float(e) for e in args.epsilons.split(",")]
    grid = {"full": GRID, "quick": QUICK_GRID, "low": LOW_GRID, "confirm": CONFIRM_GRID}[
        args.grid or ("quick" if args.quick else "full")
    ]
    datas = [public_federation(s) for s in range(args.seeds)]
    runs = []
    for eps in epsilons:
        for cand in grid:
            for s in range(args.seeds):
                r = run_one(datas[s], eps, cand, s, args.clients, args.rounds, args.trainable, args.init)
                runs.append(r)
                print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()}), flush=True)
    winners = {}
    for eps in epsilons:
        best = None
        for cand in grid:
            mine = [r for r in runs if r["epsilon"] == eps and all(r[k] == v for k, v in cand.items())]
            score = float(np.mean([r["uf1"] for r in mine]))
            if best is None or score > best[0]:
                best = (score, cand, float(np.std([r["uf1"] for r in mine])))
        winners[str(eps)] = {**best[1], "uf1_mean": round(best[0], 4), "uf1_sd": round(best[2], 4)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    doc = {
        "command": "python benchmarks/dp_recipe.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "data": "render_samples('default', 221, 1000 + seed, pool='pretrain'): public faces only",
        "clients": args.clients,
        "rounds": args.rounds,
        "seeds": args.seeds,
        "trainable": args.trainable,
        "init": args.init,
        "grid": grid,
        "winners": winners,
        "runs": runs,
    }
    (out / f"{args.stem}.json").write_text(json.dumps(doc, indent=2))
    plot(doc, out / f"{args.stem}.png")
    print(json.dumps(winners, indent=2))
    return 0


def plot(doc: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    eps = sorted({r["epsilon"] for r in doc["runs"]})
    xs = [e if math.isfinite(e) else 2 * max([x for x in eps if math.isfinite(x)] or [1]) for e in eps]
    fig, ax = plt.subplots(figsize=(6, 4))
    for cand in doc["grid"]:
        ys = [
            np.mean([r["uf1"] for r in doc["runs"] if r["epsilon"] == e and all(r[k] == v for k, v in cand.items())])
            for e in eps
        ]
        ax.plot(xs, ys, color="0.8", lw=0.8)
    best = [doc["winners"][str(e)]["uf1_mean"] for e in eps]
    ax.plot(xs, best, "o-", color="C0", label="best candidate per epsilon")
    ax.set_xscale("log")
    ax.set_xticks(xs, [f"{e:g}" if math.isfinite(e) else "no DP" for e in eps])
    ax.set_xlabel("epsilon per client (public stand-in federation)")
    ax.set_ylabel("UF1 (held-out subjects)")
    ax.set_title("DP recipe search on public data")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
