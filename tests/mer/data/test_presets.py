"""Synthetic benchmark presets: documented statistics, reader round trips, render == write + load."""

from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import replace

import cv2
import numpy as np
import pytest

from mer.data.corpus import kept_emotions, render_plan
from mer.data.load import load_with_report
from mer.data.preset_write import write_preset
from mer.data.presets import PRESETS, emotion_combos, get_preset
from mer.data.synth_faces import EVAL_FACES
from mer.data.synth_plan import largest_remainder, make_plan

COMPOSITE = {
    "casme2": (145, 24, {"negative": 88, "positive": 32, "surprise": 25}),
    "samm": (133, 28, {"negative": 92, "positive": 26, "surprise": 15}),
    "smic": (164, 16, {"negative": 70, "positive": 51, "surprise": 43}),
}


@pytest.fixture(scope="module")
def composite_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("composite-like")
    return out, write_preset(out, "composite-like", seed=0)


def _cli(argv: list[str]) -> int:
    import argparse

    from mer.data.commands import register

    ap = argparse.ArgumentParser(prog="fedpsyau")
    register(ap.add_subparsers(dest="command", required=True))
    args = ap.parse_args(argv)
    return args.func(args)


@pytest.fixture(scope="module")
def casme2_dir(tmp_path_factory):
    """casme2-like written through ``fedpsyau data synth --preset casme2-like`` (rc, stdout, folder)."""
    import contextlib
    import io

    out = tmp_path_factory.mktemp("casme2-like") / "c"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = _cli(["data", "synth", "--preset", "casme2-like", "--out", str(out)])
    return rc, buf.getvalue(), out


def test_composite_like_has_the_composites_counts(composite_dir):
    _, s = composite_dir
    assert s["samples"] == 442 and s["subjects"] == 68
    assert s["per_class"] == {"negative": 250, "positive": 109, "surprise": 83}
    for src, (n, subjects, classes) in COMPOSITE.items():
        assert s["per_source"][src] == n and s["subjects_per_source"][src] == subjects
        assert s["per_source_class"][src] == classes
    assert set(s["faces"].values()) <= set(EVAL_FACES) and len(set(s["faces"].values())) == 68


def test_composite_like_files_are_28x28_rgb_without_au_columns(composite_dir):
    out, _ = composite_dir
    with open(out / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["dataset", "subject", "sample", "label"]  # no AU column, as the composite
    assert Counter(r["dataset"] for r in rows) == {k: v[0] for k, v in COMPOSITE.items()}
    pngs = sorted((out / "flows").glob("*.png"))
    assert len(pngs) == 442
    for p in pngs[:40]:
        img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        assert img.shape == (28, 28, 3) and img.dtype == np.uint8
        # min-max per channel: every channel spans 0..255
        assert (img.reshape(-1, 3).min(0) == 0).all() and (img.reshape(-1, 3).max(0) == 255).all()


def test_composite_reader_loads_composite_like_with_its_counts(composite_dir):
    out, _ = composite_dir
    arr, rep = load_with_report(out, "composite", progress=False)
    assert len(arr) == 442 and not rep.skipped and rep.unmapped == Counter()
    assert arr.flow.shape == (442, 3, 28, 28) and not arr.au_known.any()
    assert np.bincount(arr.label).tolist() == [250, 109, 83]
    assert len(set(arr.subject)) == 68 and Counter(arr.dataset) == {k: v[0] for k, v in COMPOSITE.items()}


def test_render_plan_equals_the_written_composite_as_the_reader_loads_it(composite_dir):
    out, _ = composite_dir
    loaded, _ = load_with_report(out, "composite", progress=False)
    plan = make_plan(get_preset("composite-like"), 0, "eval")
    sub = [0, 1, 150, 151, 300, 301, 441]  # clips of all three sources
    rendered = render_plan(replace(plan, clips=tuple(plan.clips[i] for i in sub)), workers=1)
    assert np.array_equal(rendered.flow, loaded.flow[sub])
    assert np.array_equal(rendered.label, loaded.label[sub])
    assert list(rendered.subject) == list(loaded.subject[sub])


def test_casme2_like_has_casme2_counts_and_loads_with_the_casme2_reader(casme2_dir):
    rc, _, folder = casme2_dir
    assert rc == 0
    s = json.loads((folder / "synth_summary.json").read_text())
    assert s["samples"] == 255 and s["subjects"] == 26
    assert s["per_class"] == {
        "others": 99,
        "disgust": 63,
        "happiness": 32,
        "repression": 27,
        "surprise": 25,
        "sadness": 7,
        "fear": 2,
    }
    arr, rep = load_with_report(folder, "casme2", progress=False)
    assert len(arr) == 246 and rep.unmapped == Counter({"sadness": 7, "fear": 2}) and not rep.skipped
    assert arr.au_known.all() and arr.au.sum(1).min() >= 1 and len(set(arr.subject)) == 26
    plan = make_plan(get_preset("casme2-like"), 0, "eval")
    keep = kept_emotions("casme2-like", "casme2-5")
    kept = [c for c in plan.clips if c.emotion in keep]
    rendered = render_plan(replace(plan, clips=tuple(kept[:6])), workers=1)
    assert np.array_equal(rendered.flow, arr.flow[:6]) and np.array_equal(rendered.au, arr.au[:6])
    assert s["preset"] == "casme2-like"


def test_negative_positive_and_surprise_share_au_combinations():
    """AUs alone must not separate the composite's classes: each class shares combos with another."""
    table = emotion_combos(get_preset("composite-like").emotions_csv)
    combos = {e: {a for a, _ in rows} for e, rows in table.items()}
    assert set(combos) == {"negative", "positive", "surprise"}
    for e, mine in combos.items():
        assert any(mine & theirs for o, theirs in combos.items() if o != e), e
    assert "4" in combos["negative"] and "1+2+4" in combos["negative"]  # disgust- and fear-like


def test_label_noise_keeps_exact_class_counts_and_moves_the_motion():
    plan = make_plan(get_preset("composite-like"), 1, "eval")
    assert Counter(c.emotion for c in plan.clips) == {"negative": 250, "positive": 109, "surprise": 83}
    noisy = [c for c in plan.clips if c.noisy]
    assert 0.08 * 442 < len(noisy) < 0.22 * 442
    table = emotion_combos(get_preset("composite-like").emotions_csv)
    assert all(c.combo in {a for a, _ in table[c.emotion]} for c in plan.clips if not c.noisy)


def test_scaled_plans_keep_shares_and_exact_totals():
    plan = make_plan(get_preset("composite-like"), 0, "pretrain", 884)
    assert len(plan.clips) == 884
    per = Counter(c.emotion for c in plan.clips)
    assert per == {"negative": 500, "positive": 218, "surprise": 166}
    assert largest_remainder(10, [1, 1, 1]) == [4, 3, 3]


def test_unknown_preset_and_bad_n_are_refused_with_the_valid_names():
    with pytest.raises(ValueError, match="valid: " + ", ".join(PRESETS)):
        get_preset("samm-like")
    with pytest.raises(ValueError, match=r"n must be >= 1 clips \(got 0\)"):
        make_plan(get_preset("default"), 0, "pretrain", 0)


def test_writer_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        write_preset(tmp_path, "composite-like")


def test_cli_writes_casme2_like_and_refuses_default_only_options(casme2_dir, tmp_path, capsys):
    assert _cli(["data", "synth", "--preset", "composite-like", "--out", str(tmp_path / "x"), "--samples", "9"]) == 1
    assert "--samples apply to --preset default only" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    rc, out, folder = casme2_dir
    assert rc == 0 and "wrote preset casme2-like: 255 samples of 26 subjects" in out and "casme2 layout" in out
    assert _cli(["data", "inspect", "--data", str(folder), "--format", "casme2", "--json", "--no-frames"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["usable"] == 246 and rep["unmapped"] == {"fear": 2, "sadness": 7} and len(rep["per_subject"]) == 26
