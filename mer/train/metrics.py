"""MER metrics over pooled predictions: UF1, UAR, accuracy, confusion matrix.

As in the MEGC2019 composite challenge (See et al., "MEGC 2019 - the second facial
micro-expressions grand challenge", FG 2019), LOSO results are computed over the predictions of
all folds pooled together, not averaged per fold:

- UF1 (unweighted F1) = mean over classes of F1_c = 2 TP_c / (2 TP_c + FP_c + FN_c);
- UAR (unweighted average recall) = mean over classes of TP_c / N_c.

Classes absent from a set of predictions (a single fold, a small test set) are handled as the MER
papers' evaluation scripts do: F1 is averaged over the classes present in the ground truth *or*
the predictions (a class never seen and never predicted has an undefined F1 and is left out; a
class predicted but absent from the truth counts with F1 = 0), and recall over the classes
present in the ground truth (recall is undefined otherwise). On pooled LOSO predictions every
class is present and these are the plain means.
"""

from __future__ import annotations

import numpy as np


def _check(y_true, y_pred, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    t, p = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    if t.shape != p.shape or t.ndim != 1:
        raise ValueError(f"y_true {t.shape} and y_pred {p.shape} must be 1-D of the same length")
    for name, v in (("y_true", t), ("y_pred", p)):
        if len(v) and (v.min() < 0 or v.max() >= num_classes):
            raise ValueError(f"{name} must lie in [0, {num_classes}) (got {v.min()}..{v.max()})")
    return t, p


def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
    """(K, K) int64 counts; rows are true classes, columns predicted classes."""
    t, p = _check(y_true, y_pred, num_classes)
    return np.bincount(t * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def per_class_f1(y_true, y_pred, num_classes: int) -> np.ndarray:
    """F1 per class; NaN for a class absent from both truth and predictions."""
    cm = confusion_matrix(y_true, y_pred, num_classes)
    tp = np.diag(cm).astype(np.float64)
    denom = cm.sum(0) + cm.sum(1)  # 2TP + FP + FN
    return np.where(denom > 0, 2 * tp / np.maximum(denom, 1), np.nan)


def per_class_recall(y_true, y_pred, num_classes: int) -> np.ndarray:
    """Recall per class; NaN for a class absent from the truth."""
    cm = confusion_matrix(y_true, y_pred, num_classes)
    support = cm.sum(1)
    return np.where(support > 0, np.diag(cm) / np.maximum(support, 1), np.nan)


def uf1(y_true, y_pred, num_classes: int) -> float:
    """Unweighted F1: mean F1 over classes present in the truth or the predictions."""
    f1 = per_class_f1(y_true, y_pred, num_classes)
    return float(np.nanmean(f1)) if np.isfinite(f1).any() else float("nan")


def uar(y_true, y_pred, num_classes: int) -> float:
    """Unweighted average recall: mean recall over classes present in the truth."""
    rec = per_class_recall(y_true, y_pred, num_classes)
    return float(np.nanmean(rec)) if np.isfinite(rec).any() else float("nan")


def accuracy(y_true, y_pred, num_classes: int | None = None) -> float:
    t, p = np.asarray(y_true), np.asarray(y_pred)
    return float((t == p).mean()) if len(t) else float("nan")


def summarize(y_true, y_pred, num_classes: int) -> dict:
    """uf1, uar, accuracy, the confusion matrix (as lists) and per-class F1/recall (None where undefined)."""

    def clean(v):
        return [None if np.isnan(x) else float(x) for x in v]

    return {
        "uf1": uf1(y_true, y_pred, num_classes),
        "uar": uar(y_true, y_pred, num_classes),
        "accuracy": accuracy(y_true, y_pred),
        "confusion": confusion_matrix(y_true, y_pred, num_classes).tolist(),
        "f1_per_class": clean(per_class_f1(y_true, y_pred, num_classes)),
        "recall_per_class": clean(per_class_recall(y_true, y_pred, num_classes)),
    }
