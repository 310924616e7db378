"""Privacy audit of FED-PsyAU: gradient inversion and membership inference vs SecAgg and DP.

    python benchmarks/privacy_audit.py [--quick] [--arrays SET.npz | --data DIR --format F]
                                       [--threads 1] [--out benchmarks/results]

(a) **Gradient inversion** (:mod:`audit.inversion_audit`): gradient matching (Inverting
    Gradients: cosine distance + total variation, signed Adam, box [-1, 1], a fixed budget;
    iDLG label inference) against one client's single-sample update in plain mode, against what
    the coordinator sees under SecAgg+ (the sum of K = 2, 5, 10 single-sample updates, and one
    client's masked vector) and against DP-SGD updates at the noise that gives a realistic
    client (n = 60, batch 16, 50 rounds, 1 local epoch, RDP, delta 1e-5) epsilon 1, 4 and 16.
    Model: **flow-cnn** at 28x28 (15.7 k parameters, more than the 2352 input values; one
    matching step takes ~5 ms on one CPU thread, so each attack runs in seconds), freshly
    initialised (round 1) and without dropout, so the client's gradient is a deterministic
    function of the sample: the attacker's best case. DPK-GAT (126 k parameters) would add AU
    heads whose labels the attacker must also guess, and its double backward costs more per step.
(b) **Membership inference** (:mod:`audit.membership_audit`): loss threshold and LiRA (global
    variance) against **DPK-GAT** (prior ``psych``, so that the model is a function of the DP-SGD
    output alone: the statistical prior is counted from training labels outside DP-SGD) trained
    centrally on a seeded half of the data, without DP and with DP-SGD at epsilon 16, 4, 1.

The attack's total-variation weight was chosen on samples 3, 50 and 100, which are never targets.
Without --data or --arrays the default synthetic set (mer.data.synth, 24 subjects, seed 0; 221
samples) is written to a temporary folder first. Writes privacy_audit.json (all figures, settings,
seeds, run times) and privacy_audit.png. ``--quick`` (4 targets, 200 iterations, 1 restart; 4
shadows, 20 epochs) took 205 s on 2 shared cores (load ~3.5). The full run (8 targets, 400
iterations, 2 restarts; 16 shadows, 30 epochs) needs about 8800 matching steps per target (~45 s
idle) and 68 model trainings (~4 s without DP, ~10 s with): about 15-20 minutes on 2 idle cores.
Use one torch thread (the default) on a busy machine: two threads ran 10x slower under load.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

# Opacus installs a top-level package named "benchmarks", so this folder's helpers are imported
# as the top-level package "audit" from here.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from audit.inversion_audit import run_inversion
from audit.membership_audit import run_membership
from audit.plots import plot_audit

from mer.data.arrays import MEArrays

RESULTS = Path(__file__).resolve().parent / "results"

CONFIG = {
    "inversion": {
        "model": "flow-cnn",
        "model_options": {"size": 28, "dropout": 0.0},
        "classifier": "classifier.1",
        "model_seed": 0,
        "seed": 1,
        "targets": 8,
        "examples": 3,
        "tuning_samples": [3, 50, 100],
        "attack": {
            "iterations": 400,
            "lr": 0.1,
            "tv_weight": 0.1,
            "restarts": 2,
            "bounds": (-1.0, 1.0),
            "signed": True,
            "seed": 0,
        },
        "secagg_k": [2, 5, 10],
        "masked_k": [5, 10],
        "dp_epsilons": [16.0, 4.0, 1.0],
        "dp_client": {"n": 60, "batch_size": 16, "rounds": 50, "local_epochs": 1},
        "dp_weak_sigmas": [0.1, 0.01],
    },
    "membership": {
        "seed": 2,
        "shadows": 16,
        "epsilons": [math.inf, 16.0, 4.0, 1.0],
        "recipe": {
            "model": "dpk-gat",
            "model_options": (("prior", "psych"),),
            "epochs": 30,
            "batch_size": 16,
            "lr": 3e-3,
            "warmup": 0.1,
            "max_grad_norm": 1.0,
        },
    },
}
QUICK = {
    "inversion": {"targets": 4, "examples": 2, "attack": {"iterations": 200, "restarts": 1}},
    "membership": {"shadows": 4, "recipe": {"epochs": 20}},
}


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) else v
    return out


def load_data(args) -> tuple[MEArrays, str]:
    if args.arrays:
        return MEArrays.load(args.arrays), str(args.arrays)
    from mer.data.load import load_arrays

    if args.data:
        return load_arrays(args.data, args.format, cache_dir=args.cache_dir, verbose=False), str(args.data)
    from mer.data.synth import synthesize

    tmp = Path(tempfile.mkdtemp(prefix="fedpsyau-synth-"))
    synthesize(tmp / "synth")
    return load_arrays(tmp / "synth", "casme2", verbose=False), "synthetic default set (24 subjects, seed 0)"


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float) and math.isinf(obj):
        return "inf"
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def headline(report: dict) -> list[str]:
    inv, mia = report["inversion"], report["membership"]
    s = inv["settings"]
    lines = [f"inversion ({inv['model']}, {len(inv['targets'])} targets): cosine to target, mean ± sd; label hit rate"]
    for name, v in s.items():
        lines.append(
            f"  {name:22s} cos {v['cosine']['mean']:.3f} ± {v['cosine']['sd']:.3f}  "
            f"PSNR {v['psnr']['mean']:5.1f} dB  label {v['label_accuracy']:.0%}  "
            f"grad-cos {v['grad_cosine']['mean']:.3f}"
        )
    for k, v in inv["baselines"].items():
        lines.append(f"  baseline {k:26s} cos {v['mean']:.3f} ± {v['sd']:.3f}")
    lines.append(
        f"membership ({mia['recipe']['model']}, {mia['members']} members / {mia['non_members']} non-members, "
        f"{mia['shadows']} shadows)"
    )
    for key, r in mia["by_epsilon"].items():
        la, lo = r["attacks"]["lira"], r["attacks"]["loss"]
        lines.append(
            f"  eps={key:4s} LiRA AUC {la['auc']:.3f} ± {la['auc_se']:.3f} TPR@0.1% {la['tpr_at_0.001_fpr']:.3f} "
            f"TPR@1% {la['tpr_at_0.01_fpr']:.3f} (bound {la['dp_bound_at_0.01_fpr']:.3f}) | loss AUC "
            f"{lo['auc']:.3f} TPR@1% {lo['tpr_at_0.01_fpr']:.3f} | eps lower bound "
            f"{max(la['epsilon_lower_bound'], lo['epsilon_lower_bound']):.2f} | acc in/out "
            f"{r['accuracy_members']:.2f}/{r['accuracy_non_members']:.2f}"
        )
    return lines


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer targets, iterations, shadows and epochs (~4 min)")
    ap.add_argument("--data", default=None, help="data folder (default: synthesize the default set)")
    ap.add_argument("--format", default="casme2")
    ap.add_argument("--arrays", default=None, help="an MEArrays .npz (MEArrays.save) instead of --data")
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: these models are tiny, and 2 threads on a busy 2-core machine run up to 10x slower)",
    )
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = _merge(CONFIG, QUICK) if args.quick else copy.deepcopy(CONFIG)
    t_all = time.perf_counter()
    data, source = load_data(args)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)
    report = {
        "mode": "quick" if args.quick else "full",
        "data": source,
        "n_samples": len(data),
        "class_names": list(data.class_names),
        "config": cfg,
        "threads": args.threads,
        "platform": platform.platform(),
        "torch": torch.__version__,
        "seconds": {},
    }
    log(f"privacy audit ({report['mode']}) on {source}: {len(data)} samples")
    t0 = time.perf_counter()
    inv, examples = run_inversion(data.flow, data.label, cfg["inversion"], log)
    report["inversion"] = inv
    report["seconds"]["inversion"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    report["membership"] = run_membership(data.flow, data.label, data.au, data.au_known, cfg["membership"], log)
    report["seconds"]["membership"] = round(time.perf_counter() - t0, 1)
    report["seconds"]["total"] = round(time.perf_counter() - t_all, 1)
    report["headline"] = headline(report)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "privacy_audit.json").write_text(json.dumps(_jsonable(report), indent=1))
    plot_audit(report, examples, out / "privacy_audit.png")
    print("\n".join(report["headline"]))
    print(f"total {report['seconds']['total']} s; wrote {out / 'privacy_audit.json'} and privacy_audit.png")
    return report


if __name__ == "__main__":
    main()
