"""Subject-independent splits: leave-one-subject-out (LOSO), hold-out by subject, inner validation.

A subject's samples are always on one side of a split: micro-expressions of one person are far
more alike than those of two people, so sample-level splits (the reference code's random 70/30)
overstate accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Fold:
    name: str  # the held-out subject(s), comma-separated
    train: np.ndarray  # sample indices, sorted
    test: np.ndarray  # sample indices, sorted


def loso_folds(subject) -> list[Fold]:
    """One fold per subject (sorted by name): that subject's samples are the test set."""
    s = np.asarray(subject).astype(str)
    if len(np.unique(s)) < 2:
        raise ValueError(f"LOSO needs at least 2 subjects (got {len(np.unique(s))})")
    return [Fold(str(u), np.flatnonzero(s != u), np.flatnonzero(s == u)) for u in np.unique(s)]


def _pick_subjects(subjects: np.ndarray, fraction: float, seed: int, what: str) -> np.ndarray:
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"{what} must lie in (0, 1) (got {fraction})")
    uniq = np.unique(subjects)
    if len(uniq) < 2:
        raise ValueError(f"a subject-disjoint split needs at least 2 subjects (got {len(uniq)})")
    k = min(len(uniq) - 1, max(1, round(fraction * len(uniq))))
    return np.random.default_rng(seed).choice(uniq, size=k, replace=False)


def holdout_split(subject, test_fraction: float = 0.2, seed: int = 0) -> Fold:
    """A random subject-disjoint train/test split with about ``test_fraction`` of the subjects in test."""
    s = np.asarray(subject).astype(str)
    held = _pick_subjects(s, test_fraction, seed, "test_fraction")
    mask = np.isin(s, held)
    return Fold(",".join(sorted(held)), np.flatnonzero(~mask), np.flatnonzero(mask))


def inner_validation(subject, train_index, fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Split a fold's training indices by subject into (fit, validation) indices.

    Use it to choose hyper-parameters or an epoch without ever looking at the test subject.
    """
    idx = np.asarray(train_index)
    s = np.asarray(subject).astype(str)[idx]
    held = _pick_subjects(s, fraction, seed, "fraction")
    mask = np.isin(s, held)
    return idx[~mask], idx[mask]
