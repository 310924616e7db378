"""dp_train: DP-SGD against a per-sample oracle, empty Poisson batches, budget refusal, secure RNG."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from dp_helpers import make_config
from opacus.validators.errors import UnsupportedModuleError
from torch import nn

from fedcore.dp.ledger import BudgetExhausted, PrivacyLedger
from fedcore.dp.opacus_train import dp_train
from fedcore.dp.plan import plan_privacy


def small_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))


def data(n: int, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, generator=g), torch.randint(0, 3, (n,), generator=g)


def ledger_for(config, n, tmp_path, name="ledger.json") -> PrivacyLedger:
    return plan_privacy(config, n).open_ledger(tmp_path / name.removesuffix(".json") / "ledger.json")


def snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("mode", ["auto", "fused", "hooks"])
def test_one_dp_step_equals_the_per_sample_clipping_oracle(tmp_path, mode):
    n, clip, lr = 12, 0.05, 0.1
    x, y = data(n)
    config = make_config(target_epsilon=None, noise_multiplier=1e-7, max_grad_norm=clip, batch_size=16)
    model, oracle = small_model(), small_model()
    # oracle: per-sample gradients by a loop, flat clipping, sum, divide by the expected batch size
    summed = [torch.zeros_like(p) for p in oracle.parameters()]
    for i in range(n):
        oracle.zero_grad()
        F.cross_entropy(oracle(x[i : i + 1]), y[i : i + 1]).backward()
        grads = [p.grad.detach().clone() for p in oracle.parameters()]
        norm = torch.sqrt(sum((g**2).sum() for g in grads))
        factor = min(1.0, clip / (float(norm) + 1e-6))
        assert factor < 1.0  # clipping is really exercised
        summed = [s + factor * g for s, g in zip(summed, grads, strict=True)]
    expected = [p.detach() - lr * s / n for p, s in zip(oracle.parameters(), summed, strict=True)]

    stats = dp_train(
        model,
        F.cross_entropy,
        (x, y),
        privacy=config,
        ledger=ledger_for(config, n, tmp_path),
        round=1,
        lr=lr,
        device="cpu",
        grad_sample_mode=mode,
    )
    assert stats.steps == 1 and stats.sample_rate == 1.0 and stats.empty_batches == 0
    for got, want in zip(model.parameters(), expected, strict=True):
        torch.testing.assert_close(got.detach(), want, atol=1e-5, rtol=0)


def test_empty_poisson_batches_take_noise_only_steps(tmp_path):
    n = 10
    x, y = data(n)
    config = make_config(target_epsilon=None, noise_multiplier=1.0, batch_size=1)  # q = 0.1
    model = small_model()
    seen: list[tuple[int, dict]] = []
    torch.manual_seed(3)
    stats = dp_train(
        model,
        F.cross_entropy,
        (x, y),
        privacy=config,
        ledger=ledger_for(config, n, tmp_path),
        round=1,
        epochs=3,
        device="cpu",
        on_step=lambda info: seen.append((info.batch_size, snapshot(model))),
    )
    assert stats.steps == 30 and len(seen) == 30
    assert stats.empty_batches == sum(1 for size, _ in seen if size == 0) > 0
    for (size, after), (_, before) in zip(seen[1:], seen[:-1], strict=True):
        if size == 0:  # the step still released a noisy update
            assert any(not torch.equal(after[k], before[k]) for k in after)


def test_ew_mode_survives_empty_batches_because_they_skip_the_forward(tmp_path):
    n = 10
    x, y = data(n)
    config = make_config(target_epsilon=None, noise_multiplier=1.0, batch_size=1)
    torch.manual_seed(3)
    stats = dp_train(
        small_model(),
        F.cross_entropy,
        (x, y),
        privacy=config,
        ledger=ledger_for(config, n, tmp_path),
        round=1,
        epochs=2,
        device="cpu",
        grad_sample_mode="ew",
    )
    assert stats.steps == 20 and stats.empty_batches > 0


def test_round_past_the_budget_is_refused_before_any_training(tmp_path):
    n = 40
    x, y = data(n)
    config = make_config(target_epsilon=1.0, noise_multiplier=1.0, batch_size=8)
    with pytest.warns(UserWarning, match="will stop training"):
        plan = plan_privacy(config, n)
    ledger = plan.open_ledger(tmp_path / "l.json")
    model = small_model()
    before = snapshot(model)
    with pytest.raises(BudgetExhausted) as err:
        dp_train(model, F.cross_entropy, (x, y), privacy=config, ledger=ledger, round=1, plan=plan, device="cpu")
    assert err.value.target == 1.0 and err.value.spent == 0.0 and err.value.would_spend > 1.0
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert ledger.charges == () and json.loads((tmp_path / "l.json").read_text())["charges"] == []


def test_ledger_is_charged_cumulatively_and_a_rerun_round_is_charged_again(tmp_path):
    n = 32
    x, y = data(n)
    config = make_config(target_epsilon=50.0, noise_multiplier=1.5, batch_size=8)
    plan = plan_privacy(config, n)
    ledger = plan.open_ledger(tmp_path / "l.json")
    model = small_model()
    first = dp_train(model, F.cross_entropy, (x, y), privacy=config, ledger=ledger, round=1, plan=plan, device="cpu")
    second = dp_train(model, F.cross_entropy, (x, y), privacy=config, ledger=ledger, round=2, plan=plan, device="cpu")
    rerun = dp_train(model, F.cross_entropy, (x, y), privacy=config, ledger=ledger, round=2, plan=plan, device="cpu")
    assert first.steps == second.steps == 4 and first.sample_rate == 0.25
    assert first.epsilon < second.epsilon < rerun.epsilon  # the re-run's output may leave too: it counts
    assert second.delta == plan.delta and second.accountant == "rdp" and second.noise_multiplier == 1.5
    assert PrivacyLedger.load(tmp_path / "l.json").steps == 12
    assert math.isfinite(first.loss) and first.num_examples == n


def test_model_is_left_unwrapped_without_opacus_state(tmp_path):
    n = 16
    x, y = data(n)
    config = make_config(target_epsilon=None, noise_multiplier=1.0, batch_size=8)
    model = small_model()
    keys = list(model.state_dict())
    dp_train(
        model, F.cross_entropy, (x, y), privacy=config, ledger=ledger_for(config, n, tmp_path), round=1, device="auto"
    )
    assert list(model.state_dict()) == keys  # no "_module." prefix
    for p in model.parameters():
        assert p.grad is None
        assert not any(hasattr(p, a) for a in ("grad_sample", "summed_grad", "_forward_counter"))
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks
        assert not getattr(m, "_full_backward_hooks", None) if hasattr(m, "_full_backward_hooks") else True


def test_secure_rng_noise_does_not_come_from_torch_global_generator(tmp_path):
    n = 24
    x, y = data(n)

    def train(secure: bool, name: str) -> dict:
        config = make_config(target_epsilon=None, noise_multiplier=1.0, batch_size=8, secure_rng=secure)
        model = small_model()
        torch.manual_seed(11)
        dp_train(
            model,
            F.cross_entropy,
            (x, y),
            privacy=config,
            ledger=ledger_for(config, n, tmp_path, name),
            round=1,
            device="cpu",
        )
        return snapshot(model)

    insecure_a, insecure_b = train(False, "a.json"), train(False, "b.json")
    assert all(torch.equal(insecure_a[k], insecure_b[k]) for k in insecure_a)  # torch-seeded: reproducible
    secure_a, secure_b = train(True, "c.json"), train(True, "d.json")
    assert all(torch.isfinite(v).all() for v in secure_a.values())
    assert not all(torch.equal(secure_a[k], secure_b[k]) for k in secure_a)  # CSPRNG: not reproducible


def test_plain_training_has_the_same_interface_and_charges_nothing(tmp_path):
    n = 20
    x, y = data(n)
    config = make_config(enabled=False, target_epsilon=None, batch_size=8)
    ledger = PrivacyLedger(tmp_path / "l.json", accountant="rdp", delta=1e-5, target_epsilon=1.0)
    model = small_model()
    before = snapshot(model)
    stats = dp_train(model, F.cross_entropy, (x, y), privacy=config, ledger=ledger, round=1, epochs=2, device="cpu")
    assert stats.steps == 6 and stats.epsilon is None and stats.noise_multiplier is None
    assert any(not torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert ledger.charges == ()


def test_loss_fn_receives_every_target_tensor(tmp_path):
    n = 16
    x, y = data(n)
    weights = torch.linspace(0.5, 1.5, n)
    calls = []

    def weighted(outputs, labels, w):
        calls.append(len(labels))
        return (F.cross_entropy(outputs, labels, reduction="none") * w).mean()

    config = make_config(target_epsilon=None, noise_multiplier=1.0, batch_size=4)
    torch.manual_seed(0)
    stats = dp_train(
        small_model(),
        weighted,
        (x, y, weights),
        privacy=config,
        ledger=ledger_for(config, n, tmp_path),
        round=1,
        device="cpu",
    )
    assert calls and all(c > 0 for c in calls)
    assert len(calls) == stats.steps - stats.empty_batches


def test_batchnorm_model_is_refused_and_nothing_is_charged(tmp_path):
    n = 16
    x, y = data(n)
    config = make_config(target_epsilon=None, noise_multiplier=1.0, batch_size=8)
    ledger = ledger_for(config, n, tmp_path)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 3))
    with pytest.raises(UnsupportedModuleError, match="BatchNorm"):
        dp_train(model, F.cross_entropy, (x, y), privacy=config, ledger=ledger, round=1, device="cpu")
    assert ledger.charges == ()


@pytest.mark.parametrize(
    ("tensors", "message"),
    [
        ((), "non-empty tuple"),
        ((torch.zeros(4, 4), torch.zeros(5)), "share a first dimension"),
    ],
)
def test_inconsistent_tensors_are_refused(tmp_path, tensors, message):
    config = make_config(target_epsilon=None, noise_multiplier=1.0)
    with pytest.raises(ValueError, match=message):
        dp_train(small_model(), F.cross_entropy, tensors, privacy=config, ledger=None, round=1, device="cpu")


def test_ledger_that_does_not_match_the_plan_is_refused(tmp_path):
    n = 16
    x, y = data(n)
    config = make_config(target_epsilon=None, noise_multiplier=1.0)
    wrong = PrivacyLedger(tmp_path / "l.json", accountant="prv", delta=1e-3, target_epsilon=None)
    assert config.accountant == "rdp"
    with pytest.raises(ValueError, match="ledger delta 0.001 != plan delta 1e-05; ledger accountant 'prv'"):
        dp_train(small_model(), F.cross_entropy, (x, y), privacy=config, ledger=wrong, round=1, device="cpu")
    with pytest.raises(ValueError, match="PrivacyLedger is required"):
        dp_train(small_model(), F.cross_entropy, (x, y), privacy=config, ledger=None, round=1, device="cpu")


def test_an_epoch_has_exactly_ceil_n_over_batch_steps(tmp_path):
    # Opacus's DPDataLoader takes int(1/q) steps: int(1 / (1/93)) == 92 would lose one
    n = 93
    x, y = data(n)
    config = make_config(target_epsilon=None, noise_multiplier=1.0, batch_size=1)
    torch.manual_seed(0)
    stats = dp_train(
        small_model(),
        F.cross_entropy,
        (x, y),
        privacy=config,
        ledger=ledger_for(config, n, tmp_path),
        round=1,
        device="cpu",
    )
    assert stats.steps == 93 and stats.sample_rate == 1 / 93


@pytest.mark.parametrize("secure", [False, True])
def test_fused_and_hooks_charge_the_same_epsilon(tmp_path, secure):
    n = 40
    x, y = data(n)
    config = make_config(target_epsilon=None, noise_multiplier=1.1, batch_size=8, secure_rng=secure)
    runs = {}
    for mode in ("fused", "hooks"):
        torch.manual_seed(5)
        runs[mode] = dp_train(
            small_model(),
            F.cross_entropy,
            (x, y),
            privacy=config,
            ledger=ledger_for(config, n, tmp_path, f"{mode}.json"),
            round=1,
            epochs=2,
            device="cpu",
            grad_sample_mode=mode,
        )
    fused, hooks = runs["fused"], runs["hooks"]
    assert fused.steps == hooks.steps == 10 and fused.sample_rate == hooks.sample_rate == 0.2
    assert fused.epsilon == hooks.epsilon and fused.noise_multiplier == hooks.noise_multiplier == 1.1


def test_fused_noise_has_the_dp_sgd_scale(tmp_path):
    # one noise-only step: the update is N(0, (sigma C)^2) / expected batch per coordinate (SGD, lr 1)
    n, sigma, clip = 8, 2.0, 0.5
    x, y = data(n)
    model = nn.Sequential(nn.Linear(4, 500))
    config = make_config(target_epsilon=None, noise_multiplier=sigma, max_grad_norm=clip, batch_size=8, secure_rng=True)
    before = model[0].weight.detach().clone()
    empty = (x[:0], y[:0])
    from fedcore.dp import opacus_train

    original = opacus_train._poisson_batches
    opacus_train._poisson_batches = lambda tensors, q, steps, uniform: iter([empty])
    try:
        stats = dp_train(
            model,
            F.cross_entropy,
            (x, y),
            privacy=config,
            ledger=ledger_for(config, n, tmp_path),
            round=1,
            lr=1.0,
            device="cpu",
        )
    finally:
        opacus_train._poisson_batches = original
    assert stats.steps == 1 and stats.empty_batches == 1
    step = (before - model[0].weight.detach()).reshape(-1)
    expected_std = sigma * clip / n  # expected batch size int(n * q) = 8
    assert abs(float(step.std()) / expected_std - 1) < 0.05  # 2000 coordinates: 5 % is > 3 standard errors


def test_auto_falls_back_to_opacus_hooks_for_layers_fused_clipping_does_not_know(tmp_path, caplog):
    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(5, 4)  # Opacus knows Embedding, FusedClipper does not
            self.fc = nn.Linear(4, 3)

        def forward(self, idx):
            return self.fc(self.emb(idx))

    n = 16
    idx, y = torch.arange(n) % 5, torch.arange(n) % 3
    config = make_config(target_epsilon=None, noise_multiplier=1.0, batch_size=8)
    with caplog.at_level("INFO", logger="fedcore.dp.opacus_train"):
        stats = dp_train(
            Scaled(),
            F.cross_entropy,
            (idx, y),
            privacy=config,
            ledger=ledger_for(config, n, tmp_path),
            round=1,
            device="cpu",
        )
    assert stats.steps == 2 and "Opacus hooks" in caplog.text and "Embedding" in caplog.text
    with pytest.raises(ValueError, match="grad_sample_mode='fused' cannot train this module"):
        dp_train(
            Scaled(),
            F.cross_entropy,
            (idx, y),
            privacy=config,
            ledger=ledger_for(config, n, tmp_path, "b"),
            round=1,
            device="cpu",
            grad_sample_mode="fused",
        )
    with pytest.raises(ValueError, match="grad_sample_mode must be one of auto, fused, hooks, ew, functorch"):
        dp_train(
            small_model(),
            F.cross_entropy,
            data(n),
            privacy=config,
            ledger=ledger_for(config, n, tmp_path, "c"),
            round=1,
            device="cpu",
            grad_sample_mode="ghost",
        )
