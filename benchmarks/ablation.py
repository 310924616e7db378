"""Ablation of DPK-GAT under LOSO: priors, AU losses, r schedule, and the flow-cnn reference.

Variants (everything else at the TrainConfig defaults, same seed, same folds):

- dpk-gat, prior both / psych / stat / none (r decays 1 -> 0, AU losses on)
- dpk-gat, prior both, without the AU losses (emotion CE only)
- dpk-gat, prior both, r fixed at 1 (the prior never fades)
- flow-cnn (three-stream CNN on the 28x28 flow image)

    python benchmarks/ablation.py [--data DIR --format casme2 | --arrays SET.npz] [--epochs E]
                                  [--max-folds K] [--jobs N]

Without --data or --arrays the default synthetic set (mer.data.synth, 24 subjects, seed 0) is
written to a temporary folder first. ``--jobs N`` runs N variants at once, each in its own process
with one CPU thread (the data go to the workers as an .npz file, loaded without pickle).
Writes benchmarks/results/ablation.json and ablation.png (a table).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from mer.data.arrays import MEArrays
from mer.train.centralised import TrainConfig
from mer.train.loso import run_loso

RESULTS = Path(__file__).resolve().parent / "results"

#: name -> TrainConfig overrides
VARIANTS: dict[str, dict] = {
    "dpk-gat prior=both": {"model_options": {"prior": "both"}},
    "dpk-gat prior=psych": {"model_options": {"prior": "psych"}},
    "dpk-gat prior=stat": {"model_options": {"prior": "stat"}},
    "dpk-gat prior=none": {"model_options": {"prior": "none"}},
    "dpk-gat no AU loss": {"model_options": {"prior": "both"}, "au_loss": False},
    "dpk-gat r fixed=1": {"model_options": {"prior": "both"}, "r_schedule": "fixed"},
    "flow-cnn": {"model": "flow-cnn"},
}


def load_data(args):
    from mer.data.load import load_arrays

    if args.arrays:
        return MEArrays.load(args.arrays), str(args.arrays)
    if args.data:
        return load_arrays(args.data, args.format, cache_dir=args.cache_dir, verbose=False), str(args.data)
    from mer.data.synth import synthesize

    tmp = Path(tempfile.mkdtemp(prefix="fedpsyau-synth-"))
    synthesize(tmp / "synth")
    return load_arrays(
        tmp / "synth", "casme2", cache_dir=args.cache_dir, verbose=False
    ), "synthetic default (24 subjects, seed 0)"


def run_variant(
    name: str, arrays_path: str, epochs: int, seed: int, device: str, threads: int, max_folds: int | None
) -> dict:
    """LOSO of one variant; also the body of a --jobs worker process."""
    if threads:
        torch.set_num_threads(threads)
    data = MEArrays.load(arrays_path)
    cfg = TrainConfig(epochs=epochs, seed=seed, device=device, **VARIANTS[name])
    t = time.perf_counter()
    res = run_loso(data, cfg, max_folds=max_folds, progress=False)
    m = res.metrics
    row = {
        "uf1": round(m["uf1"], 4),
        "uar": round(m["uar"], 4),
        "accuracy": round(m["accuracy"], 4),
        "folds": len(res.per_fold),
        "seconds_per_fold": round((time.perf_counter() - t) / len(res.per_fold), 2),
        "confusion": m["confusion"],
        "config": cfg.to_dict(),
    }
    print(
        f"{name:24s} UF1 {row['uf1']:.4f} UAR {row['uar']:.4f} acc {row['accuracy']:.4f} "
        f"({row['seconds_per_fold']} s/fold)",
        flush=True,
    )
    return row


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="data folder (default: synthesize the default set)")
    ap.add_argument("--format", default="casme2")
    ap.add_argument("--arrays", default=None, help="an MEArrays .npz (MEArrays.save) instead of --data")
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--epochs", type=int, default=TrainConfig().epochs)
    ap.add_argument("--max-folds", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads per variant (default 1; 0 = torch's default)")
    ap.add_argument("--jobs", type=int, default=1, help="variants run at once, one process each")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS), metavar="NAME")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    data, source = load_data(args)
    report = {
        "data": source,
        "format": args.format,
        "n_samples": len(data),
        "n_subjects": len(np.unique(data.subject)),
        "class_names": list(data.class_names),
        "epochs": args.epochs,
        "seed": args.seed,
        "device": args.device,
        "threads_per_variant": args.threads,
        "jobs": args.jobs,
        "variants": {},
    }
    with tempfile.TemporaryDirectory(prefix="fedpsyau-ablation-") as tmp:
        path = str(Path(tmp) / "arrays.npz")
        data.save(path)
        common = (path, args.epochs, args.seed, args.device, args.threads, args.max_folds)
        if args.jobs > 1:
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(args.jobs, mp_context=ctx) as pool:
                futures = {n: pool.submit(run_variant, n, *common) for n in args.variants}
                report["variants"] = {n: f.result() for n, f in futures.items()}
        else:
            report["variants"] = {n: run_variant(n, *common) for n in args.variants}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ablation.json").write_text(json.dumps(report, indent=2))
    _table(report, out / "ablation.png")
    return report


def _table(report: dict, path: Path) -> None:
    rows = [
        [n, f"{v['uf1']:.4f}", f"{v['uar']:.4f}", f"{v['accuracy']:.4f}", f"{v['seconds_per_fold']:.1f}"]
        for n, v in report["variants"].items()
    ]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.2))
    ax.axis("off")
    tab = ax.table(
        cellText=rows,
        colLabels=["variant", "UF1", "UAR", "accuracy", "s/fold"],
        loc="center",
        cellLoc="center",
        colWidths=[0.4, 0.13, 0.13, 0.15, 0.12],
    )
    tab.scale(1, 1.4)
    best = max(range(len(rows)), key=lambda i: float(rows[i][1]))
    for j in range(5):
        tab[best + 1, j].set_facecolor("#d8ecd8")
    ax.set_title(
        f"LOSO ablation on {report['data']}: {report['n_samples']} samples, "
        f"{report['n_subjects']} subjects, {report['epochs']} epochs",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
