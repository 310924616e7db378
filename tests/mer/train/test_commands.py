"""`fedpsyau train` / `evaluate` end to end on the data side's fixtures of every input format."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest


sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import me_fixtures as fx
from cli_kit import run_cli as _cli


def _manifest(root: Path) -> None:
    rows = [["subject", "sample_id", "emotion", "flow"]]
    for i in range(6):
        np.save(root / f"f{i}.npy", np.random.default_rng(i).normal(size=(3, 16, 16)).astype(np.float32))
        rows.append([f"p{i % 3}", f"s{i}", ("joy", "fear")[i % 2], f"f{i}.npy"])
    fx.write_csv(root / "manifest.csv", rows)


WRITERS = {
    "casme2": fx.casme2,
    "samm": fx.samm,
    "smic": fx.smic,
    "casme3": fx.casme3,
    "composite": fx.composite,
    "manifest": _manifest,
}


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_train_runs_on_every_format_fixture(tmp_path, fmt):
    data = tmp_path / "data"
    data.mkdir()
    WRITERS[fmt](data)
    run = tmp_path / "run"
    size = ["--size", "32"] if fmt not in ("composite", "manifest") else []
    code = _cli(
        [
            "train",
            "--data",
            str(data),
            "--format",
            fmt,
            "--out",
            str(run),
            "--model",
            "flow-cnn",
            "--epochs",
            "1",
            "--max-folds",
            "2",
            "--device",
            "cpu",
            *size,
        ]
    )
    assert code == 0
    summary = json.loads((run / "summary.json").read_text())
    assert {"uf1", "uar", "accuracy", "per_fold", "config", "seconds"} <= set(summary)
    assert len(summary["per_fold"]) == 2 and summary["config"]["model"] == "flow-cnn"
    assert (run / "confusion.png").stat().st_size > 0
    assert (run / "model.json").is_file() and (run / "weights.npz").is_file()


def test_trained_dpkgat_is_evaluated_from_its_run_folder(tmp_path):
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
                "--epochs",
                "1",
                "--prior",
                "psych",
                "--no-au-loss",
                "--r-schedule",
                "fixed",
                "--init",
                "none",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    summary = json.loads((run / "summary.json").read_text())
    assert (
        summary["config"]["model_options"] == {"prior": "psych", "face_crop": "tight"}
        and summary["config"]["au_loss"] is False
    )
    assert summary["n_samples"] == 6 and summary["n_folds"] == len({f["test"] for f in summary["per_fold"]})
    assert (
        _cli(
            [
                "evaluate",
                "--model-dir",
                str(run),
                "--data",
                str(tmp_path / "data"),
                "--format",
                "composite",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    ev = json.loads((run / "evaluation.json").read_text())
    assert ev["n_samples"] == 6 and len(ev["predictions"]) == 6


def test_prior_with_flow_cnn_and_a_missing_model_are_config_errors(tmp_path, capsys):
    fx.composite(tmp_path / "data")
    assert (
        _cli(
            [
                "train",
                "--data",
                str(tmp_path / "data"),
                "--format",
                "composite",
                "--out",
                str(tmp_path / "r"),
                "--model",
                "flow-cnn",
                "--prior",
                "psych",
            ]
        )
        == 2
    )
    assert "--prior applies to dpk-gat only" in capsys.readouterr().err
    assert (
        _cli(
            [
                "evaluate",
                "--model-dir",
                str(tmp_path / "nothing"),
                "--data",
                str(tmp_path / "data"),
                "--format",
                "composite",
            ]
        )
        == 2
    )
    assert "not a saved model" in capsys.readouterr().err
