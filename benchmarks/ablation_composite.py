"""Ablation of DPK-GAT on the composite-like preset (issue 14, item 6), beside the baselines.

Every run is one (variant, seed): the composite-like preset written with seed ``s`` and read back
through the composite reader (442 clips, 68 subjects, 3 classes, no AU labels), the model trained
with seed ``s``; the same subject-grouped k-fold (``benchmarks/ranking.py``'s ``grouped_kfold``,
fold seed 2026) for every variant of a seed. Protocol: fixed recipes chosen before any fold ran
(the model's own, :data:`mer.model.registry.TRAIN_DEFAULTS`), the last epoch tested, no test-epoch
selection; UF1 / UAR over the pooled predictions of the folds. Results: mean +- sd (ddof 1) over
the seeds, and each variant's paired difference to the base over the same seeds.

Base: DPK-GAT from scratch (``init none``), prior both, r decaying 1 -> 0, AU losses on. Each
ablation row changes one factor:

- ``init pretrained``: the packaged public AU checkpoint (``fedpsyau train``'s default);
- ``prior psych / stat / none``: from scratch, because the packaged checkpoint was pre-trained
  with prior both and is refused for another prior (``prior: checkpoint 'both', model ...``).
  On data without AU labels psych, stat and both are the same model by construction: the
  psychological prior is uniform over each graph's edges, the statistical prior counted from no
  label is the smoothed uniform matrix restricted to the same edges, and both is their mean --
  the runs agree to the last digit of UF1, UAR and accuracy (seeds 0 and 1; the third seed was
  not run for them) and a test shows equal outputs; only ``none`` (beta = 0) differs;
- ``r fixed=1``: the prior never fades;
- AU loss on / off: not run on the composite-like preset -- its data carry no AU label, so both
  settings give the emotion loss alone (the weights are recorded in the JSON as the proof); run on
  the casme2-like preset instead (``--casme2``: CASME II layout with AU coding, its 5-class map).

References on the same folds: ``logreg`` (flow histograms), ``ststnet`` (published recipe) and
``flow-cnn``. Pretrained vs scratch for every model that can take a checkpoint: only DPK-GAT can
(the public corpus has AU labels and no emotion labels; flow-cnn and STSTNet have no AU heads, and
no checkpoint ships for them).

Runs go to ``--cache`` as one JSON each, so an interrupted run resumes where it stopped; the
order follows the priority of the question asked: pretrained vs scratch, prior none, the
baselines, then the other priors and r; the casme2-like AU rows last.

    nice -n 15 python benchmarks/ablation_composite.py [--seeds 0 1 2] [--folds 5] [--jobs 2]
        [--casme2] [--only NAME ...] [--assemble]

Writes ``benchmarks/results/ablation_composite.json`` and ``.png``; one torch thread per job.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ranking import FOLD_SEED, REAL, grouped_kfold, run_logreg

from mer.data.arrays import MEArrays
from mer.train.centralised import loss_weights, train_config_for
from mer.train.loso import protocol_line, run_folds

RESULTS = Path(__file__).resolve().parent / "results"
STEM = "ablation_composite"
DPK = {"face_crop": "aligned"}  # the preset draws its faces through mer.face.align (ranking.py)
BASE = "dpk-gat scratch"
#: name -> (preset, model, train_config_for overrides); in priority order
VARIANTS: dict[str, tuple[str, str, dict]] = {
    BASE: ("composite-like", "dpk-gat", {"init": "none", "model_options": {**DPK, "prior": "both"}}),
    "dpk-gat pretrained": (
        "composite-like",
        "dpk-gat",
        {"init": "pretrained", "model_options": {**DPK, "prior": "both"}},
    ),
    "dpk-gat prior=none": ("composite-like", "dpk-gat", {"init": "none", "model_options": {**DPK, "prior": "none"}}),
    "ststnet": ("composite-like", "ststnet", {"init": "none"}),
    "flow-cnn": ("composite-like", "flow-cnn", {"init": "none"}),
    "logreg": ("composite-like", "logreg", {}),
    "dpk-gat prior=psych": ("composite-like", "dpk-gat", {"init": "none", "model_options": {**DPK, "prior": "psych"}}),
    "dpk-gat prior=stat": ("composite-like", "dpk-gat", {"init": "none", "model_options": {**DPK, "prior": "stat"}}),
    "dpk-gat r fixed=1": (
        "composite-like",
        "dpk-gat",
        {"init": "none", "r_schedule": "fixed", "model_options": {**DPK, "prior": "both"}},
    ),
    "casme2-like dpk-gat AU loss on": ("casme2-like", "dpk-gat", {"init": "none", "model_options": {"prior": "both"}}),
    "casme2-like dpk-gat AU loss off": (
        "casme2-like",
        "dpk-gat",
        {"init": "none", "au_loss": False, "model_options": {"prior": "both"}},
    ),
}
REFERENCES = ("ststnet", "flow-cnn", "logreg")
#: run order: (a) pretrained vs scratch, (b) prior none, (c) the baselines, (d) the rest, casme2-like last
TIERS = (
    (BASE, "dpk-gat pretrained"),
    ("dpk-gat prior=none",),
    REFERENCES,
    ("dpk-gat prior=psych", "dpk-gat prior=stat", "dpk-gat r fixed=1"),
)
CASME2 = tuple(n for n in VARIANTS if n.startswith("casme2-like"))
CASME2_BASE = "casme2-like dpk-gat AU loss on"


def preset_arrays(preset: str, seed: int, cache: Path) -> Path:
    """The preset written with ``seed`` and read back by its real reader, saved once as MEArrays."""
    path = cache / f"{preset}-seed{seed}.npz"
    if not path.exists():
        from mer.data.load import load_arrays
        from mer.data.preset_write import write_preset

        t = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            write_preset(Path(tmp) / "p", preset, seed=seed)
            fmt = "composite" if preset == "composite-like" else "casme2"
            data = load_arrays(Path(tmp) / "p", fmt, verbose=False)  # the loader's own size, as `train`
        data.save(path.with_suffix(".tmp.npz"))
        path.with_suffix(".tmp.npz").replace(path)
        print(
            f"{preset} seed {seed}: {len(data)} clips written and read back in {time.perf_counter() - t:.0f} s",
            flush=True,
        )
    return path


def run_one(name: str, seed: int, arrays: str, folds: int) -> dict:
    """One (variant, seed) on the subject-grouped k-fold; also the body of a --jobs worker."""
    torch.set_num_threads(1)
    cpu0, t0 = time.process_time(), time.perf_counter()
    preset, model, overrides = VARIANTS[name]
    data = MEArrays.load(arrays)
    split = grouped_kfold(data.subject, folds)
    if model == "logreg":
        row = run_logreg(data, split)
    else:
        cfg = train_config_for(model, device="cpu", seed=seed, **overrides)
        res = run_folds(data, split, cfg, f"{folds}-fold", progress="off")
        m = res.metrics
        row = {
            "uf1": m["uf1"],
            "uar": m["uar"],
            "accuracy": m["accuracy"],
            "seconds": res.seconds,
            "seconds_per_fold": float(np.mean([f["seconds"] for f in res.per_fold])),
            "recipe": cfg.schedule_line(),
            "protocol_line": protocol_line(f"{folds}-fold", cfg),
            "config": cfg.to_dict(),
            "au_labelled": int(data.au_known.sum()),
            "loss_weights": vars(loss_weights(cfg, float(np.mean(data.au_known)), model == "dpk-gat")),
        }
    row.update(
        variant=name,
        seed=seed,
        preset=preset,
        samples=len(data),
        subjects=len(np.unique(data.subject)),
        cpu_seconds=time.process_time() - cpu0,
        wall_seconds=time.perf_counter() - t0,
        loadavg_end=os.getloadavg()[0],
    )
    print(
        f"seed {seed} {name:32s} UF1 {row['uf1']:.3f} UAR {row['uar']:.3f} "
        f"({row['seconds_per_fold']:.1f} s/fold, {row['cpu_seconds']:.0f} CPU s)",
        flush=True,
    )
    return row


def _stats(values: list[float]) -> dict:
    a = np.asarray(values, float)
    return {"mean": float(a.mean()), "sd": float(a.std(ddof=1)) if len(a) > 1 else None, "n": len(a)}


def summarize_runs(runs: list[dict]) -> dict:
    by = {}
    for r in runs:
        by.setdefault(r["variant"], {})[r["seed"]] = r
    out = {}
    for name in (n for n in VARIANTS if n in by):
        rows = by[name]
        base = by.get(CASME2_BASE if name in CASME2 else BASE, {})
        paired = sorted(set(rows) & set(base))
        out[name] = {
            "seeds": sorted(rows),
            "uf1": _stats([rows[s]["uf1"] for s in sorted(rows)]),
            "uar": _stats([rows[s]["uar"] for s in sorted(rows)]),
            "seconds_per_fold": float(np.mean([rows[s]["seconds_per_fold"] for s in rows])),
            "uf1_minus_base": _stats([rows[s]["uf1"] - base[s]["uf1"] for s in paired]) if paired else None,
        }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--folds", type=int, default=5, help="k of the subject-grouped k-fold (default 5)")
    ap.add_argument("--jobs", type=int, default=1, help="runs at once, one process and one thread each")
    ap.add_argument("--casme2", action="store_true", help="also the AU loss on/off rows on casme2-like")
    ap.add_argument("--only", nargs="+", choices=list(VARIANTS), default=None, metavar="NAME")
    ap.add_argument(
        "--assemble", action="store_true", help="run nothing: write the JSON and PNG from the runs already in --cache"
    )
    ap.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "fedpsyau-ablation-composite"))
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    load_start = os.getloadavg()
    cache = Path(args.cache) / f"{args.folds}fold"
    cache.mkdir(parents=True, exist_ok=True)
    names = args.only or [n for n in VARIANTS if args.casme2 or n not in CASME2]
    todo = [(n, s) for n in names for s in args.seeds]  # priority order: variant first, then seed
    tier = {n: i for i, names_ in enumerate(TIERS) for n in names_}
    todo.sort(key=lambda t: (tier.get(t[0], len(TIERS)), t[1], list(VARIANTS).index(t[0])))
    done = {}  # every cached run of these seeds, so --only limits what runs, not what is reported
    for n in VARIANTS:
        for s in args.seeds:
            f = cache / f"{n.replace(' ', '_')}-seed{s}.json"
            if f.exists():
                done[(n, s)] = json.loads(f.read_text())
    pending = [] if args.assemble else [t for t in todo if t not in done]
    sessions_file = cache / "sessions.json"
    sessions = json.loads(sessions_file.read_text()) if sessions_file.exists() else []
    if pending:  # every launch that runs something records the load it started under
        sessions.append(
            {
                "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "loadavg": list(load_start),
                "runs": len(pending),
                "jobs": args.jobs,
            }
        )
        sessions_file.write_text(json.dumps(sessions, indent=1))
    print(f"load average at start {load_start[0]:.2f}; {len(done)} run(s) cached, {len(pending)} to go", flush=True)
    arrays = {(VARIANTS[n][0], s): str(preset_arrays(VARIANTS[n][0], s, cache.parent)) for n, s in pending}

    def keep(row):
        done[(row["variant"], row["seed"])] = row
        f = cache / f"{row['variant'].replace(' ', '_')}-seed{row['seed']}.json"
        f.write_text(json.dumps(row, indent=1))

    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(run_one, n, s, arrays[(VARIANTS[n][0], s)], args.folds) for n, s in pending]
            for fut in as_completed(futures):
                keep(fut.result())
    else:
        for n, s in pending:
            keep(run_one(n, s, arrays[(VARIANTS[n][0], s)], args.folds))
    runs = [done[(n, s)] for n in VARIANTS for s in args.seeds if (n, s) in done]
    summary = summarize_runs(runs)
    cpu = sum(r["cpu_seconds"] for r in runs)
    pre, base = summary.get("dpk-gat pretrained"), summary.get(BASE)
    best_dpk = pre or base
    targets = {}
    if best_dpk and "flow-cnn" in summary and "ststnet" in summary:
        targets = {
            "dpk-gat (default: pretrained) UF1": best_dpk["uf1"]["mean"],
            "flow-cnn UF1": summary["flow-cnn"]["uf1"]["mean"],
            "ststnet UF1": summary["ststnet"]["uf1"]["mean"],
            "dpk-gat >= flow-cnn + 0.03": best_dpk["uf1"]["mean"] >= summary["flow-cnn"]["uf1"]["mean"] + 0.03,
            "dpk-gat >= ststnet + 0.05": best_dpk["uf1"]["mean"] >= summary["ststnet"]["uf1"]["mean"] + 0.05,
        }
    if pre and base:
        targets["pretrained >= scratch"] = pre["uf1"]["mean"] >= base["uf1"]["mean"]
    ranking = sorted(
        [n for n in summary if n in REFERENCES or n in (BASE, "dpk-gat pretrained")],
        key=lambda n: -summary[n]["uf1"]["mean"],
    )
    out = {
        "data": "composite-like preset (mer.data.presets), seed s, written and read back as a composite "
        "(442 clips, 68 subjects, 3 classes, no AU labels); casme2-like rows: CASME II layout with AU "
        "coding, read by the casme2 reader (casme2-5 label map, Farneback flow at its default size)",
        "protocol": f"subject-grouped {args.folds}-fold (fold seed {FOLD_SEED}; LOSO's 68 folds do not fit the "
        "compute budget), the same folds for every variant of a seed; fixed recipes (the model's own), "
        "last epoch, no test-epoch selection; UF1/UAR over pooled predictions; training seed = preset seed",
        "base": f"{BASE}: DPK-GAT init none, prior both, r decaying, AU losses on (none exist on composite-like)",
        "au_loss_on_composite_like": "not applicable: the composite-like data carry no AU label (au_labelled = 0 "
        "in every run), so AU loss on and off give the same emotion-only loss "
        "(see loss_weights); measured on casme2-like instead",
        "priors_without_au_labels": "psych, stat and both are one model on data without AU labels (psych: uniform "
        "over the graph's edges; stat from zero counts: smoothed uniform restricted "
        "to the same edges; both: their mean); only none (beta 0) differs",
        "pretrained_vs_scratch_models": "only dpk-gat can take a checkpoint: flow-cnn and ststnet have no AU "
        "heads and no packaged checkpoint (--init pretrained is refused for them)",
        "seeds": args.seeds,
        "folds": args.folds,
        "jobs": args.jobs,
        "threads_per_job": 1,
        "loadavg_start": sessions[0]["loadavg"] if sessions else list(load_start),
        "sessions": sessions,
        "loadavg_end": list(os.getloadavg()),
        "cpu_seconds_total": cpu,
        "machine": platform.processor() or platform.machine(),
        "summary": summary,
        "ranking_composite_like": ranking,
        "real_composite": REAL,
        "targets": targets,
        "runs": runs,
    }
    outdir = Path(args.out)
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / f"{STEM}.json").write_text(json.dumps(out, indent=2))
    _plot(out, outdir / f"{STEM}.png")
    for n, v in summary.items():
        d = v["uf1_minus_base"]
        sd = f" +- {v['uf1']['sd']:.3f}" if v["uf1"]["sd"] is not None else ""
        dd = f", vs base {d['mean']:+.3f}" + (f" +- {d['sd']:.3f}" if d["sd"] is not None else "") if d else ""
        print(f"{n:32s} UF1 {v['uf1']['mean']:.3f}{sd} (seeds {v['seeds']}{dd})")
    print(f"{cpu / 60:.1f} CPU minutes over {len(runs)} runs -> {outdir / (STEM + '.json')}")
    return 0


def _plot(out: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = out["summary"]
    names = [n for n in s if n not in REFERENCES] + [n for n in s if n in REFERENCES]
    fig, ax = plt.subplots(figsize=(9, 0.42 * len(names) + 1.6))
    ys = np.arange(len(names))[::-1]
    colors = [
        "#4c72b0" if n.startswith("dpk-gat") else "#dd8452" if n.startswith("casme2") else "#8c8c8c" for n in names
    ]
    ax.barh(
        ys, [s[n]["uf1"]["mean"] for n in names], xerr=[s[n]["uf1"]["sd"] or 0 for n in names], color=colors, capsize=3
    )
    for y, n in zip(ys, names):
        sd, d = s[n]["uf1"]["sd"], s[n]["uf1_minus_base"]
        text = f"{s[n]['uf1']['mean']:.3f}" + (f" ± {sd:.3f}" if sd is not None else "")
        if d is not None and n not in (BASE, CASME2_BASE):
            text += f"   (vs base, paired: {d['mean']:+.3f}" + (f" ± {d['sd']:.3f})" if d["sd"] is not None else ")")
        ax.text(s[n]["uf1"]["mean"] + (sd or 0) + 0.015, y, text, va="center", fontsize=7)
    labels = [
        n + ("" if s[n]["seeds"] == out["seeds"] else f" (seeds {','.join(map(str, s[n]['seeds']))})") for n in names
    ]
    ax.set_yticks(ys, labels, fontsize=8)
    ax.axvline(1 / 3, color="grey", lw=0.8, ls="--")
    ax.set_xlim(0, 1)
    ax.set_xlabel(
        "UF1, mean ± sd over seeds (grey: baselines; dashed: chance 1/3)"
        + ("; casme2-like rows: 5 classes" if any(n in CASME2 for n in names) else "")
    )
    ax.set_title(
        f"composite-like, subject-grouped {out['folds']}-fold, seeds {out['seeds']}, fixed epochs, "
        f"last epoch\nbase = {BASE} (prior both, r decaying)",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
