"""The example workload implements the Trainer interface and learns on its non-IID shards."""

from __future__ import annotations

import numpy as np
import pytest

from fedcore.common.workload import Trainer, Workload, load_workload
from fedcore.common.errors import ConfigError
from fedcore.examples.synthetic import DataSettings, make_shard

W = load_workload("fedcore.examples.softmax:workload")


def test_workload_and_trainer_satisfy_the_protocols(tmp_path):
    assert isinstance(W, Workload)
    assert isinstance(W.make_trainer({"client_index": 0}, "a", tmp_path, "cpu"), Trainer)


def test_shards_are_deterministic_and_non_iid():
    a = make_shard(DataSettings(client_index=0))
    again = make_shard(DataSettings(client_index=0))
    b = make_shard(DataSettings(client_index=1))
    np.testing.assert_array_equal(a.x_train, again.x_train)
    mix_a = np.bincount(a.y_train, minlength=4) / len(a.y_train)
    mix_b = np.bincount(b.y_train, minlength=4) / len(b.y_train)
    assert np.abs(mix_a - mix_b).sum() > 0.3  # clearly different label mixes


def test_federated_averaging_improves_pooled_accuracy(tmp_path):
    params, spec = W.initial_parameters({}, seed=0)
    trainers = [W.make_trainer({"client_index": i}, str(i), tmp_path, "cpu") for i in range(3)]
    stats = sum(t.statistics({}) for t in trainers)
    assert stats.sum() == 3 * 180 and W.statistics_spec({}) == (4, 240.0)

    def pooled_accuracy(p):
        cm = sum(t.evaluate(p, spec, 0, {}, stats).confusion for t in trainers)
        return np.trace(cm) / cm.sum()

    before = pooled_accuracy(params)
    for r in range(1, 4):
        fits = [t.fit(params, spec, r, {"lr": 0.1}, stats) for t in trainers]
        n = sum(f.num_examples for f in fits)
        params = (sum(f.parameters.astype(np.float64) * f.num_examples for f in fits) / n).astype(np.float32)
    assert pooled_accuracy(params) > before + 0.2


def test_proximal_term_keeps_the_update_closer_to_the_global_model(tmp_path):
    params, spec = W.initial_parameters({}, seed=0)
    t = W.make_trainer({"client_index": 1}, "b", tmp_path, "cpu")
    free = t.fit(params, spec, 1, {"lr": 0.5, "epochs": 3}, None).parameters
    prox = t.fit(params, spec, 1, {"lr": 0.5, "epochs": 3, "proximal_mu": 1.0}, None).parameters
    assert np.linalg.norm(prox - params) < 0.8 * np.linalg.norm(free - params)


def test_bad_settings_are_reported_together():
    with pytest.raises(ConfigError) as exc:
        DataSettings.from_mapping({"client_index": 5, "num_clients": 3, "alpha": -1, "samples": "many"})
    text = str(exc.value)
    assert "client_index" in text and "alpha" in text and "samples must be an integer" in text
