"""The client refuses unsafe or illegal requests with ProtocolAbort before it touches a secret.

Fresh-state guards ask bare mode objects (``federation``); guards in the middle of a round run the
daemons' engine and clients over the in-memory transport up to that stage (``secagg_round``), then
hand a mutated copy of the engine's own task to one client's mode."""

from __future__ import annotations

import numpy as np
import pytest
from google.protobuf import any_pb2

from fedcore.common.aggregation import ClientJob
from fedcore.common.errors import ProtocolAbort
from fedcore.common.stages import Stage
from fedcore.proto.fedpsyau.v1 import secagg_pb2 as spb
from fedcore.secagg import quantize as qz
from fedcore.secagg.state import CLIENT_TRANSITIONS, ROUND_STAGES, SecAggStage
from fedcore.secagg.wire import TASK_TYPES

#: sparse graphs for protocol tests: no coalition and no dropout is assumed, so any even k meets the
#: 2^-40 bound of fedcore.secagg.bounds (the privacy tests of the bound are in test_graph_bounds.py)
NO_ADVERSARY = {"corrupt_fraction": 0.0, "dropout_fraction": 0.0}

S = SecAggStage
ME = "client-00"
STATES = [S.IDLE, *ROUND_STAGES, S.ABORTED]
ILLEGAL = [(a, b) for a in STATES for b in ROUND_STAGES if (a, b) not in CLIENT_TRANSITIONS]


def no_blob(name):
    raise KeyError(name)


def ask(fed, stage: SecAggStage, task, cid: str = ME):
    """Hand ``task`` to a bare client mode (fresh-state tests)."""
    return fed.clients[cid].handle(stage.wire, task, fed.jobs[cid], no_blob)


def bring_to(run, state: SecAggStage) -> None:
    """Run the federation until ME's mode is in ``state`` (IDLE: trained, no key advertised yet)."""
    if state == S.IDLE:
        run.open(S.ADVERTISE_KEYS)
    elif state == S.ABORTED:
        run.open(S.SHARE_KEYS)
        task = run.task(S.SHARE_KEYS, ME)
        del task.participants[-1]
        with pytest.raises(ProtocolAbort):
            run.ask(S.SHARE_KEYS, task, ME)
    else:
        run.until(lambda: run.stage_of(ME) == state)
    assert run.stage_of(ME) == state


def test_the_illegal_transitions_are_derived_from_the_legal_table():
    assert len(ILLEGAL) == len(STATES) * len(ROUND_STAGES) - len(CLIENT_TRANSITIONS) == 19


@pytest.mark.parametrize("current,new", ILLEGAL, ids=[f"{a}->{b}" for a, b in ILLEGAL])
def test_every_illegal_stage_change_is_refused(secagg_round, current, new):
    run = secagg_round(3, length=3)
    bring_to(run, current)
    mode = run.client(ME)
    secrets_before = mode.state.self_seed if mode.state else None
    with pytest.raises(ProtocolAbort, match="illegal stage change"):
        run.ask(new, TASK_TYPES[new](round=run.round, attempt=run.attempt), ME)
    if secrets_before is not None:
        assert mode.state.self_seed == secrets_before  # no re-keying happened
        assert mode.state.stage == S.ABORTED


@pytest.mark.parametrize("stage", [Stage.TRAIN, Stage.PLAIN_INPUT, Stage.CKKS_DECRYPT, Stage.WAIT])
def test_stages_of_other_modes_are_refused(federation, stage):
    fed = federation(3)
    with pytest.raises(ProtocolAbort, match="not a SecAgg stage"):
        fed.clients[ME].handle(stage, any_pb2.Any(), fed.jobs[ME], no_blob)


def test_a_task_without_a_job_is_refused(federation):
    fed = federation(3)
    with pytest.raises(ProtocolAbort, match="ClientJob"):
        fed.clients[ME].handle(Stage.SECAGG_ADVERTISE_KEYS, spb.SecAggAdvertiseKeysTask(), None, no_blob)


def test_wrong_body_types_are_refused(federation):
    fed = federation(3)
    with pytest.raises(ProtocolAbort, match="expected a fedpsyau.v1.SecAggAdvertiseKeysTask"):
        ask(fed, S.ADVERTISE_KEYS, spb.SecAggUnmaskTask(round=1))
    packed = any_pb2.Any()
    packed.Pack(spb.SecAggShareKeysTask(round=1))
    fed = federation(3)
    with pytest.raises(ProtocolAbort, match="got Any of"):
        ask(fed, S.ADVERTISE_KEYS, packed)


def test_a_task_for_another_round_or_attempt_is_refused(federation):
    fed = federation(3)
    with pytest.raises(ProtocolAbort, match="expected round 1 attempt 0"):
        ask(fed, S.ADVERTISE_KEYS, spb.SecAggAdvertiseKeysTask(round=1, attempt=3, participants=fed.ctx.participants))


@pytest.mark.parametrize(
    "mutate,match",
    [
        (lambda ids: list(reversed(ids)), "sorted"),
        (lambda ids: [*ids, ids[0]], "duplicate"),
        (lambda ids: ids[1:] + ["client-99"], "do not include"),
        (lambda ids: ["", *ids], "empty"),
    ],
)
def test_advertise_refuses_bad_rosters(federation, mutate, match):
    fed = federation(4)
    task = spb.SecAggAdvertiseKeysTask(round=1, attempt=0, participants=mutate(list(fed.ctx.participants)))
    with pytest.raises(ProtocolAbort, match=match):
        ask(fed, S.ADVERTISE_KEYS, task)


def test_advertise_refuses_rounds_below_min_clients(federation):
    fed = federation(3, settings={"min_clients": 4}, client_settings={"min_clients": 4})
    with pytest.raises(ProtocolAbort, match="min_clients"):
        ask(fed, S.ADVERTISE_KEYS, spb.SecAggAdvertiseKeysTask(round=1, participants=fed.ctx.participants))


def test_never_rekeys_within_a_round_attempt(federation):
    fed = federation(3)
    task = spb.SecAggAdvertiseKeysTask(round=1, attempt=0, participants=fed.ctx.participants)
    first = ask(fed, S.ADVERTISE_KEYS, task)
    with pytest.raises(ProtocolAbort, match="advertise_keys -> advertise_keys"):
        ask(fed, S.ADVERTISE_KEYS, task)
    assert fed.clients[ME].state.own_keys == (first.channel_public_key, first.mask_public_key)


def _corrupt_once(victim: str):
    """A tamper hook that corrupts ``victim``'s first masked input (its weight slot: the sum's range
    check then fails that attempt, and the engine retries)."""
    done = []

    def tamper(stage, cid, direction, data):
        if not done and direction == "up" and stage == Stage.SECAGG_MASKED_INPUT and cid == victim:
            done.append(cid)
            return data[:-3] + bytes(3)
        return data

    return tamper


def test_a_new_attempt_gets_fresh_keys_and_never_reuses_masks(secagg_round):
    run = secagg_round(4, length=64, num_examples=1, tamper=_corrupt_once("client-03"))
    run.server.record_inputs = True  # keep what the coordinator received
    run.open(S.UNMASK, attempt=0)
    first_keys = run.client(ME).state.own_keys
    first_masked = run.server.r.inputs[ME].copy()
    run.open(S.UNMASK, attempt=1)  # attempt 0's sum failed its range check; the engine retried
    assert run.client(ME).state.own_keys != first_keys
    assert not set(first_keys) & set(run.client(ME).state.own_keys)
    second_masked = run.server.r.inputs[ME].copy()
    assert run.job(ME).attempt == 1 and np.array_equal(run.job(ME).vector, run.update(ME))  # the same update
    assert run.run() == 0
    # with reused masks the difference would be the rounding noise (|d| <= 1); fresh masks make it uniform
    diff = qz.from_ring(second_masked - first_masked, 32)
    assert np.abs(diff).max() > 2**20
    res = run.result()
    want, weight = run.expected(run.ids)
    assert res.num_contributors == 4 and res.total_weight == weight
    np.testing.assert_allclose(res.weighted_sum, want, atol=run.tolerance(weight))


def test_a_stale_attempt_is_refused(federation):
    fed = federation(3)
    retry = fed.next_round(1, attempt=2)
    ask(retry, S.ADVERTISE_KEYS, spb.SecAggAdvertiseKeysTask(round=1, attempt=2, participants=fed.ctx.participants))
    with pytest.raises(ProtocolAbort, match="stale"):
        ask(fed, S.ADVERTISE_KEYS, spb.SecAggAdvertiseKeysTask(round=1, attempt=0, participants=fed.ctx.participants))


def test_unmask_refuses_both_shares_in_one_request(secagg_round):
    run = secagg_round(4).open(S.UNMASK)
    task = run.task(S.UNMASK, ME)
    peer = next(c for c in task.survivors if c != ME)
    task.dropped.append(peer)
    with pytest.raises(ProtocolAbort, match="both shares"):
        run.ask(S.UNMASK, task, ME)


def test_unmask_refuses_both_shares_across_two_requests(secagg_round):
    run = secagg_round(4).open(S.UNMASK)
    task = run.task(S.UNMASK, ME)
    first = run.ask(S.UNMASK, task, ME)
    assert {s.owner for s in first.self_mask_shares} == set(task.survivors)
    again = run.ask(S.UNMASK, task, ME)  # a repeated identical request is answered identically
    assert again == first
    peer = next(c for c in task.survivors if c != ME)
    second = spb.SecAggUnmaskTask(
        round=run.round, attempt=run.attempt, survivors=[ME], dropped=[peer], num_survivors=task.num_survivors
    )
    with pytest.raises(ProtocolAbort, match="revealed before"):
        run.ask(S.UNMASK, second, ME)


def test_unmask_refuses_its_own_key_share_and_too_few_survivors(secagg_round):
    run = secagg_round(4).open(S.UNMASK)
    task = run.task(S.UNMASK, ME)
    bad = spb.SecAggUnmaskTask(
        round=run.round,
        attempt=run.attempt,
        dropped=[ME],
        num_survivors=4,
        survivors=[c for c in task.survivors if c != ME],
    )
    with pytest.raises(ProtocolAbort, match="never as dropped"):
        run.ask(S.UNMASK, bad, ME)
    run = secagg_round(4).open(S.UNMASK)
    task = run.task(S.UNMASK, ME)
    task.num_survivors = 2
    with pytest.raises(ProtocolAbort, match="fewer than the threshold"):
        run.ask(S.UNMASK, task, ME)


def _sparse(secagg_round):
    """Six clients on a ring (k = 2): client-00 has exactly two neighbours."""
    return secagg_round(6, secagg={"k": 2, "threshold": 4, **NO_ADVERSARY})


def test_share_keys_refuses_a_peer_outside_the_neighbourhood(secagg_round):
    run = _sparse(secagg_round).open(S.SHARE_KEYS)
    task = run.task(S.SHARE_KEYS, ME)
    mine = {p.client_id for p in task.neighbours}
    assert len(mine) == 2
    stranger = next(c for c in run.ids if c not in mine | {ME})
    keys = run.server.r.keys[stranger]
    task.neighbours.add(client_id=stranger, channel_public_key=keys[0], mask_public_key=keys[1])
    with pytest.raises(ProtocolAbort, match="outside this client's neighbourhood"):
        run.ask(S.SHARE_KEYS, task, ME)


def test_masked_input_refuses_a_share_from_outside_the_neighbourhood(secagg_round):
    run = _sparse(secagg_round).open(S.MASKED_INPUT)
    task = run.task(S.MASKED_INPUT, ME)
    mine = {s.sender for s in task.shares}
    stranger = next(c for c in run.ids if c not in mine | {ME})
    foreign = next(iter(run.server.r.outbox[stranger].values()))
    task.shares.add(sender=stranger, receiver=ME, sealed=foreign.sealed)
    with pytest.raises(ProtocolAbort, match="outside this client's neighbourhood"):
        run.ask(S.MASKED_INPUT, task, ME)


def test_unmask_refuses_a_share_of_a_peer_outside_the_neighbourhood(secagg_round):
    run = _sparse(secagg_round).open(S.UNMASK)
    task = run.task(S.UNMASK, ME)
    stranger = next(c for c in run.ids if c not in set(task.survivors) | set(task.dropped))
    task.dropped.append(stranger)
    with pytest.raises(ProtocolAbort, match="outside this client's neighbourhood"):
        run.ask(S.UNMASK, task, ME)


@pytest.mark.parametrize(
    "tamper,match",
    [
        (lambda env, other: setattr(env, "sealed", env.sealed[:-1] + bytes([env.sealed[-1] ^ 1])), "does not open"),
        (lambda env, other: setattr(env, "sealed", b"\x01" + bytes(200)), "does not open"),
        (lambda env, other: setattr(env, "sealed", other.sealed), "does not open"),  # a share meant for someone else
        (lambda env, other: setattr(env, "receiver", "client-03"), "addressed to"),
    ],
)
def test_masked_input_refuses_garbage_or_misdirected_sealed_shares(secagg_round, tamper, match):
    run = secagg_round(4).open(S.MASKED_INPUT)
    task = run.task(S.MASKED_INPUT, ME)
    env = task.shares[0]
    other = run.server.r.outbox[env.sender]["client-03" if env.sender != "client-03" else "client-02"]
    tamper(env, other)
    with pytest.raises(ProtocolAbort, match=match):
        run.ask(S.MASKED_INPUT, task, ME)
    assert run.stage_of(ME) == S.ABORTED


@pytest.mark.parametrize(
    "field_,value,match",
    [
        ("frac_bits", 31, "refusing quantization"),
        ("bits", 16, "refusing quantization"),
        ("num_clients", 3, "quantization is for 3 clients"),
        ("clip", float("nan"), "refusing quantization"),
        ("noise_sigma", 1.0, "no discrete noise sampler"),
    ],
)
def test_masked_input_refuses_unsafe_quantization(secagg_round, field_, value, match, monkeypatch):
    monkeypatch.setattr("fedcore.secagg.noise.default_sampler", lambda: None)
    # the 32-bit ring (64 bits is chosen by default for the engine's weight bound 1e6, and 31
    # fractional bits do fit in it)
    run = secagg_round(4, secagg={"bits": 32}).open(S.MASKED_INPUT)
    task = run.task(S.MASKED_INPUT, ME)
    setattr(task.quantization, field_, value)
    with pytest.raises(ProtocolAbort, match=match):
        run.ask(S.MASKED_INPUT, task, ME)


def test_client_floors_on_noise_threshold_and_degree(secagg_round):
    run = secagg_round(4)
    run.use_client_settings(ME, {"noise_sigma": 3.0})
    run.open(S.MASKED_INPUT)
    with pytest.raises(ProtocolAbort, match="below this client's floor"):
        run.ask(S.MASKED_INPUT, run.task(S.MASKED_INPUT, ME), ME)
    run = secagg_round(6, secagg={"threshold": 0.5})
    run.use_client_settings(ME, {"threshold": 0.9})
    run.open(S.SHARE_KEYS)
    with pytest.raises(ProtocolAbort, match="min_survivors"):
        run.ask(S.SHARE_KEYS, run.task(S.SHARE_KEYS, ME), ME)
    run = secagg_round(6, secagg={"k": 2, **NO_ADVERSARY})
    run.use_client_settings(ME, {"k": "all"})
    run.open(S.SHARE_KEYS)
    with pytest.raises(ProtocolAbort, match="requires the complete graph"):
        run.ask(S.SHARE_KEYS, run.task(S.SHARE_KEYS, ME), ME)


@pytest.mark.parametrize(
    "mutate,match",
    [
        (lambda t: setattr(t, "graph_seed", b"short"), "seed"),
        (lambda t: setattr(t, "degree", 1), "refusing masking graph degree"),
        (lambda t: t.neighbours[0].__setattr__("mask_public_key", b"\x01" * 31), "32-byte"),
        (lambda t: t.neighbours.add().CopyFrom(t.neighbours[0]), "duplicate"),
        (lambda t: t.participants.append("client-99"), "differ from the advertise-keys roster"),
    ],
)
def test_share_keys_refuses_malformed_tasks(secagg_round, mutate, match):
    run = secagg_round(4).open(S.SHARE_KEYS)
    task = run.task(S.SHARE_KEYS, ME)
    mutate(task)
    with pytest.raises(ProtocolAbort, match=match):
        run.ask(S.SHARE_KEYS, task, ME)


def test_masked_input_refuses_a_nan_update(secagg_round):
    run = secagg_round(3).open(S.MASKED_INPUT)
    nan = ClientJob(run.round, run.attempt, np.array([0.1, np.nan, 0.2, 0, 0, 0]), 1.0)
    with pytest.raises(ProtocolAbort, match="finite"):
        run.ask(S.MASKED_INPUT, run.task(S.MASKED_INPUT, ME), ME, job=nan)
