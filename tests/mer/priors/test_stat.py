import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mer.priors import (
    cooccurrence_counts,
    counts_to_vector,
    global_adjacency,
    restrict_prior,
    statistical_prior,
    vector_to_counts,
)


def test_cooccurrence_counts_by_hand():
    au = np.zeros((3, 12), np.float32)
    au[0, [0, 1]] = 1  # AU1 + AU2
    au[1, [0, 8]] = 1  # AU1 + AU12
    au[2, [0]] = 1  # AU1
    c = cooccurrence_counts(au)
    assert c.dtype == np.int64 and c.shape == (12, 12)
    assert c[0, 0] == 3 and c[1, 1] == 1 and c[8, 8] == 1
    assert c[0, 1] == c[1, 0] == 1 and c[0, 8] == 1 and c[1, 8] == 0
    assert c.sum() == 3 + 1 + 1 + 2 * 2


def test_statistical_prior_rows_normalised_and_unseen_au_uniform():
    c = np.zeros((12, 12), np.int64)
    c[0, 0], c[0, 1], c[1, 0], c[1, 1] = 4, 2, 2, 2
    p = statistical_prior(c, smoothing=1.0)
    assert np.allclose(p.sum(1), 1)
    assert np.isclose(p[0, 0], 5 / (4 + 2 + 12)) and np.isclose(p[0, 1], 3 / 18)
    assert np.allclose(p[5], 1 / 12)  # AU7 never seen -> uniform
    p0 = statistical_prior(c, smoothing=0.0)
    assert np.isclose(p0[0, 1], 2 / 6) and np.allclose(p0[5], 1 / 12)


def test_statistical_prior_rejects_bad_counts():
    with pytest.raises(ValueError, match=r"\(12, 12\)"):
        statistical_prior(np.zeros((11, 12)))
    with pytest.raises(ValueError, match="non-negative"):
        statistical_prior(-np.ones((12, 12)))


def test_restrict_prior_keeps_edges_and_falls_back_to_uniform():
    adj = global_adjacency()
    p = restrict_prior(np.ones((12, 12)), adj)
    assert np.allclose(p.sum(1), 1) and (p[~adj] == 0).all()
    z = restrict_prior(np.where(np.eye(12, dtype=bool), 0.0, 1.0) * ~adj, adj)  # no mass on edges
    assert np.allclose(z, adj / adj.sum(1, keepdims=True))


@settings(max_examples=30, deadline=None)
@given(st.lists(st.lists(st.booleans(), min_size=12, max_size=12), min_size=0, max_size=20))
def test_count_vectors_sum_like_counts(rows):
    """Clients' count vectors add up to the vector of the pooled counts (secure-sum friendly)."""
    au = np.array(rows, dtype=np.float32).reshape(-1, 12)
    half = len(au) // 2
    a, b = cooccurrence_counts(au[:half]), cooccurrence_counts(au[half:])
    v = counts_to_vector(a) + counts_to_vector(b)
    assert v.shape == (78,)
    assert np.array_equal(vector_to_counts(v), cooccurrence_counts(au))


def test_vector_form_rejects_wrong_shapes():
    with pytest.raises(ValueError, match="78"):
        vector_to_counts(np.zeros(77))
    with pytest.raises(ValueError, match="symmetric"):
        counts_to_vector(np.triu(np.ones((12, 12), np.int64)))
