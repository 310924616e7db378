"""DPK-GAT's dynamic prior factor r: its schedules, and that the value reaches the attention.

Centralised (:func:`mer.train.centralised.r_at`, the module docstring): ``decay`` is "1 -> 0
linearly over all steps", ``fixed`` is ``r_fixed``. Federated (:func:`mer.train.federated.prior_r`):
"1 in round 1, linear to 0 in the last". The layer (:class:`mer.model.layers.DPKGATLayer`) mixes
alpha' = (1 - beta r) softmax(e) + beta r P, renormalised over each row.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mer.model.dpkgat import DPKGAT, DPKGATConfig
from mer.model.layers import DPKGATLayer
from mer.train.centralised import TrainConfig, r_at, train_model
from mer.train.federated import prior_r, workload

DECAY = TrainConfig(r_schedule="decay")


# -- the centralised schedule -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("total", "want"),
    [
        (2, [1.0, 0.0]),
        (5, [1.0, 0.75, 0.5, 0.25, 0.0]),
        (9, [1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125, 0.0]),
    ],
)
def test_decay_runs_from_exactly_1_to_exactly_0(total, want):
    assert [r_at(DECAY, s, total) for s in range(total)] == want


def test_decay_is_linear_and_never_rises():
    total = 37
    rs = np.array([r_at(DECAY, s, total) for s in range(total)])
    assert rs[0] == 1.0 and rs[-1] == 0.0
    steps = np.diff(rs)
    assert (steps <= 0).all()
    np.testing.assert_allclose(steps, -1.0 / (total - 1), rtol=0, atol=1e-12)  # one slope: linear


@pytest.mark.parametrize("r_fixed", [0.0, 0.35, 1.0])
def test_fixed_gives_r_fixed_at_every_step(r_fixed):
    cfg = TrainConfig(r_schedule="fixed", r_fixed=r_fixed)
    assert {r_at(cfg, s, 10) for s in range(10)} == {r_fixed}


# -- the federated schedule ---------------------------------------------------------------------
@pytest.mark.parametrize("rounds", [2, 3, 10, 50])
def test_federated_r_is_1_in_round_1_and_0_in_the_last(rounds):
    assert prior_r(1, rounds) == 1.0
    assert prior_r(rounds, rounds) == 0.0


def test_federated_r_is_linear_over_the_rounds():
    assert [prior_r(k, 5) for k in range(1, 6)] == [1.0, 0.75, 0.5, 0.25, 0.0]


def test_a_one_round_federation_keeps_the_prior_at_full_weight():
    assert prior_r(1, 1) == 1.0


# -- the value reaches the layers ----------------------------------------------------------------
@pytest.fixture
def seen_r(monkeypatch):
    """(layer id, r) for every DPK-GAT attention computed while the test runs."""
    seen: list[tuple[int, float]] = []
    original = DPKGATLayer.attention

    def spy(self, x):
        seen.append((id(self), float(self.r)))
        return original(self, x)

    monkeypatch.setattr(DPKGATLayer, "attention", spy)
    return seen


def _per_forward(seen: list[tuple[int, float]]) -> list[float]:
    """One r per model forward: the three layers (upper, lower, coordinated) must agree."""
    assert len(seen) % 3 == 0 and len({lid for lid, _ in seen}) == 3
    out = []
    for i in range(0, len(seen), 3):
        rs = {r for _, r in seen[i : i + 3]}
        assert len(rs) == 1, f"the three DPK-GAT layers saw different r in one forward: {rs}"
        out.append(rs.pop())
    return out


def test_training_feeds_every_step_its_decayed_r(toy_arrays, seen_r):
    small = toy_arrays.subset(np.arange(12))
    train_model(small, TrainConfig(epochs=2, batch_size=6, device="cpu"))  # 2 x 2 = 4 steps
    assert _per_forward(seen_r) == pytest.approx([1.0, 2 / 3, 1 / 3, 0.0], abs=1e-6)


def test_training_feeds_every_step_r_fixed(toy_arrays, seen_r):
    small = toy_arrays.subset(np.arange(12))
    train_model(small, TrainConfig(epochs=2, batch_size=6, device="cpu", r_schedule="fixed", r_fixed=0.4))
    assert _per_forward(seen_r) == pytest.approx([0.4] * 4, abs=1e-6)


def _federated_trainer(toy_arrays, tmp_path):
    settings = {
        "model": "dpk-gat",
        "init": "none",
        "num_classes": 3,
        "partition": "subjects",
        "seed": 0,
        "test_fraction": 0.25,
        "dp_trainable": "head",
    }
    trainer = workload.make_trainer(
        {**settings, "client_index": 0, "num_clients": 1}, "c1", tmp_path, "cpu", data=toy_arrays
    )
    return trainer, workload.initial_parameters(settings, 0)


@pytest.mark.parametrize(("round_", "want"), [(1, 1.0), (3, 0.5), (5, 0.0)])
def test_federated_evaluation_uses_the_rounds_r(toy_arrays, tmp_path, seen_r, round_, want):
    trainer, (params, spec) = _federated_trainer(toy_arrays, tmp_path)
    trainer.evaluate(params, spec, round_, {"rounds": 5}, None)
    rs = _per_forward(seen_r)
    assert rs and rs == pytest.approx([want] * len(rs), abs=1e-6)


@pytest.mark.parametrize(("round_", "want"), [(1, 1.0), (4, 0.0)])
def test_federated_training_uses_the_rounds_r(toy_arrays, tmp_path, seen_r, round_, want):
    trainer, (params, spec) = _federated_trainer(toy_arrays, tmp_path)
    trainer.fit(params, spec, round_, {"rounds": 4, "epochs": 1, "batch_size": 8, "privacy": {"enabled": False}}, None)
    rs = _per_forward(seen_r)  # head-only: the frozen network runs once, with this round's r
    assert rs and rs == pytest.approx([want] * len(rs), abs=1e-6)


# -- the attention mix ---------------------------------------------------------------------------
BETA = 0.5
ADJ = torch.tensor([[1, 1, 0, 1], [1, 1, 1, 0], [0, 1, 1, 1], [1, 0, 1, 1]], dtype=torch.bool)
P1 = torch.tensor([[0.7, 0.2, 0.0, 0.1], [0.1, 0.1, 0.8, 0.0], [0.0, 0.6, 0.3, 0.1], [0.2, 0.0, 0.5, 0.3]])
P2 = torch.tensor([[0.1, 0.1, 0.0, 0.8], [0.5, 0.4, 0.1, 0.0], [0.0, 0.1, 0.1, 0.8], [0.6, 0.0, 0.2, 0.2]])


def _layer(prior: torch.Tensor) -> DPKGATLayer:
    torch.manual_seed(0)
    layer = DPKGATLayer(5, ADJ, heads=2, hidden=3, beta=BETA, dropout=0.0).eval()
    layer.set_prior(prior)
    return layer


def _run(layer: DPKGATLayer, r: float, x: torch.Tensor):
    layer.r.fill_(r)
    with torch.no_grad():
        alpha, _ = layer.attention(x)
        return alpha, layer(x)


X = torch.randn(2, 4, 5, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("r", [0.25, 0.6, 1.0])
def test_attention_is_the_linear_mix_of_softmax_and_prior(r):
    layer = _layer(P1)
    softmax, _ = _run(layer, 0.0, X)  # r = 0: the GAT attention alone
    assert torch.allclose(softmax.sum(-1), torch.ones(2, 2, 4), atol=1e-6)
    assert (softmax[..., ~ADJ] == 0).all()
    mixed, _ = _run(layer, r, X)
    want = (1 - BETA * r) * softmax + BETA * r * P1  # rows already sum to 1: no renormalising left
    torch.testing.assert_close(mixed, want, rtol=0, atol=1e-6)


def test_r_1_and_r_0_give_different_outputs():
    layer = _layer(P1)
    _, out1 = _run(layer, 1.0, X)
    _, out0 = _run(layer, 0.0, X)
    assert (out1 - out0).abs().max() > 1e-3


def test_with_r_0_the_prior_has_no_effect_and_with_r_1_it_has():
    a, b = _layer(P1), _layer(P2)  # same weights (seeded), different priors
    assert torch.equal(_run(a, 0.0, X)[1], _run(b, 0.0, X)[1])
    assert (_run(a, 1.0, X)[1] - _run(b, 1.0, X)[1]).abs().max() > 1e-3


def test_model_set_r_reaches_all_three_layers_and_gates_the_statistical_prior():
    torch.manual_seed(0)
    model = DPKGAT(DPKGATConfig(prior="stat")).eval()
    x = torch.randn(2, 3, 28, 28, generator=torch.Generator().manual_seed(2))
    rng = np.random.default_rng(0)
    counts_a = rng.integers(0, 40, (12, 12))
    counts_b = rng.integers(0, 40, (12, 12))
    counts_a, counts_b = counts_a + counts_a.T, counts_b + counts_b.T

    def logits(r, counts):
        model.set_r(r)
        model.set_statistical_prior(counts)
        assert [float(m.r) for m in (model.upper, model.lower, model.coordinated)] == [r] * 3
        with torch.no_grad():
            return model(x)[0]

    assert torch.equal(logits(0.0, counts_a), logits(0.0, counts_b))
    assert (logits(1.0, counts_a) - logits(1.0, counts_b)).abs().max() > 1e-6
