"""Public AU pre-training of DPK-GAT (``fedpsyau pretrain``), as the paper pre-trains its AU module.

FED-PsyAU pre-trains the AU part of its network on public AU data sets (DISFA, CK+) before the
private micro-expression task. Those data sets cannot ship here, so the public corpus is synthetic:
clips rendered by :func:`mer.data.corpus.render_corpus` from the *pre-training* face pool only
(:func:`mer.data.synth_faces.face_pool`; a test asserts that no face of an evaluation data set is
in it), across the geometry and normalisation of every preset, with exact AU labels.

What trains: every parameter of DPK-GAT except its emotion classifier, on AU labels only (no
emotion label of the corpus is used): the main AU head after the graphs, the auxiliary AU head
before them, and -- pre-training only -- a third AU head on the classifier's input (the
concatenated AU-relation and flow-stream features), so that the features the emotion classifier
will see carry AU information too. That third head is discarded; the checkpoint holds the model's
own parameters (see :mod:`mer.model.pretrained`). The schedule is fixed (AdamW, warm-up + cosine,
``epochs``), the dynamic prior factor r decays 1 -> 0 as in centralised training, and the figure
reported is the macro AU F1 on subjects of the corpus held out from pre-training.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mer.data.arrays import MEArrays
from mer.model import build_model
from mer.priors import cooccurrence_counts
from mer.train.centralised import resolve_device, to_input

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PretrainConfig:
    clips: int = 6000  # corpus size (>= 5,000: the floor)
    corpus_seed: int = 0  # corpus recipe seed
    seed: int = 0  # model initialisation and batch order
    epochs: int = 16  # fixed schedule; the last model is the checkpoint
    batch_size: int = 64
    lr: float = 3e-3  # peak AdamW rate
    weight_decay: float = 1e-2
    warmup: float = 0.05
    val_fraction: float = 0.1  # share of corpus subjects held out for the AU F1 figure
    model_options: dict = field(default_factory=dict)
    device: str = "auto"

    def problems(self) -> list[str]:
        p = []
        if self.clips < 100:
            p.append(f"clips must be >= 100 (got {self.clips})")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                p.append(f"{name} must be >= 1 (got {getattr(self, name)})")
        if self.lr <= 0:
            p.append(f"lr must be > 0 (got {self.lr})")
        if not 0.0 <= self.val_fraction < 0.5:
            p.append(f"val_fraction must lie in [0, 0.5) (got {self.val_fraction})")
        return p


def au_f1(logits: np.ndarray, truth: np.ndarray) -> float:
    """Macro F1 over the AUs that occur in ``truth`` (threshold 0 on the logits)."""
    pred = logits > 0
    t = truth > 0.5
    scores = []
    for j in range(t.shape[1]):
        if not t[:, j].any():
            continue
        tp = float(np.sum(pred[:, j] & t[:, j]))
        fp = float(np.sum(pred[:, j] & ~t[:, j]))
        fn = float(np.sum(~pred[:, j] & t[:, j]))
        scores.append(2 * tp / max(1.0, 2 * tp + fp + fn))
    return float(np.mean(scores)) if scores else float("nan")


def warmup_cosine(step: int, total: int, warmup: float) -> float:
    """Learning-rate factor: linear warm-up over ``warmup * total`` steps, then cosine decay to 0."""
    warm = max(1, int(warmup * total))
    if step < warm:
        return (step + 1) / warm
    return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))


def split_subjects(subject: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train index, validation index) with whole subjects held out."""
    subs = np.unique(subject)
    rng = np.random.default_rng(seed)
    k = int(round(fraction * len(subs)))
    held = set(rng.choice(subs, size=k, replace=False).tolist()) if k else set()
    val = np.array([s in held for s in subject])
    return np.flatnonzero(~val), np.flatnonzero(val)


class _FeatureTap:
    """Captures the emotion classifier's input (B, F) on every forward."""

    def __init__(self, classifier: nn.Module):
        self.value: torch.Tensor | None = None
        self.handle = classifier.register_forward_pre_hook(self._hook)

    def _hook(self, _module, args):
        self.value = args[0]


def pretrain(corpus: MEArrays, cfg: PretrainConfig, progress=None) -> tuple[nn.Module, dict]:
    """Pre-train DPK-GAT on ``corpus``'s AU labels; returns (model in eval mode, figures)."""
    if cfg.problems():
        raise ValueError("invalid PretrainConfig: " + "; ".join(cfg.problems()))
    if not corpus.au_known.all():
        raise ValueError("the pre-training corpus must carry AU labels for every clip")
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    model = build_model("dpk-gat", max(2, len(corpus.class_names)), **cfg.model_options)
    train_idx, val_idx = split_subjects(corpus.subject, cfg.val_fraction, cfg.seed)
    model.set_statistical_prior(cooccurrence_counts(corpus.au[train_idx]))
    model.to(device).train()
    tap = _FeatureTap(model.classifier)
    feature_au = nn.Linear(model.classifier[-1].in_features, corpus.au.shape[1]).to(device)

    x = to_input(corpus.flow, model.input_size, device)
    au = torch.as_tensor(corpus.au, dtype=torch.float32, device=device)
    params = [p for n, p in model.named_parameters() if not n.startswith("classifier.")] + list(feature_au.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    per_epoch = math.ceil(len(train_idx) / cfg.batch_size)
    total, step = cfg.epochs * per_epoch, 0
    gen = torch.Generator().manual_seed(cfg.seed)
    t0 = time.perf_counter()
    for epoch in range(cfg.epochs):
        order = torch.as_tensor(train_idx)[torch.randperm(len(train_idx), generator=gen)].to(device)
        losses = []
        for i in range(per_epoch):
            idx = order[i * cfg.batch_size : (i + 1) * cfg.batch_size]
            model.set_r(max(0.0, 1.0 - step / max(1, total - 1)))
            for g in opt.param_groups:
                g["lr"] = cfg.lr * warmup_cosine(step, total, cfg.warmup)
            _, au_logits, aux_logits = model(x[idx])
            target = au[idx]
            loss = (
                F.binary_cross_entropy_with_logits(au_logits, target)
                + F.binary_cross_entropy_with_logits(aux_logits, target)
                + F.binary_cross_entropy_with_logits(feature_au(tap.value), target)
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            step += 1
        if progress is not None:
            progress(epoch, float(np.mean(losses)), time.perf_counter() - t0)
    tap.handle.remove()
    model.eval()
    figures: dict = {
        "train_clips": int(len(train_idx)),
        "val_clips": int(len(val_idx)),
        "train_s": round(time.perf_counter() - t0, 1),
    }
    if len(val_idx):
        with torch.no_grad():
            outs = [model(x[val_idx[i : i + 256]]) for i in range(0, len(val_idx), 256)]
        logits = torch.cat([o[1] for o in outs]).cpu().numpy()
        figures["val_au_f1"] = round(au_f1(logits, corpus.au[val_idx]), 4)
    return model, figures


def recipe(cfg: PretrainConfig) -> dict:
    """The manifest's description of how a checkpoint was made (enough to make it again)."""
    return {
        "command": f"fedpsyau pretrain --clips {cfg.clips} --corpus-seed {cfg.corpus_seed} --seed {cfg.seed} "
        f"--epochs {cfg.epochs}",
        "corpus": {
            "generator": "mer.data.corpus.render_corpus",
            "clips": cfg.clips,
            "seed": cfg.corpus_seed,
            "faces": "pretrain pool (mer.data.synth_faces.PRETRAIN_FACES)",
        },
        "config": asdict(cfg),
    }


def print_progress(total_epochs: int):
    """A one-line-per-epoch reporter (with an ETA), for terminals and logs alike."""

    def report(epoch: int, loss: float, elapsed: float) -> None:
        eta = elapsed / (epoch + 1) * (total_epochs - epoch - 1)
        print(
            f"pretrain epoch {epoch + 1}/{total_epochs}: AU loss {loss:.4f}, {elapsed:.0f} s, ETA {eta:.0f} s",
            file=sys.stdout,
            flush=True,
        )

    return report
