import numpy as np
import pytest
import torch

from mer.model import build_model, mer_loss
from mer.train.centralised import TrainConfig, predict, train_model

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def test_training_steps_on_cuda_lower_the_loss_and_stay_on_cuda(make_toy):
    torch.manual_seed(0)
    data = make_toy(subjects=4, per_subject=12, size=128)
    model = build_model("dpk-gat", 3).cuda().train()
    x = torch.as_tensor(data.flow).cuda()
    y, au = torch.as_tensor(data.label).cuda(), torch.as_tensor(data.au).cuda()
    known = torch.as_tensor(data.au_known).cuda()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(30):
        out = model(x)
        assert all(o.is_cuda for o in out)
        loss = mer_loss(out, y, au, known)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])


def test_trainer_with_device_auto_uses_cuda(make_toy):
    data = make_toy(subjects=4, per_subject=9, size=28)
    model = train_model(data, TrainConfig(epochs=12, batch_size=12, lr=3e-3, device="auto"))
    assert next(model.parameters()).is_cuda
    pred, _ = predict(model, data.flow)
    assert (pred == data.label).mean() >= 0.8
