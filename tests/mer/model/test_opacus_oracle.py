"""Opacus per-sample gradients of the whole network against a per-sample loop (the DP oracle)."""

import warnings

import pytest
import torch
from opacus import GradSampleModule
from opacus.grad_sample import GradSampleModuleExpandedWeights
from opacus.optimizers import DPOptimizer

from mer.model import build_model, mer_loss

B = 4
# torch's ExpandedWeights ("ew") takes a grouped-conv shortcut below 32 samples that needs a
# contiguous grad_output; the Inception blocks' torch.cat hands it a strided slice, so "ew" is
# exercised at 32 samples on dpk-gat (its unfold path), "hooks" at 4. flow-cnn's convs are
# grouped, which always takes the unfold path. The "ew" cases are slow (a 32-sample float64 loop).
EW_BATCH = {"dpk-gat": 32, "flow-cnn": B, "ststnet": B}


def _model(name):
    torch.manual_seed(0)
    cfg = {"dropout": 0.0, "gat_dropout": 0.0} if name == "dpk-gat" else {"dropout": 0.0}
    model = build_model(name, 3, **cfg).double().train()  # train mode: Opacus hooks are off in eval
    if name == "dpk-gat":
        model.set_r(0.5)
    return model


def _batch(size=28, n=B):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 3, size, size, generator=g, dtype=torch.float64)
    label = torch.arange(n) % 3
    au = (torch.rand(n, 12, generator=g) > 0.6).double()
    au_known = torch.arange(n) % 4 != 1  # samples 1, 5, ... have no AU coding (SMIC-like)
    return x, label, au, au_known


def _loop_grads(model, x, label, au, au_known):
    """Per-sample gradients by brute force: one backward per sample."""
    grads = []
    for i in range(len(x)):
        model.zero_grad()
        mer_loss(model(x[i : i + 1]), label[i : i + 1], au[i : i + 1], au_known[i : i + 1]).backward()
        grads.append({n: p.grad.detach().clone() for n, p in model.named_parameters()})
    return grads


@pytest.mark.parametrize("name", ["dpk-gat", "flow-cnn", "ststnet"])
@pytest.mark.parametrize("mode", ["hooks", pytest.param("ew", marks=pytest.mark.slow)])
def test_opacus_per_sample_grads_match_loop(name, mode):
    model = _model(name)
    x, label, au, au_known = _batch(n=B if mode == "hooks" else EW_BATCH[name])
    expected = _loop_grads(model, x, label, au, au_known)
    wrap = GradSampleModule if mode == "hooks" else GradSampleModuleExpandedWeights
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gsm = wrap(model, batch_first=True, loss_reduction="mean")
        gsm.zero_grad()
        mer_loss(gsm(x), label, au, au_known).backward()
    worst = 0.0
    for n, p in model.named_parameters():
        assert p.grad_sample is not None, f"{n} got no per-sample gradient"
        loop = torch.stack([g[n] for g in expected])
        worst = max(worst, (p.grad_sample - loop).abs().max().item())
    print(f"{name} {mode}: max |opacus - loop| = {worst:.2e}")
    assert worst <= 1e-5, f"max |opacus - loop| = {worst:.2e}"
    if mode == "hooks":
        gsm._close()


def test_clipped_mean_gradient_matches_hand_computation():
    model = _model("dpk-gat")
    x, label, au, au_known = _batch(56)
    expected = _loop_grads(model, x, label, au, au_known)
    names = [n for n, _ in model.named_parameters()]
    flat = torch.stack([torch.cat([g[n].flatten() for n in names]) for g in expected])  # (B, params)
    norms = flat.norm(dim=1)
    clip = norms.median().item()  # some samples are clipped, some are not
    factor = (clip / (norms + 1e-6)).clamp(max=1.0)
    hand = (factor[:, None] * flat).sum(0) / B

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gsm = GradSampleModule(model, batch_first=True, loss_reduction="mean")
        opt = DPOptimizer(
            torch.optim.SGD(gsm.parameters(), lr=0.0), noise_multiplier=0.0, max_grad_norm=clip, expected_batch_size=B
        )
        opt.zero_grad()
        mer_loss(gsm(x), label, au, au_known).backward()
        opt.step()
    got = torch.cat([p.grad.flatten() for p in model.parameters()])
    assert (factor < 1).any() and (factor == 1).any()
    assert torch.allclose(got, hand, atol=1e-9, rtol=1e-7), (got - hand).abs().max()
    gsm._close()


@pytest.mark.parametrize("name", ["dpk-gat", "flow-cnn", "ststnet"])
def test_fused_clipped_sum_matches_the_loop(name):
    """fedcore's fused clipping (dp_train's default) on the whole network: sum_i c_i g_i against the loop."""
    from fedcore.dp.fused import FusedClipper, unsupported

    model = _model(name)
    assert unsupported(model) == []  # dp_train's "auto" takes the fused path for every MER model
    x, label, au, au_known = _batch(56 if name == "dpk-gat" else 28, n=6)
    expected = _loop_grads(model, x, label, au, au_known)
    names = [n for n, _ in model.named_parameters()]
    flat = torch.stack([torch.cat([g[n].flatten() for n in names]) for g in expected])  # (B, params)
    norms = flat.norm(dim=1)
    clip = norms.median().item()
    factor = (clip / (norms + 1e-6)).clamp(max=1.0)
    assert (factor < 1).any() and (factor == 1).any()
    model.zero_grad(set_to_none=True)
    clipper = FusedClipper(model, max_grad_norm=clip)
    got = clipper.clipped_sum(mer_loss(model(x), label, au, au_known))
    clipper.close()
    worst = (got - factor @ flat).abs().max().item()
    print(f"{name} fused: max |fused - loop| = {worst:.2e}")
    assert worst <= 1e-9


def test_fused_head_only_with_augmented_views_matches_the_loop():
    """The default federated recipe: only the classifier, on (B, K, F) features of K augmented views."""
    from fedcore.dp.fused import FusedClipper

    model = _model("dpk-gat").classifier
    g = torch.Generator().manual_seed(2)
    feats = torch.randn(6, 4, model[-1].in_features, generator=g, dtype=torch.float64)
    label = torch.arange(6) % 3

    def loss(logits, y):  # mer.train.federated's head-only loss: CE averaged over the K views first
        per = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), y.repeat_interleave(4), reduction="none"
        )
        return per.reshape(-1, 4).mean(dim=1).mean()

    rows = []
    for i in range(6):
        model.zero_grad()
        loss(model(feats[i : i + 1]), label[i : i + 1]).backward()
        rows.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    flat = torch.stack(rows)
    clip = flat.norm(dim=1).median().item()
    factor = (clip / (flat.norm(dim=1) + 1e-6)).clamp(max=1.0)
    model.zero_grad(set_to_none=True)
    clipper = FusedClipper(model, max_grad_norm=clip)
    got = clipper.clipped_sum(loss(model(feats), label))
    clipper.close()
    assert (got - factor @ flat).abs().max().item() <= 1e-10


def test_fused_clipped_sum_of_the_graph_group_matches_the_loop():
    """--dp-trainable graph: the regional stage frozen (no hooks, no per-sample gradients there)."""
    from fedcore.dp.fused import FusedClipper
    from mer.model.pretrained import set_trainable

    model = _model("dpk-gat")
    names = set(set_trainable("dpk-gat", model, "graph"))
    params = [p for n, p in model.named_parameters() if n in names]
    assert 0 < sum(p.numel() for p in params) < sum(p.numel() for p in model.parameters())
    x, label, au, au_known = _batch(56, n=6)
    flat = torch.stack(
        [
            torch.cat(
                [
                    g.flatten()
                    for g in torch.autograd.grad(
                        mer_loss(model(x[i : i + 1]), label[i : i + 1], au[i : i + 1], au_known[i : i + 1]), params
                    )
                ]
            )
            for i in range(6)
        ]
    )
    clip = float(flat.norm(dim=1).median())
    factor = (clip / (flat.norm(dim=1) + 1e-6)).clamp(max=1.0)
    clipper = FusedClipper(model, max_grad_norm=clip)
    got = clipper.clipped_sum(mer_loss(model(x), label, au, au_known))
    clipper.close()
    assert (got - factor @ flat).abs().max().item() <= 1e-9
