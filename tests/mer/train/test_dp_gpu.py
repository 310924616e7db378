"""DP-SGD of the full DPK-GAT on CUDA (skipped without a GPU): the client path of a federation."""

import numpy as np
import pytest
import torch

from fedcore.dp.config import PrivacyConfig
from fedcore.dp.opacus_train import dp_train
from fedcore.dp.plan import plan_privacy
from mer.model import build_model, per_sample_loss

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def test_dp_train_runs_on_cuda_charges_the_ledger_and_returns_the_model_home(tmp_path):
    torch.manual_seed(0)
    n = 96
    x = torch.randn(n, 3, 128, 128)
    y = torch.randint(0, 5, (n,))
    au = (torch.rand(n, 12) > 0.7).float()
    known = torch.ones(n, dtype=torch.bool)
    model = build_model("dpk-gat", 5)
    before = torch.cat([p.detach().flatten() for p in model.parameters()]).clone()
    privacy = PrivacyConfig(target_epsilon=8.0, planned_rounds=5, local_epochs=1, batch_size=32)
    plan = plan_privacy(privacy, n)
    ledger = plan.open_ledger(tmp_path / "ledger.json")
    seen = []
    stats = dp_train(
        model,
        lambda out, *t: per_sample_loss(out, *t).mean(),
        (x, y, au, known),
        privacy=privacy,
        ledger=ledger,
        round=1,
        plan=plan,
        device="cuda",
        optimizer_factory=lambda ps: torch.optim.AdamW(ps, lr=1e-3),
        on_step=lambda info: seen.append(next(model.parameters()).device.type),
    )
    assert seen and set(seen) == {"cuda"}  # the steps ran on the GPU
    assert all(p.device.type == "cpu" for p in model.parameters())  # and the model came back
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert not torch.equal(before, after)
    assert stats.steps == plan.steps_per_round
    assert stats.epsilon == pytest.approx(ledger.spent())
    assert 0 < stats.epsilon < 8.0
    assert np.isfinite(stats.loss)
