import numpy as np
import pytest
import torch
from torch import nn

from mer.model import (
    MODELS,
    build_model,
    load_model,
    mer_loss,
    per_sample_loss,
    save_model,
)
from mer.priors import cooccurrence_counts

ALLOWED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.GroupNorm, nn.LayerNorm)


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("size", [28, 64, 128])
def test_models_take_any_flow_size_and_return_the_output_tuple(name, size):
    model = build_model(name, 5).eval()
    logits, au, aux = model(torch.randn(3, 3, size, size))
    assert logits.shape == (3, 5)
    if name == "dpk-gat":
        assert au.shape == aux.shape == (3, 12)
    else:
        assert au is None and aux is None


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_weight_is_in_an_opacus_supported_layer(name):
    model = build_model(name, 3)
    for mod in model.modules():
        assert not isinstance(mod, nn.modules.batchnorm._BatchNorm)
        if any(True for _ in mod.parameters(recurse=False)):
            assert isinstance(mod, ALLOWED), type(mod)


def test_model_refuses_a_non_flow_input():
    with pytest.raises(ValueError, match=r"\(B, 3, S, S\)"):
        build_model("dpk-gat", 3)(torch.randn(2, 1, 28, 28))


def test_build_model_lists_valid_names_and_options():
    with pytest.raises(ValueError, match="dpk-gat, flow-cnn"):
        build_model("resnet", 3)
    with pytest.raises(ValueError, match="valid: .*prior"):
        build_model("dpk-gat", 3, priors="psych")
    with pytest.raises(ValueError, match="prior must be one of both, psych, stat, none"):
        build_model("dpk-gat", 3, prior="social")


def test_prior_kinds_set_the_graph_priors():
    counts = np.zeros((12, 12), np.int64)
    counts[0, 0] = counts[1, 1] = counts[0, 1] = counts[1, 0] = 10  # AU1 and AU2 always together
    psych = build_model("dpk-gat", 3, prior="psych")
    stat = build_model("dpk-gat", 3, prior="stat")
    both = build_model("dpk-gat", 3, prior="both")
    none = build_model("dpk-gat", 3, prior="none")
    for m in (psych, stat, both):
        m.set_statistical_prior(counts)
    up_psych, up_stat = psych.upper.prior, stat.upper.prior
    assert torch.allclose(up_psych[0], torch.tensor([0.25, 0.25, 0.25, 0.25, 0, 0]))
    assert up_stat[0, 1] > up_stat[0, 2]  # AU1 -> AU2 favoured by the counts
    assert torch.allclose(both.upper.prior, (up_psych + up_stat) / 2)
    assert none.upper.beta == 0 and psych.upper.beta == 0.3


def test_r_is_set_on_every_graph_layer():
    m = build_model("dpk-gat", 3)
    m.set_r(0.25)
    assert all(layer.r.item() == 0.25 for layer in (m.upper, m.lower, m.coordinated))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        m.set_r(1.5)


def test_loss_masks_au_terms_and_survives_a_batch_without_aus():
    torch.manual_seed(0)
    logits, au_logits, aux = torch.randn(4, 3), torch.randn(4, 12), torch.randn(4, 12)
    label, au = torch.tensor([0, 1, 2, 0]), (torch.rand(4, 12) > 0.5).float()
    none_known = torch.zeros(4, dtype=torch.bool)
    ce = torch.nn.functional.cross_entropy(logits, label, reduction="none")
    loss = per_sample_loss((logits, au_logits, aux), label, au, none_known)
    assert torch.allclose(loss, 0.2 * ce)
    known = torch.tensor([True, False, True, True])
    full = per_sample_loss((logits, au_logits, aux), label, au, known)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    want0 = 0.2 * ce[0] + 0.8 * (bce(au_logits[0], au[0]) + bce(aux[0], au[0]))
    assert torch.isclose(full[0], want0) and torch.isclose(full[1], 0.2 * ce[1])
    assert torch.isfinite(mer_loss((logits, None, None), label, au, known))


def test_saved_model_loads_without_torch_load_and_predicts_the_same(tmp_path):
    m = build_model("dpk-gat", 4, prior="stat")
    m.set_statistical_prior(cooccurrence_counts(np.random.default_rng(0).random((30, 12)) > 0.7))
    m.set_r(0.4)
    save_model(m, tmp_path, "dpk-gat", {"class_names": ["a", "b", "c", "d"]})
    loaded, meta = load_model(tmp_path)
    x = torch.randn(2, 3, 28, 28)
    assert torch.allclose(m.eval()(x)[0], loaded(x)[0])
    assert torch.equal(loaded.upper.prior, m.upper.prior) and loaded.upper.r.item() == pytest.approx(0.4)
    assert meta["class_names"] == ["a", "b", "c", "d"]
    with np.load(tmp_path / "weights.npz", allow_pickle=False) as z:
        assert "coordinated.adjacency" in z.files


def test_loading_refuses_mismatched_weights(tmp_path):
    save_model(build_model("flow-cnn", 3), tmp_path, "flow-cnn")
    with np.load(tmp_path / "weights.npz") as z:
        arrays = dict(z)
    arrays.pop("classifier.1.bias")
    np.savez(tmp_path / "weights.npz", **arrays)
    with pytest.raises(ValueError, match="missing classifier.1.bias"):
        load_model(tmp_path)
