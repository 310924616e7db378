"""``fedpsyau pretrain --out DIR``: public AU pre-training of DPK-GAT into a checkpoint folder.

Renders the public synthetic AU corpus (:func:`mer.data.corpus.render_corpus`: faces of the
pre-training pool only, every preset's geometry and normalisation, exact AU labels), pre-trains
DPK-GAT's AU module on it (:mod:`mer.train.pretrain`) and writes ``DIR/weights.npz`` +
``DIR/manifest.json`` (:mod:`mer.model.pretrained`). The checkpoint that ships in the package
(``mer/checkpoints/dpk-gat-au``) was made by this command with its defaults; running it again with
the same arguments on the same software makes the same corpus and the same recipe (the weights
can differ in the last bits across CPU kernels and thread counts).

Exit codes: 0 written; 2 bad arguments (every problem at once, before any work).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from fedcore.exitcodes import ExitCode
from mer.train.pretrain import PretrainConfig

_D = PretrainConfig()


def register(subparsers) -> None:
    p = subparsers.add_parser("pretrain", help="pre-train DPK-GAT's AU module on the public synthetic AU corpus")
    p.add_argument("--out", required=True, help="checkpoint folder to write (weights.npz + manifest.json)")
    p.add_argument("--clips", type=int, default=_D.clips, help=f"corpus size (default {_D.clips})")
    p.add_argument("--corpus-seed", type=int, default=_D.corpus_seed, help="corpus recipe seed")
    p.add_argument("--seed", type=int, default=_D.seed, help="model initialisation and batch order seed")
    p.add_argument("--epochs", type=int, default=_D.epochs, help=f"fixed schedule (default {_D.epochs})")
    p.add_argument("--lr", type=float, default=_D.lr, help=f"peak AdamW learning rate (default {_D.lr})")
    p.add_argument("--workers", type=int, default=2, help="corpus rendering processes (default 2)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from mer.data.corpus import render_corpus
    from mer.model import build_model
    from mer.model.pretrained import save_checkpoint
    from mer.train.pretrain import pretrain, print_progress, recipe

    cfg = PretrainConfig(
        clips=args.clips,
        corpus_seed=args.corpus_seed,
        seed=args.seed,
        epochs=args.epochs,
        lr=args.lr,
        device=args.device,
    )
    problems = cfg.problems() + ([f"--workers must be >= 1 (got {args.workers})"] if args.workers < 1 else [])
    if args.device == "cuda" and not torch.cuda.is_available():
        problems.append("--device cuda: torch.cuda.is_available() is False")
    if problems:
        print("fedpsyau pretrain: " + "; ".join(problems), file=sys.stderr)
        return int(ExitCode.CONFIG)
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    size = build_model("dpk-gat", 3, **cfg.model_options).input_size
    print(
        f"rendering the public AU corpus: {cfg.clips} clips (seed {cfg.corpus_seed}, pre-training faces only)",
        flush=True,
    )
    corpus = render_corpus(cfg.clips, cfg.corpus_seed, size=size, workers=args.workers)
    corpus_s = time.perf_counter() - t0
    print(
        f"corpus ready in {corpus_s:.0f} s: {len(corpus)} clips, {len(set(corpus.subject.tolist()))} subjects",
        flush=True,
    )
    model, figures = pretrain(corpus, cfg, print_progress(cfg.epochs))
    figures = {
        **figures,
        "corpus_clips": len(corpus),
        "corpus_s": round(corpus_s, 1),
        "total_s": round(time.perf_counter() - t0, 1),
        "torch_threads": torch.get_num_threads(),
    }
    out = save_checkpoint(model, args.out, recipe(cfg), figures)
    print(f"wrote {out}/weights.npz and manifest.json: {json.dumps(figures)}", flush=True)
    return int(ExitCode.OK)
