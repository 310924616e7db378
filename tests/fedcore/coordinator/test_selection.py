"""Client selection in :func:`fedcore.coordinator.phases.begin_train`.

``k = min(len(pool), max(min_clients, ceil(fraction * len(pool))))`` clients of the eligible pool,
drawn by ``[federation] seed`` (the config's comment: "initial model and client selection").
The engine runs in plain mode with a fake clock and no statistics, so its first tick opens round 1.
"""

from __future__ import annotations

import pytest
from fedcore_testkit import FakeClock, ScriptedClient, TinyWorkload, make_engine

from fedcore.coordinator import phases
from fedcore.coordinator.state import Phase


def _ids(n: int) -> list[str]:
    return [f"c{i:02d}" for i in range(n)]


def _engine(run_dir, clients, *, min_clients, fraction, seed=0, clock=None):
    eng = make_engine(
        run_dir,
        clock or FakeClock(),
        workload=TinyWorkload(stats=False),
        federation={"min_clients": min_clients, "fraction": fraction, "seed": seed},
    )
    for cid in clients:
        ScriptedClient(eng, cid).join()
    return eng


def _round_one_selection(run_dir, clients, **fed) -> tuple[str, ...]:
    eng = _engine(run_dir, clients, **fed)
    eng.tick()
    assert eng.state.phase == Phase.TRAIN and eng.state.round == 1
    return eng.state.selected


@pytest.mark.parametrize(
    ("pool", "fraction", "min_clients", "k"),
    [
        (5, 0.5, 1, 3),  # ceil(2.5) = 3; floor and round() give 2
        (3, 0.34, 1, 2),  # ceil(1.02) = 2; floor and round() give 1
        (3, 0.34, 2, 2),  # max(min_clients, 2)
        (5, 0.4, 1, 2),  # an exact product is not rounded up past itself (not floor + 1)
        (7, 0.1, 1, 1),  # ceil(0.7) = 1: a small fraction still selects someone
        (6, 1.0, 2, 6),  # the whole pool, no more
    ],
)
def test_selection_size_rounds_the_fraction_up(tmp_path, pool, fraction, min_clients, k):
    selected = _round_one_selection(tmp_path, _ids(pool), min_clients=min_clients, fraction=fraction)
    assert len(selected) == k
    assert len(set(selected)) == k and set(selected) <= set(_ids(pool))


@pytest.mark.parametrize(("pool", "fraction", "min_clients"), [(5, 0.2, 3), (10, 0.1, 4), (4, 0.01, 4)])
def test_min_clients_is_the_floor_of_the_selection(tmp_path, pool, fraction, min_clients):
    assert len(_round_one_selection(tmp_path, _ids(pool), min_clients=min_clients, fraction=fraction)) == min_clients


def test_an_exact_share_is_not_rounded_up_by_float_error(tmp_path):
    assert len(_round_one_selection(tmp_path, _ids(25), min_clients=1, fraction=0.28)) == 7


def test_the_fraction_counts_only_eligible_clients(tmp_path):
    clock = FakeClock()
    eng = _engine(tmp_path, _ids(7), min_clients=1, fraction=0.5, clock=clock)
    clock.advance(3.0)
    for cid in _ids(5):  # c05 and c06 stay silent past the heartbeat timeout (5 s): dead
        eng.registry.seen(cid, clock())
    clock.advance(3.0)
    eng.tick()
    assert eng.state.phase == Phase.TRAIN
    assert eng.registry.eligible() == _ids(5)
    assert len(eng.state.selected) == 3  # ceil(0.5 * 5), not ceil(0.5 * 7) = 4
    assert set(eng.state.selected) <= set(_ids(5))


def test_selection_never_exceeds_a_pool_smaller_than_min_clients(tmp_path):
    # The engine waits in JOINING rather than start with fewer than min_clients; the clamp in
    # begin_train is the guard behind that, driven here directly with such a pool.
    eng = _engine(tmp_path, _ids(2), min_clients=3, fraction=1.0)
    with eng.lock:
        eng.tick()
        assert eng.state.phase == Phase.JOINING
        phases.begin_train(eng, eng.registry.eligible(), eng.clock())
    assert eng.state.phase == Phase.TRAIN and eng.state.selected == tuple(_ids(2))


def test_selection_is_reproducible_from_the_seed_whatever_the_join_order(tmp_path):
    ids = _ids(7)
    first = _round_one_selection(tmp_path / "a", ids, min_clients=1, fraction=0.4, seed=11)
    again = _round_one_selection(tmp_path / "b", list(reversed(ids)), min_clients=1, fraction=0.4, seed=11)
    assert len(first) == 3 and first == again


def test_the_seed_changes_the_selection(tmp_path):
    ids = _ids(7)
    picks = {
        _round_one_selection(tmp_path / f"s{seed}", ids, min_clients=1, fraction=0.4, seed=seed) for seed in range(8)
    }
    assert len(picks) > 1  # 35 subsets of 3 of 7: eight seeds drawing one subset is no seed at all
