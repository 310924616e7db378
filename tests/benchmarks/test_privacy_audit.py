"""Core properties of the privacy-audit attacks (benchmarks/audit), each fast and exact enough to fail."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

# Opacus ships a top-level "benchmarks" package; the audit helpers are imported as "audit".
_BENCH = str(Path(__file__).resolve().parents[2] / "benchmarks")
if _BENCH not in sys.path:
    sys.path.insert(0, _BENCH)

from audit import inversion as inv
from audit import membership as mi
from audit import views


def _ce(outputs, y):
    return F.cross_entropy(outputs[0] if isinstance(outputs, tuple) else outputs, y)


class _Linear(nn.Module):
    def __init__(self, d: int, k: int):
        super().__init__()
        self.fc = nn.Linear(d, k)

    def forward(self, x):
        return (self.fc(x.flatten(1)), None, None)


def test_gradient_matching_recovers_single_sample_input_of_linear_model():
    torch.manual_seed(0)
    model = _Linear(12, 3)
    x = torch.rand(1, 3, 2, 2) * 2 - 1
    y = torch.tensor([1])
    target = inv.parameter_gradient(model, _ce, x, y)
    label = inv.infer_label(target[0], target[1])
    cfg = inv.InversionConfig(iterations=300, lr=0.05, tv_weight=0.0, signed=False, restarts=1, seed=3)
    res = inv.invert_gradient(model, _ce, target, label, (1, 3, 2, 2), cfg)
    assert label == 1
    assert res.matching_loss < 1e-4
    assert inv.image_similarity(res.x, x)["cosine"] > 0.999
    assert torch.allclose(res.x, x, atol=0.02)


def test_idlg_label_inference_reads_true_label_without_bias():
    torch.manual_seed(1)
    fc = nn.Linear(8, 5, bias=False)
    h = torch.rand(1, 8)  # non-negative features, as after a ReLU
    for y in range(5):
        (gw,) = torch.autograd.grad(F.cross_entropy(fc(h), torch.tensor([y])), [fc.weight])
        assert inv.infer_label(gw) == y


def test_flatten_unflatten_round_trip_and_length_check():
    like = [torch.zeros(2, 3), torch.zeros(4)]
    v = torch.arange(10, dtype=torch.float32)
    parts = inv.unflatten(v, like)
    assert [p.shape for p in parts] == [(2, 3), (4,)]
    assert torch.equal(inv.flatten(parts), v)
    with pytest.raises(ValueError, match="expected a vector of 10 values"):
        inv.unflatten(torch.zeros(9), like)


def test_image_similarity_identity_and_opposite():
    a = np.random.default_rng(0).uniform(-1, 1, (3, 4, 4))
    same = inv.image_similarity(a, a)
    assert same["cosine"] == pytest.approx(1.0) and same["mse"] == 0.0 and math.isinf(same["psnr"])
    assert inv.image_similarity(-a, a)["cosine"] == pytest.approx(-1.0)


def test_client_update_is_minus_gradient_and_dp_update_is_clipped_plus_noise():
    torch.manual_seed(2)
    model = _Linear(12, 3)
    x, y = torch.rand(1, 3, 2, 2), torch.tensor([2])
    loss = lambda out, yy: _ce(out, yy)
    grad = inv.flatten(inv.parameter_gradient(model, _ce, x, y)).double().numpy()
    plain = views.client_update(model, loss, (x, y))
    np.testing.assert_allclose(plain, -grad, atol=1e-6)
    # a tiny noise multiplier leaves the clipped gradient: norm min(||g||, C) and the same direction
    dp = views.client_update(model, loss, (x, y), noise_multiplier=1e-6, max_grad_norm=0.1)
    assert np.linalg.norm(dp) == pytest.approx(min(np.linalg.norm(grad), 0.1), rel=1e-3)
    assert dp @ -grad / (np.linalg.norm(dp) * np.linalg.norm(grad)) > 0.999
    # the model itself is unchanged by either call
    np.testing.assert_allclose(views.client_update(model, loss, (x, y)), plain, atol=1e-7)


def test_secagg_view_sum_is_exact_and_masked_vector_uncorrelated():
    rng = np.random.default_rng(3)
    ups = [rng.normal(0, 0.1, 2000) for _ in range(3)]
    view = views.secagg_view(ups)
    np.testing.assert_allclose(view.total, np.sum(ups, axis=0), atol=1e-6)
    for cid, up in zip(view.clients, ups, strict=True):
        m = view.masked[cid]
        assert abs(m @ up / (np.linalg.norm(m) * np.linalg.norm(up))) < 0.1
        # read as fixed point, a masked vector is uniform over the whole ring [-R, R): mean |m| = R / 2
        ring = 2.0 ** (view.notes["bits"] - 1 - view.notes["frac_bits"])
        assert np.mean(np.abs(m)) == pytest.approx(ring / 2, rel=0.06)


def test_secagg_refuses_two_clients():
    assert "fewer than the threshold" in views.secagg_refusal(2)
    assert views.secagg_refusal(3) is None


def test_dp_noise_mapping_meets_each_target_epsilon():
    m = views.dp_noise_for_epsilons([1.0, 8.0], n=60, batch_size=16, rounds=50)
    assert m["sample_rate"] == 0.25 and m["steps"] == 200
    sigmas = [r["noise_multiplier"] for r in m["rows"]]
    assert sigmas[0] > sigmas[1]
    for r in m["rows"]:
        assert r["target_epsilon"] - 0.02 <= r["epsilon"] <= r["target_epsilon"]


def test_random_scorer_auc_is_half_and_perfect_scorer_is_one():
    rng = np.random.default_rng(4)
    member = np.r_[np.ones(3000, bool), np.zeros(3000, bool)]
    assert mi.auc(rng.normal(size=6000), member) == pytest.approx(0.5, abs=0.03)
    perfect = member.astype(float)
    assert mi.auc(perfect, member) == 1.0
    fpr, tpr = mi.roc_curve(perfect, member)
    assert mi.tpr_at_fpr(fpr, tpr, 0.0) == 1.0
    assert mi.auc(np.zeros(6000), member) == 0.5  # all tied


def test_roc_and_tpr_at_fpr_on_hand_example():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    member = np.array([True, False, True, True, False, False])
    fpr, tpr = mi.roc_curve(scores, member)
    np.testing.assert_allclose(fpr, [0, 0, 1 / 3, 1 / 3, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(tpr, [0, 1 / 3, 1 / 3, 2 / 3, 1, 1, 1])
    assert mi.tpr_at_fpr(fpr, tpr, 0.01) == pytest.approx(1 / 3)
    assert mi.tpr_at_fpr(fpr, tpr, 0.34) == 1.0
    assert mi.auc(scores, member) == pytest.approx(7 / 9)


def test_dp_bound_values():
    assert mi.dp_tpr_bound(0.1, math.log(2), 0.0) == pytest.approx(0.2)
    assert mi.dp_tpr_bound(0.3, 0.0, 0.0) == pytest.approx(0.3)
    assert mi.dp_tpr_bound(0.0, 1.0, 1e-5) == pytest.approx(1e-5)
    assert mi.dp_tpr_bound(0.5, 5.0, 0.0) == 1.0
    assert mi.dp_tpr_bound(0.001, math.inf, 0.0) == 1.0
    f = np.linspace(0, 1, 101)
    tight = mi.dp_tpr_bound(f, 1.0, 1e-5, tight=True)
    assert np.all(tight <= mi.dp_tpr_bound(f, 1.0, 1e-5) + 1e-12)
    assert tight[50] == pytest.approx(1 - math.exp(-1) * (1 - 1e-5 - 0.5))


def test_logit_confidence_matches_log_odds():
    logits = np.array([[2.0, 0.5, -1.0], [0.0, 0.0, 0.0]])
    labels = np.array([0, 2])
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    py = p[np.arange(2), labels]
    np.testing.assert_allclose(mi.logit_confidence(logits, labels), np.log(py / (1 - py)))
    np.testing.assert_allclose(mi.loss_scores(logits, labels), np.log(py))


def test_lira_separates_members_when_in_and_out_shadows_differ():
    rng = np.random.default_rng(5)
    n, s = 400, 8
    inc = mi.balanced_inclusion(n, s, rng)
    assert (inc.sum(axis=0) == s // 2).all()
    base = rng.normal(0, 1, n)
    shadow = base + np.where(inc, 2.0, 0.0) + rng.normal(0, 0.3, (s, n))
    member = rng.random(n) < 0.5
    target = base + np.where(member, 2.0, 0.0) + rng.normal(0, 0.3, n)
    assert mi.auc(mi.lira_scores(target, shadow, inc), member) > 0.99
    assert mi.auc(mi.lira_scores(target, shadow, inc, global_variance=False), member) > 0.95
    # shadows carrying no membership signal give a chance-level attack
    flat = base + rng.normal(0, 0.3, (s, n))
    assert mi.auc(mi.lira_scores(base + rng.normal(0, 0.3, n), flat, inc), member) == pytest.approx(0.5, abs=0.1)


def test_balanced_inclusion_rejects_odd_shadow_count():
    with pytest.raises(ValueError, match="even number"):
        mi.balanced_inclusion(10, 3, np.random.default_rng(0))


def test_clopper_pearson_known_values():
    lo, hi = mi.clopper_pearson(5, 10)
    assert lo == pytest.approx(0.1871, abs=1e-4) and hi == pytest.approx(0.8129, abs=1e-4)
    assert mi.clopper_pearson(0, 111) == (0.0, pytest.approx(1 - 0.025 ** (1 / 111)))


def test_operating_point_counts_and_no_epsilon_claim_from_few_samples():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    member = np.array([True, False, True, True, False, False])
    p = mi.operating_point(scores, member, 0.01, delta=1e-5)
    assert (p["tp"], p["fp"]) == (1, 0)
    assert p["tpr_ci95"][0] < 1 / 3 < p["tpr_ci95"][1]
    assert p["epsilon_lower_bound"] == 0.0  # three non-members certify nothing
    # 1000 members all caught with no false positive among 1000 non-members certifies eps > 5
    big = mi.operating_point(
        np.r_[np.ones(1000), np.zeros(1000)], np.r_[np.ones(1000, bool), np.zeros(1000, bool)], 0.001, delta=1e-5
    )
    assert big["epsilon_lower_bound"] > 5.0
