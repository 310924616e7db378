import numpy as np

from mer.face.regions import AU_NODES, au_index
from mer.priors import (
    COORDINATED,
    global_adjacency,
    lower_adjacency,
    uniform_prior,
    upper_adjacency,
)


def _has(adj, nodes, a, b):
    pos = {n: k for k, n in enumerate(nodes)}
    return adj[pos[au_index(a)], pos[au_index(b)]]


def test_upper_graph_has_exactly_the_paper_edges():
    adj = upper_adjacency()
    nodes = (0, 1, 2, 3, 4, 5)
    expected = {(1, 2), (1, 4), (1, 5), (2, 4), (2, 5), (6, 7)}
    for a in (1, 2, 4, 5, 6, 7):
        for b in (1, 2, 4, 5, 6, 7):
            want = a == b or (a, b) in expected or (b, a) in expected
            assert _has(adj, nodes, a, b) == want, (a, b)


def test_lower_graph_has_exactly_the_paper_edges():
    adj = lower_adjacency()
    nodes = (6, 7, 8, 9, 10, 11)
    expected = {(9, 10), (12, 14), (15, 17)}
    for a in (9, 10, 12, 14, 15, 17):
        for b in (9, 10, 12, 14, 15, 17):
            want = a == b or (a, b) in expected or (b, a) in expected
            assert _has(adj, nodes, a, b) == want, (a, b)


def test_global_graph_is_only_coordinated_pairs_and_self_loops():
    adj = global_adjacency()
    nodes = tuple(range(12))
    n_pairs = sum(len(v) for v in COORDINATED.values())
    assert adj.sum() == 12 + 2 * n_pairs + 1  # self-loops, symmetric pairs, AU2 -> AU9 one-way
    assert _has(adj, nodes, 2, 9) and not _has(adj, nodes, 9, 2)
    assert _has(adj, nodes, 7, 17) and _has(adj, nodes, 17, 7)
    # no edge inside the upper or the lower face except self-loops
    upper = [au_index(a) for a in (1, 2, 4, 5, 6, 7)]
    lower = [au_index(a) for a in (9, 10, 12, 14, 15, 17)]
    assert (adj[np.ix_(upper, upper)] == np.eye(6, dtype=bool)).all()
    assert (adj[np.ix_(lower, lower)] == np.eye(6, dtype=bool)).all()
    assert len(AU_NODES) == adj.shape[0]


def test_uniform_prior_rows_sum_to_one_on_edges_only():
    adj = global_adjacency()
    p = uniform_prior(adj)
    assert np.allclose(p.sum(1), 1)
    assert (p[~adj] == 0).all()
    assert np.isclose(p[au_index(5), au_index(12)], 0.5)  # AU5: self + AU12
