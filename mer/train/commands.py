"""``fedpsyau train`` and ``fedpsyau evaluate``: centralised MER training and evaluation.

``train`` loads a data folder, runs the protocol (LOSO by default: one model per held-out
subject, metrics over the pooled predictions), then trains the final model on all the data and
writes into RUN_DIR:

- ``summary.json``: uf1, uar, accuracy, confusion, per_fold, config, seconds, data counts, and
  ``protocol_line`` ("LOSO, fixed N epochs, last epoch, no test-epoch selection");
- ``confusion.png``: the pooled confusion matrix;
- ``model.json`` + ``weights.npz``: the final model (no pickle; see :mod:`mer.model.io`).

``--init`` picks the starting weights, as on ``simulate``: ``pretrained`` (the public AU
checkpoint in the package; the default for dpk-gat), ``none`` (from scratch; the default for
flow-cnn and ststnet, which refuse ``pretrained``: no checkpoint ships for them) or a checkpoint
folder made by ``fedpsyau pretrain``. A checkpoint that does not fit the model (another model,
another ``--prior``, another width...) is refused before any data is read, naming what differs.
Every parameter but the emotion classifier is loaded, then all are fine-tuned with the recipe.

Epochs, batch size and learning rate not given on the command line come from the model's own
recipe (:data:`mer.model.registry.TRAIN_DEFAULTS`: ``--model ststnet`` trains 500 epochs of Adam
at 5e-5, batch 256, as published). Before training, ``train`` prints the recipe, the protocol
line and the loss weights; during LOSO it prints one line per fold with an ETA when stderr is
not a terminal (a progress bar when it is).

``evaluate`` runs a saved model on a data folder and writes ``evaluation.json``.
Exit codes (fedcore's table, :class:`fedcore.exitcodes.ExitCode`): 0 OK, 2 CONFIG for bad input
(data folder, options, saved model), with the problem printed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from fedcore.exitcodes import ExitCode
from mer.face.regions import FACE_CROPS
from mer.model import MODELS, PRIORS, load_model, save_model
from mer.train.centralised import (
    DEVICES,
    R_SCHEDULES,
    TrainConfig,
    au_known_share,
    check_init,
    loss_weights,
    predict,
    resolve_device,
    train_config_for,
    train_model,
)
from mer.train.loso import protocol_line, run_holdout, run_loso
from mer.train.metrics import summarize
from mer.train.plots import confusion_png

FORMATS = ("casme2", "samm", "smic", "casme3", "composite", "manifest")
_DEFAULTS = TrainConfig()


def _data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="data set folder (or manifest CSV)")
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument("--size", type=int, default=None, help="flow image side (default: the loader's: 128, composite 28)")
    p.add_argument("--cache-dir", default=None, help="flow cache folder")
    p.add_argument("--skip-bad", action="store_true", help="skip bad samples instead of failing")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")


def register(subparsers) -> None:
    t = subparsers.add_parser("train", help="train and evaluate a MER model subject-independently (LOSO / hold-out)")
    _data_options(t)
    t.add_argument("--protocol", choices=("loso", "holdout"), default="loso")
    t.add_argument("--out", required=True, help="run folder for summary.json, confusion.png and the final model")
    t.add_argument("--model", choices=sorted(MODELS), default=_DEFAULTS.model)
    t.add_argument("--prior", choices=PRIORS, default=None, help="DPK-GAT prior (default: both)")
    t.add_argument(
        "--face-crop",
        choices=sorted(FACE_CROPS),
        default=None,
        help="DPK-GAT patch geometry of the data's face crops (default: tight for --format "
        "composite, the MEGC2019 composite's crops; aligned otherwise)",
    )
    t.add_argument("--epochs", type=int, default=None, help="fixed number of epochs (default: the model's own)")
    t.add_argument("--batch-size", type=int, default=None, help="default: the model's own")
    t.add_argument("--lr", type=float, default=None, help="learning rate (default: the model's own)")
    t.add_argument("--no-au-loss", action="store_true", help="train on the emotion loss only")
    t.add_argument("--r-schedule", choices=R_SCHEDULES, default=_DEFAULTS.r_schedule)
    t.add_argument("--class-balanced", action="store_true", help="inverse-frequency class weights in the CE")
    t.add_argument(
        "--init",
        default=None,
        help="pretrained (the public AU checkpoint in the package; default for dpk-gat) | none (from "
        "scratch; default for other models) | a checkpoint folder (fedpsyau pretrain --out)",
    )
    t.add_argument("--device", choices=DEVICES, default=_DEFAULTS.device)
    t.add_argument("--seed", type=int, default=_DEFAULTS.seed)
    t.add_argument("--max-folds", type=int, default=None, help="run only the first K LOSO folds")
    t.add_argument("--test-fraction", type=float, default=0.2, help="hold-out: fraction of subjects in test")
    t.set_defaults(func=train_command)

    e = subparsers.add_parser("evaluate", help="evaluate a saved model (a train RUN_DIR) on a data folder")
    e.add_argument("--model-dir", required=True, help="a RUN_DIR written by `train`")
    _data_options(e)
    e.add_argument("--device", choices=DEVICES, default="auto")
    e.add_argument("--out", default=None, help="result JSON (default: MODEL_DIR/evaluation.json)")
    e.set_defaults(func=evaluate_command)


def _fail(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return ExitCode.CONFIG


def _load(args, size):
    from mer.data.load import (
        load_arrays,  # the data side; imported here so the CLI starts fast
    )

    return load_arrays(args.data, args.format, size=size, cache_dir=args.cache_dir, skip_bad=args.skip_bad)


def train_command(args) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    options = {}
    if args.prior is not None:
        if args.model != "dpk-gat":
            return _fail(f"--prior applies to dpk-gat only (got --model {args.model})")
        options["prior"] = args.prior
    if args.face_crop is not None and args.model != "dpk-gat":
        return _fail(f"--face-crop applies to dpk-gat only (got --model {args.model})")
    if args.model == "dpk-gat":
        options["face_crop"] = args.face_crop or ("tight" if args.format == "composite" else "aligned")
    cfg = train_config_for(
        args.model,
        model_options=options,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        au_loss=not args.no_au_loss,
        r_schedule=args.r_schedule,
        class_balanced=args.class_balanced,
        device=args.device,
        seed=args.seed,
        init=args.init,
    )
    if cfg.problems():
        return _fail("; ".join(cfg.problems()))
    try:
        init_doc = check_init(cfg)
    except ValueError as exc:  # CheckpointError included
        default = "" if args.init is not None else f" (the default for {cfg.model})"
        hint = "; pass --init none to train from scratch" if args.init is None else ""
        return _fail(f"--init {cfg.init}{default}: {exc}{hint}")
    try:
        resolve_device(cfg.device)
        data = _load(args, args.size)
    except (OSError, ValueError, RuntimeError) as exc:
        return _fail(str(exc))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    given = [n for n in ("epochs", "batch_size", "lr") if getattr(args, n) is not None]
    print(
        f"{cfg.model}: {cfg.schedule_line()}"
        + (f" (given: {', '.join(given)}; the rest the model's own)" if given else " (the model's own recipe)")
    )
    print(f"protocol: {protocol_line(args.protocol, cfg)}")
    print(f"init: {_init_line(cfg.init, init_doc)}")
    share = au_known_share(data)
    w = loss_weights(cfg, share, getattr(MODELS[cfg.model][0], "predicts_aus", False))
    print(
        f"loss: {w.emotion:g} x CE(emotion)"
        + (f" + {w.au:g} x AU BCE" if w.au else "")
        + f" ({share:.0%} of the samples have AU labels)",
        flush=True,
    )
    t0 = time.perf_counter()
    try:
        if args.protocol == "loso":
            result = run_loso(data, cfg, max_folds=args.max_folds)
        else:
            result = run_holdout(data, cfg, test_fraction=args.test_fraction)
    except ValueError as exc:
        return _fail(str(exc))
    final = train_model(data, cfg)
    meta = {
        "class_names": list(data.class_names),
        "data_size": data.size,
        "format": args.format,
        "train_config": cfg.to_dict(),
        "n_train": len(data),
    }
    save_model(final, out, cfg.model, meta)
    summary = result.to_dict(cfg)
    summary.update(
        seconds_total=round(time.perf_counter() - t0, 3),
        device=str(resolve_device(cfg.device)),
        init={"init": cfg.init, "weights_sha256": init_doc and init_doc["weights_sha256"]},
        data={
            "path": str(args.data),
            "format": args.format,
            "size": data.size,
            "n_subjects": len(np.unique(data.subject)),
            "class_counts": np.bincount(data.label, minlength=len(data.class_names)).tolist(),
        },
    )
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    confusion_png(
        summary["confusion"],
        data.class_names,
        out / "confusion.png",
        f"{cfg.model} {args.protocol}: UF1 {summary['uf1']:.3f} UAR {summary['uar']:.3f}",
    )
    print(
        f"{cfg.model} {args.protocol} on {len(data)} samples, {summary['n_folds']} fold(s): "
        f"UF1 {summary['uf1']:.4f} UAR {summary['uar']:.4f} accuracy {summary['accuracy']:.4f} "
        f"({summary['seconds_per_fold']:.1f} s/fold) -> {out}"
    )
    return ExitCode.OK


def _init_line(init: str, doc: dict | None) -> str:
    if doc is None:
        return "none (from scratch)"
    where = "the packaged public AU checkpoint" if init == "pretrained" else init
    return (
        f"{init} ({where}, {doc['parameters']} arrays, weights SHA-256 {doc['weights_sha256'][:12]}...; "
        "the emotion classifier starts fresh; all parameters fine-tuned)"
    )


def evaluate_command(args) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        model, meta = load_model(args.model_dir, resolve_device(args.device))
        data = _load(args, args.size or meta.get("data_size"))
    except (OSError, ValueError, RuntimeError) as exc:
        return _fail(str(exc))
    names = tuple(meta.get("class_names", ()))
    if names != tuple(data.class_names):
        return _fail(f"the model's classes {list(names)} differ from the data's {list(data.class_names)}")
    pred, _ = predict(model, data.flow)
    result = summarize(data.label, pred, len(names))
    result.update(
        class_names=list(names),
        n_samples=len(data),
        model_dir=str(args.model_dir),
        data=str(args.data),
        format=args.format,
        predictions=[
            {"sample_id": str(s), "true": int(t), "pred": int(p)} for s, t, p in zip(data.sample_id, data.label, pred)
        ],
    )
    out = Path(args.out) if args.out else Path(args.model_dir) / "evaluation.json"
    out.write_text(json.dumps(result, indent=2))
    print(
        f"evaluated {len(data)} samples: UF1 {result['uf1']:.4f} UAR {result['uar']:.4f} "
        f"accuracy {result['accuracy']:.4f} -> {out}"
    )
    return ExitCode.OK
