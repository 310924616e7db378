"""STSTNet: the published layout, its own training recipe, and a check that it learns."""

import pytest
import torch
from torch import nn

from mer.model import TRAIN_DEFAULTS, build_model, train_defaults
from mer.model.ststnet import STSTNetConfig


def test_ststnet_has_the_published_three_streams_and_400_features():
    m = build_model("ststnet", 3)
    convs = [mod for mod in m.modules() if isinstance(mod, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [
        (3, 3, (3, 3)),
        (3, 5, (3, 3)),
        (3, 8, (3, 3)),
    ]  # every stream sees u, v and strain
    assert m.classifier.in_features == 16 * 5 * 5 == 400 and m.classifier.out_features == 3
    assert sum(p.numel() for p in m.parameters()) == 3 * 28 + 5 * 28 + 8 * 28 + 2 * 16 + 400 * 3 + 3
    assert all(g.num_groups == 1 for g in m.modules() if isinstance(g, nn.GroupNorm))  # one group per stream


def test_ststnet_streams_pool_28_to_10_to_5():
    assert STSTNetConfig().pooled_side == 5 and STSTNetConfig(size=64).pooled_side == 11
    m = build_model("ststnet", 4, size=64, norm="none").eval()
    assert m(torch.randn(2, 3, 28, 28))[0].shape == (2, 4)


def test_ststnet_config_problems_are_reported_together():
    with pytest.raises(ValueError, match="streams must be three.*norm must be one of group, none"):
        build_model("ststnet", 3, streams=(3, 5), norm="batch")


def test_ststnet_recipe_is_the_published_one_and_every_model_has_a_recipe():
    assert train_defaults("ststnet") == {
        "epochs": 500,
        "batch_size": 256,
        "optimizer": "adam",
        "lr": 5e-5,
        "lr_schedule": "constant",
        "weight_decay": 0.0,
    }
    from mer.model import MODELS

    assert set(TRAIN_DEFAULTS) == set(MODELS)
    train_defaults("ststnet")["epochs"] = 1  # a copy: the table cannot be changed through it
    assert TRAIN_DEFAULTS["ststnet"]["epochs"] == 500


def test_ststnet_learns_a_separable_flow_pattern():
    torch.manual_seed(0)
    x = torch.randn(60, 3, 28, 28) * 0.3
    y = torch.arange(60) % 3
    x[y == 0, 1, 4:10, 6:22] += 1.5  # upward flow at the brows
    x[y == 1, 0, 19:24, 6:22] += 1.5  # sideways flow at the mouth
    m = build_model("ststnet", 3)
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    for _ in range(60):
        loss = nn.functional.cross_entropy(m(x)[0], y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert (m.eval()(x)[0].argmax(1) == y).float().mean() >= 0.9
