"""A restarted coordinator must never release two different aggregates of one round.

Issue 13 item 1: if the coordinator sends out the new model (EVALUATE, the next TRAIN) before the
round is durably checkpointed and then dies, the restarted coordinator re-runs the round as a new
attempt, possibly over other clients, and a client that resubmits the same update lets anyone
holding both models solve for it. These tests kill the engine at every event and every named
point between the aggregate and the checkpoint, restart it without one client, and check that at
most one model per round ever left.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from restart_kit import SPECS, Killed, Released, ckks_federation, drive, start

from fedcore.common.stages import Stage
from fedcore.coordinator.checkpoint import CheckpointStore
from fedcore.coordinator.state import Phase


def _recover_carol(m_all: np.ndarray, m_ab: np.ndarray, p0: np.ndarray) -> np.ndarray:
    """Carol's update from the FedAvg models over {alice, bob, carol} and over {alice, bob}."""
    w = {c: float(SPECS[c][1]) for c in SPECS}
    total, ab = sum(w.values()), w["alice"] + w["bob"]
    return (total * (m_all - p0) - ab * (m_ab - p0)) / w["carol"]


def _kill_and_restart(tmp_path, kill_after: int) -> tuple[Released, bool]:
    released = Released()
    eng, clients = start(tmp_path, ["alice", "bob", "carol"], released, federation={"rounds": 1})
    try:
        drive(eng, clients, lambda: eng.finished, kill_after=kill_after)
        return released, False
    except Killed:
        pass
    eng2, clients2 = start(tmp_path, ["alice", "bob"], released, federation={"rounds": 1})
    drive(eng2, clients2, lambda: eng2.finished)
    return released, True


def test_restart_between_release_and_checkpoint_reveals_no_client_update(tmp_path):
    """The reproduction: the new model reaches alice at EVALUATE, the coordinator dies before its
    checkpoint, and the restarted one must not release a second round-1 model without carol."""
    released, killed = _kill_and_restart(tmp_path, kill_after=1)  # the aggregating tick, then alice's download
    assert killed
    models = released.distinct(1)
    if len(models) == 2:  # today's code: carol's exact update follows from the two models
        p0 = np.arange(8, dtype=np.float64)
        carol = _recover_carol(models[0].astype(np.float64), models[1].astype(np.float64), p0)
        np.testing.assert_allclose(carol, SPECS["carol"][0], atol=1e-5)
    assert len(models) == 1, f"{len(models)} different round-1 models were released: carol's update leaks"


def _events_of_a_clean_run(tmp_path) -> int:
    released = Released()
    eng, clients = start(tmp_path / "clean", ["alice", "bob", "carol"], released, federation={"rounds": 1})
    return drive(eng, clients, lambda: eng.finished)


def test_kill_at_every_event_after_the_aggregate_releases_one_model_per_round(tmp_path):
    total = _events_of_a_clean_run(tmp_path)
    assert total >= 4  # the aggregating tick, alice/bob/carol evaluating, the closing tick
    for k in range(total + 1):
        run = tmp_path / f"kill-{k}"
        released, killed = _kill_and_restart(run, k)
        assert len(released.distinct(1)) <= 1, f"killed after event {k}: two round-1 models released"
        assert killed or k >= total
        lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        assert [x["round"] for x in lines] == [1], f"killed after event {k}: rounds {lines}"
        assert lines[0]["contributors"] == 3 and lines[0]["eval"], f"killed after event {k}: {lines[0]}"


POINTS = ("aggregated", "charged", "applied", "checkpointed", "evaluated")


@pytest.mark.parametrize("point", POINTS)
def test_kill_at_each_named_point_between_aggregate_and_checkpoint(tmp_path, point):
    """Two rounds; the kill hits round 1 at ``point`` (inside the tick); the restart runs without carol."""
    released = Released()
    eng, clients = start(tmp_path, ["alice", "bob", "carol"], released, federation={"rounds": 2})
    hits = []

    def hook(name):
        if name == point and not hits:
            hits.append(name)
            raise Killed(name)

    eng.fault_hook = hook
    with pytest.raises(Killed):
        drive(eng, clients, lambda: eng.finished)
    eng2, clients2 = start(tmp_path, ["alice", "bob"], released, federation={"rounds": 2})
    drive(eng2, clients2, lambda: eng2.finished)
    for r in (1, 2):
        assert len(released.distinct(r)) == 1, f"round {r}: {len(released.distinct(r))} models released"
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [x["round"] for x in lines] == [1, 2]
    before_checkpoint = POINTS.index(point) < POINTS.index("checkpointed")
    # killed before the checkpoint: round 1 is re-aggregated without carol (nothing had left);
    # after it: round 1 stands with carol and only its evaluation is re-run
    assert lines[0]["contributors"] == (2 if before_checkpoint else 3)
    assert lines[0]["eval"] and lines[1]["eval"]


CENTRAL = {"enabled": True, "clip_norm": 10.0, "noise_multiplier": 1.0, "clients_total": 100}


def _central_dp_run(run, kill_after: int) -> Released:
    released = Released()
    eng, clients = start(
        run, ["alice", "bob", "carol"], released, federation={"rounds": 2}, central_dp=CENTRAL, examples=1
    )
    try:
        drive(eng, clients, lambda: eng.finished, kill_after=kill_after)
    except Killed:
        eng2, clients2 = start(
            run, ["alice", "bob"], released, federation={"rounds": 2}, central_dp=CENTRAL, examples=1
        )
        drive(eng2, clients2, lambda: eng2.finished)
    return released


@pytest.mark.filterwarnings("ignore:client-level DP")
def test_released_aggregates_are_charged_to_the_central_dp_accountant(tmp_path):
    """DP-FedAvg: every round whose model left is in the accountant's checkpointed history once."""
    for k in range(6):
        run = tmp_path / f"kill-{k}"
        released = _central_dp_run(run, k)
        ckpt = CheckpointStore(run / "checkpoints").load_latest()
        assert [r for r in (1, 2) if released.distinct(r)] == [1, 2]
        assert all(len(released.distinct(r)) == 1 for r in (1, 2)), f"killed after event {k}"
        assert len(ckpt.extra["client_dp"]["central_rates"]) == 2, f"killed after event {k}: a release uncharged"


# -- ckks: the encrypted sum is served to the contributors before the coordinator can read it ---
@pytest.fixture(scope="module")
def ca():
    from fedcore.transport.certs import create_ca

    return create_ca("restart test CA")


def _decrypt_open(eng):
    return eng.state.stage is not None and eng.state.stage.stage == Stage.CKKS_DECRYPT


def test_ckks_restart_after_the_sum_was_served_never_serves_a_sum_over_other_clients(tmp_path, ca):
    """Killed once contributors could decrypt round 1's sum over all four; restarted without dave,
    the coordinator refuses to serve a sum over alice, bob and carol and ends the run saying why."""
    released = Released()
    four = ["alice", "bob", "carol", "dave"]
    eng, clients = ckks_federation(tmp_path, four, released, ca, federation={"rounds": 1})
    with pytest.raises(Killed):
        drive(eng, clients, lambda: eng.finished, kill_after=2, armed=lambda: _decrypt_open(eng))
    assert len(released.sums[1]) >= 1  # alice (and bob) decrypted the sum over all four
    eng2, clients2 = ckks_federation(tmp_path, four[:3], released, ca, federation={"rounds": 1})
    drive(eng2, clients2, lambda: eng2.finished)
    assert len(released.distinct_sums(1)) == 1, "two different round-1 sums were decrypted: dave's update leaks"
    assert not released.distinct(1)
    assert eng2.state.phase == Phase.ABORTED
    assert "already released" in eng2.state.outcome and "alice, bob, carol, dave" in eng2.state.outcome
    assert json.loads((tmp_path / "releases.json").read_text())["1"]["contributors"] == four


@pytest.mark.parametrize("kill_after", [0, 1, 2, 5])
def test_ckks_restart_with_the_same_clients_serves_the_same_sum_and_finishes(tmp_path, ca, kill_after):
    released = Released()
    four = ["alice", "bob", "carol", "dave"]
    eng, clients = ckks_federation(tmp_path, four, released, ca, federation={"rounds": 1})
    with pytest.raises(Killed):
        drive(eng, clients, lambda: eng.finished, kill_after=kill_after, armed=lambda: _decrypt_open(eng))
    eng2, clients2 = ckks_federation(tmp_path, four, released, ca, federation={"rounds": 1})
    drive(eng2, clients2, lambda: eng2.finished)
    assert eng2.state.phase == Phase.DONE, eng2.state.outcome
    assert len(released.distinct_sums(1)) == 1 and len(released.distinct(1)) == 1
    assert not json.loads((tmp_path / "releases.json").read_text())  # forgotten once round 1 is checkpointed
