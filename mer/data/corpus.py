"""Labelled clips straight to model input, without writing frames: the pre-training corpus.

>>> arrays = render_samples("composite-like", n=2000, seed=0)            # doctest: +SKIP
>>> corpus = render_corpus(6000, seed=0)                                  # doctest: +SKIP

:func:`render_samples` renders ``n`` clips of one preset (:mod:`mer.data.presets`) from one
identity pool (``pretrain`` by default: faces no evaluation set uses). Each flow image is what
the preset's reader path would produce for the same clip (:mod:`mer.data.synth_flowimg`):
with ``pool="eval"`` and the preset's documented counts, it equals ``load_arrays`` on the
written preset, array for array (a test checks it). Labels are exact: ``au`` is the 12-AU
multi-hot of the AU combination the motion shows (``au_known`` True even for the composite
layout, whose written files carry no AUs), ``label`` the class under the preset's label map.

:func:`render_corpus` mixes every preset's geometry and normalisation in equal shares: the
default set's CASME II layout, the composite-like preset's three sources (each its own share)
and casme2-like; labels under one label map (``composite-3`` by default: negative / positive /
surprise; emotions the map excludes, such as CASME II's ``others``, are not drawn). Subjects
are ``"preset/dataset/subject"``, unique across the parts.

Only onset and apex are rendered, at each source's crop side; clips are rendered per subject
in a process pool (``workers``, default 2; spawned processes, each with one OpenCV thread).
Rendering is deterministic for a seed whatever ``workers`` is: each clip has its own seed.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace

import numpy as np

from mer.data.arrays import MEArrays
from mer.data.aus import au_vector, parse_aus
from mer.data.labels import load_label_map
from mer.data.presets import get_preset
from mer.data.synth_flowimg import model_input
from mer.data.synth_plan import ClipPlan, Plan, SubjectPlan, make_plan
from mer.data.synth_render import clip_frames, decode_grey, encode_frame, subject_look

#: (preset, source or None for all) parts of the corpus, in equal shares
CORPUS_PARTS: tuple[tuple[str, str | None], ...] = (
    ("default", None),
    ("composite-like", "casme2"),
    ("composite-like", "samm"),
    ("composite-like", "smic"),
    ("casme2-like", None),
)


def render_clip(preset_name: str, source: str, look, clip: ClipPlan, size: int | None) -> np.ndarray:
    """(3, S, S) flow image of one planned clip through its reader path (stored bytes, grey decode)."""
    preset = get_preset(preset_name)
    src = preset.source(source)
    frames = clip_frames(preset, src, look, clip)
    onset, apex = (decode_grey(encode_frame(f, src)[1]) for f in frames)
    return model_input(preset.layout, onset, apex, size)


def _render_subject(job: tuple[str, SubjectPlan, tuple[ClipPlan, ...], int | None]) -> np.ndarray:
    preset_name, sp, clips, size = job
    preset = get_preset(preset_name)
    look = subject_look(preset, preset.source(sp.source), sp)
    return np.stack([render_clip(preset_name, sp.source, look, c, size) for c in clips])


def _init_worker() -> None:
    import cv2

    cv2.setNumThreads(1)


def _run(jobs: list, workers: int) -> list[np.ndarray]:
    if workers <= 1 or len(jobs) < 2:
        return [_render_subject(j) for j in jobs]
    import multiprocessing as mp

    env = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS",)}
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        with ProcessPoolExecutor(
            max_workers=workers, mp_context=mp.get_context("spawn"), initializer=_init_worker
        ) as ex:
            return list(ex.map(_render_subject, jobs, chunksize=1))
    finally:
        for k, v in env.items():
            if v is None:
                os.environ.pop(k, None)


def _jobs(plan: Plan, size: int | None) -> list:
    by_subject: dict[int, list[ClipPlan]] = {}
    for c in plan.clips:
        by_subject.setdefault(c.subject, []).append(c)
    return [(plan.preset, plan.subjects[s], tuple(cs), size) for s, cs in by_subject.items()]


def _arrays(plans: list[tuple[Plan, str]], flows: list[np.ndarray], label_map: str, prefix: bool) -> MEArrays:
    lmap = load_label_map(label_map)
    labels, aus, subjects, datasets, ids = [], [], [], [], []
    for plan, _ in plans:
        by_subject: dict[int, list[ClipPlan]] = {}
        for c in plan.clips:
            by_subject.setdefault(c.subject, []).append(c)
        for s, cs in by_subject.items():
            sp = plan.subjects[s]
            for c in cs:
                labels.append(lmap.map(c.emotion))
                aus.append(au_vector(parse_aus(c.combo).aus))
                subjects.append(f"{plan.preset}/{sp.source}/{sp.subject}" if prefix else f"{sp.source}/{sp.subject}")
                datasets.append(sp.source)
                ids.append(c.sample_id)
    return MEArrays(
        flow=np.concatenate(flows).astype(np.float32),
        label=np.array(labels, dtype=np.int64),
        au=np.stack(aus).astype(np.float32),
        au_known=np.ones(len(labels), dtype=bool),
        subject=np.array(subjects, dtype=str),
        dataset=np.array(datasets, dtype=str),
        sample_id=np.array(ids, dtype=str),
        class_names=lmap.classes,
    )


def kept_emotions(preset_name: str, label_map: str) -> set[str]:
    """Native emotions of a preset that ``label_map`` knows and keeps."""
    lmap = load_label_map(label_map)
    natives = {e for s in get_preset(preset_name).sources for e, _ in s.classes}
    return {e for e in natives if lmap.knows(e) and lmap.map(e) is not None}


def plan_samples(
    preset: str,
    n: int | None,
    seed: int,
    pool: str = "pretrain",
    *,
    sources: tuple[str, ...] | None = None,
    label_map: str | None = None,
) -> Plan:
    """The plan :func:`render_samples` renders (faces, labels, AU combinations, seeds)."""
    p = get_preset(preset)
    return make_plan(p, seed, pool, n, sources=sources, emotions=kept_emotions(preset, label_map or p.label_map))


def render_plan(
    plan: Plan,
    *,
    size: int | None = None,
    label_map: str | None = None,
    workers: int = 2,
    prefix_subjects: bool = False,
) -> MEArrays:
    """Render every clip of ``plan`` to model input (see the module doc); labels under ``label_map``."""
    flows = _run(_jobs(plan, size), workers)
    return _arrays([(plan, "")], flows, label_map or get_preset(plan.preset).label_map, prefix_subjects)


def render_samples(
    preset: str, n: int, seed: int, pool: str = "pretrain", *, size: int | None = None, workers: int = 2
) -> MEArrays:
    """``n`` labelled clips of ``preset`` from identity pool ``pool`` as MEArrays (see the module doc).

    ``size`` None: the layout's native side (28 composite, 128 casme2), as ``load_arrays``.
    Class and source shares are the preset's (exact, by largest remainders), restricted to the
    classes its label map keeps.
    """
    return render_plan(plan_samples(preset, n, seed, pool), size=size, workers=workers)


def render_corpus(
    n: int, seed: int, *, size: int = 28, label_map: str = "composite-3", pool: str = "pretrain", workers: int = 2
) -> MEArrays:
    """``n`` clips across every preset's geometry and normalisation (:data:`CORPUS_PARTS`), one label map.

    All flow images are resized to ``size`` exactly as ``load_arrays(..., size=size)`` would.
    """
    if n < len(CORPUS_PARTS):
        raise ValueError(f"n must be >= {len(CORPUS_PARTS)} (one clip per corpus part) (got {n})")
    from mer.data.synth_plan import largest_remainder

    plans = []
    for i, ((name, source), k) in enumerate(zip(CORPUS_PARTS, largest_remainder(n, [1.0] * len(CORPUS_PARTS)))):
        emotions = kept_emotions(name, label_map)
        if not emotions:
            raise ValueError(f"label map {label_map} keeps no emotion of preset {name}")
        plan = make_plan(
            get_preset(name),
            seed * len(CORPUS_PARTS) + i,
            pool,
            k,
            sources=(source,) if source else None,
            emotions=emotions,
        )
        plans.append(replace(plan, preset=name))
    jobs = [j for p in plans for j in _jobs(p, size)]
    flows = _run(jobs, workers)
    return _arrays([(p, "") for p in plans], flows, label_map, True)
