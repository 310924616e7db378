import pytest
import torch
import torch.nn.functional as F

from mer.model.layers import DPKGATLayer, RegionSE, TransformerLayer


def _layer(beta=0.3, heads=2, hidden=4):
    torch.manual_seed(0)
    adj = torch.tensor([[1, 1, 0], [1, 1, 1], [0, 0, 1]], dtype=torch.bool)
    return DPKGATLayer(5, adj, heads=heads, hidden=hidden, beta=beta, dropout=0.0).double()


def test_attention_matches_the_formula_by_hand():
    layer = _layer()
    prior = torch.tensor([[0.25, 0.75, 0], [0.2, 0.3, 0.5], [0, 0, 1]], dtype=torch.float64)
    layer.set_prior(prior)
    layer.r.fill_(0.5)
    x = torch.randn(2, 3, 5, dtype=torch.float64)
    alpha, wh = layer.attention(x)
    h, c = 2, 4
    w, b = layer.proj.weight, layer.proj.bias
    out = x @ w.T + b
    for head in range(h):
        s1 = out[..., h * c + head]  # a1 . W h_i
        s2 = out[..., h * c + h + head]  # a2 . W h_j
        e = F.leaky_relu(s1[:, :, None] + s2[:, None, :], 0.2)
        e = e.masked_fill(~layer.adjacency, float("-inf"))
        mix = 0.85 * torch.softmax(e, -1) + 0.15 * prior  # beta * r = 0.15
        mix = mix / mix.sum(-1, keepdim=True)
        assert torch.allclose(alpha[:, head], mix)
    assert (alpha[:, :, 0, 2] == 0).all() and (alpha[:, :, 2, :2] == 0).all()  # non-edges get nothing
    y = layer(x)
    assert y.shape == (2, 3, 4)
    assert torch.allclose(y, torch.einsum("bhij,bjhc->bihc", alpha, wh).mean(2))


def test_r_zero_or_beta_zero_gives_plain_gat_and_r_one_mixes_the_prior():
    layer = _layer()
    x = torch.randn(1, 3, 5, dtype=torch.float64)
    layer.r.fill_(0.0)
    plain, _ = layer.attention(x)
    layer.r.fill_(1.0)
    mixed, _ = layer.attention(x)
    off = _layer(beta=0.0)
    assert torch.allclose(off.attention(x)[0], plain)
    assert not torch.allclose(plain, mixed)
    assert torch.allclose(mixed.sum(-1), torch.ones_like(mixed.sum(-1)))


def test_set_prior_refuses_mass_off_the_graph():
    layer = _layer()
    with pytest.raises(ValueError, match="zero where the graph has no edge"):
        layer.set_prior(torch.full((3, 3), 1 / 3))
    with pytest.raises(ValueError, match="sum to 1"):
        layer.set_prior(layer.adjacency.double() * 0.1)


def test_layer_refuses_a_node_without_edges():
    with pytest.raises(ValueError, match="edge in every row"):
        DPKGATLayer(4, torch.zeros(3, 3, dtype=torch.bool))


def test_transformer_and_region_se_shapes():
    x = torch.randn(2, 19, 16)
    assert TransformerLayer(16, heads=4)(x).shape == (2, 19, 16)
    assert RegionSE([5, 6, 4, 4], [3, 3, 2, 4], 16)(x).shape == (2, 12, 16)
