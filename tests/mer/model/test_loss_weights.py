"""Loss weights that follow the AU coding of the data: emotion CE alone when no sample has AU labels."""

import pytest
import torch
import torch.nn.functional as F

from mer.model import LossWeights, build_model, loss_weights_for, per_sample_loss


def test_weights_follow_the_labelled_share_and_keep_the_total():
    assert loss_weights_for(1.0) == LossWeights(0.2, 0.8)
    assert loss_weights_for(0.0) == LossWeights(1.0, 0.0)
    half = loss_weights_for(0.5)
    assert half.emotion == pytest.approx(0.6) and half.au == pytest.approx(0.4)
    custom = loss_weights_for(0.25, LossWeights(1.0, 0.5))
    assert custom.emotion + custom.au == pytest.approx(1.5) and custom.au == pytest.approx(0.125)


def test_share_outside_unit_interval_and_negative_weights_are_refused():
    with pytest.raises(ValueError, match=r"au_known_share must lie in \[0, 1\] \(got 1.5\)"):
        loss_weights_for(1.5)
    with pytest.raises(ValueError, match="loss weights must be >= 0"):
        loss_weights_for(0.5, LossWeights(0.2, -0.8))


def _dpkgat_batch():
    torch.manual_seed(0)
    model = build_model("dpk-gat", 3, dropout=0.0, gat_dropout=0.0).train()
    x = torch.randn(4, 3, 28, 28)
    label = torch.tensor([0, 1, 2, 0])
    au = (torch.rand(4, 12) > 0.5).float()  # labels present but unusable: au_known is False everywhere
    return model, x, label, au, torch.zeros(4, dtype=torch.bool)


def test_without_au_labels_the_loss_is_exactly_the_emotion_ce():
    model, x, label, au, known = _dpkgat_batch()
    out = model(x)
    loss = per_sample_loss(out, label, au, known, loss_weights_for(0.0))
    assert torch.equal(loss, F.cross_entropy(out[0], label, reduction="none"))


def test_without_au_labels_the_au_heads_get_zero_not_missing_gradients():
    model, x, label, au, known = _dpkgat_batch()
    per_sample_loss(model(x), label, au, known, loss_weights_for(0.0)).mean().backward()
    for name in ("au_head.weight", "au_head.bias", "aux_au_head.weight", "aux_au_head.bias"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and torch.count_nonzero(grad) == 0, name
    assert torch.count_nonzero(model.classifier[1].weight.grad) > 0
