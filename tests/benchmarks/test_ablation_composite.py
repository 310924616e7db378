"""benchmarks/ablation_composite.py and ranking.py: the claims and bookkeeping behind their tables."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

_BENCH = str(Path(__file__).resolve().parents[2] / "benchmarks")
if _BENCH not in sys.path:
    sys.path.insert(0, _BENCH)

import ablation_composite as ab
import ranking

from mer.model import build_model


def _outputs(prior: str, x: torch.Tensor) -> torch.Tensor:
    torch.manual_seed(3)
    model = build_model("dpk-gat", 3, prior=prior)
    model.set_statistical_prior(np.zeros((12, 12), dtype=np.int64))  # no AU-labelled sample
    model.set_r(1.0)
    return model.eval()(x)[0]


def test_without_au_labels_psych_stat_and_both_priors_are_one_model():
    # why the ablation's psych / stat / both rows agree on the composite-like preset
    torch.manual_seed(0)
    x = torch.randn(4, 3, 28, 28)
    both = _outputs("both", x)
    assert torch.equal(both, _outputs("psych", x)) and torch.equal(both, _outputs("stat", x))
    assert not torch.allclose(both, _outputs("none", x))


def _run(variant: str, seed: int, uf1: float) -> dict:
    return {"variant": variant, "seed": seed, "uf1": uf1, "uar": uf1, "seconds_per_fold": 1.0}


def test_summary_is_mean_sd_over_seeds_and_paired_difference_to_its_own_base():
    runs = [_run(ab.BASE, s, u) for s, u in ((0, 0.5), (1, 0.6), (2, 0.4))]
    runs += [_run("dpk-gat pretrained", s, u) for s, u in ((0, 0.6), (1, 0.6), (2, 0.6))]
    runs += [_run(ab.CASME2_BASE, 0, 0.3), _run("casme2-like dpk-gat AU loss off", 0, 0.2)]
    s = ab.summarize_runs(runs)
    assert s[ab.BASE]["uf1"]["mean"] == pytest.approx(0.5) and s[ab.BASE]["uf1"]["sd"] == pytest.approx(0.1)
    d = s["dpk-gat pretrained"]["uf1_minus_base"]
    assert d["mean"] == pytest.approx(0.1) and d["sd"] == pytest.approx(0.1)
    assert s["casme2-like dpk-gat AU loss off"]["uf1_minus_base"]["mean"] == pytest.approx(-0.1)
    assert s["casme2-like dpk-gat AU loss off"]["uf1"]["sd"] is None  # one seed: no sd


def test_ranking_merge_refuses_runs_of_another_protocol(tmp_path, capsys):
    other = tmp_path / "loso.json"
    other.write_text(json.dumps({"protocol": "LOSO; fixed recipes", "runs": []}))
    assert ranking.main(["--seeds", "--runs-from", str(other), "--out", str(tmp_path)]) == 2
    assert "expected 'subject-grouped 10-fold" in capsys.readouterr().err


def test_ablation_variants_start_from_the_weights_they_claim():
    # the checkpoint cannot serve another prior, so only the 'pretrained' row loads it
    inits = {n: o.get("init") for n, (_, m, o) in ab.VARIANTS.items() if m != "logreg"}
    assert inits.pop("dpk-gat pretrained") == "pretrained"
    assert set(inits.values()) == {"none"}
