"""Pre-trained checkpoints: round trip, refusal of a mismatch, the packaged one, AU pre-training."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mer.data.arrays import MEArrays
from mer.model import build_model
from mer.model.pretrained import (
    CheckpointError,
    apply_init,
    packaged_checkpoint,
    read_checkpoint,
    save_checkpoint,
    set_trainable,
    trainable_names,
)
from mer.train.pretrain import PretrainConfig, au_f1, pretrain, split_subjects


def _named(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def test_checkpoint_round_trip_restores_every_parameter_but_the_classifier(tmp_path):
    torch.manual_seed(1)
    src = build_model("dpk-gat", 5)
    save_checkpoint(src, tmp_path / "ck", {"test": True})
    torch.manual_seed(2)
    dst = build_model("dpk-gat", 3)  # another task: 3 classes, so another classifier shape
    fresh_classifier = dst.classifier[-1].weight.detach().clone()
    doc = apply_init(dst, tmp_path / "ck")
    assert doc["model"] == "dpk-gat" and doc["parameters"] == len(list(src.parameters())) - 2
    a, b = _named(src), _named(dst)
    for name in a:
        if name.startswith("classifier."):
            continue
        assert torch.equal(a[name], b[name]), name
    assert torch.equal(dst.classifier[-1].weight, fresh_classifier)  # the task's own, untouched


def test_checkpoint_of_another_config_is_refused_naming_what_differs(tmp_path):
    save_checkpoint(build_model("dpk-gat", 5, prior="psych"), tmp_path / "psych", {})
    with pytest.raises(CheckpointError, match=r"prior: checkpoint 'psych', model 'both'"):
        apply_init(build_model("dpk-gat", 5), tmp_path / "psych")
    save_checkpoint(build_model("dpk-gat", 5, dim=32, tf_heads=4), tmp_path / "small", {})
    with pytest.raises(CheckpointError, match=r"dim: checkpoint 32, model 64.*parameter enc3.weight: checkpoint shape"):
        apply_init(build_model("dpk-gat", 5), tmp_path / "small")
    with pytest.raises(CheckpointError, match="checkpoint of model 'dpk-gat', not 'flow-cnn'"):
        apply_init(build_model("flow-cnn", 5), tmp_path / "psych")


def test_altered_or_missing_checkpoint_is_refused(tmp_path):
    save_checkpoint(build_model("dpk-gat", 5), tmp_path / "ck", {})
    weights = tmp_path / "ck" / "weights.npz"
    with np.load(weights, allow_pickle=False) as z:
        arrays = {k: np.array(z[k]) for k in z.files}
    arrays["upper.attn_src.weight" if "upper.attn_src.weight" in arrays else next(iter(arrays))] += 1e-3
    np.savez(weights, allow_pickle=False, **arrays)
    with pytest.raises(CheckpointError, match="SHA-256 .* does not match the manifest"):
        read_checkpoint(tmp_path / "ck")
    with pytest.raises(CheckpointError, match="is not a pre-trained checkpoint"):
        apply_init(build_model("dpk-gat", 5), tmp_path / "nowhere")


def test_packaged_checkpoint_fits_the_default_model_and_says_how_it_was_made():
    doc, arrays = read_checkpoint(packaged_checkpoint())  # verifies the SHA-256 too
    model = build_model("dpk-gat", 3)
    apply_init(model, "pretrained")
    assert doc["recipe"]["command"].startswith("fedpsyau pretrain")
    assert doc["recipe"]["corpus"]["clips"] >= 5000
    assert "PRETRAIN_FACES" in doc["recipe"]["corpus"]["faces"]
    assert doc["figures"]["val_au_f1"] > 0.5
    assert apply_init(model, "none") is None


def test_trainable_groups_freeze_everything_else():
    model = build_model("dpk-gat", 3)
    head = set_trainable("dpk-gat", model, "head")
    assert head == ["classifier.1.weight", "classifier.1.bias"]
    assert [n for n, p in model.named_parameters() if p.requires_grad] == head
    graph = trainable_names("dpk-gat", model, "graph")
    assert "upper.heads.weight" in graph or any(n.startswith("upper.") for n in graph)
    assert not any(n.startswith(("enc1.", "mixer.", "regions.")) for n in graph)
    assert len(trainable_names("dpk-gat", model, "all")) == len(list(model.parameters()))
    with pytest.raises(ValueError, match="not defined for model 'flow-cnn' .allowed: all, head"):
        trainable_names("flow-cnn", build_model("flow-cnn", 3), "graph")
    with pytest.raises(ValueError, match="dp_trainable must be one of all, graph, head"):
        trainable_names("dpk-gat", model, "backbone")


def _corpus(n: int = 160, seed: int = 0) -> MEArrays:
    rng = np.random.default_rng(seed)
    au = (rng.random((n, 12)) < 0.25).astype(np.float32)
    flow = rng.normal(0, 0.05, (n, 3, 28, 28)).astype(np.float32)
    # AU k moves a patch of the flow: a learnable signal
    for k in range(12):
        y, x = 2 + 2 * (k % 6), 4 + 12 * (k // 6)
        flow[au[:, k] > 0, 0, y : y + 4, x : x + 6] += 1.0
    return MEArrays(
        flow=flow,
        label=np.zeros(n, np.int64),
        au=au,
        au_known=np.ones(n, bool),
        subject=np.array([f"s{i % 16}" for i in range(n)]),
        dataset=np.array(["t"] * n),
        sample_id=np.array([str(i) for i in range(n)]),
        class_names=("a", "b"),
    )


def test_pretraining_learns_the_aus_and_writes_a_loadable_checkpoint(tmp_path):
    corpus = _corpus()
    model, figures = pretrain(
        corpus, PretrainConfig(clips=len(corpus), epochs=6, batch_size=32, lr=3e-3, val_fraction=0.25, device="cpu")
    )
    assert figures["val_clips"] > 0 and figures["train_clips"] + figures["val_clips"] == len(corpus)
    assert figures["val_au_f1"] > 0.5  # chance with 25 % positives is ~0.3
    save_checkpoint(model, tmp_path / "ck", {"clips": len(corpus)}, figures)
    doc = json.loads((tmp_path / "ck" / "manifest.json").read_text())
    assert doc["figures"]["val_au_f1"] == figures["val_au_f1"]
    apply_init(build_model("dpk-gat", 3), tmp_path / "ck")


def test_pretraining_refuses_a_corpus_without_au_labels():
    corpus = _corpus(40)
    corpus.au_known[:] = False
    with pytest.raises(ValueError, match="must carry AU labels"):
        pretrain(corpus, PretrainConfig(clips=100, epochs=1, device="cpu"))


def test_held_out_subjects_never_train_and_au_f1_scores_what_it_should():
    subject = np.array([f"s{i % 10}" for i in range(100)])
    tr, va = split_subjects(subject, 0.2, 0)
    assert not set(subject[tr]) & set(subject[va]) and len(set(subject[va])) == 2
    truth = np.array([[1, 0], [0, 1], [1, 1]], np.float32)
    assert au_f1(np.where(truth > 0, 1.0, -1.0), truth) == 1.0
    assert au_f1(np.full_like(truth, -1.0), truth) == 0.0


def test_a_checkpoint_serves_another_crop_geometry(tmp_path):
    save_checkpoint(build_model("dpk-gat", 5, face_crop="aligned"), tmp_path / "ck", {})
    tight = build_model("dpk-gat", 3, face_crop="tight")
    apply_init(tight, tmp_path / "ck")  # the patch positions are buffers, the weights are the same
    assert tight.config.face_crop == "tight"
