import numpy as np
import pytest

from mer.train.splits import holdout_split, inner_validation, loso_folds

SUBJECTS = np.array(["a/1", "a/2", "b/1", "a/1", "b/1", "c/9", "a/2", "c/9"])


def test_loso_never_puts_a_subject_on_both_sides():
    folds = loso_folds(SUBJECTS)
    assert [f.name for f in folds] == ["a/1", "a/2", "b/1", "c/9"]
    seen = []
    for f in folds:
        assert not set(SUBJECTS[f.train]) & set(SUBJECTS[f.test])
        assert set(SUBJECTS[f.test]) == {f.name}
        assert len(f.train) + len(f.test) == len(SUBJECTS)
        seen.extend(f.test)
    assert sorted(seen) == list(range(len(SUBJECTS)))  # every sample is tested exactly once


def test_holdout_and_inner_validation_split_by_subject():
    f = holdout_split(SUBJECTS, 0.25, seed=3)
    assert not set(SUBJECTS[f.train]) & set(SUBJECTS[f.test]) and len(f.test) > 0
    fit, val = inner_validation(SUBJECTS, f.train, 0.5, seed=1)
    assert not set(SUBJECTS[fit]) & set(SUBJECTS[val])
    assert sorted(np.concatenate([fit, val])) == sorted(f.train)


def test_splits_refuse_a_single_subject():
    with pytest.raises(ValueError, match="at least 2 subjects"):
        loso_folds(["s1", "s1"])
    with pytest.raises(ValueError, match="test_fraction"):
        holdout_split(SUBJECTS, 1.5)
