"""`fedpsyau train --init pretrained|none|PATH`: the checkpoint really is loaded, a misfit is refused."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mer.model import build_model
from mer.model.pretrained import packaged_checkpoint, read_checkpoint, save_checkpoint
from mer.train.centralised import TrainConfig, check_init, make_model, train_config_for

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import me_fixtures as fx
from cli_kit import run_cli as _cli


def _train(tmp_path, *extra) -> list[str]:
    if not (tmp_path / "data").exists():
        fx.composite(tmp_path / "data")
    return [
        "train",
        "--data",
        str(tmp_path / "data"),
        "--format",
        "composite",
        "--device",
        "cpu",
        "--epochs",
        "1",
        "--max-folds",
        "1",
        *extra,
    ]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(11)  # weights no fresh model of the run's seed has
    path = tmp_path_factory.mktemp("ck") / "dpk"
    save_checkpoint(build_model("dpk-gat", 5), path, {"test": True})
    return path


def _final_weights(run: Path) -> dict[str, np.ndarray]:
    with np.load(run / "weights.npz", allow_pickle=False) as z:
        return {k: np.array(z[k]) for k in z.files}


def test_train_from_a_checkpoint_starts_from_its_parameters(tmp_path, checkpoint, capsys):
    # a learning rate so small that training cannot move a weight measurably: the final model's
    # weights are then the ones it started from
    run = tmp_path / "run"
    assert _cli(_train(tmp_path, "--out", str(run), "--init", str(checkpoint), "--lr", "1e-12")) == 0
    out = capsys.readouterr().out
    doc, arrays = read_checkpoint(checkpoint)
    assert f"init: {checkpoint}" in out and doc["weights_sha256"][:12] in out
    summary = json.loads((run / "summary.json").read_text())
    assert summary["config"]["init"] == str(checkpoint)
    assert summary["init"]["weights_sha256"] == doc["weights_sha256"]
    final = _final_weights(run)
    loaded = [n for n in arrays if n in final]
    assert len(loaded) == len(arrays) > 40
    for name in loaded:
        np.testing.assert_allclose(final[name], arrays[name], atol=1e-6, err_msg=name)
    # and from scratch the same run ends elsewhere: the match above is the checkpoint's doing
    scratch = tmp_path / "scratch"
    assert _cli(_train(tmp_path, "--out", str(scratch), "--init", "none", "--lr", "1e-12")) == 0
    assert "init: none (from scratch)" in capsys.readouterr().out
    other = _final_weights(scratch)
    assert max(np.abs(other[n] - arrays[n]).max() for n in loaded) > 1e-2


def test_dpkgat_defaults_to_the_packaged_checkpoint_like_simulate(tmp_path, capsys):
    assert train_config_for("dpk-gat").init == "pretrained"
    assert train_config_for("flow-cnn").init == train_config_for("ststnet").init == "none"
    run = tmp_path / "run"
    assert _cli(_train(tmp_path, "--out", str(run), "--lr", "1e-12")) == 0
    assert "init: pretrained (the packaged public AU checkpoint" in capsys.readouterr().out
    doc, arrays = read_checkpoint(packaged_checkpoint())
    summary = json.loads((run / "summary.json").read_text())
    assert summary["init"] == {"init": "pretrained", "weights_sha256": doc["weights_sha256"]}
    final = _final_weights(run)
    for name in arrays:
        np.testing.assert_allclose(final[name], arrays[name], atol=1e-6, err_msg=name)


def test_a_checkpoint_of_another_width_is_refused_naming_the_field(tmp_path, capsys):
    narrow = tmp_path / "narrow"
    save_checkpoint(build_model("dpk-gat", 5, dim=32), narrow, {"test": True})
    assert _cli(_train(tmp_path, "--out", str(tmp_path / "r"), "--init", str(narrow))) == 2
    err = capsys.readouterr().err
    assert "dim: checkpoint 32, model 64" in err and "does not fit this dpk-gat model" in err
    assert not (tmp_path / "r").exists()  # refused before any work


def test_the_default_checkpoint_with_another_prior_is_refused_with_the_way_out(tmp_path, capsys):
    assert _cli(_train(tmp_path, "--out", str(tmp_path / "r"), "--prior", "psych")) == 2
    err = capsys.readouterr().err
    assert "--init pretrained (the default for dpk-gat)" in err
    assert "prior: checkpoint 'both', model 'psych'" in err and "--init none" in err


@pytest.mark.parametrize("model", ["flow-cnn", "ststnet"])
def test_pretrained_is_refused_for_models_without_a_checkpoint(tmp_path, capsys, model):
    assert _cli(_train(tmp_path, "--out", str(tmp_path / "r"), "--model", model, "--init", "pretrained")) == 2
    assert f"the packaged checkpoint is for dpk-gat, not {model}" in capsys.readouterr().err


def test_a_missing_or_altered_checkpoint_is_refused(tmp_path, checkpoint, capsys):
    assert _cli(_train(tmp_path, "--out", str(tmp_path / "r"), "--init", str(tmp_path / "nowhere"))) == 2
    assert "is not a pre-trained checkpoint" in capsys.readouterr().err
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in ("manifest.json", "weights.npz"):
        (bad / f).write_bytes((checkpoint / f).read_bytes())
    raw = bytearray((bad / "weights.npz").read_bytes())
    raw[-100] ^= 0xFF
    (bad / "weights.npz").write_bytes(bytes(raw))
    assert _cli(_train(tmp_path, "--out", str(tmp_path / "r"), "--init", str(bad))) == 2
    assert "does not match the manifest's" in capsys.readouterr().err


def test_make_model_loads_every_parameter_but_the_classifier(checkpoint):
    cfg = TrainConfig(init=str(checkpoint), device="cpu")
    assert check_init(cfg)["model"] == "dpk-gat"
    _, arrays = read_checkpoint(checkpoint)
    torch.manual_seed(0)
    model = make_model(cfg, 3)
    for name, p in model.named_parameters():
        if name.startswith("classifier."):
            assert name not in arrays
        else:
            assert np.array_equal(p.detach().numpy(), arrays[name]), name
    assert TrainConfig(model="ststnet", init="pretrained").problems()
