"""The embedded synthetic data set: layout, counts, determinism, AU motion in the right region."""

from __future__ import annotations

import hashlib
import json
from collections import Counter

import cv2
import numpy as np
import pytest

from mer.data.load import load_with_report
from mer.data.readers import read_records
from mer.data.synth import SynthConfig, emotion_table, synthesize
from mer.data.synth_faces import face_sources, subject_face
from mer.data.synth_motion import AU_MOTION, au_displacements, backward_map, control_points, head_similarity, skin_field
from mer.face.regions import REGIONS, patch_boxes, patch_side, region_of_point
from mer.flow.methods import compute_flow


def _digest(folder) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.suffix in (".jpg", ".csv"):
            h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()


def test_small_synth_read_back_by_casme2_reader_matches_summary(tmp_path):
    s = synthesize(tmp_path / "d", subjects=3, seed=1, samples=9)
    assert s["samples"] == 9 and s["subjects"] == 3
    recs, _, plog = read_records(tmp_path / "d", "casme2")
    assert not plog.problems and len(recs) == 9
    assert dict(Counter(r.emotion for r in recs)) == s["per_class"]
    assert dict(Counter(r.subject for r in recs)) == s["per_subject"]
    assert all(r.label is not None and r.aus and not r.apex_estimated for r in recs)
    img = cv2.imread(str(recs[0].onset))
    assert img.shape == (128, 128, 3)
    assert json.loads((tmp_path / "d" / "synth_summary.json").read_text())["samples"] == 9


def test_synth_is_deterministic_per_seed(tmp_path):
    synthesize(tmp_path / "a", subjects=2, seed=3, samples=4)
    synthesize(tmp_path / "b", subjects=2, seed=3, samples=4)
    synthesize(tmp_path / "c", subjects=2, seed=4, samples=4)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b") != _digest(tmp_path / "c")


def test_synth_refuses_a_non_empty_folder_and_bad_settings(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        synthesize(tmp_path / "x", subjects=2)
    with pytest.raises(ValueError, match=r"subjects must be >= 2 \(got 1\); .*label_noise must be in \[0, 1\]"):
        synthesize(tmp_path / "y", subjects=1, label_noise=2.0)


def test_label_noise_flips_sheet_labels_but_not_aus(tmp_path):
    import csv

    s = synthesize(tmp_path / "d", subjects=2, seed=0, samples=20, label_noise=1.0)
    assert s["label_noise_flips"] == 20
    table = {(a, e) for e, a, _ in emotion_table()}
    with open(tmp_path / "d" / "CASME2-coding-synthetic.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["Action Units"] for r in rows} <= {a for a, _ in table}  # the motion's AUs are kept
    assert sum((r["Action Units"], r["Estimated Emotion"]) not in table for r in rows) >= 10


def test_emotion_table_has_casme2_like_balance():
    share = Counter()
    for e, _, w in emotion_table():
        share[e] += w
    assert share["others"] > share["disgust"] > share["happiness"] > share["repression"] > share["surprise"] - 1e-9
    assert abs(sum(share.values()) - 1) < 1e-9 and share["others"] == pytest.approx(0.41)


@pytest.mark.parametrize("au", sorted(AU_MOTION))
def test_each_au_moves_its_own_region(au):
    """Clean clip (no nuisances), 1 px peak: the most-moving AU region is the AU's region."""
    rng = np.random.default_rng(au)
    base, _ = subject_face(face_sources()[0], rng, 128)
    moving = {p: d * 1.0 for p, d in au_displacements([(au, "B")], {}).items()}
    centres, _ = control_points(moving, 128)
    disp = np.zeros_like(centres)
    disp[: len(moving)] = list(moving.values())
    field = skin_field(centres, disp, 128)
    ident = head_similarity(0, 0, 0, 1, 128)
    frames = [
        cv2.cvtColor(
            np.clip(
                cv2.remap(base, *backward_map(field, s, ident, 128), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT),
                0,
                255,
            ).astype(np.uint8),
            cv2.COLOR_BGR2GRAY,
        )
        for s in (0.0, 1.0)
    ]
    flow = compute_flow(frames[0], frames[1], "farneback")
    mag = np.hypot(flow[..., 0], flow[..., 1])
    boxes, p, reg = patch_boxes(128), patch_side(128), region_of_point()
    per_region = [
        np.mean([mag[y : y + p, x : x + p].mean() for (y, x), r in zip(boxes, reg) if r == k])
        for k in range(len(REGIONS))
    ]
    want = next(i for i, r in enumerate(REGIONS) if au in r.aus)
    assert int(np.argmax(per_region)) == want, f"AU{au}: region motion {np.round(per_region, 3)}"


@pytest.mark.slow
def test_full_default_set_has_documented_counts(tmp_path):
    s = synthesize(tmp_path / "d")
    assert s["samples"] == 221 and s["subjects"] == 24
    assert s["per_class"] == {"disgust": 56, "happiness": 25, "others": 94, "repression": 28, "surprise": 18}
    arr, rep = load_with_report(tmp_path / "d", "casme2", progress=False)
    assert len(arr) == 221 and not rep.skipped and len(set(arr.subject)) == 24
    assert dict(zip(arr.class_names, np.bincount(arr.label).tolist())) == {
        "happiness": 25,
        "disgust": 56,
        "repression": 28,
        "surprise": 18,
        "others": 94,
    }


def test_config_defaults_are_documented_values():
    c = SynthConfig()
    assert (c.subjects, c.seed, c.size) == (24, 0, 128) and c.amplitude_px == (0.5, 3.0)


def test_pretraining_faces_never_appear_in_an_evaluation_set(tmp_path):
    from mer.data.synth_faces import EVAL_FACES, PRETRAIN_FACES, face_pool

    eval_names = {f.name for f in face_pool("eval")}
    pre_names = {f.name for f in face_pool("pretrain")}
    assert eval_names == set(EVAL_FACES) and pre_names == set(PRETRAIN_FACES)
    assert not eval_names & pre_names
    # by content too: no pre-training image equals an evaluation image
    eval_imgs = [f.image.tobytes() for f in face_pool("eval")]
    assert not any(f.image.tobytes() in eval_imgs for f in face_pool("pretrain"))
    summary = synthesize(tmp_path / "d", subjects=30, seed=3, samples=60)
    assert {v["face"] for v in summary["faces"].values()} <= eval_names
    with pytest.raises(ValueError, match="pool must be one of eval, pretrain"):
        face_pool("test")
