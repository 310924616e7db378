"""The client's on-disk cache of training results: reused only within the same attempt."""

from __future__ import annotations

import numpy as np

from fedcore.client.cache import UpdateCache
from fedcore.common.workload import FitResult, PrivacyState

SHA = bytes(range(32))


def _fit(value: float) -> FitResult:
    return FitResult(
        np.full(5, value, np.float32),
        12,
        {"loss": 0.25},
        PrivacyState(True, epsilon=1.5, delta=1e-5, accountant="rdp", steps=40),
    )


def test_cached_result_comes_back_identical(tmp_path):
    cache = UpdateCache(tmp_path)
    cache.put(3, SHA, _fit(0.5), attempt=0)
    got = cache.get(3, SHA, 5, attempt=0)
    np.testing.assert_array_equal(got.parameters, np.full(5, 0.5, np.float32))
    assert got.num_examples == 12 and got.metrics == {"loss": 0.25}
    assert got.privacy == PrivacyState(True, 1.5, 1e-5, "rdp", 40)


def test_other_round_model_or_size_is_a_miss(tmp_path):
    cache = UpdateCache(tmp_path)
    cache.put(3, SHA, _fit(0.5), attempt=0)
    assert cache.get(4, SHA, 5, attempt=0) is None
    assert cache.get(3, bytes(32), 5, attempt=0) is None
    assert cache.get(3, SHA, 6, attempt=0) is None


def test_only_the_newest_rounds_are_kept(tmp_path):
    cache = UpdateCache(tmp_path, keep=2)
    for r in (1, 2, 3):
        cache.put(r, SHA, _fit(r), attempt=0)
    assert cache.get(1, SHA, 5, attempt=0) is None
    assert cache.get(2, SHA, 5, attempt=0) is not None and cache.get(3, SHA, 5, attempt=0) is not None
    assert len(list(tmp_path.glob("*.npy"))) == 2


def test_corrupt_entry_is_ignored_not_loaded(tmp_path):
    cache = UpdateCache(tmp_path)
    cache.put(3, SHA, _fit(0.5), attempt=0)
    npy = next(tmp_path.glob("*.npy"))
    npy.write_bytes(b"\x93NUMPY garbage")
    assert cache.get(3, SHA, 5, attempt=0) is None


def test_a_new_attempt_or_run_of_the_same_round_and_model_is_a_miss(tmp_path):
    # reusing an update across attempts put it in two aggregates: their difference gives it away
    cache = UpdateCache(tmp_path)
    cache.put(3, SHA, _fit(0.5), attempt=0, federation="fed", run="r1")
    assert cache.get(3, SHA, 5, attempt=0, federation="fed", run="r1") is not None  # a resend: same attempt
    assert cache.get(3, SHA, 5, attempt=1, federation="fed", run="r1") is None
    assert cache.get(3, SHA, 5, attempt=0, federation="fed", run="r2") is None
    assert cache.get(3, SHA, 5, attempt=0, federation="other", run="r1") is None
