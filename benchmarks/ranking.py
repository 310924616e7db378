"""Model ranking on the composite-like preset, beside the ranking measured on the real composite.

Models, each with its own fixed recipe (:data:`mer.model.registry.TRAIN_DEFAULTS`, chosen before
any fold ran; the last epoch is tested, no test-epoch selection):

- ``logreg``: multinomial logistic regression on the 152 per-patch flow-magnitude histograms of
  ``benchmarks/baseline.py`` (L2 10, balanced class weights, features standardised per fold);
- ``ststnet``: Liong et al. 2019, 500 epochs of Adam at 5e-5, batch 256;
- ``flow-cnn`` and ``dpk-gat``: this package's recipe (25 epochs of AdamW, warm-up + cosine),
  every model from scratch (``init none``, also for DPK-GAT, whose ``fedpsyau train`` default is
  the packaged checkpoint; ``benchmarks/ablation_composite.py`` has pretrained vs scratch).
  DPK-GAT cuts its patches for the crop geometry the preset renders (``aligned``: the preset
  draws its faces through ``mer.face.align``; see ``mer.face.regions``).

Data: ``composite-like`` written by the data side's preset writer and read back through the
real composite reader (28x28 u/v/strain PNGs, no AU labels, 442 clips of 68 subjects).

Protocol: a fixed subject-grouped k-fold (default 10 folds; subjects shuffled once with
``FOLD_SEED``, dealt round-robin), the same folds for every model; UF1 / UAR over the pooled
predictions. LOSO (68 folds) would take about 70 minutes on one core here, STSTNet's 1000
steps per fold being the long pole (~50 s a fold), so ``--protocol loso`` exists but is not the
default. Single-threaded (``torch.set_num_threads(1)``).

Run: ``python benchmarks/ranking.py [--seeds 0 1 2] [--folds 10] [--protocol kfold|loso]
[--runs-from JSON ...]``; writes ``benchmarks/results/ranking.json`` and ``ranking.png``.
``--runs-from`` takes the per-seed runs of earlier result files of the same protocol (seeds run
separately, e.g. one process per seed, then merged: ``--seeds --runs-from a.json b.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from baseline import fit_logreg, magnitude_histograms
from baseline import predict as logreg_predict

from mer.data.load import load_arrays
from mer.train.centralised import train_config_for
from mer.train.loso import protocol_line, run_folds
from mer.train.metrics import summarize
from mer.train.splits import Fold, loso_folds

RESULTS = Path(__file__).resolve().parent / "results"
MODELS = ("logreg", "ststnet", "flow-cnn", "dpk-gat")
FOLD_SEED = 2026
#: model options for the ranking: DPK-GAT's patches on the geometry the preset renders
OPTIONS = {"dpk-gat": {"face_crop": "aligned"}}
#: `fedpsyau train --format composite --protocol loso`, real MEGC2019 composite, seed 0
#: (measured outside this machine; /work/shared/FACTS.md section 7)
REAL = {
    "data": "MEGC2019 composite (442 clips, 68 subjects), LOSO, seed 0",
    "dpk-gat": {"uf1": 0.641, "uar": 0.639, "seconds_per_fold": 11.4},
    "flow-cnn": {"uf1": 0.711, "uar": 0.709, "seconds_per_fold": 5.0},
    "ststnet": {"uf1": 0.681, "uar": 0.680, "note": "published recipe, fixed 500 epochs, last epoch"},
    "logreg": None,
}


def grouped_kfold(subject: np.ndarray, k: int, seed: int = FOLD_SEED) -> list[Fold]:
    """k subject-disjoint folds: the sorted subjects shuffled once with ``seed``, dealt round-robin."""
    s = np.asarray(subject).astype(str)
    subs = np.random.default_rng(seed).permutation(np.unique(s))
    if not 2 <= k <= len(subs):
        raise ValueError(f"folds must lie in [2, {len(subs)} subjects] (got {k})")
    folds = []
    for i in range(k):
        held = np.isin(s, subs[i::k])
        folds.append(Fold(",".join(sorted(subs[i::k])), np.flatnonzero(~held), np.flatnonzero(held)))
    return folds


def run_logreg(data, folds: list[Fold]) -> dict:
    x = magnitude_histograms(data.flow, "patch")
    k = len(data.class_names)
    ys, ps, per_fold = [], [], []
    t0 = time.perf_counter()
    for f in folds:
        t = time.perf_counter()
        mu, sd = x[f.train].mean(0), x[f.train].std(0) + 1e-6
        w = fit_logreg((x[f.train] - mu) / sd, data.label[f.train], k)
        ys.append(data.label[f.test])
        ps.append(logreg_predict(w, (x[f.test] - mu) / sd))
        per_fold.append(time.perf_counter() - t)
    m = summarize(np.concatenate(ys), np.concatenate(ps), k)
    return {
        "uf1": m["uf1"],
        "uar": m["uar"],
        "accuracy": m["accuracy"],
        "seconds": time.perf_counter() - t0,
        "seconds_per_fold": float(np.mean(per_fold)),
        "recipe": "152 flow-magnitude histogram features, L2 10, balanced class weights",
    }


def run_model(name: str, data, folds: list[Fold], protocol: str) -> dict:
    cfg = train_config_for(name, model_options=OPTIONS.get(name, {}), device="cpu", seed=0, init="none")
    res = run_folds(data, folds, cfg, protocol, progress="lines")
    m = res.metrics
    return {
        "uf1": m["uf1"],
        "uar": m["uar"],
        "accuracy": m["accuracy"],
        "seconds": res.seconds,
        "seconds_per_fold": float(np.mean([f["seconds"] for f in res.per_fold])),
        "recipe": cfg.schedule_line(),
        "model_options": cfg.model_options,
        "protocol_line": protocol_line(protocol, cfg),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="*", default=[0], help="preset seeds (one data set each)")
    ap.add_argument("--protocol", choices=("kfold", "loso"), default="kfold")
    ap.add_argument("--folds", type=int, default=10, help="k of the subject-grouped k-fold")
    ap.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument(
        "--runs-from",
        nargs="+",
        default=[],
        metavar="JSON",
        help="also the runs of these result files (same protocol; a seed run here replaces theirs)",
    )
    args = ap.parse_args(argv)
    protocol_name = (
        "LOSO"
        if args.protocol == "loso"
        else f"subject-grouped {args.folds}-fold (fold seed {FOLD_SEED}), same folds for every model"
    )
    earlier = {}
    for path in args.runs_from:
        doc = json.loads(Path(path).read_text())
        if not doc["protocol"].startswith(protocol_name):
            print(f"error: {path} has protocol {doc['protocol']!r}, expected {protocol_name!r}", file=sys.stderr)
            return 2
        for r in doc["runs"]:
            missing = [m for m in args.models if m not in r["models"]]
            if missing:
                print(f"error: {path} seed {r['seed']} lacks model(s) {', '.join(missing)}", file=sys.stderr)
                return 2
            earlier[r["seed"]] = {"loadavg_start": doc.get("loadavg_start"), "from": str(path), **r}
    if not args.seeds and not earlier:
        print("error: no --seeds to run and no --runs-from", file=sys.stderr)
        return 2
    load_start = list(os.getloadavg())
    torch.set_num_threads(1)
    try:
        from mer.data.preset_write import write_preset
    except ImportError as exc:
        print(f"error: the composite-like preset writer is not available ({exc})", file=sys.stderr)
        return 1
    runs = []
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as tmp:
            write_preset(Path(tmp) / "cl", "composite-like", seed=seed)
            data = load_arrays(Path(tmp) / "cl", "composite")
        folds = loso_folds(data.subject) if args.protocol == "loso" else grouped_kfold(data.subject, args.folds)
        protocol = "loso" if args.protocol == "loso" else f"{args.folds}-fold"
        row = {
            "seed": seed,
            "samples": len(data),
            "subjects": len(np.unique(data.subject)),
            "au_labelled": int(data.au_known.sum()),
            "loadavg_start": list(os.getloadavg()),
            "models": {},
        }
        for name in args.models:
            row["models"][name] = (
                run_logreg(data, folds) if name == "logreg" else run_model(name, data, folds, protocol)
            )
            r = row["models"][name]
            print(
                f"seed {seed} {name:9s} UF1 {r['uf1']:.3f} UAR {r['uar']:.3f} ({r['seconds_per_fold']:.1f} s/fold)",
                flush=True,
            )
        runs.append(row)
    runs = sorted([r for s, r in earlier.items() if s not in args.seeds] + runs, key=lambda r: r["seed"])
    seeds = [r["seed"] for r in runs]
    ddof = 1 if len(runs) > 1 else 0
    summary = {
        name: {
            "uf1_mean": float(np.mean([r["models"][name]["uf1"] for r in runs])),
            "uf1_std": float(np.std([r["models"][name]["uf1"] for r in runs], ddof=ddof)),
            "uar_mean": float(np.mean([r["models"][name]["uar"] for r in runs])),
            "uar_std": float(np.std([r["models"][name]["uar"] for r in runs], ddof=ddof)),
        }
        for name in args.models
    }
    order = sorted(args.models, key=lambda n: -summary[n]["uf1_mean"])
    real_order = sorted([n for n in args.models if REAL.get(n)], key=lambda n: -REAL[n]["uf1"])
    out = {
        "data": "composite-like preset (mer.data.presets), written and read back as a composite",
        "protocol": protocol_name + "; fixed recipes, last epoch, no test-epoch selection; UF1/UAR over pooled "
        "predictions; preset seed per run, training seed 0, every model from scratch",
        "seeds": seeds,
        "std": "over seeds, ddof 1",
        "loadavg_start": load_start,
        "loadavg_start_note": "of this process; each run has its own",
        "threads": 1,
        "cpu_seconds_this_process": time.process_time(),
        "machine": platform.processor() or platform.machine(),
        "runs": runs,
        "summary": summary,
        "ranking_composite_like": order,
        "real_composite": REAL,
        "ranking_real": real_order,
        "rankings_agree": [n for n in order if n in real_order] == real_order,
    }
    outdir = Path(args.out)
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / "ranking.json").write_text(json.dumps(out, indent=2))
    _plot(out, args.models, outdir / "ranking.png")
    print(
        f"composite-like ranking: {' > '.join(order)}; real composite: {' > '.join(real_order)} "
        f"-> {outdir / 'ranking.json'}"
    )
    return 0


def _plot(out: dict, models, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    xs = np.arange(len(models))
    syn = [out["summary"][m]["uf1_mean"] for m in models]
    err = [out["summary"][m]["uf1_std"] for m in models]
    real = [(out["real_composite"].get(m) or {}).get("uf1", np.nan) for m in models]
    ax.bar(xs - 0.2, syn, 0.4, yerr=err if len(out["seeds"]) > 1 else None, label="composite-like (this run)")
    ax.bar(xs + 0.2, real, 0.4, label="real composite (LOSO, measured outside)")
    ax.axhline(1 / 3, color="grey", lw=0.8, ls="--", label="chance UF1 ~ 1/3")
    ax.set_xticks(xs, models)
    ax.set_ylabel("UF1")
    ax.set_ylim(0, 1)
    ax.set_title(f"{out['protocol'].split(';')[0]}, seeds {out['seeds']}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
