"""The pre-training corpus: pretrain faces only, exact labels, determinism per seed."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from mer.data.aus import au_vector, parse_aus
from mer.data.corpus import CORPUS_PARTS, plan_samples, render_corpus, render_samples
from mer.data.presets import PRESETS, get_preset
from mer.data.synth_faces import EVAL_FACES, PRETRAIN_FACES, face_pool
from mer.data.synth_plan import make_plan
from mer.data.synth_render import clip_frames, subject_look


def test_render_samples_gives_exact_labels_and_native_shapes():
    for name, side in (("composite-like", 28), ("casme2-like", 128)):
        plan = plan_samples(name, 12, 0)
        arr = render_samples(name, 12, 0, workers=1)
        assert arr.flow.shape == (12, 3, side, side) and arr.flow.dtype == np.float32
        assert arr.au_known.all()
        want_au = np.stack([au_vector(parse_aus(c.combo).aus) for c in plan.clips])
        assert np.array_equal(arr.au, want_au) and arr.au.sum(1).min() >= 1
        assert list(arr.sample_id) == [c.sample_id for c in plan.clips]
    arr = render_samples("composite-like", 12, 0, workers=1)
    assert arr.class_names == ("negative", "positive", "surprise")
    assert arr.flow[:, :2].min() >= -1 and arr.flow[:, :2].max() <= 1 and arr.flow[:, 2].min() >= 0


def test_corpus_plans_use_no_evaluation_face_by_name():
    for name in PRESETS:
        plan = make_plan(get_preset(name), 0, "pretrain", 400)
        assert {s.face for s in plan.subjects} <= set(PRETRAIN_FACES)
        assert not {s.face for s in plan.subjects} & set(EVAL_FACES)
        evalplan = make_plan(get_preset(name), 0, "eval")
        assert {s.face for s in evalplan.subjects} <= set(EVAL_FACES)


def _thumb(img: np.ndarray) -> np.ndarray:
    g = cv2.cvtColor(np.clip(img, 0, 255).astype(np.uint8), cv2.COLOR_BGR2GRAY) if img.ndim == 3 else img
    t = cv2.resize(g, (24, 24), interpolation=cv2.INTER_AREA).astype(np.float64).ravel()
    t -= t.mean()
    return t / (np.linalg.norm(t) + 1e-9)


def test_corpus_frames_resemble_a_pretrain_face_not_an_evaluation_face():
    """By pixel content: each rendered corpus onset frame is nearest (correlation) to a pretrain face."""

    def refs(pool):
        out = []
        for i, f in enumerate(face_pool(pool)):
            from mer.data.synth_faces import subject_face

            base, _ = subject_face(f, np.random.default_rng(i), 64)
            out += [_thumb(base), _thumb(base[:, ::-1])]
        return np.stack(out)

    ev, pre = refs("eval"), refs("pretrain")
    preset = get_preset("composite-like")
    plan = make_plan(preset, 5, "pretrain", 30)
    wins = 0
    for sp in plan.subjects:
        src = preset.source(sp.source)
        clip = next(c for c in plan.clips if c.subject == sp.index)
        onset = clip_frames(preset, src, subject_look(preset, src, sp), clip)[0]
        t = _thumb(onset)
        wins += (pre @ t).max() > (ev @ t).max()
    assert wins >= 0.8 * len(plan.subjects), f"only {wins}/{len(plan.subjects)} frames closest to a pretrain face"


def test_corpus_is_deterministic_per_seed_and_worker_count():
    a = render_corpus(10, 3, workers=1)
    b = render_corpus(10, 3, workers=2)
    c = render_corpus(10, 4, workers=1)
    assert np.array_equal(a.flow, b.flow) and np.array_equal(a.label, b.label) and list(a.subject) == list(b.subject)
    assert not np.array_equal(a.flow, c.flow)


def test_corpus_mixes_every_part_with_unique_subjects():
    arr = render_corpus(10, 0, workers=1)
    assert arr.flow.shape == (10, 3, 28, 28) and arr.class_names == ("negative", "positive", "surprise")
    prefixes = {s.split("/")[0] for s in arr.subject}
    assert prefixes == {p for p, _ in CORPUS_PARTS}
    assert set(arr.dataset) == {"casme2", "samm", "smic"}
    with pytest.raises(ValueError, match="n must be >= 5"):
        render_corpus(3, 0)
