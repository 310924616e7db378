"""The plan of a synthetic preset: which subjects, faces, labels, AU combinations and seeds.

A plan is pure data drawn from one seeded generator: every subject and every clip carries
its own seed, so a clip renders the same whether it is rendered alone, in a process pool or
as part of a written data set (:mod:`mer.data.synth_render` renders one clip from its plan).

Counts are exact, not sampled: with ``n=None`` a plan has the preset's documented sample,
subject and class counts per source; with ``n`` it scales them by largest remainders (each
source and class keeps its share), optionally restricted to some emotions (those a label map
keeps). Label noise keeps the label and draws the clip's motion (its AU combination) from
another class of the same source, so class counts stay exact and the noise is in the
label-to-motion link, as it is for ambiguous real clips.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from mer.data.presets import Preset, Source, emotion_combos
from mer.data.synth_faces import POOLS, face_pool

_SMIC_CODE = {"negative": "ne", "positive": "po", "surprise": "sur"}


@dataclass(frozen=True)
class SubjectPlan:
    index: int  # position in Plan.subjects
    source: str  # source data set name
    subject: str  # subject id as the source writes it ("sub01", "006", "s1")
    face: str  # FaceSource name from the plan's identity pool
    seed: int


@dataclass(frozen=True)
class ClipPlan:
    index: int
    subject: int  # index into Plan.subjects
    emotion: str  # native label written to the sheet / labels.csv
    combo: str  # AU combination the motion shows (the sheet's Action Units)
    noisy: bool  # True when combo was drawn from another class (label noise)
    sample_id: str
    onset: int  # frame numbers
    apex: int
    offset: int
    seed: int


@dataclass(frozen=True)
class Plan:
    preset: str
    pool: str
    seed: int
    subjects: tuple[SubjectPlan, ...]
    clips: tuple[ClipPlan, ...]


def largest_remainder(total: int, weights: list[float]) -> list[int]:
    """Integers summing to ``total`` in proportion to ``weights`` (Hamilton's method)."""
    w = np.asarray(weights, dtype=np.float64)
    if total < 0 or w.sum() <= 0:
        raise ValueError(f"need total >= 0 and positive weights (got {total}, {weights})")
    raw = total * w / w.sum()
    out = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - out), kind="stable")[: total - out.sum()]:
        out[i] += 1
    return out.tolist()


def _seed_sequence(seed: int, preset: str, pool: str) -> np.random.SeedSequence:
    return np.random.SeedSequence([int(seed), zlib.crc32(preset.encode()), POOLS.index(pool)])


def _subject_id(source: str, k: int) -> str:
    return {"samm": f"{6 + k:03d}", "smic": f"s{k + 1}"}.get(source, f"sub{k + 1:02d}")


def _sample_id(source: str, subject: str, emotion: str, j: int, rng: np.random.Generator, used: set[str]) -> str:
    while True:
        if source == "samm":
            name = f"{subject}_{int(rng.integers(1, 8))}_{int(rng.integers(1, 12))}"
        elif source == "smic":
            name = f"{subject}_{_SMIC_CODE.get(emotion, emotion[:3])}_{j + 1:02d}"
        else:
            name = f"EP{int(rng.integers(1, 20)):02d}_{int(rng.integers(1, 10)):02d}" + (
                "f" if rng.random() < 0.3 else ""
            )
        if name not in used:
            used.add(name)
            return name


def _source_counts(src: Source, n: int | None, keep: set[str] | None) -> tuple[int, int, list[tuple[str, int]]]:
    classes = [(e, c) for e, c in src.classes if keep is None or e in keep]
    if n is None:
        return sum(c for _, c in classes), src.subjects, classes
    counts = largest_remainder(n, [c for _, c in classes]) if n else [0] * len(classes)
    subjects = min(n, max(1, round(n * src.subjects / src.samples))) if n else 0
    return n, subjects, [(e, c) for (e, _), c in zip(classes, counts)]


def make_plan(
    preset: Preset,
    seed: int,
    pool: str,
    n: int | None = None,
    *,
    sources: tuple[str, ...] | None = None,
    emotions: set[str] | None = None,
) -> Plan:
    """The plan of ``preset`` (documented counts when ``n`` is None, else ``n`` clips in proportion).

    ``sources`` restricts the plan to some of the preset's sources; ``emotions`` to some native
    emotions (e.g. those a label map keeps). Faces come from identity pool ``pool`` only.
    """
    srcs = [s for s in preset.sources if sources is None or s.name in sources]
    if not srcs:
        raise ValueError(
            f"preset {preset.name} has none of the sources {sources} (has {', '.join(s.name for s in preset.sources)})"
        )
    if n is not None and n < 1:
        raise ValueError(f"n must be >= 1 clips (got {n})")
    table = emotion_combos(preset.emotions_csv)
    missing = sorted({e for s in srcs for e, _ in s.classes} - set(table))
    if missing:
        raise ValueError(f"{preset.emotions_csv} has no AU combinations for {', '.join(missing)}")
    rng = np.random.default_rng(_seed_sequence(seed, preset.name, pool))
    faces = face_pool(pool)
    order = rng.permutation(len(faces))
    shares = [sum(c for e, c in s.classes if emotions is None or e in emotions) for s in srcs]
    if sum(shares) == 0:
        raise ValueError(f"preset {preset.name} has no clips of the emotions {sorted(emotions or ())}")
    per_source = largest_remainder(n, shares) if n is not None else [None] * len(srcs)
    subjects: list[SubjectPlan] = []
    clips: list[ClipPlan] = []
    for src, n_src in zip(srcs, per_source):
        total, n_sub, classes = _source_counts(src, n_src, emotions)
        if total == 0:
            continue
        labels = [e for e, c in classes for _ in range(c)]
        labels = [labels[i] for i in rng.permutation(len(labels))]
        counts = 1 + rng.multinomial(total - n_sub, rng.dirichlet(np.full(n_sub, 1.5)))
        weights = np.array([c for _, c in classes], dtype=np.float64)
        names = [e for e, _ in classes]
        pos = 0
        for k in range(n_sub):
            sp = SubjectPlan(
                len(subjects),
                src.name,
                _subject_id(src.name, k),
                faces[order[len(subjects) % len(faces)]].name,
                int(rng.integers(2**63)),
            )
            subjects.append(sp)
            used: set[str] = set()
            for j in range(int(counts[k])):
                emotion = labels[pos]
                pos += 1
                noisy = len(names) > 1 and rng.random() < preset.label_noise
                shown = emotion
                if noisy:
                    w = np.where(np.array(names) == emotion, 0.0, weights)
                    shown = names[int(rng.choice(len(names), p=w / w.sum()))]
                combos = table[shown]
                combo = combos[int(rng.choice(len(combos), p=[p for _, p in combos]))][0]
                duration = rng.uniform(*src.onset_apex_s)
                onset = int(rng.integers(10, 200))
                apex = onset + max(1, round(duration * src.fps))
                offset = apex + max(1, round(rng.uniform(0.1, 0.3) * src.fps))
                clips.append(
                    ClipPlan(
                        len(clips),
                        sp.index,
                        emotion,
                        combo,
                        noisy,
                        _sample_id(src.name, sp.subject, emotion, j, rng, used),
                        onset,
                        apex,
                        offset,
                        int(rng.integers(2**63)),
                    )
                )
    return Plan(preset.name, pool, int(seed), tuple(subjects), tuple(clips))
