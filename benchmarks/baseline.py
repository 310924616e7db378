"""Calibration baseline on the embedded synthetic data set: LOSO UF1 of logistic regression.

Features: the normalised histogram (8 bins) of flow magnitude sqrt(u^2 + v^2) in each local
region: the 19 patch areas of :func:`mer.face.regions.patch_boxes` (grouped in the four AU
regions brows, eyes/cheeks, nose/upper lip, mouth/chin), on the 128x128 flow images that
``load_arrays`` returns: 152 features. Magnitude only, so direction (brow up vs down) is
invisible to it. The JSON also gives the coarser variant with one histogram per AU region
(32 features), which cannot tell AU12 from AU14/15 (all mouth corners) and scores lower. The classifier is multinomial logistic regression with an L2 penalty and
class-balanced sample weights, written here in numpy (fitted with scipy's L-BFGS on the exact
gradient); features are standardised on each training fold. Protocol: leave-one-subject-out;
UF1 (mean per-class F1) and UAR (mean per-class recall) over the pooled predictions of all folds.

The synthetic set is calibrated so this baseline lands between 0.5 and 0.8 UF1: learnable,
not trivial. Run: ``python benchmarks/baseline.py [--data DIR] [--subjects N] [--seed S]``;
writes ``benchmarks/results/baseline.json`` and ``baseline.png`` (the confusion matrix).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

from mer.data.load import load_with_report
from mer.data.synth import synthesize
from mer.face.regions import REGIONS, patch_boxes, patch_side, region_of_point

BINS = np.array([0.0, 0.05, 0.1, 0.2, 0.3, 0.45, 0.6, 0.8, np.inf])
RESULTS = Path(__file__).resolve().parent / "results"


def magnitude_histograms(flow: np.ndarray, by: str = "patch") -> np.ndarray:
    """(N, 3, S, S) flow images -> normalised magnitude histograms, 8 bins per region.

    ``by="patch"``: one histogram per patch area (19 local regions around the template points,
    grouped in the 4 AU regions) -> (N, 152); ``by="region"``: one per AU region, pooling its
    patches -> (N, 32).
    """
    n, _, s, _ = flow.shape
    boxes, p, reg = patch_boxes(s), patch_side(s), region_of_point()
    mag = np.sqrt(flow[:, 0] ** 2 + flow[:, 1] ** 2)  # (N, S, S)
    groups = (
        [[i] for i in range(len(boxes))]
        if by == "patch"
        else [[i for i in range(len(boxes)) if reg[i] == r] for r in range(len(REGIONS))]
    )
    feats = []
    for g in groups:
        pix = np.concatenate(
            [mag[:, boxes[i][0] : boxes[i][0] + p, boxes[i][1] : boxes[i][1] + p].reshape(n, -1) for i in g], axis=1
        )  # (N, pixels)
        h = np.stack([np.histogram(row, BINS)[0] for row in pix]).astype(np.float64)
        feats.append(h / pix.shape[1])
    return np.concatenate(feats, axis=1)


def fit_logreg(x: np.ndarray, y: np.ndarray, k: int, l2: float = 10.0) -> np.ndarray:
    """Weights (D + 1, K) of multinomial logistic regression, balanced class weights, L2 on non-bias."""
    n, d = x.shape
    xb = np.column_stack([x, np.ones(n)])
    counts = np.bincount(y, minlength=k).astype(np.float64)
    sw = (n / (k * np.maximum(counts, 1)))[y]
    onehot = np.eye(k)[y]

    def loss(w_flat):
        w = w_flat.reshape(d + 1, k)
        z = xb @ w
        z -= z.max(1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(1, keepdims=True))
        nll = -(sw * (onehot * logp).sum(1)).sum() / n
        reg = 0.5 * l2 * (w[:-1] ** 2).sum() / n
        grad = xb.T @ (sw[:, None] * (np.exp(logp) - onehot)) / n
        grad[:-1] += l2 * w[:-1] / n
        return nll + reg, grad.ravel()

    res = minimize(loss, np.zeros((d + 1) * k), jac=True, method="L-BFGS-B", options={"maxiter": 500})
    return res.x.reshape(d + 1, k)


def predict(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    return np.argmax(np.column_stack([x, np.ones(len(x))]) @ w, axis=1)


def scores(y: np.ndarray, pred: np.ndarray, k: int) -> dict:
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (y, pred), 1)
    tp = np.diag(cm).astype(np.float64)
    f1 = np.divide(2 * tp, cm.sum(0) + cm.sum(1), out=np.zeros(k), where=(cm.sum(0) + cm.sum(1)) > 0)
    rec = np.divide(tp, cm.sum(1), out=np.zeros(k), where=cm.sum(1) > 0)
    present = cm.sum(1) > 0
    return {
        "uf1": float(f1[present].mean()),
        "uar": float(rec[present].mean()),
        "accuracy": float(tp.sum() / cm.sum()),
        "f1_per_class": f1.tolist(),
        "confusion": cm.tolist(),
    }


def loso(x: np.ndarray, y: np.ndarray, subjects: np.ndarray, k: int, l2: float = 10.0) -> np.ndarray:
    pred = np.empty_like(y)
    for s in np.unique(subjects):
        te = subjects == s
        mu, sd = x[~te].mean(0), x[~te].std(0) + 1e-6
        w = fit_logreg((x[~te] - mu) / sd, y[~te], k, l2)
        pred[te] = predict(w, (x[te] - mu) / sd)
    return pred


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", help="an existing synthetic set (default: synthesize one in a temp folder)")
    ap.add_argument("--subjects", type=int, default=24)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--l2", type=float, default=10.0)
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(args.data) if args.data else Path(tmp) / "synth"
        t0 = time.perf_counter()
        summary = synthesize(data, subjects=args.subjects, seed=args.seed) if not args.data else None
        t_synth = time.perf_counter() - t0
        t0 = time.perf_counter()
        arrays, report = load_with_report(data, "casme2", progress=False)
        t_load = time.perf_counter() - t0
    x = magnitude_histograms(arrays.flow, "patch")
    k = len(arrays.class_names)
    pred = loso(x, arrays.label, arrays.subject, k, args.l2)
    res = scores(arrays.label, pred, k)
    coarse = scores(
        arrays.label, loso(magnitude_histograms(arrays.flow, "region"), arrays.label, arrays.subject, k, args.l2), k
    )
    chance = scores(arrays.label, np.full_like(arrays.label, np.bincount(arrays.label).argmax()), k)
    out = {
        "data": "synthetic default set" if not args.data else str(args.data),
        "subjects": len(np.unique(arrays.subject)),
        "samples": len(arrays),
        "seed": args.seed,
        "classes": list(arrays.class_names),
        "per_class": np.bincount(arrays.label, minlength=k).tolist(),
        "features": "flow-magnitude histograms per local region: 19 patch areas x 8 bins (farneback, 128x128)",
        "model": f"multinomial logistic regression, L2={args.l2}, balanced class weights",
        "protocol": "LOSO",
        **res,
        "majority_class_uf1": chance["uf1"],
        "coarse_4_region_features": {"uf1": coarse["uf1"], "uar": coarse["uar"]},
        "seconds": {"synthesize": round(t_synth, 2), "load_and_flow": round(t_load, 2)},
        "load_report": report.summary(),
        "synth_summary_per_class": summary["per_class"] if summary else None,
    }
    outdir = Path(args.out)
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / "baseline.json").write_text(json.dumps(out, indent=2))
    _plot(np.array(res["confusion"]), arrays.class_names, res, outdir / "baseline.png")
    print(
        f"LOSO UF1 {res['uf1']:.3f}  UAR {res['uar']:.3f}  acc {res['accuracy']:.3f}  "
        f"(majority-class UF1 {chance['uf1']:.3f}); {len(arrays)} samples, "
        f"{out['subjects']} subjects -> {outdir / 'baseline.json'}"
    )
    return 0


def _plot(cm: np.ndarray, classes, res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    ax.imshow(cm, cmap="Blues")
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=9)
    ax.set_xticks(range(len(classes)), classes, rotation=30, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"LOSO logistic regression: UF1 {res['uf1']:.3f}, UAR {res['uar']:.3f}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
