"""The honest protocol, stated and kept: model recipes, no test-epoch selection, per-fold lines."""

import json
import logging
import sys
from pathlib import Path

import numpy as np
import pytest

from mer.train import centralised, loso
from mer.train.centralised import TrainConfig, loss_weights, train_config_for, train_model
from mer.train.loso import protocol_line, run_loso

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import me_fixtures as fx
from cli_kit import run_cli as _cli


def test_ststnet_without_options_gets_its_published_recipe():
    cfg = train_config_for("ststnet")
    assert (cfg.epochs, cfg.batch_size, cfg.lr, cfg.optimizer, cfg.lr_schedule, cfg.weight_decay) == (
        500,
        256,
        5e-5,
        "adam",
        "constant",
        0.0,
    )
    assert train_config_for("ststnet", epochs=7, lr=None).epochs == 7  # None keeps the model's value
    # the plain defaults are DPK-GAT's recipe; its starting weights are simulate's default, the
    # packaged checkpoint, where the dataclass itself stays at scratch
    assert train_config_for("dpk-gat") == TrainConfig(init="pretrained")
    with pytest.raises(ValueError, match="unknown TrainConfig field.*epoch"):
        train_config_for("ststnet", epoch=3)


def test_constant_schedule_keeps_the_learning_rate():
    cfg = train_config_for("ststnet")
    assert {centralised.lr_factor(cfg, s, 100) for s in (0, 50, 99)} == {1.0}


def test_training_without_au_labels_logs_emotion_loss_only(toy_arrays, caplog, monkeypatch):
    monkeypatch.setattr(centralised, "_logged", set())
    data = toy_arrays.subset(np.arange(12))
    data.au_known[:] = False
    with caplog.at_level(logging.INFO, logger="mer.train.centralised"):
        train_model(data, TrainConfig(epochs=1, batch_size=12, device="cpu"))
        train_model(data, TrainConfig(epochs=1, batch_size=12, device="cpu"))
    assert [r.getMessage() for r in caplog.records].count("no AU labels: emotion loss only (weight 1)") == 1
    w = loss_weights(TrainConfig(), 0.0)
    assert (w.emotion, w.au) == (1.0, 0.0)


def test_models_without_au_heads_get_the_full_emotion_weight():
    assert loss_weights(TrainConfig(model="flow-cnn"), 1.0, predicts_aus=False) == loss_weights(TrainConfig(), 0.0)
    w = loss_weights(TrainConfig(), 0.75, predicts_aus=True)
    assert w.emotion == pytest.approx(0.4) and w.au == pytest.approx(0.6)


def test_each_test_fold_is_predicted_once_after_its_training(toy_arrays, monkeypatch):
    events = []
    real_train, real_predict = loso.train_model, loso.predict

    def train(data, cfg, *a, **k):
        events.append(("train", frozenset(data.subject)))
        return real_train(data, cfg, *a, **k)

    def predict(model, flow, *a, **k):
        events.append(("predict", len(flow)))
        return real_predict(model, flow, *a, **k)

    monkeypatch.setattr(loso, "train_model", train)
    monkeypatch.setattr(loso, "predict", predict)
    res = run_loso(toy_arrays, TrainConfig(model="flow-cnn", epochs=2, batch_size=16, device="cpu"), progress=False)
    assert [e[0] for e in events] == ["train", "predict"] * 4  # no evaluation during or between epochs
    for (_, subjects), fold in zip(events[::2], res.per_fold):
        assert fold["test"] not in subjects


def test_fold_lines_carry_an_eta_when_not_a_terminal(toy_arrays, capsys):
    run_loso(toy_arrays, TrainConfig(model="flow-cnn", epochs=1, batch_size=16, device="cpu"), progress="lines")
    lines = [ln for ln in capsys.readouterr().out.splitlines() if " fold " in ln]
    assert len(lines) == 4 and lines[0].startswith("loso flow-cnn fold 1/4 toy/s0:")
    assert all("pooled UF1" in ln and "ETA" in ln for ln in lines) and lines[-1].endswith("ETA 0m00s")
    with pytest.raises(ValueError, match="progress must be one of bar, lines, off"):
        run_loso(toy_arrays, TrainConfig(model="flow-cnn", epochs=1, device="cpu"), progress="tqdm")


def test_train_states_the_protocol_and_uses_the_model_recipe(tmp_path, capsys):
    fx.composite(tmp_path / "data")
    run = tmp_path / "run"
    assert (
        _cli(
            [
                "train",
                "--data",
                str(tmp_path / "data"),
                "--format",
                "composite",
                "--out",
                str(run),
                "--model",
                "ststnet",
                "--max-folds",
                "1",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    summary = json.loads((run / "summary.json").read_text())
    assert summary["protocol_line"] == "LOSO, fixed 500 epochs, last epoch, no test-epoch selection"
    assert "protocol: LOSO, fixed 500 epochs, last epoch, no test-epoch selection" in out
    assert "ststnet: 500 epochs, batch 256, Adam lr 5e-05 constant (the model's own recipe)" in out
    assert "loss: 1 x CE(emotion) (0% of the samples have AU labels)" in out
    assert (summary["config"]["epochs"], summary["config"]["lr"]) == (500, 5e-5)
    assert (
        protocol_line("holdout", TrainConfig(epochs=3))
        == "HOLDOUT, fixed 3 epochs, last epoch, no test-epoch selection"
    )
