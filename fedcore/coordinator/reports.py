"""Checks of the engine's own report bodies, and pooled evaluation metrics.

Pooled metrics come from the sum of the clients' confusion matrices (rows = truth), the way
micro-expression work reports them over all folds: accuracy, UF1 (unweighted mean of per-class
F1) and UAR (unweighted mean of per-class recall). A class that never occurs in the truth is left
out of UAR; a class with neither true nor predicted samples is left out of UF1.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from fedcore.common.errors import InvalidPayload
from fedcore.proto.fedpsyau.v1 import federation_pb2 as pb

MAX_CLASSES = 4096
#: bound on one client's evaluation examples: pooled int64 confusion counts of up to 2^20 clients
#: cannot overflow (a larger claim would wrap and poison the pooled metrics)
MAX_EXAMPLES = 1 << 40


def check_metrics(metrics, what: str) -> dict[str, float]:
    out = {}
    for key, value in metrics.items():
        if not math.isfinite(value):
            raise InvalidPayload(f"{what}: metric {key!r} is not finite ({value})")
        out[key] = float(value)
    return out


def privacy_dict(p: pb.PrivacyReport) -> dict[str, Any]:
    return {
        "enabled": p.enabled,
        "epsilon": p.epsilon,
        "delta": p.delta,
        "accountant": p.accountant,
        "steps": int(p.steps),
        "noise_multiplier": p.noise_multiplier,
        "target_epsilon": p.target_epsilon,
        "exhausted": p.exhausted,
    }


def check_train_report(report: pb.TrainReport, client: str) -> None:
    what = f"TrainReport from {client}"
    check_metrics(report.metrics, what)
    p = report.privacy
    for name in ("epsilon", "delta", "noise_multiplier", "target_epsilon"):
        value = getattr(p, name)
        if not math.isfinite(value) or value < 0:
            raise InvalidPayload(f"{what}: privacy.{name} must be finite and >= 0 (got {value})")
    if p.delta > 1:
        raise InvalidPayload(f"{what}: privacy.delta must be <= 1 (got {p.delta})")


def check_eval_report(report: pb.EvaluateReport, client: str, num_classes: int | None) -> None:
    what = f"EvaluateReport from {client}"
    check_metrics(report.metrics, what)
    c = int(report.num_classes)
    if report.num_examples > MAX_EXAMPLES:
        raise InvalidPayload(f"{what}: num_examples must be <= {MAX_EXAMPLES} (got {report.num_examples})")
    if report.confusion or c:
        if not 1 <= c <= MAX_CLASSES:
            raise InvalidPayload(f"{what}: num_classes must be in [1, {MAX_CLASSES}] (got {c})")
        if num_classes is not None and c != num_classes:
            raise InvalidPayload(f"{what}: expected {num_classes} classes like the other clients (got {c})")
        if len(report.confusion) != c * c:
            raise InvalidPayload(f"{what}: confusion must hold {c}x{c}={c * c} counts (got {len(report.confusion)})")
        if sum(report.confusion) != report.num_examples:
            raise InvalidPayload(
                f"{what}: confusion counts sum to {sum(report.confusion)}, num_examples says {report.num_examples}"
            )


def pooled_metrics(reports: dict[str, pb.EvaluateReport]) -> dict[str, Any]:
    """Accuracy/UF1/UAR from the summed confusion matrices, plus the example-weighted mean of
    every metric the clients reported (e.g. ``loss``), ``num_examples`` and the pooled
    ``confusion`` matrix (a list of rows)."""
    out: dict[str, Any] = {}
    total = sum(int(r.num_examples) for r in reports.values())
    if not reports or total == 0:
        return out
    out["num_examples"] = total
    keys = set().union(*(r.metrics.keys() for r in reports.values()))
    for key in sorted(keys):
        have = [r for r in reports.values() if key in r.metrics]
        n = sum(int(r.num_examples) for r in have)
        if n:
            out[key] = sum(r.metrics[key] * int(r.num_examples) for r in have) / n
    sized = [r for r in reports.values() if r.num_classes]
    if sized:
        c = int(sized[0].num_classes)
        cm = np.zeros((c, c), np.int64)
        for r in sized:
            cm += np.asarray(r.confusion, np.int64).reshape(c, c)
        out.update(confusion_metrics(cm))
        out["confusion"] = cm.tolist()  # pooled, rows = truth: for the run's confusion-matrix plot
    return out


def confusion_metrics(cm: np.ndarray) -> dict[str, float]:
    """accuracy, uf1, uar of a confusion matrix (rows = truth, columns = prediction)."""
    cm = np.asarray(cm, np.float64)
    tp = np.diag(cm)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    total = cm.sum()
    present = support > 0
    active = present | (predicted > 0)
    f1 = np.divide(2 * tp, support + predicted, out=np.zeros_like(tp), where=(support + predicted) > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=present)
    return {
        "accuracy": float(tp.sum() / total) if total else 0.0,
        "uf1": float(f1[active].mean()) if active.any() else 0.0,
        "uar": float(recall[present].mean()) if present.any() else 0.0,
    }
