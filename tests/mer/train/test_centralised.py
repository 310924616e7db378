import numpy as np
import pytest
import torch

from mer.priors import cooccurrence_counts, statistical_prior
from mer.train.centralised import (
    TrainConfig,
    lr_factor,
    predict,
    r_at,
    resolve_device,
    train_model,
)
from mer.train.loso import run_holdout, run_loso

FAST = {"epochs": 12, "batch_size": 12, "lr": 3e-3, "device": "cpu"}


@pytest.mark.parametrize("model", ["dpk-gat", "flow-cnn"])
def test_training_learns_where_the_motion_is(toy_arrays, model):
    m = train_model(toy_arrays, TrainConfig(model=model, **FAST))
    pred, prob = predict(m, toy_arrays.flow)
    assert prob.shape == (len(toy_arrays), 3) and np.allclose(prob.sum(1), 1, atol=1e-5)
    assert (pred == toy_arrays.label).mean() >= 0.8  # chance is 1/3


def test_r_decays_to_zero_or_stays_fixed(toy_arrays):
    small = toy_arrays.subset(np.arange(12))
    decayed = train_model(small, TrainConfig(epochs=1, batch_size=6, device="cpu"))
    fixed = train_model(small, TrainConfig(epochs=1, batch_size=6, device="cpu", r_schedule="fixed", r_fixed=0.7))
    assert decayed.upper.r.item() == 0.0
    assert fixed.coordinated.r.item() == pytest.approx(0.7)
    cfg = TrainConfig()
    assert r_at(cfg, 0, 10) == 1.0 and r_at(cfg, 9, 10) == 0.0 and 0 < r_at(cfg, 5, 10) < 1
    assert lr_factor(cfg, 0, 100) == pytest.approx(0.1) and lr_factor(cfg, 99, 100) < 0.01


def test_statistical_prior_comes_from_training_labels_only(toy_arrays):
    train = toy_arrays.subset(np.arange(12))
    m = train_model(train, TrainConfig(epochs=1, batch_size=12, device="cpu", model_options={"prior": "stat"}))
    want = statistical_prior(cooccurrence_counts(train.au[train.au_known]))
    assert np.allclose(m.stat_prior.numpy(), want, atol=1e-6)


def test_loso_tests_every_sample_once_and_never_trains_on_it(toy_arrays):
    res = run_loso(toy_arrays, TrainConfig(model="flow-cnn", epochs=1, batch_size=16, device="cpu"), progress=False)
    assert sorted(res.sample_id) == sorted(toy_arrays.sample_id)
    assert [f["test"] for f in res.per_fold] == ["toy/s0", "toy/s1", "toy/s2", "toy/s3"]
    assert all(f["n_train"] + f["n_test"] == len(toy_arrays) for f in res.per_fold)
    summary = res.to_dict(TrainConfig(model="flow-cnn"))
    assert {"uf1", "uar", "accuracy", "per_fold", "config", "seconds"} <= set(summary)
    one = run_loso(toy_arrays, TrainConfig(model="flow-cnn", epochs=1, device="cpu"), max_folds=1, progress=False)
    assert len(one.per_fold) == 1 and len(one.y_true) == 9
    hold = run_holdout(toy_arrays, TrainConfig(model="flow-cnn", epochs=1, device="cpu"), 0.25, progress=False)
    assert len(hold.per_fold) == 1 and len(hold.y_true) == 9


def test_bad_configs_are_refused_with_every_problem(toy_arrays):
    with pytest.raises(ValueError, match="epochs must be >= 1.*r_schedule must be one of decay, fixed"):
        train_model(toy_arrays, TrainConfig(epochs=0, r_schedule="cosine"))
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="cuda"):
            resolve_device("cuda")
    assert resolve_device("auto").type in ("cpu", "cuda")
