"""The membership-inference audit: loss threshold and LiRA against models trained with DP-SGD.

The pool is the whole data set. A seeded random half are the members: the target model trains on
them (centrally, :func:`.training.train_on`); the other half are non-members. The attacker knows
the pool and the training recipe, and trains ``shadows`` shadow models on random halves of the
pool chosen so that every example is IN exactly half of them (:func:`.membership.balanced_inclusion`).
Shadows train exactly as the target does, including DP-SGD at the same target epsilon.

For each epsilon (``inf`` = no DP) the report gives, per attack, the AUC and the TPR at 0.1 %,
1 % and 10 % FPR, the ROC curve, and the DP bound min(1, e^eps FPR + delta) at those FPRs, plus the
target model's accuracy on members and non-members (the utility that epsilon leaves).
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from mer.model import build_model
from mer.train.centralised import to_input

from . import membership as mi
from .training import TrainRecipe, train_on

FPRS = (0.001, 0.01, 0.1)


def _attack_metrics(scores: np.ndarray, is_member: np.ndarray, eps: float, delta: float) -> dict:
    fpr, tpr = mi.roc_curve(scores, is_member)
    a = mi.auc(scores, is_member)
    out = {"auc": a, "auc_se": mi.auc_standard_error(a, int(is_member.sum()), int((~is_member).sum()))}
    points = []
    for f in FPRS:
        p = mi.operating_point(scores, is_member, f, delta)
        p["dp_bound"] = float(mi.dp_tpr_bound(f, eps, delta))
        p["dp_bound_at_achieved_fpr"] = float(mi.dp_tpr_bound(p["fpr"], eps, delta))
        # a real violation needs the interval of TPR above the bound at the interval's worst FPR
        p["violates_bound"] = bool(p["tpr_ci95"][0] > mi.dp_tpr_bound(p["fpr_ci95"][1], eps, delta))
        out[f"tpr_at_{f:g}_fpr"] = p["tpr"]
        out[f"dp_bound_at_{f:g}_fpr"] = p["dp_bound"]
        points.append(p)
    out["operating_points"] = points
    out["epsilon_lower_bound"] = max(p["epsilon_lower_bound"] for p in points)
    out["roc"] = {"fpr": [round(float(v), 5) for v in fpr], "tpr": [round(float(v), 5) for v in tpr]}
    return out


def run_membership(
    flow: np.ndarray, label: np.ndarray, au: np.ndarray, au_known: np.ndarray, cfg: dict, log=print
) -> dict:
    """Train targets and shadows for every epsilon of ``cfg['epsilons']``; returns the report."""
    recipe = TrainRecipe(**cfg["recipe"])
    rng = np.random.default_rng(cfg["seed"])
    n = len(label)
    k = int(label.max()) + 1
    size = build_model(recipe.model, k, **dict(recipe.model_options)).input_size
    x = to_input(flow, size, torch.device("cpu"))  # (N, 3, S, S)
    is_member = np.zeros(n, bool)
    is_member[rng.permutation(n)[: n // 2]] = True
    inclusion = mi.balanced_inclusion(n, cfg["shadows"], rng)
    results = {}
    for eps_i, eps in enumerate(cfg["epsilons"]):
        target_eps = None if math.isinf(eps) else float(eps)
        t0 = time.perf_counter()
        target = train_on(
            x,
            label,
            au,
            au_known,
            is_member,
            recipe,
            num_classes=k,
            target_epsilon=target_eps,
            seed=cfg["seed"] * 1000 + eps_i * 100,
        )
        shadows = [
            train_on(
                x,
                label,
                au,
                au_known,
                inclusion[s],
                recipe,
                num_classes=k,
                target_epsilon=target_eps,
                seed=cfg["seed"] * 1000 + eps_i * 100 + 1 + s,
            )
            for s in range(cfg["shadows"])
        ]
        seconds = time.perf_counter() - t0
        delta = target.delta if target.delta is not None else 0.0
        phi_t = mi.logit_confidence(target.logits, label)
        phi_s = np.stack([mi.logit_confidence(s.logits, label) for s in shadows])
        attacks = {
            "loss": _attack_metrics(mi.loss_scores(target.logits, label), is_member, eps, delta),
            "lira": _attack_metrics(
                mi.lira_scores(phi_t, phi_s, inclusion, global_variance=True), is_member, eps, delta
            ),
        }
        correct = target.logits.argmax(axis=1) == label
        key = "inf" if math.isinf(eps) else f"{eps:g}"
        results[key] = {
            "target_epsilon": None if math.isinf(eps) else eps,
            "epsilon": target.epsilon,
            "delta": target.delta,
            "noise_multiplier": target.noise_multiplier,
            "steps": target.steps,
            "shadow_noise_multipliers": [s.noise_multiplier for s in shadows],
            "accuracy_members": float(correct[is_member].mean()),
            "accuracy_non_members": float(correct[~is_member].mean()),
            "attacks": attacks,
            "seconds": seconds,
        }
        log(
            f"  membership eps={key}: LiRA AUC {attacks['lira']['auc']:.3f}, TPR@1%FPR "
            f"{attacks['lira']['tpr_at_0.01_fpr']:.3f}; loss AUC {attacks['loss']['auc']:.3f}; "
            f"acc in/out {results[key]['accuracy_members']:.2f}/{results[key]['accuracy_non_members']:.2f} "
            f"({seconds:.0f} s)"
        )
    return {
        "recipe": {**recipe.__dict__, "model_options": dict(recipe.model_options)},
        "members": int(is_member.sum()),
        "non_members": int((~is_member).sum()),
        "shadows": cfg["shadows"],
        "lira_variant": "online, per-example means, global variances (Carlini et al. 2022, few shadows)",
        "resolution_note": (
            f"with {int((~is_member).sum())} non-members the smallest non-zero FPR is "
            f"{1 / int((~is_member).sum()):.4f}: TPR at 0.1 % FPR is the TPR with no false positive, "
            f"and TPR at 1 % FPR allows one; both rest on a handful of examples"
        ),
        "by_epsilon": results,
    }
