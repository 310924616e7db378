"""Membership inference: scores, ROC metrics and the DP hypothesis-testing bound (pure functions).

Attacks (a higher score means "member"):

- **Loss threshold** (Yeom et al. 2018, https://arxiv.org/abs/1709.01604): score = -loss(x, y)
  on the target model; members tend to have lower loss.
- **LiRA** (Carlini et al. 2022, https://arxiv.org/abs/2112.03570): train shadow models on random
  halves of the data pool, so each example x is IN some shadows and OUT of others. Its
  logit-scaled confidence

      phi(x) = log p_y(x) - log(1 - p_y(x)) = z_y - logsumexp_{k != y} z_k

  is close to Gaussian over the randomness of training. Fit N(mu_in(x), s_in^2) and
  N(mu_out(x), s_out^2) to the shadows' phi(x) and score the target model's phi(x) by the
  likelihood ratio log N(phi; mu_in, s_in^2) - log N(phi; mu_out, s_out^2). With few shadows
  the per-example variances are unreliable; the *global-variance* variant (the paper's choice
  below 64 shadows) pools s_in and s_out over all examples and keeps per-example means.

Metrics: ROC over all thresholds, AUC (the Mann-Whitney statistic, ties counted 1/2) and the TPR
at a fixed FPR (the largest TPR whose FPR does not exceed it). With m non-members an FPR below
1/m can only be met at FPR = 0, so "TPR at 0.1 % FPR" on ~110 non-members is the TPR with no
false positive at all: coarse, and reported as such.

DP bound (Kairouz, Oh, Viswanath 2015, https://arxiv.org/abs/1311.0776): any test of "x was in
the training set" against an (eps, delta)-DP mechanism satisfies

    TPR <= e^eps * FPR + delta     and     TPR <= 1 - e^-eps * (1 - delta - FPR).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import beta, rankdata


def logit_confidence(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """phi = z_y - logsumexp_{k != y} z_k for logits (N, K) and labels (N,), computed stably."""
    z = np.asarray(logits, np.float64)
    y = np.asarray(labels, np.int64)
    if z.ndim != 2 or y.shape != (z.shape[0],):
        raise ValueError(f"expected logits (N, K) and labels (N,) (got {z.shape} and {y.shape})")
    zy = z[np.arange(len(y)), y]
    rest = z.copy()
    rest[np.arange(len(y)), y] = -np.inf
    m = rest.max(axis=1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(rest - m).sum(axis=1))
    return zy - lse


def loss_scores(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """-cross-entropy of each example (higher = more likely a member)."""
    z = np.asarray(logits, np.float64)
    y = np.asarray(labels, np.int64)
    m = z.max(axis=1, keepdims=True)
    log_p = z - (m + np.log(np.exp(z - m).sum(axis=1, keepdims=True)))
    return log_p[np.arange(len(y)), y]


def balanced_inclusion(num_examples: int, num_shadows: int, rng: np.random.Generator) -> np.ndarray:
    """(S, N) bool: shadow s trains on example i; every example is IN exactly S/2 shadows (S even)."""
    if num_shadows < 2 or num_shadows % 2:
        raise ValueError(f"num_shadows must be an even number >= 2 (got {num_shadows})")
    keep = np.zeros((num_shadows, num_examples), bool)
    for i in range(num_examples):
        keep[rng.permutation(num_shadows)[: num_shadows // 2], i] = True
    return keep


def _log_normal(x: np.ndarray, mu: np.ndarray, sd: float) -> np.ndarray:
    return -0.5 * ((x - mu) / sd) ** 2 - math.log(sd) - 0.5 * math.log(2 * math.pi)


def lira_scores(
    target_phi: np.ndarray, shadow_phi: np.ndarray, inclusion: np.ndarray, global_variance: bool = True
) -> np.ndarray:
    """LiRA log-likelihood ratios of the target model's phi (N,) given shadow phi (S, N).

    ``inclusion`` (S, N) says which shadows trained on which example; every example needs at
    least one IN and one OUT shadow (and two of each without ``global_variance``).
    """
    t, s, inc = np.asarray(target_phi, np.float64), np.asarray(shadow_phi, np.float64), np.asarray(inclusion, bool)
    if s.ndim != 2 or s.shape != inc.shape or t.shape != (s.shape[1],):
        raise ValueError(
            f"expected target (N,), shadows (S, N), inclusion (S, N) (got {t.shape}, {s.shape}, {inc.shape})"
        )
    n_in, n_out = inc.sum(axis=0), (~inc).sum(axis=0)
    need = 1 if global_variance else 2
    if n_in.min() < need or n_out.min() < need:
        raise ValueError(
            f"every example needs >= {need} IN and OUT shadows (got min {n_in.min()} IN, {n_out.min()} OUT)"
        )
    mu_in = np.where(inc, s, 0).sum(axis=0) / n_in
    mu_out = np.where(~inc, s, 0).sum(axis=0) / n_out
    if global_variance:
        sd_in = float(np.sqrt(np.where(inc, (s - mu_in) ** 2, 0).sum() / max(1, n_in.sum() - len(t))))
        sd_out = float(np.sqrt(np.where(~inc, (s - mu_out) ** 2, 0).sum() / max(1, n_out.sum() - len(t))))
        sd_in, sd_out = max(sd_in, 1e-6), max(sd_out, 1e-6)
        return _log_normal(t, mu_in, sd_in) - _log_normal(t, mu_out, sd_out)
    var_in = np.where(inc, (s - mu_in) ** 2, 0).sum(axis=0) / (n_in - 1)
    var_out = np.where(~inc, (s - mu_out) ** 2, 0).sum(axis=0) / (n_out - 1)
    sd_in, sd_out = np.sqrt(np.maximum(var_in, 1e-12)), np.sqrt(np.maximum(var_out, 1e-12))
    return (-0.5 * ((t - mu_in) / sd_in) ** 2 - np.log(sd_in)) - (-0.5 * ((t - mu_out) / sd_out) ** 2 - np.log(sd_out))


def roc_curve(scores: np.ndarray, is_member: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(fpr, tpr) at every distinct threshold, from (0, 0) to (1, 1); ``score >= t`` says member."""
    s, m = np.asarray(scores, np.float64), np.asarray(is_member, bool)
    if s.shape != m.shape or s.ndim != 1:
        raise ValueError(f"scores and is_member must be equal-length vectors (got {s.shape} and {m.shape})")
    pos, neg = int(m.sum()), int((~m).sum())
    if pos == 0 or neg == 0:
        raise ValueError(f"need both members and non-members (got {pos} and {neg})")
    order = np.argsort(-s, kind="mergesort")
    s, m = s[order], m[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # the last index of each run of equal scores
    tp, fp = np.cumsum(m)[last], np.cumsum(~m)[last]
    return np.r_[0.0, fp / neg], np.r_[0.0, tp / pos]


def auc(scores: np.ndarray, is_member: np.ndarray) -> float:
    """P(score of a random member > score of a random non-member) + 1/2 P(tie)."""
    s, m = np.asarray(scores, np.float64), np.asarray(is_member, bool)
    pos, neg = s[m], s[~m]
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError(f"need both members and non-members (got {len(pos)} and {len(neg)})")
    ranks = rankdata(np.r_[pos, neg], method="average")  # ties share the mean rank
    u = ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2
    return float(u / (len(pos) * len(neg)))


def tpr_at_fpr(fpr: np.ndarray, tpr: np.ndarray, target: float) -> float:
    """The largest TPR on the ROC whose FPR is <= ``target``."""
    ok = np.asarray(fpr) <= target + 1e-12
    return float(np.max(np.asarray(tpr)[ok])) if ok.any() else 0.0


def auc_standard_error(auc_value: float, num_pos: int, num_neg: int) -> float:
    """Hanley & McNeil (1982) standard error of an AUC from ``num_pos`` and ``num_neg`` examples."""
    a = auc_value
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    var = (a * (1 - a) + (num_pos - 1) * (q1 - a * a) + (num_neg - 1) * (q2 - a * a)) / (num_pos * num_neg)
    return float(math.sqrt(max(var, 0.0)))


def clopper_pearson(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Exact two-sided (1 - alpha) confidence interval of a binomial proportion k / n."""
    if not 0 <= k <= n or n < 1:
        raise ValueError(f"need 0 <= k <= n and n >= 1 (got k={k}, n={n})")
    lo = 0.0 if k == 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    return lo, hi


def operating_point(
    scores: np.ndarray, is_member: np.ndarray, max_fpr: float, delta: float, alpha: float = 0.05
) -> dict:
    """The ROC point with the largest TPR at FPR <= ``max_fpr``, with counts and exact intervals.

    ``epsilon_lower_bound`` is the audit of Jagielski et al. 2020 (https://arxiv.org/abs/2006.07709):
    with confidence about 1 - alpha, any (eps, delta) the training satisfies has
    eps >= log((TPR_low - delta) / FPR_high) (0 when the intervals allow no conclusion).
    """
    m = np.asarray(is_member, bool)
    pos, neg = int(m.sum()), int((~m).sum())
    fpr, tpr = roc_curve(scores, m)
    ok = np.flatnonzero(fpr <= max_fpr + 1e-12)
    j = ok[np.argmax(tpr[ok])]
    tp, fp = int(np.rint(tpr[j] * pos)), int(np.rint(fpr[j] * neg))
    tpr_ci, fpr_ci = clopper_pearson(tp, pos, alpha), clopper_pearson(fp, neg, alpha)
    ratio = (tpr_ci[0] - delta) / fpr_ci[1]
    return {
        "max_fpr": max_fpr,
        "tpr": tp / pos,
        "fpr": fp / neg,
        "tp": tp,
        "fp": fp,
        "tpr_ci95": list(tpr_ci),
        "fpr_ci95": list(fpr_ci),
        "epsilon_lower_bound": float(math.log(ratio)) if ratio > 1 else 0.0,
    }


def dp_tpr_bound(fpr: np.ndarray | float, epsilon: float, delta: float, tight: bool = False) -> np.ndarray:
    """Largest TPR any membership test can reach at ``fpr`` against an (epsilon, delta)-DP release.

    ``tight=False``: min(1, e^eps FPR + delta). ``tight=True`` also applies the symmetric
    constraint 1 - e^-eps (1 - delta - FPR). epsilon = inf gives 1 everywhere.
    """
    f = np.asarray(fpr, np.float64)
    if epsilon < 0 or not 0 <= delta <= 1:
        raise ValueError(f"need epsilon >= 0 and delta in [0, 1] (got {epsilon}, {delta})")
    if math.isinf(epsilon):
        return np.ones_like(f)
    bound = np.minimum(1.0, math.exp(epsilon) * f + delta)
    if tight:
        bound = np.minimum(bound, 1.0 - math.exp(-epsilon) * (1.0 - delta - f))
    return np.clip(bound, 0.0, 1.0)
