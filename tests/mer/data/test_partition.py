"""Federated partitions: a subject's samples always stay on one client."""

from __future__ import annotations

import numpy as np
import pytest

from mer.data.arrays import MEArrays
from mer.data.partition import partition


def make_arrays(seed: int = 0) -> MEArrays:
    rng = np.random.default_rng(seed)
    subj, ds, lab = [], [], []
    for d, n_sub in (("casme2", 10), ("samm", 8), ("smic", 6)):
        for s in range(n_sub):
            k = int(rng.integers(2, 12))
            major = int(rng.integers(0, 3))
            subj += [f"{d}/s{s}"] * k
            ds += [d] * k
            lab += [major if rng.random() < 0.8 else int(rng.integers(0, 3)) for _ in range(k)]
    n = len(lab)
    return MEArrays(
        flow=np.zeros((n, 3, 4, 4), np.float32),
        label=np.array(lab, np.int64),
        au=np.zeros((n, 12), np.float32),
        au_known=np.ones(n, bool),
        subject=np.array(subj),
        dataset=np.array(ds),
        sample_id=np.array([f"c{i}" for i in range(n)]),
        class_names=("negative", "positive", "surprise"),
    )


def check_partition(arr: MEArrays, parts: dict[int, np.ndarray]) -> None:
    allidx = np.concatenate(list(parts.values()))
    assert sorted(allidx.tolist()) == list(range(len(arr)))  # every sample exactly once
    owner = {}
    for c, idx in parts.items():
        for s in set(arr.subject[idx].tolist()):
            assert owner.setdefault(s, c) == c, f"subject {s} on clients {owner[s]} and {c}"


@pytest.mark.parametrize(
    "scheme, n", [("subjects", 3), ("subjects", 5), ("dirichlet", 3), ("dirichlet", 4), ("by-dataset", None)]
)
def test_subject_never_split_across_clients(scheme, n):
    arr = make_arrays()
    for seed in range(5):
        parts = partition(arr, scheme, n, seed=seed, alpha=0.3)
        check_partition(arr, parts)
        assert all(len(v) for v in parts.values())


def test_by_dataset_gives_one_client_per_data_set_in_sorted_order():
    arr = make_arrays()
    parts = partition(arr, "by-dataset")
    assert [set(arr.dataset[v].tolist()) for v in parts.values()] == [{"casme2"}, {"samm"}, {"smic"}]
    with pytest.raises(ValueError, match=r"one client per data set: 3 \(casme2, samm, smic\), not n_clients=4"):
        partition(arr, "by-dataset", 4)


def test_subjects_scheme_balances_sample_counts_and_is_seeded():
    arr = make_arrays()
    parts = partition(arr, "subjects", 3, seed=7)
    sizes = [len(v) for v in parts.values()]
    assert max(sizes) - min(sizes) <= 11  # at most one subject's worth apart
    again = partition(arr, "subjects", 3, seed=7)
    assert all(np.array_equal(parts[c], again[c]) for c in parts)


def test_dirichlet_small_alpha_skews_labels_more_than_large_alpha():
    arr = make_arrays(1)

    def skew(alpha):
        tv = []
        glob = np.bincount(arr.label, minlength=3) / len(arr)
        for seed in range(10):
            for idx in partition(arr, "dirichlet", 3, seed=seed, alpha=alpha).values():
                tv.append(0.5 * np.abs(np.bincount(arr.label[idx], minlength=3) / len(idx) - glob).sum())
        return np.mean(tv)

    assert skew(0.1) > skew(100.0) + 0.1


def test_subject_list_input_and_errors():
    subjects = ["a/1", "a/1", "a/2", "b/3", "b/3", "b/4"]
    parts = partition(subjects, "subjects", 2, seed=0)
    assert sorted(np.concatenate(list(parts.values())).tolist()) == list(range(6))
    with pytest.raises(ValueError, match="dirichlet needs labels"):
        partition(subjects, "dirichlet", 2)
    with pytest.raises(ValueError, match="only 4 subjects"):
        partition(subjects, "subjects", 5)
    with pytest.raises(ValueError, match="valid: by-dataset, subjects, dirichlet"):
        partition(subjects, "random", 2)
