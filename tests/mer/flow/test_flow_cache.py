"""The content-hashed flow cache."""

from __future__ import annotations

import numpy as np

from mer.flow.cache import FlowCache, content_key


def test_key_depends_on_every_part_and_on_boundaries():
    assert content_key(b"ab", "c") != content_key(b"a", "bc")
    assert content_key(b"x", "farneback|128") != content_key(b"x", "dis|128")
    assert content_key(b"x", "m") == content_key(b"x", "m")


def test_put_then_get_hits_and_counts(tmp_path):
    c = FlowCache(tmp_path)
    k = content_key(b"frames", "m")
    assert c.get(k) is None
    arr = np.arange(12, dtype=np.float32).reshape(3, 2, 2)
    c.put(k, arr)
    np.testing.assert_array_equal(c.get(k, (3, 2, 2)), arr)
    assert c.stats() == {"hits": 1, "misses": 1, "writes": 1}
    assert not list(tmp_path.rglob("*.tmp"))  # atomic write leaves no temporary file


def test_corrupt_or_misshapen_entry_is_a_miss_not_a_crash(tmp_path):
    c = FlowCache(tmp_path)
    k = content_key(b"a")
    c.put(k, np.zeros((3, 4, 4), np.float32))
    assert c.get(k, (3, 8, 8)) is None
    next(tmp_path.rglob("*.npy")).write_bytes(b"garbage")
    assert c.get(k, (3, 4, 4)) is None and c.misses == 2
