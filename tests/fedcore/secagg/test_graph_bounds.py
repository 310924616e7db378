"""SecAgg+'s masking graph and share threshold against colluding coalitions of the stated size.

"Exposed" means what the protocol leaks when it happens: an honest client with at least t_nb
colluding share holders has both its secrets (the coalition's key shares and the self-mask seed the
server rebuilds at unmask) in the adversary's hands, so its input is unmasked.
"""

from __future__ import annotations

import math
import os
from fractions import Fraction

import numpy as np
import pytest

from fedcore.common.aggregation import AggregationContext
from fedcore.common.errors import AggregationAborted, ConfigError, ProtocolAbort
from fedcore.secagg import bounds
from fedcore.secagg.graph import masking_graph
from fedcore.secagg.server import SecAggServer
from fedcore.secagg.state import SecAggSettings, SecAggStage, graph_plan, resolve_threshold

FED = "fed-bounds"


def _ids(n: int) -> tuple[str, ...]:
    return tuple(f"c{i:04d}" for i in range(n))


def _server_round(n: int, settings: dict | None = None):
    """The degree, share threshold, T and graph the server actually uses for n participants."""
    server = SecAggServer(FED, settings or {})
    server.begin(AggregationContext(FED, 1, 0, _ids(n), 4, {}, max_weight=1.0))
    r = server.r
    return r.degree, r.share_threshold, r.threshold, r.graph


def _adjacency(ids: tuple[str, ...], graph: dict[str, frozenset[str]]) -> np.ndarray:
    pos = {c: i for i, c in enumerate(ids)}
    a = np.zeros((len(ids), len(ids)), np.int32)
    for c, nb in graph.items():
        a[pos[c], [pos[x] for x in nb]] = 1
    return a


def _exposed(adj: np.ndarray, corrupt: np.ndarray, t_nb: int) -> int:
    """How many honest clients have at least t_nb corrupt share holders."""
    counts = adj @ corrupt
    return int(np.count_nonzero((counts >= t_nb) & (corrupt == 0)))


def _greedy(adj: np.ndarray, target: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """A coalition built on the neighbours of ``target`` in ``adj``, filled up at random."""
    nb = np.flatnonzero(adj[target])
    rng.shuffle(nb)
    chosen = list(nb[:size])
    rest = np.setdiff1d(np.arange(adj.shape[0]), [*chosen, target])
    chosen += list(rng.choice(rest, size - len(chosen), replace=False)) if size > len(chosen) else []
    out = np.zeros(adj.shape[0], np.int32)
    out[chosen] = 1
    return out


def _connected(adj: np.ndarray, alive: np.ndarray) -> bool:
    idx = np.flatnonzero(alive)
    seen = np.zeros(adj.shape[0], bool)
    seen[idx[0]] = True
    frontier = seen.copy()
    while frontier.any():
        frontier = (adj[frontier].any(axis=0) & alive.astype(bool)) & ~seen
        seen |= frontier
    return bool(seen[idx].all())


@pytest.mark.parametrize("n", [100, 500, 1000])
def test_no_honest_client_exposed_by_coalitions_of_the_stated_size(n):
    """Coalitions of floor(gamma n) clients (gamma = 1/3 by default, never more than T - 1) fixed
    before the round's seed is drawn: random ones, ones greedy on a target's neighbours in the
    previous round's graph (what a coalition can know in advance), and ones of adjacent ids. None
    exposes an honest client, and the honest survivors stay connected after delta n dropouts. With
    the complete graph (n = 100 at the defaults) a coalition of T - 1 that sees the graph fails too."""
    rng = np.random.default_rng(n)
    ids = _ids(n)
    settings = SecAggSettings.from_mapping({})
    k0, t0, T, g0 = _server_round(n)
    size = min(math.floor(settings.corrupt_fraction * n), T - 1)
    drops = math.floor(settings.dropout_fraction * n)
    previous = _adjacency(ids, g0)
    if k0 < n - 1:  # the exact bound the parameters were chosen under
        assert bounds.exact_failure_bound(n, k0, t0, size, drops) <= Fraction(1, 2**40)
    else:
        assert t0 == T > size
    trials = {100: 12, 500: 6, 1000: 4}[n]
    for trial in range(trials):
        k, t_nb, _, graph = _server_round(n)  # a fresh seed, as every round draws
        adj = _adjacency(ids, graph)
        coalitions = [
            np.isin(np.arange(n), rng.choice(n, size, replace=False)).astype(np.int32),
            _greedy(previous, int(rng.integers(n)), size, rng),
            np.isin(np.arange(n), np.arange(size) + trial).astype(np.int32),
        ]
        if k == n - 1:  # the complete graph holds even against a coalition that sees this round's graph
            coalitions.append(_greedy(adj, int(rng.integers(n)), T - 1, rng))
        for corrupt in coalitions:
            assert corrupt.sum() in (size, T - 1)
            assert _exposed(adj, corrupt, t_nb) == 0, (n, k, t_nb, size)
            dropped = np.zeros(n, np.int32)
            dropped[rng.choice(np.flatnonzero(corrupt == 0), drops, replace=False)] = 1
            assert _connected(adj, (corrupt == 0) & (dropped == 0)), (n, k)
        previous = adj
    assert (k0, t0) == (k, t_nb)  # k and t depend on n, T, gamma and delta only


def test_the_former_degree_rule_exposes_honest_clients():
    """The rule before the bound (k = 2 ceil(5 log2 n), t_nb about half the neighbourhood) lets a
    random coalition of T - 1 clients unmask honest clients at n = 100: the test above can fail."""
    n, rng = 100, np.random.default_rng(7)
    ids = _ids(n)
    T = resolve_threshold(0.5, n, 3)
    k = 2 * math.ceil(5 * math.log2(n))
    t_nb = min(k + 1, max((k + 1) // 2 + 1, math.ceil(T * (k + 1) / n - 1e-9)))
    exposed = []
    for _ in range(5):
        adj = _adjacency(ids, masking_graph(ids, k, os.urandom(32)))
        corrupt = np.isin(np.arange(n), rng.choice(n, T - 1, replace=False)).astype(np.int32)
        exposed.append(_exposed(adj, corrupt, t_nb))
    assert (k, t_nb) == (68, 36)
    assert sum(exposed) > 0, exposed  # about 15 of the 50 honest clients per round
    for n in (500, 1000):  # and even coalitions of n / 3 break it with odds far above 2^-40
        T = resolve_threshold(0.5, n, 3)
        k = 2 * math.ceil(5 * math.log2(n))
        t_nb = min(k + 1, max((k + 1) // 2 + 1, math.ceil(T * (k + 1) / n - 1e-9)))
        assert bounds.exact_failure_bound(n, k, t_nb, n // 3, n // 3) > Fraction(1, 100)


@pytest.mark.parametrize("n,gamma,delta", [(30, 0.2, 0.1), (61, 0.1, 0.3), (80, 0.25, 0.25)])
def test_float_search_agrees_with_exact_tails(n, gamma, delta):
    c, d = bounds.corrupt_count(gamma, n), bounds.corrupt_count(delta, n)
    for k in range(4, n - 2, 6):
        t, approx = bounds.best_threshold(n, k, c, d)
        exact = float(bounds.exact_failure_bound(n, k, t, c, d))
        assert approx == pytest.approx(exact, rel=1e-6, abs=1e-30), (k, t)


def test_hypergeometric_tail_against_direct_counting():
    """P[HG(N, K, m) >= j] by enumerating every m-subset of a small population."""
    import itertools

    N, K, m = 9, 4, 5
    subsets = list(itertools.combinations(range(N), m))
    for j in range(m + 2):
        direct = Fraction(sum(1 for s in subsets if sum(x < K for x in s) >= j), len(subsets))
        assert bounds._exact_sf(N, K, m, j) == direct
        assert float(bounds._survival(bounds._log_hg_pmf(N, K, m))[min(j, m + 1)]) == pytest.approx(float(direct))


def test_sparse_graph_when_the_bound_allows_it_and_complete_otherwise():
    low = SecAggSettings.from_mapping({"corrupt_fraction": 0.05, "dropout_fraction": 0.05})
    gp = graph_plan(low, 1000, 501)
    assert not gp.complete and gp.bound <= 2.0**-40 and gp.k < 100
    assert graph_plan(SecAggSettings.from_mapping({}), 100, 51).complete  # 1/3, 1/3 at n = 100


def test_settings_that_cannot_meet_the_bound_are_refused():
    with pytest.raises(AggregationAborted, match="above the 2\\^-40 target"):
        _server_round(200, {"k": 20})
    with pytest.raises(AggregationAborted, match="reach the threshold"):  # 12 colluding of 20, T = 11
        _server_round(20, {"corrupt_fraction": 0.6, "threshold": 11})
    with pytest.raises(ConfigError) as err:
        SecAggSettings.from_mapping({"corrupt_fraction": 0.6, "dropout_fraction": 0.5})
    assert any("must be < 1" in p for p in err.value.problems)
    assert any("reaches the threshold" in p for p in err.value.problems)
    assert SecAggSettings.from_mapping({"corrupt_fraction": 0.6, "threshold": 0.7}).corrupt_fraction == 0.6


def test_client_refuses_a_sparse_degree_its_own_fractions_do_not_allow(secagg_round):
    """The coordinator's table claims no coalition and no dropout (so k = 2 passes its bound); a
    client with the default fractions refuses the degree the engine's share-keys task asks for."""
    run = secagg_round(8, secagg={"k": 2, "corrupt_fraction": 0.0, "dropout_fraction": 0.0})
    run.use_client_settings("client-00", {})
    run.open(SecAggStage.SHARE_KEYS)
    task = run.task(SecAggStage.SHARE_KEYS, "client-00")
    assert task.degree == 2
    with pytest.raises(ProtocolAbort, match="refusing masking graph degree 2"):
        run.ask(SecAggStage.SHARE_KEYS, task, "client-00")
    assert run.stage_of("client-00") == SecAggStage.ABORTED
