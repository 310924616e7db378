"""Subject-independent evaluation: LOSO over all subjects (or a hold-out split), pooled metrics.

Each fold trains a fresh model on the other subjects with the same fixed schedule
(:func:`mer.train.centralised.train_model`) and predicts the held-out subject; metrics are
computed once over the pooled predictions of all folds (MEGC protocol), and per fold for
inspection.

The protocol is honest by construction and says so (:func:`protocol_line`): the number of
epochs and every hyper-parameter are fixed before any fold runs, the model of the last epoch is
the one tested, and the held-out subject is predicted exactly once, after training; nothing here
ever evaluates a test fold during training, so no epoch, threshold or model can be chosen by it.

Progress: a tqdm bar when stderr is a terminal; otherwise one line per fold on stdout with the
pooled UF1 so far and an ETA (logs and CI get a readable record).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from mer.data.arrays import MEArrays
from mer.train.centralised import TrainConfig, predict, train_model
from mer.train.metrics import accuracy, summarize, uar, uf1
from mer.train.splits import Fold, holdout_split, loso_folds


@dataclass
class EvalResult:
    protocol: str
    class_names: tuple[str, ...]
    y_true: np.ndarray
    y_pred: np.ndarray
    sample_id: np.ndarray
    per_fold: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def metrics(self) -> dict:
        return summarize(self.y_true, self.y_pred, len(self.class_names))

    def to_dict(self, config: TrainConfig | None = None) -> dict:
        """The summary.json body: uf1, uar, accuracy, confusion, per_fold, config, seconds, ..."""
        folds = [f["seconds"] for f in self.per_fold]
        return {
            "protocol": self.protocol,
            "protocol_line": protocol_line(self.protocol, config) if config is not None else None,
            **self.metrics,
            "class_names": list(self.class_names),
            "n_samples": len(self.y_true),
            "n_folds": len(self.per_fold),
            "seconds": round(self.seconds, 3),
            "seconds_per_fold": round(float(np.mean(folds)), 3) if folds else None,
            "per_fold": self.per_fold,
            "config": config.to_dict() if config is not None else None,
        }


PROGRESS = ("bar", "lines", "off")


def protocol_line(protocol: str, cfg: TrainConfig) -> str:
    """E.g. ``LOSO, fixed 500 epochs, last epoch, no test-epoch selection``."""
    return f"{protocol.upper()}, fixed {cfg.epochs} epochs, last epoch, no test-epoch selection"


def _progress_mode(progress: bool | str | None) -> str:
    if progress is None:
        return "bar" if sys.stderr.isatty() else "lines"
    if progress is True:
        return "bar"
    if progress is False:
        return "off"
    if progress not in PROGRESS:
        raise ValueError(f"progress must be one of {', '.join(PROGRESS)}, True, False or None (got {progress!r})")
    return progress


def _duration(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    return f"{m // 60}h{m % 60:02d}m" if m >= 60 else f"{m}m{s:02d}s"


def run_folds(
    data: MEArrays, folds: list[Fold], cfg: TrainConfig, protocol: str, progress: bool | str | None = None
) -> EvalResult:
    """Train and test one model per fold; pooled predictions in fold order.

    ``progress``: None = a bar on a terminal, else one line per fold on stdout; True/"bar";
    "lines"; False/"off".
    """
    k = len(data.class_names)
    mode = _progress_mode(progress)
    t0 = time.perf_counter()
    ys, ps, ids, per_fold = [], [], [], []
    bar = tqdm(folds, desc=f"{protocol} {cfg.model}", unit="fold", disable=mode != "bar")
    for i, fold in enumerate(bar):
        t = time.perf_counter()
        model = train_model(data.subset(fold.train), cfg)
        pred, _ = predict(model, data.flow[fold.test])
        true = data.label[fold.test]
        seconds = time.perf_counter() - t
        per_fold.append(
            {
                "test": fold.name,
                "n_train": len(fold.train),
                "n_test": len(fold.test),
                "accuracy": accuracy(true, pred),
                "uf1": uf1(true, pred, k),
                "uar": uar(true, pred, k),
                "seconds": round(seconds, 3),
            }
        )
        ys.append(true), ps.append(pred), ids.append(data.sample_id[fold.test])
        pooled_t, pooled_p = np.concatenate(ys), np.concatenate(ps)
        bar.set_postfix(uf1=f"{uf1(pooled_t, pooled_p, k):.3f}", s_per_fold=f"{seconds:.1f}")
        if mode == "lines":
            elapsed = time.perf_counter() - t0
            eta = elapsed / (i + 1) * (len(folds) - i - 1)
            print(
                f"{protocol} {cfg.model} fold {i + 1}/{len(folds)} {fold.name}: {len(fold.test)} test, "
                f"fold UF1 {per_fold[-1]['uf1']:.3f}, pooled UF1 {uf1(pooled_t, pooled_p, k):.3f}, "
                f"{seconds:.1f} s, ETA {_duration(eta)}",
                flush=True,
            )
    return EvalResult(
        protocol,
        tuple(data.class_names),
        np.concatenate(ys),
        np.concatenate(ps),
        np.concatenate(ids),
        per_fold,
        time.perf_counter() - t0,
    )


def run_loso(
    data: MEArrays, cfg: TrainConfig, max_folds: int | None = None, progress: bool | str | None = None
) -> EvalResult:
    """Leave-one-subject-out over every subject (the first ``max_folds`` subjects, if given)."""
    folds = loso_folds(data.subject)
    if max_folds is not None:
        if max_folds < 1:
            raise ValueError(f"max_folds must be >= 1 (got {max_folds})")
        folds = folds[:max_folds]
    return run_folds(data, folds, cfg, "loso", progress)


def run_holdout(
    data: MEArrays, cfg: TrainConfig, test_fraction: float = 0.2, progress: bool | str | None = None
) -> EvalResult:
    """One subject-disjoint train/test split (``test_fraction`` of the subjects in test)."""
    return run_folds(data, [holdout_split(data.subject, test_fraction, cfg.seed)], cfg, "holdout", progress)
