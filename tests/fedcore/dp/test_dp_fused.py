"""FusedClipper: the clipped per-sample gradient sum against a per-sample loop, layer by layer; refusals."""

from __future__ import annotations

from typing import ClassVar

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fedcore.dp.fused import FusedClipper, clip_factors, unsupported


def loop_clipped_sum(
    model: nn.Module, loss_fn, inputs, targets, clip: float | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """sum_i c_i g_i by one backward per sample (and the per-sample norms): the oracle."""
    params = [p for p in model.parameters() if p.requires_grad]
    rows = []
    for i in range(len(inputs)):
        grads = torch.autograd.grad(
            loss_fn(model(inputs[i : i + 1]), targets[i : i + 1]), params, allow_unused=True, materialize_grads=True
        )
        rows.append(torch.cat([g.reshape(-1) for g in grads]))
    flat = torch.stack(rows)  # (B, P)
    norms = flat.norm(dim=1)
    if clip is None:
        clip = float(norms.median())
    factor = (clip / (norms + 1e-6)).clamp(max=1.0)
    return factor @ flat, norms


def fused_clipped_sum(model, loss_fn, inputs, targets, clip) -> torch.Tensor:
    clipper = FusedClipper(model, max_grad_norm=clip)
    try:
        return clipper.clipped_sum(loss_fn(model(inputs), targets)).clone()
    finally:
        clipper.close()


class TwoCalls(nn.Module):
    """One Linear applied twice (its per-sample contributions add before the norm), one frozen layer."""

    def __init__(self):
        super().__init__()
        self.shared = nn.Linear(6, 6)
        self.frozen = nn.Linear(6, 6)
        self.frozen.requires_grad_(False)
        self.head = nn.Linear(6, 3)

    def forward(self, x):  # (B, T, 6)
        h = torch.tanh(self.shared(x))
        h = torch.tanh(self.shared(self.frozen(h)))
        return self.head(h.mean(dim=1))


class ConvZoo(nn.Module):
    """Every convolution route (see ROUTES): grouped-conv materialisation with and without groups,
    1x1 strided, kernel = stride with groups, "same" padding, Conv1d on a strided input; norms."""

    ROUTES: ClassVar[dict[str, str]] = {
        "c0": "grouped",
        "c1": "grouped",
        "c2": "unfold",
        "c3": "unfold",
        "c4": "unfold",
        "c5": "unfold",
        "c6": "unfold",
    }

    def __init__(self):
        super().__init__()
        self.c0 = nn.Conv2d(3, 6, 3, padding=1, groups=3)  # 16x16, grouped materialisation
        self.c1 = nn.Conv2d(6, 8, 3, stride=2, padding=2, dilation=2)  # -> 8x8
        self.c2 = nn.Conv2d(8, 8, 1, stride=2, groups=4)  # -> 4x4, pointwise strided
        self.c3 = nn.Conv2d(8, 16, 2, stride=2, groups=2, bias=False)  # -> 2x2, kernel = stride, ghost
        self.c4 = nn.Conv2d(16, 6, 3, padding="same")  # im2col with "same", ghost
        self.gn = nn.GroupNorm(3, 6)
        self.c5 = nn.Conv1d(6, 16, 3, padding=1)  # ghost, strided input
        self.c6 = nn.Conv1d(16, 16, 1, groups=4)  # pointwise, materialised
        self.ln = nn.LayerNorm(16)
        self.fc = nn.Linear(16, 3)

    def forward(self, x):  # (B, 3, 16, 16)
        h = F.relu(self.c1(F.relu(self.c0(x))))
        h = F.relu(self.c3(F.relu(self.c2(h))))
        h = self.gn(self.c4(h))  # (B, 6, 2, 2)
        seq = h.flatten(2).transpose(1, 2).contiguous().transpose(1, 2)  # (B, 6, 4), not contiguous
        seq = self.c6(F.relu(self.c5(seq)))  # (B, 16, 4)
        return self.fc(self.ln(seq.transpose(1, 2)).mean(dim=1))


def test_conv_zoo_takes_every_route():
    from fedcore.dp.fused import _conv_route

    model, outs = ConvZoo(), {}
    hooks = [
        getattr(model, n).register_forward_hook(lambda m, i, o, n=n: outs.setdefault(n, o)) for n in ConvZoo.ROUTES
    ]
    model(torch.randn(2, 3, 16, 16))
    for h in hooks:
        h.remove()
    assert {n: _conv_route(getattr(model, n), outs[n]) for n in ConvZoo.ROUTES} == ConvZoo.ROUTES


def _data(shape, n=6, classes=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *shape, generator=g, dtype=torch.float64), torch.arange(n) % classes


@pytest.mark.parametrize(
    ("make", "shape"),
    [
        (lambda: nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)), (5,)),  # T = 1
        (lambda: nn.Sequential(nn.Linear(40, 40), nn.Tanh(), nn.Flatten(), nn.Linear(80, 3)), (2, 40)),  # ghost
        (lambda: nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Flatten(), nn.Linear(36, 3)), (9, 3)),  # materialised
        (TwoCalls, (4, 6)),
        (ConvZoo, (3, 16, 16)),
    ],
    ids=["linear-2d", "linear-ghost", "linear-materialised", "two-calls-frozen", "conv-zoo"],
)
def test_fused_clipped_sum_equals_the_per_sample_loop(make, shape):
    torch.manual_seed(0)
    model = make().double()
    x, y = _data(shape)
    expected, norms = loop_clipped_sum(model, F.cross_entropy, x, y, None)
    clip = float(norms.median())
    assert (norms > clip).any() and (norms < clip).any()  # some samples clipped, some not
    got = fused_clipped_sum(model, F.cross_entropy, x, y, clip)
    torch.testing.assert_close(got, expected, atol=1e-10, rtol=1e-10)
    assert all(p.grad is None for p in model.parameters())  # autograd computed no parameter gradient


def test_clip_factor_is_opacus_formula():
    sq = torch.tensor([0.0, 0.25, 4.0])
    torch.testing.assert_close(clip_factors(sq, 1.0), torch.tensor([1.0, 1.0, 1.0 / (2.0 + 1e-6)]))


def test_assign_grads_points_every_parameter_at_the_flat_buffer():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    clipper = FusedClipper(model, max_grad_norm=1.0)
    x, y = torch.randn(5, 3), torch.arange(5) % 2
    flat = clipper.clipped_sum(F.cross_entropy(model(x), y))
    clipper.assign_grads()
    assert torch.equal(torch.cat([p.grad.reshape(-1) for p in model.parameters()]), flat)
    assert all(p.grad.data_ptr() >= flat.data_ptr() for p in model.parameters())  # views, no copies
    assert torch.equal(clipper.zero(), torch.zeros_like(flat))
    clipper.close()
    assert all(not m._forward_hooks for m in model.modules())


def test_unsupported_models_are_named():
    class Raw(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(3))

        def forward(self, x):
            return x * self.scale

    tied = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3))
    tied[1].weight = tied[0].weight
    assert "Raw) owns trainable parameters" in unsupported(nn.Sequential(Raw(), nn.Linear(3, 2)))[0]
    assert "shares a parameter" in unsupported(tied)[0]
    assert "reflect" in unsupported(nn.Conv2d(3, 3, 3, padding=1, padding_mode="reflect"))[0]
    assert unsupported(nn.Linear(3, 3).requires_grad_(False)) == ["no parameter requires grad"]
    with pytest.raises(ValueError, match="Embedding"):
        FusedClipper(nn.Embedding(4, 3), max_grad_norm=1.0)


def test_output_modified_in_place_is_refused():
    class InPlace(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 2)

        def forward(self, x):
            return F.relu(self.fc(x), inplace=True)  # the captured output changes after the layer

    model = InPlace()
    clipper = FusedClipper(model, max_grad_norm=1.0)
    with pytest.raises(RuntimeError, match="modified in place"):
        clipper.clipped_sum(F.cross_entropy(model(torch.randn(4, 3)), torch.arange(4) % 2))


def test_a_layer_missing_from_the_forward_is_refused():
    class Skips(nn.Module):
        def __init__(self):
            super().__init__()
            self.used, self.unused = nn.Linear(3, 2), nn.Linear(3, 2)

        def forward(self, x):
            return self.used(x)

    model = Skips()
    clipper = FusedClipper(model, max_grad_norm=1.0)
    with pytest.raises(RuntimeError, match="took no part"):
        clipper.clipped_sum(F.cross_entropy(model(torch.randn(4, 3)), torch.arange(4) % 2))
