"""The MER workload from a pre-trained checkpoint: frozen parameters never move, travel or cost privacy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fedcore.dp.accounting import account
from mer.data.arrays import MEArrays
from fedcore.coordinator.checkpoint import CheckpointStore
from mer.commands import bench
from mer.model import build_model
from mer.model.pretrained import CheckpointError, read_checkpoint, save_checkpoint
from mer.train.federated import workload


def _data(n: int = 72, seed: int = 0) -> MEArrays:
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 3, n)
    flow = rng.normal(0, 0.1, (n, 3, 28, 28)).astype(np.float32)
    flow[:, 0, 10:16, 8:20] += label[:, None, None] * 0.5  # a class signal
    au = (rng.random((n, 12)) < 0.2).astype(np.float32)
    return MEArrays(
        flow=flow,
        label=label.astype(np.int64),
        au=au,
        au_known=np.ones(n, bool),
        subject=np.array([f"s{i % 12:02d}" for i in range(n)]),
        dataset=np.array(["t"] * n),
        sample_id=np.array([str(i) for i in range(n)]),
        class_names=("neg", "pos", "sur"),
    )


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(7)
    path = tmp_path_factory.mktemp("ck") / "dpk"
    save_checkpoint(build_model("dpk-gat", 5), path, {"test": True})
    return path


def _settings(checkpoint, **kw):
    return {
        "format": "composite",
        "partition": "subjects",
        "num_classes": 3,
        "model": "dpk-gat",
        "seed": 0,
        "test_fraction": 0.25,
        "init": str(checkpoint),
        "dp_trainable": "head",
        "epochs": 2,
        "batch_size": 8,
        "lr": 0.01,
        **kw,
    }


def _trainers(settings, data, tmp_path):
    """The clients' trainers on in-memory data, in the workdirs their daemons use (one ledger each)."""
    return {
        f"client{i + 1}": workload.make_trainer(
            {**settings, "client_index": i, "num_clients": 3},
            f"client{i + 1}",
            _workdir(tmp_path, f"client{i + 1}"),
            "cpu",
            data=data,
        )
        for i in range(3)
    }


def _workdir(tmp_path, cid):
    return tmp_path / "run" / "federation" / "clients" / cid / "work"


def _federate(mode, settings, privacy, tmp_path, trainers):
    res = bench.federate(mode, settings, 3, 2, privacy, 0, tmp_path / "run", trainers=trainers)
    return CheckpointStore(res.run_dir / "checkpoints").load_latest()


def test_frozen_parameters_are_bit_identical_after_dp_rounds_and_never_travel(checkpoint, tmp_path):
    data = _data()
    settings = _settings(checkpoint)
    trainers = _trainers(settings, data, tmp_path)
    privacy = {"target_epsilon": 8.0, "max_grad_norm": 1.0, "secure_rng": False}
    run = _federate("secagg", settings, privacy, tmp_path, trainers)
    # the federation's vector is the classifier only: nothing else is sent, masked or aggregated
    assert [t.name for t in run.spec.tensors] == ["classifier.1.weight", "classifier.1.bias"]
    _, arrays = read_checkpoint(checkpoint)
    init, _ = workload.initial_parameters(settings, 0)
    assert np.abs(run.params - init).max() > 1e-4  # the head did train
    for trainer in trainers.values():
        for name, p in trainer.model.named_parameters():
            if name.startswith("classifier."):
                continue
            assert not p.requires_grad, name
            assert np.array_equal(p.detach().numpy(), arrays[name]), f"{name} moved"


def test_ledger_epsilon_with_frozen_layers_is_the_accountants_for_the_steps_taken(checkpoint, tmp_path):
    data = _data()
    settings = _settings(checkpoint)
    trainers = _trainers(settings, data, tmp_path)
    privacy = {"target_epsilon": 4.0, "max_grad_norm": 1.0, "secure_rng": False}
    res = bench.federate("plain", settings, 3, 2, privacy, 0, tmp_path / "run", trainers=trainers)
    t = trainers["client1"]
    n = len(t.train)
    q = 1.0 / math.ceil(n / settings["batch_size"])
    steps = 2 * settings["epochs"] * math.ceil(n / settings["batch_size"])
    # the ledger holds the round-0 statistics release (one Gaussian release, q = 1) and the DP-SGD
    # steps at the plan's (q, sigma): nothing is charged for the frozen layers
    stats = [c for c in t._ledger.charges if c.round == 0]
    sgd = [c for c in t._ledger.charges if c.round > 0]
    assert len(stats) == 1 and stats[0].sample_rate == 1.0 and stats[0].steps == 1
    assert {(c.sample_rate, c.noise_multiplier) for c in sgd} == {(q, t._plan_.noise_multiplier)}
    want = account(
        [(1.0, stats[0].noise_multiplier, 1), (q, t._plan_.noise_multiplier, steps)],
        t._plan_.delta,
        t._plan_.accountant,
    ).epsilon
    assert res.metrics[-1]["privacy"]["client1"]["epsilon"] == pytest.approx(want, rel=1e-9)
    assert sum(c.steps for c in sgd) == steps


def test_a_client_with_another_checkpoint_is_refused(checkpoint, tmp_path):
    data = _data()
    with pytest.raises(CheckpointError, match="the federation expects"):
        workload.make_trainer(
            {**_settings(checkpoint, init_sha256="0" * 64), "client_index": 0, "num_clients": 3},
            "client1",
            tmp_path,
            "cpu",
            data=data,
        )
    with pytest.raises(CheckpointError, match="prior: checkpoint 'both', model 'psych'"):
        workload.initial_parameters(_settings(checkpoint, model_options={"prior": "psych"}), 0)


def test_head_only_training_matches_the_full_forward_path(checkpoint, tmp_path):
    """The fast path (classifier inputs computed once) trains the same classifier as the full model
    would with its frozen part in eval mode: same inputs, same losses, same steps."""
    data = _data(48)
    settings = _settings(checkpoint, epochs=1, batch_size=16)
    t = workload.make_trainer({**settings, "client_index": 0, "num_clients": 1}, "c", tmp_path, "cpu", data=data)
    feats = t._classifier_inputs()
    t.model.eval()
    with torch.no_grad():
        full = t.model(t._train_tensors[0])[0]
        head = t.model.classifier(feats)
    torch.testing.assert_close(head, full, rtol=1e-5, atol=1e-5)


def test_one_sample_changes_the_statistics_by_at_most_the_declared_sensitivity(checkpoint, tmp_path):
    from mer.priors.stat import counts_to_vector
    from mer.priors import cooccurrence_counts
    from mer.train.federated import MAX_AUS_PER_SAMPLE, cap_aus

    data = _data()
    data.au[0] = 1.0  # a sample with all 12 AUs: capped to MAX_AUS_PER_SAMPLE
    bound = workload.statistics_sensitivity({})
    assert bound == pytest.approx(math.sqrt(MAX_AUS_PER_SAMPLE * (MAX_AUS_PER_SAMPLE + 1) / 2))
    for i in range(len(data)):
        with_i = counts_to_vector(cooccurrence_counts(cap_aus(data.au, MAX_AUS_PER_SAMPLE)))
        without = counts_to_vector(cooccurrence_counts(cap_aus(np.delete(data.au, i, axis=0), MAX_AUS_PER_SAMPLE)))
        assert np.linalg.norm(with_i - without) <= bound + 1e-12
    # and the bound is tight for the capped sample
    full = counts_to_vector(cooccurrence_counts(cap_aus(data.au, MAX_AUS_PER_SAMPLE)))
    rest = counts_to_vector(cooccurrence_counts(cap_aus(data.au[1:], MAX_AUS_PER_SAMPLE)))
    assert np.linalg.norm(full - rest) == pytest.approx(bound)


def test_augmentation_multiplicity_adds_shifted_views_after_the_sample_itself(checkpoint, tmp_path):
    from mer.train.federated import shift_image

    data = _data(30)
    t = workload.make_trainer(
        {**_settings(checkpoint), "client_index": 0, "num_clients": 1}, "c", tmp_path, "cpu", data=data
    )
    one, four = t._classifier_inputs(1), t._classifier_inputs(4)
    assert one.shape == (len(t.train), one.shape[1]) and four.shape == (len(t.train), 4, one.shape[1])
    torch.testing.assert_close(four[:, 0], one)  # view 0 is the image itself
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    assert torch.equal(shift_image(x, 1, 0)[0, 0, 1:], x[0, 0, :3]) and torch.equal(shift_image(x, 0, 0), x)
    with pytest.raises(ValueError, match="aug_mult must be >= 1"):
        t._classifier_inputs(0)
