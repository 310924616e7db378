"""SecAgg+'s masking graph: k-regular, symmetric, reproducible from the public seed."""

from __future__ import annotations

import os

import pytest

from fedcore.secagg.graph import masking_graph, neighbours, resolve_degree

ROSTER = [f"c{i:02d}" for i in range(20)]


@pytest.mark.parametrize("k", [2, 4, 6, 10])
def test_graph_is_k_regular_and_symmetric(k):
    g = masking_graph(ROSTER, k, os.urandom(32))
    assert all(len(nb) == k and cid not in nb for cid, nb in g.items())
    assert all(cid in g[other] for cid, nb in g.items() for other in nb)


def test_same_seed_same_graph_other_seed_other_graph():
    seed = os.urandom(32)
    assert masking_graph(ROSTER, 4, seed) == masking_graph(list(reversed(ROSTER)), 4, seed)
    others = [masking_graph(ROSTER, 4, os.urandom(32)) for _ in range(5)]
    assert any(g != masking_graph(ROSTER, 4, seed) for g in others)
    assert neighbours(ROSTER, 4, seed, "c03") == masking_graph(ROSTER, 4, seed)["c03"]


def test_degree_resolution():
    assert resolve_degree("all", 20) == 19
    assert resolve_degree(25, 20) == 19  # k >= n - 1: complete
    assert resolve_degree(5, 20) == 6  # odd rounded up to even
    with pytest.raises(ValueError, match="bounds.plan"):  # auto depends on gamma and delta
        resolve_degree("auto", 100)
    for bad in (1, 0, "some", 2.5, True):
        with pytest.raises(ValueError, match="k must be"):
            resolve_degree(bad, 20)


def test_complete_graph_and_bad_degrees():
    g = masking_graph(ROSTER[:5], 4, os.urandom(32))
    assert g["c00"] == frozenset(ROSTER[1:5])
    with pytest.raises(ValueError, match="degree"):
        masking_graph(ROSTER, 3, os.urandom(32))
    with pytest.raises(ValueError, match="seed"):
        masking_graph(ROSTER, 4, b"short")
    with pytest.raises(ValueError, match="duplicate"):
        masking_graph(["a", "a", "b"], 2, os.urandom(32))
